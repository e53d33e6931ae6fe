"""Drift computed from data: a batch scoring output (via its manifest) against the training reference.

``compute_drift`` reads the scored Parquet on Ray Data, aggregates per-batch partials
(``asgard_ray.monitoring.aggregate``), turns them into per-feature PSI / KS / Jensen-Shannon /
Wasserstein, prediction drift, data quality and (with labels from the gold table) performance,
and stores them as monitoring records through the actor, so alerts follow the same rules as
``POST /mlops/monitoring``. ``DRIFT_JOB`` is its job kind (``monitoring``): the HTTP route, the CLI and
``jobs/monitor.py`` start it through the jobs core, as the Ray task ``monitoring:<job_id>``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError, InvalidRequest, NotFound
from asgard_ray.jobs import JobKind, JobRecord, Plan, new_job_id, register_kind, start_job_sync
from asgard_ray.monitoring.aggregate import AggregateSpec, LabelSpec, column_spec, combine, file_partials
from asgard_ray.monitoring.metrics import auc_from_histograms, js_distance, ks_2samp, psi, shares, wasserstein
from asgard_ray.monitoring.schemas import ComputeRequest, MonitoringRequest
from asgard_ray.storage import resolve

__all__ = ["DRIFT_JOB", "aggregate_files", "column_spec", "compute_drift", "drift_metrics", "load_reference_profile", "submit_compute"]

log = logging.getLogger(__name__)


def load_reference_profile(settings: Settings, run_id: str) -> dict[str, Any]:
    """Download the training run's ``reference_profile.json``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, lineage.PROFILE_ARTIFACT, tmp)
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise NotFound(
                f"training run {run_id} has no {lineage.PROFILE_ARTIFACT}; retrain the model with this platform "
                "so a reference profile is logged"
            ) from exc
        return json.loads(Path(local).read_text())


def drift_metrics(prof: dict[str, Any], stats: dict[str, Any], sample: np.ndarray) -> dict[str, float]:
    """PSI, KS statistic and p-value, Jensen-Shannon and normalised Wasserstein of one column."""
    ref_counts = np.asarray(prof["counts"], dtype="float64")
    cur_counts = np.asarray(stats["counts"], dtype="float64")
    ref_sample = np.asarray(prof.get("sample") or [], dtype="float64")
    ks, pvalue = ks_2samp(ref_sample, sample)
    w = wasserstein(ref_sample, sample)
    scale = prof.get("std") or 0.0
    out = {
        "psi": psi(ref_counts, cur_counts),
        "js_distance": js_distance(ref_counts, cur_counts),
        "ks_statistic": ks,
        "ks_pvalue": pvalue,
        "wasserstein_norm": w / scale if scale > 0 else w,
    }
    return {k: float(v) for k, v in out.items() if np.isfinite(v)}


def _summary(stats: dict[str, Any], n: int) -> dict[str, float | None]:
    finite = n - stats["missing"]
    mean = stats["sum"] / finite if finite else None
    var = stats["sumsq"] / finite - mean**2 if finite and mean is not None else None
    return {
        "mean": mean,
        "std": float(np.sqrt(max(var, 0.0))) if var is not None else None,
        "missing_rate": stats["missing"] / n if n else 0.0,
    }


def _schema(settings: Settings, files: list[str]) -> dict[str, Any]:
    """Column name -> Arrow type of the output (from its first file)."""
    import pyarrow.parquet as pq

    fs, path = resolve(settings, files[0])
    with fs.open_input_file(path) as f:
        schema = pq.read_schema(f)
    return {name: schema.field(name).type for name in schema.names}


def _is_numeric(arrow_type: Any) -> bool:
    import pyarrow.types as pat

    return bool(pat.is_integer(arrow_type) or pat.is_floating(arrow_type) or pat.is_boolean(arrow_type) or pat.is_decimal(arrow_type))


def _labels(
    settings: Settings, request: ComputeRequest, manifest: Any, run_tags: dict[str, str], score_column: str | None
) -> tuple[LabelSpec | None, str | None]:
    """The label join, or why there is none."""

    label_column = request.label_column or run_tags.get(lineage.TAG_LABEL)
    if not label_column:
        return None, "no label column: give label_column (the training run has no asgard.label tag)"
    table = request.label_table
    if not table:
        views = json.loads(run_tags.get(lineage.TAG_FEATURE_VIEWS, "[]")) or list(manifest.feature_views)
        if not views:
            return None, "no label table: give label_table"
        from asgard_ray.features import FeatureRegistry

        table = FeatureRegistry(settings).get(views[0]).source.table_name
    from asgard_ray.gold import resolve_table

    gold = resolve_table(settings, table)  # the gold layer checks the name (label_table is request input) and pins a snapshot
    names = gold.schema.names
    keys = list(manifest.join_keys)
    ts = manifest.timestamp_column if manifest.timestamp_column in names else None
    missing = [c for c in [*keys, label_column] if c not in names]
    if missing:
        return None, f"label table {table!r} lacks column(s) {', '.join(missing)}"
    labels = gold.read(settings, [*keys, *([ts] if ts else []), label_column]).to_pandas()
    classes = manifest.classes or json.loads(run_tags.get(lineage.TAG_CLASSES, "[1]"))
    task = "regression" if (manifest.model_type or run_tags.get(lineage.TAG_MODEL_TYPE)) == "regression" else "classification"
    return LabelSpec(
        labels=labels,
        join_keys=tuple(keys),
        label_column=label_column,
        task=task,
        prediction_column=manifest.prediction_column,
        score_column=score_column,
        positive=classes[-1] if classes else 1,
        timestamp_column=ts,
    ), None


