"""Deterministic demo gold data: the ``customer_aggregates`` table with a learnable churn label.

The table is an Iceberg table in the gold catalog, one snapshot per monthly load (each snapshot's
summary says which: ``asgard.load: 2025-07``), so a run can pin the month it saw. The Parquet-folder
form (``s3://<bucket>/<GOLD_SCHEMA>/customer_aggregates/``, one file per month) can still be written
for ``source.format: parquet``.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from asgard_ray.config import Settings
from asgard_ray.storage import list_files, resolve

__all__ = ["CUSTOMER_TABLE", "LOAD_KEY", "SNAPSHOTS", "customer_aggregates", "load_label", "write_customer_aggregates"]

log = logging.getLogger(__name__)

CUSTOMER_TABLE = "customer_aggregates"
SNAPSHOTS = tuple(pd.Timestamp(d, tz="UTC") for d in ("2025-07-01", "2025-08-01", "2025-09-01", "2025-10-01"))
LOAD_KEY = "asgard.load"
"""Snapshot-summary key naming the monthly load a snapshot of the demo table holds (``2025-07``)."""


def load_label(ts: pd.Timestamp) -> str:
    """The monthly load's name in a snapshot summary: ``YYYY-MM``."""
    return f"{ts:%Y-%m}"


def customer_aggregates(n_customers: int = 10_000, seed: int = 42) -> pd.DataFrame:
    """Monthly snapshots of per-customer aggregates; ``churned`` follows a logistic model of them.

    Customers who order rarely, recently stopped ordering, or file many support tickets churn
    more, so a model can learn the label (validation AUC well above 0.5).
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_customers + 1, dtype=np.int64)
    activity = rng.gamma(2.0, 1.5, n_customers)  # latent engagement per customer
    tenure0 = rng.integers(30, 2000, n_customers)
    frames = []
    for i, ts in enumerate(SNAPSHOTS):
        drift = 1.0 + 0.05 * i
        total_orders = rng.poisson(activity * 6 * drift + i).astype(np.int64)
        avg_order_value = np.round(rng.lognormal(3.7, 0.45, n_customers) * (1 + 0.02 * i), 2)
        days_since = np.clip(rng.exponential(60 / (activity + 0.3)), 0, 365).astype(np.int64)
        tickets = rng.poisson(0.6 + 1.2 / (activity + 0.5)).astype(np.int64)
        tenure = (tenure0 + 30 * i).astype(np.int64)
        total_spend = np.round(total_orders * avg_order_value, 2)
        logit = -1.2 + 0.025 * days_since - 0.12 * total_orders + 0.35 * tickets - 0.0004 * tenure
        churned = (rng.random(n_customers) < 1 / (1 + np.exp(-logit))).astype(np.int64)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "event_timestamp": ts,
                    "total_orders": total_orders,
                    "avg_order_value": avg_order_value,
                    "days_since_last_order": days_since,
                    "support_tickets": tickets,
                    "tenure_days": tenure,
                    "total_spend": total_spend,
                    "churned": churned,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
    return df


def write_customer_aggregates(
    settings: Settings,
    n_customers: int = 10_000,
    *,
    force: bool = False,
    format: Literal["iceberg", "parquet"] = "iceberg",
    table_name: str = CUSTOMER_TABLE,
) -> str:
    """Write the demo table (idempotent) and return where it is.

    ``iceberg``: one append (one snapshot) per monthly load into ``<GOLD_SCHEMA>.<table_name>`` of the
    gold catalog; loads already committed (found by their summary) are skipped, so a table
    interrupted half-way is completed, not duplicated. ``parquet``: one file per month under the
    Parquet-folder location; skipped if any file is there. ``force`` recreates either form.
    """
    if format == "parquet":
        return _write_parquet(settings, n_customers, force=force, table_name=table_name)
    return _write_iceberg(settings, n_customers, force=force, table_name=table_name)


def _write_parquet(settings: Settings, n_customers: int, *, force: bool, table_name: str) -> str:
    uri = settings.gold_uri(table_name)
    if list_files(settings, uri) and not force:
        return uri
    fs, path = resolve(settings, uri)
    df = customer_aggregates(n_customers)
    for ts, part in df.groupby("event_timestamp", sort=True):
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, f"{path}/part-{ts:%Y%m%d}.parquet", filesystem=fs)
    log.info("wrote %d rows of %s to %s", len(df), table_name, uri)
    return uri


def _write_iceberg(settings: Settings, n_customers: int, *, force: bool, table_name: str) -> str:
    from pyiceberg.exceptions import NoSuchTableError

    from asgard_ray.gold import ensure_namespace, gold_catalog, write_table

    ns = settings.gold_schema
    ensure_namespace(settings, ns)
    catalog = gold_catalog(settings)
    done: set[str] = set()
    try:
        table = catalog.load_table((ns, table_name))
        if force:
            catalog.purge_table((ns, table_name))
        else:
            done = {str(s.summary[LOAD_KEY]) for s in table.snapshots() if s.summary and s.summary.get(LOAD_KEY)}
    except NoSuchTableError:
        pass
    identifier = f"{ns}.{table_name}"
    todo = [ts for ts in SNAPSHOTS if load_label(ts) not in done]
    if not todo:
        return identifier
    df = customer_aggregates(n_customers)
    for ts in todo:
        part = df[df["event_timestamp"] == ts].reset_index(drop=True)
        snapshot = write_table(settings, table_name, part, namespace=ns, summary={LOAD_KEY: load_label(ts)})
        log.info("loaded %s %s into %s: %d rows, snapshot %d", table_name, load_label(ts), identifier, len(part), snapshot)
    return identifier
