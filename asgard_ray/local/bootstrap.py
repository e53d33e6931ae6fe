"""First-run preparation of the embedded stack's storage, gold catalog and Feast repo (idempotent)."""

from __future__ import annotations

from asgard_ray.config import Settings
from asgard_ray.features.store import write_repo
from asgard_ray.gold import ensure_namespace
from asgard_ray.local.demo_data import write_customer_aggregates
from asgard_ray.storage import ensure_buckets

__all__ = ["prepare_feast_repo", "prepare_storage"]


def prepare_storage(settings: Settings) -> None:
    """Create the platform and output buckets, the gold namespace and the demo gold table (Iceberg)."""
    ensure_buckets(settings, list(dict.fromkeys([settings.s3_bucket, *settings.asgard_output_buckets])))
    ensure_namespace(settings)
    write_customer_aggregates(settings)


def prepare_feast_repo(settings: Settings) -> None:
    """Write ``feature_store.yaml`` from the settings."""
    write_repo(settings)