def _performance(perf: dict[str, Any] | None, task: str) -> dict[str, float]:
    if not perf or not perf.get("labeled"):
        return {}
    n = perf["labeled"]
    out: dict[str, float] = {"label_coverage": n / perf["rows"]}
    if task == "regression":
        out.update(rmse=float(np.sqrt(perf["sq_err"] / n)), mae=perf["abs_err"] / n)
        return out
    tp, fp, fn = perf["tp"], perf["fp"], perf["fn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out.update(
        accuracy=perf["correct"] / n,
        precision=precision,
        recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    )
    if "pos_hist" in perf:
        auc = auc_from_histograms(perf["pos_hist"], perf["neg_hist"])
        if np.isfinite(auc):
            out["roc_auc"] = auc
    return out


def aggregate_files(settings: Settings, files: list[str], read_columns: list[str], spec: AggregateSpec) -> dict[str, Any]:
    """Aggregate Parquet files on Ray Data, one task per file (from the manifest, no listing); only partials come back."""
    import ray

    paths = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
    partials = paths.map_batches(
        file_partials,  # type: ignore[arg-type]  # Ray's stubs cannot type fn_kwargs functions
        batch_size=1,
        batch_format="numpy",
        fn_kwargs={"settings": settings, "spec": spec, "columns": read_columns},
    )
    return combine([row["partial"] for row in partials.take_all()], spec)


def compute_drift(settings: Settings, request: ComputeRequest, job_id: str | None = None, client: Any = None) -> dict[str, Any]:
    """Compute drift, quality and performance of a scoring output and store them as monitoring records."""
    from asgard_ray.monitoring.actor import MonitoringClient
    from asgard_ray.scoring.manifest import read_manifest

    job_id = job_id or new_job_id("drift")
    manifest = read_manifest(settings, request.job_id or request.output_path or "")
    if not manifest.run_id:
        raise InvalidRequest(f"the manifest of job {manifest.job_id} names no training run; cannot find its reference profile")
    profile = load_reference_profile(settings, manifest.run_id)
    from mlflow.tracking import MlflowClient

    run_tags = MlflowClient(tracking_uri=settings.tracking_uri).get_run(manifest.run_id).data.tags
    files = [f.path for f in manifest.files]
    if not files:
        raise InvalidRequest(f"scoring job {manifest.job_id} wrote no rows; nothing to monitor")
    schema = _schema(settings, files)
    ref_features = list(profile["feature_columns"])
    missing_cols = [c for c in ref_features if c not in schema]
    extra_cols = [c for c in manifest.feature_columns if c not in ref_features]
    non_numeric = [c for c in ref_features if c in schema and not _is_numeric(schema[c])]
    features = [c for c in ref_features if c in schema and c not in non_numeric]
    probas = list(manifest.probability_columns)
    score_col = "prediction_proba" if "prediction_proba" in probas else probas[-1] if probas else None
    score_col = score_col if (manifest.model_type != "regression" and score_col) else manifest.prediction_column
    columns = [column_spec(c, profile["features"][c]) for c in features]
    has_pred_ref = "prediction" in profile and score_col in schema
    if has_pred_ref:
        columns.append(column_spec(score_col, profile["prediction"]))
    try:
        label_spec, no_perf = _labels(settings, request, manifest, run_tags, score_col if score_col != manifest.prediction_column else None)
    except AsgardError as exc:  # no labels is no reason to skip drift
        label_spec, no_perf = None, f"labels unavailable: {exc.message}"
    spec = AggregateSpec(columns=tuple(columns), sample_size=request.sample_size, label=label_spec)

    read_cols = [c.name for c in columns]
    if label_spec is not None:
        extra = [*label_spec.join_keys, manifest.prediction_column, *([label_spec.timestamp_column] if label_spec.timestamp_column else [])]
        read_cols = list(dict.fromkeys([*read_cols, *[c for c in extra if c in schema]]))
    total = aggregate_files(settings, files, read_cols, spec)
    n = total["n"]

    feature_metrics: dict[str, float] = {}
    quality: dict[str, float] = {"schema_mismatch": float(len(missing_cols) + len(extra_cols) + len(non_numeric))}
    current: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    charts: dict[str, tuple[np.ndarray, np.ndarray, dict[str, float]]] = {}
    for col in columns:
        stats = total["columns"][col.name]
        prof = profile["prediction"] if has_pred_ref and col is columns[-1] else profile["features"][col.name]
        label = "prediction" if prof is profile.get("prediction") else col.name
        if stats is None:
            continue
        current[label] = {**_summary(stats, n), "bin_shares": shares(stats["counts"]).round(4).tolist()}
        reference[label] = {"mean": prof.get("mean"), "std": prof.get("std"), "bin_shares": shares(prof["counts"]).round(4).tolist()}
        quality[f"{label}.missing_rate"] = stats["missing"] / n if n else 0.0
        if label != "prediction":
            quality[f"{label}.out_of_range_rate"] = stats["out_of_range"] / max(n - stats["missing"], 1)
        d = drift_metrics(prof, stats, total["sample"][col.name])
        charts[label] = (np.asarray(prof.get("sample") or []), total["sample"][col.name], d)
        if label == "prediction":
            pred_metrics = d
        else:
            feature_metrics.update({f"{label}.{k}": v for k, v in d.items()})
    task = "regression" if manifest.model_type == "regression" else "classification"
    performance = _performance(total["performance"], task)

    client = client or MonitoringClient(settings)
    tags = {
        "source": "computed",
        "compute_job_id": job_id,
        "scoring_job_id": manifest.job_id,
        "output_path": manifest.output_path,
        "training_run_id": manifest.run_id,
    }
    plan: list[tuple[str, dict[str, float], dict[str, Any] | None, dict[str, Any] | None]] = [
        (
            "feature_drift",
            feature_metrics,
            {k: v for k, v in reference.items() if k != "prediction"},
            {k: v for k, v in current.items() if k != "prediction"},
        ),
        (
            "data_quality",
            quality,
            None,
            {"rows": n, "missing_columns": missing_cols, "extra_columns": extra_cols, "non_numeric_columns": non_numeric},
        ),
    ]
    if has_pred_ref and "prediction" in charts:
        plan.append(("prediction_drift", pred_metrics, reference.get("prediction"), current.get("prediction")))
    if performance:
        plan.append(("model_performance", performance, None, {"labeled_rows": total["performance"]["labeled"]}))
    responses = []
    for metric_type, metrics, ref, cur in plan:
        if not metrics:
            continue
        req = MonitoringRequest(
            model_name=manifest.model_name,
            model_version=manifest.model_version,
            metric_type=metric_type,
            metrics=metrics,
            reference_data=ref,
            current_data=cur,
            tags=tags,
            monitoring_id=f"mon-{job_id}-{metric_type.replace('_', '-')}",
        )
        responses.append(client.log(req))
    result: dict[str, Any] = {
        "job_id": job_id,
        "scoring_job_id": manifest.job_id,
        "model_name": manifest.model_name,
        "model_version": manifest.model_version,
        "rows": n,
        "features": features,
        "monitoring_ids": [r.monitoring_id for r in responses],
        "alert_triggered": any(r.alert_triggered for r in responses),
        "alerts": [a for r in responses for a in r.alerts],
        "performance": performance,
        "performance_skipped": no_perf,
        "schema": {"missing": missing_cols, "extra": extra_cols, "non_numeric": non_numeric},
    }
    if request.log_report:
        from asgard_ray.monitoring.report import log_report

        run_id = client.mlflow_run_id(manifest.model_name, manifest.model_version)
        result["mlflow_run_id"] = run_id
        result["report_artifacts"] = log_report(settings, run_id, job_id, charts, result)
    log.info("drift job %s on %s v%s: %d rows, %d alerts", job_id, manifest.model_name, manifest.model_version, n, len(result["alerts"]))
    return result


def _prepare(request: ComputeRequest, settings: Settings, job_id: str) -> Plan:
    """Fail fast (404 before a job exists) when the scoring output has no manifest."""
    from asgard_ray.scoring.manifest import read_manifest

    read_manifest(settings, request.job_id or request.output_path or "")
    return Plan(
        job_id=job_id,
        settings=settings,
        payload=request,
        request=request.model_dump(mode="json"),
        links={"status": f"/mlops/monitoring/compute/{job_id}"},
        wait=request.wait_s > 0,
    )


def _run(plan: Plan) -> dict[str, Any]:
    return compute_drift(plan.settings, plan.payload, plan.job_id)


DRIFT_JOB = register_kind(
    JobKind(
        name="monitoring",
        id_prefix="drift",
        prepare=_prepare,
        run=_run,
        wait_s=600.0,
        preload=("asgard_ray.monitoring.aggregate", "scipy.stats"),
    )
)


def submit_compute(settings: Settings, request: ComputeRequest) -> JobRecord:
    """Start (or queue) a drift job (the Ray task ``monitoring:<job_id>``); answer at once with its record."""
    return start_job_sync(DRIFT_JOB, request, settings).record
