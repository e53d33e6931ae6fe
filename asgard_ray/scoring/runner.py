"""Run one scoring job end to end: features, predict, write, verify, commit (the manifest), clean up.

This is the body of the Ray task ``batch_scoring:<job_id>`` (``asgard_ray.jobs.submit``) and of
``jobs/batch_score.py``. It holds the output path's lease (one writer per path) from before its
first write until after its last delete, and either commits (manifest written last) or removes
every file it wrote and raises; it never leaves a manifest for a partial output. An overwrite
deletes only the replaced manifest's files, after the new manifest is in place.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict
from asgard_ray.jobs.kinds import ExecutionPath
from asgard_ray.scoring.manifest import Manifest, ManifestFile, manifest_uri, read_manifest, write_manifest
from asgard_ray.scoring.pipeline import (
    PipelineOptions,
    ScorerSpec,
    build_scored_dataset,
    dataset_from_frame,
    dataset_from_parquet,
    output_columns,
    parquet_write_args,
)
from asgard_ray.scoring.plan import ScoringPlan, entity_frame
from asgard_ray.scoring.sink import (
    SUMMARY_JOB_ID,
    JobFilenameProvider,
    OutputLayout,
    ProgressPoller,
    commit_table,
    count_rows,
    delete_files,
    foreign_conflict,
    job_files,
    output_state,
)
from asgard_ray.storage import OutputLease, exists, parse_uri, read_json, resolve

__all__ = ["load_model_ref", "run_scoring"]

log = logging.getLogger(__name__)


def load_model_ref(settings: Settings, plan: ScoringPlan) -> Any:
    """Load the plan's model natively (sets ``plan.flavor``) and put it in the object store."""
    import ray

    from asgard_ray.scoring.model import load_native_model

    plan.flavor, obj = load_native_model(settings, plan.model)
    return ray.put(obj)


def _report(settings: Settings, job_id: str, track: bool, **progress: Any) -> None:
    if not track:
        return
    from asgard_ray.jobs import JobStore

    try:
        JobStore(settings).update("batch_scoring", job_id, progress=progress)
    except Exception as exc:  # progress is best effort
        log.debug("job %s: progress update failed: %s", job_id, exc)


def _committed(settings: Settings, plan: ScoringPlan) -> Manifest | None:
    """The manifest of an earlier, committed run of this job id, if the output still holds it."""
    uri = manifest_uri(plan.output_path)
    if exists(settings, uri) and read_json(settings, uri).get("job_id") == plan.job_id:
        log.info("job %s already committed at %s; not scoring again", plan.job_id, plan.output_path)
        return read_manifest(settings, plan.output_path)
    return None


def _result(manifest: Manifest, uri: str) -> dict[str, Any]:
    return {
        "job_id": manifest.job_id,
        "output_path": manifest.output_path,
        "output_parquet": manifest.output_parquet,
        "manifest_path": uri,
        "output_table": manifest.output_table,
        "output_snapshot_id": manifest.output_snapshot_id,
        "feature_snapshots": manifest.feature_snapshots,
        "model_name": manifest.model_name,
        "model_version": manifest.model_version,
        "alias": manifest.alias,
        "run_id": manifest.run_id,
        "total_rows": manifest.total_rows,
        "files": len(manifest.files),
        "timings": manifest.timings,
        "execution_path": manifest.execution_path,
    }


def _commit_table(settings: Settings, manifest: Manifest, lease: OutputLease | None) -> Manifest:
    """Append a committed output's rows to its ``output_table`` (once per job id), then record the
    snapshot id in the manifest (a second write of the same job's manifest).

    Runs after the Parquet commit. A crash between the two leaves a committed Parquet output whose
    manifest has ``output_table`` but no ``output_snapshot_id``; re-running the job id finds that
    manifest and does only this step (the summary check makes it append at most once).
    """
    assert manifest.output_table is not None
    if lease is not None:
        lease.check()
    t = time.perf_counter()
    layout = manifest.partitioning.get("values", {})
    values = {"model_version": str(layout.get("model_version", manifest.model_version)), "score_date": str(layout.get("score_date", ""))}
    summary = {
        SUMMARY_JOB_ID: manifest.job_id,
        "asgard.model_name": manifest.model_name,
        "asgard.model_version": manifest.model_version,
        "asgard.run_id": manifest.run_id or "",
    }
    snapshot_id, appended = commit_table(
        settings, manifest.output_table, manifest.output_path, [f.path for f in manifest.files], values, summary
    )
    timings = {**manifest.timings, "table_commit_s": round(time.perf_counter() - t, 3)}
    manifest = manifest.model_copy(update={"output_snapshot_id": snapshot_id, "timings": timings})
    write_manifest(settings, manifest)
    log.info(
        "job %s: %s %s as snapshot %d", manifest.job_id, "appended to" if appended else "already in", manifest.output_table, snapshot_id
    )
    return manifest


def _probability_columns(settings: Settings, files: list[str]) -> list[str]:
    """The probability columns actually written (read from the first file's schema)."""
    import pyarrow.parquet as pq

    if not files:
        return []
    fs, path = resolve(settings, files[0])
    with fs.open_input_file(path) as f:
        names = pq.read_schema(f).names
    return [c for c in names if c == "prediction_proba" or c.startswith("proba_")]


_INDEX_CACHE: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_INDEX_CACHE_SIZE = 4


def _indexes(settings: Settings, plan: ScoringPlan, *, put: bool = True) -> list[Any]:
    """An as-of index per feature view from its pinned gold table: object-store refs (``put``) or the indexes.

    In process (the warm path) an index of a pinned Iceberg snapshot is kept for the next job: a
    snapshot never changes, so the key (metadata file, snapshot, columns, TTL) names its content.
    """
    import ray

    from asgard_ray.features.asof import build_asof_index
    from asgard_ray.gold import resolve_table

    out = []
    for view in plan.views:
        if not view.features:
            continue
        table = view.pin.gold() if view.pin is not None else resolve_table(settings, view.table_name, format=view.table_format)
        cols = [*view.join_keys, view.timestamp_field, *view.features]
        key = (table.location, table.snapshot_id, tuple(cols), view.ttl_seconds)
        index = _INDEX_CACHE.get(key) if not put and table.format == "iceberg" else None
        if index is None:
            frame = table.read(settings, cols).to_pandas()
            index = build_asof_index(frame, view.join_keys, view.timestamp_field, view.features, view.ttl_seconds)
            log.info("job %s: as-of index for %s (snapshot %s): %d rows", plan.job_id, view.name, table.snapshot_id, index.rows)
            if not put and table.format == "iceberg":
                _INDEX_CACHE[key] = index
                while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
                    _INDEX_CACHE.popitem(last=False)
        else:
            _INDEX_CACHE.move_to_end(key)
        out.append(ray.put(index) if put else index)
    return out


def _input(
    settings: Settings, plan: ScoringPlan, options: PipelineOptions, num_actors: int, as_of: datetime, *, inline: bool = False
) -> tuple[Any, list[Any], str]:
    """The input, the as-of indexes the scorer needs, and what fed it (for the manifest).

    On the cluster path the input is a Ray Dataset and the indexes object-store refs; ``inline`` (the
    warm path) reads the same rows as one Arrow table in this process and returns the indexes themselves.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    def indexes() -> list[Any]:  # built only when the features are not in the input
        return _indexes(settings, plan, put=not inline)

    if plan.entities is not None:
        entity_df = entity_frame(plan)
        if "event_timestamp" not in plan.entities:
            entity_df["event_timestamp"] = pd.Timestamp(as_of)
        df = entity_df[[*plan.join_keys, "event_timestamp"]]
        data = pa.Table.from_pandas(df, preserve_index=False) if inline else dataset_from_frame(df, options, num_actors)
        return data, indexes(), "asof_index"
    assert plan.source is not None
    src = plan.source
    cols = [*plan.join_keys]
    if src.timestamp_column:
        cols.append(src.timestamp_column)
    if src.features_included:
        cols += [c for c in plan.feature_columns if c not in cols]
    if src.pin is not None and src.pin.format == "iceberg":
        data = src.pin.gold().read(settings, cols) if inline else src.pin.gold().to_ray(settings, cols)
    elif inline:
        fs, _ = resolve(settings, f"s3://{src.files[0]}" if not src.files[0].startswith("/") else src.files[0])
        data = pads.dataset(src.files, filesystem=fs, format="parquet", partitioning=None).to_table(columns=cols)
    else:
        data = dataset_from_parquet(settings, src.files, cols, options)
    if src.timestamp_column and src.timestamp_column != "event_timestamp":
        if inline:
            data = data.rename_columns(["event_timestamp" if c == src.timestamp_column else c for c in data.column_names])
        else:
            data = data.rename_columns({src.timestamp_column: "event_timestamp"})
    if src.features_included:
        return data, [], "included"
    return data, indexes(), "asof_index"


def _score_inline(
    settings: Settings,
    plan: ScoringPlan,
    spec: ScorerSpec,
    model: Any,
    data_dir: str,
    fs: Any,
    local: bool,
    started: datetime,
    timings: dict[str, float],
) -> str:
    """The warm path's score-and-write: the same scorer as the actors, in this process, one Parquet file."""
    import uuid

    import pyarrow.parquet as pq

    from asgard_ray.scoring.pipeline import Scorer

    t = time.perf_counter()
    table, indexes, feature_path = _input(settings, plan, PipelineOptions(), 1, started, inline=True)
    timings["features_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    scored = Scorer([model], spec, indexes)(table)
    if local:
        fs.create_dir(data_dir, recursive=True)
    name = JobFilenameProvider(plan.job_id).get_filename_for_task(uuid.uuid4().hex, 0)
    pq.write_table(scored, f"{data_dir}/{name}", filesystem=fs, **parquet_write_args())
    timings["score_write_s"] = round(time.perf_counter() - t, 3)
    return feature_path


def run_scoring(
    settings: Settings,
    plan: ScoringPlan,
    options: PipelineOptions | None = None,
    model_box: list[Any] | None = None,
    *,
    track: bool = True,
    path: ExecutionPath = "cluster",
) -> dict[str, Any]:
    """Score the plan's entities and commit the output; return the job's result summary.

    Args:
        settings: Platform settings.
        plan: The validated plan (``prepare_plan``).
        options: Pipeline knobs.
        model_box: ``[ObjectRef]`` of the native model already loaded by the submitter (then
            ``plan.flavor`` names its flavor); default: load it here.
        track: Report progress to the job record.
        path: ``cluster`` scores on Ray Data (read, scoring actors or tasks, write tasks); ``warm`` (a
            warm worker, small work only) scores in this process with the same scorer and writes one
            file. The commit (verify, manifest, table) is the same code either way.
    """
    options = options or PipelineOptions()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    done = _committed(settings, plan)
    if done is not None:
        if done.output_table is not None and done.output_snapshot_id is None:  # crashed between the two commits
            with OutputLease(settings, plan.output_path, plan.job_id) as lease:
                done = _commit_table(settings, done, lease)
        return _result(done, manifest_uri(done.output_path))
    with OutputLease(settings, plan.output_path, plan.job_id) as lease:
        return _run_leased(settings, plan, options, model_box, track, lease, started, t0, path)


def _prepare_output(settings: Settings, plan: ScoringPlan) -> tuple[str | None, list[str]]:
    """Under the lease: re-check the prefix, remove this job's stale files; return what an overwrite replaces.

    Raises:
        Conflict: Foreign files, or another job's output without ``overwrite``.
    """
    state = output_state(settings, plan.output_path, plan.job_id)
    if state.foreign:
        raise foreign_conflict(plan.output_path, state.foreign)
    if state.committed_job_id not in (None, plan.job_id) and not plan.overwrite:
        raise Conflict(
            f"output_path {plan.output_path} already holds the committed output of job {state.committed_job_id}; "
            'send "overwrite": true to replace it',
            detail={"output_path": plan.output_path, "job_id": state.committed_job_id},
        )
    if state.own:
        log.warning("job %s: removing %d file(s) of an earlier attempt", plan.job_id, len(state.own))
        delete_files(settings, state.own)
    return state.committed_job_id, state.committed


def _run_leased(
    settings: Settings,
    plan: ScoringPlan,
    options: PipelineOptions,
    model_box: list[Any] | None,
    track: bool,
    lease: OutputLease,
    started: datetime,
    t0: float,
    path: ExecutionPath,
) -> dict[str, Any]:
    from ray.data import DataContext

    job_id = plan.job_id
    timings: dict[str, float] = {}
    replaced_job, replaced = _prepare_output(settings, plan)

    ctx = DataContext.get_current()
    ctx.target_max_block_size = options.target_block_mib * 1024 * 1024
    ctx.max_errored_blocks = 0
    ctx.actor_task_retry_on_errors = False
    ctx.enable_progress_bars = False
    # The v2 Parquet datasource adds a ListFiles task (a worker start-up, seconds on a busy node) even
    # for an explicit file list; the v1 reader plans from the footers on the driver.
    ctx.use_datasource_v2 = False

    t = time.perf_counter()
    if model_box is None:
        model_box = [load_model_ref(settings, plan)]
    model_ref = model_box[0]
    flavor = plan.flavor
    timings["model_load_s"] = round(time.perf_counter() - t, 3)

    num_actors = options.num_actors or (1 if plan.rows_total < 20_000 else 2)
    int_features = tuple(c for c in plan.feature_columns if plan.feature_dtypes.get(c, "").startswith(("int", "uint")))
    spec = ScorerSpec(
        job_id=job_id,
        model_name=plan.model.name,
        model_version=plan.model.version,
        run_id=plan.model.run_id,
        model_type=plan.model.model_type,
        classes=plan.model.classes,
        join_keys=plan.join_keys,
        feature_columns=plan.feature_columns,
        int_features=int_features,
        timestamp_column="event_timestamp",
        scored_at=started,
        as_of=started,
        threads=options.threads_per_actor,
        batch_delay_s=options.batch_delay_s,
    )
    layout = OutputLayout.for_job(plan.output_path, plan.model.version, started)
    fs, data_dir = resolve(settings, layout.data_dir)
    local = parse_uri(plan.output_path).scheme != "s3"
    try:
        if path == "warm":
            feature_path = _score_inline(settings, plan, spec, model_ref, data_dir, fs, local, started, timings)
        else:
            t = time.perf_counter()
            input_ds, index_refs, feature_path = _input(settings, plan, options, num_actors, started)
            timings["features_s"] = round(time.perf_counter() - t, 3)
            scored = build_scored_dataset(input_ds, model_ref, spec, options, index_refs, num_actors)
            t = time.perf_counter()
            with ProgressPoller(settings, plan.output_path, job_id, lambda n: _report(settings, job_id, track, rows_done=n)):
                scored.write_parquet(
                    data_dir,
                    filesystem=fs,
                    filename_provider=JobFilenameProvider(job_id),
                    try_create_dir=local,
                    **parquet_write_args(),
                    ray_remote_args={"num_cpus": options.cpus("write"), "max_retries": options.max_retries},
                )
            timings["score_write_s"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        files = job_files(settings, plan.output_path, job_id)
        counts = count_rows(settings, files)
        total = sum(counts.values())
        if total != plan.rows_total:
            raise RuntimeError(
                f"job {job_id}: wrote {total} rows in {len(files)} file(s) but {plan.rows_total} entity rows came in; "
                "output discarded, re-run the job"
            )
        timings["verify_s"] = round(time.perf_counter() - t, 3)
        probas = _probability_columns(settings, files)
        finished = datetime.now(UTC)
        timings["total_s"] = round(time.perf_counter() - t0, 3)
        manifest = Manifest(
            job_id=job_id,
            model_name=plan.model.name,
            model_version=plan.model.version,
            run_id=plan.model.run_id,
            alias=plan.model.alias,
            model_uri=plan.model.model_uri,
            model_type=plan.model.model_type,
            framework=plan.model.framework,
            flavor=flavor,
            feature_views=plan.feature_views,
            feast_registry_version=plan.feast_registry_version or plan.model.feast_registry_version,
            feature_columns=plan.feature_columns,
            join_keys=plan.join_keys,
            probability_columns=probas,
            classes=plan.model.classes,
            entities={
                "rows": plan.rows_total,
                "input": "entities_df" if plan.entities is not None else plan.source.uri if plan.source else None,
                "features": feature_path,
            },
            output_path=plan.output_path,
            output_parquet=plan.output_parquet,
            output_table=plan.output_table,
            feature_snapshots=plan.feature_snapshots,
            partitioning={**layout.partitioning, "columns_in_files": output_columns(spec, None)},
            files=[ManifestFile(path=f, rows=counts[f]) for f in files],
            total_rows=total,
            replaced_job_id=replaced_job if replaced else None,
            replaced_files=replaced,
            scored_at=started,
            started_at=started,
            finished_at=finished,
            timings=timings,
            execution_path=path,
        )
        lease.check()  # a job that lost its lease must not commit over the new holder
        uri = write_manifest(settings, manifest)  # the commit
    except BaseException:
        written = job_files(settings, plan.output_path, job_id)
        if written:
            log.warning("job %s failed: removing its %d file(s)", job_id, len(written))
            delete_files(settings, written)
        raise
    if replaced:  # only files a platform manifest listed (see sink.classify); never anything else
        log.info("job %s: removing %d file(s) of job %s's output it replaced", job_id, len(replaced), replaced_job)
        delete_files(settings, replaced)
    if manifest.output_table is not None:  # the second commit, after the Parquet one (see _commit_table)
        manifest = _commit_table(settings, manifest, lease)
    _report(settings, job_id, track, rows_done=total)
    log.info("job %s committed %d rows in %d file(s) at %s (%.1fs)", job_id, total, len(files), plan.output_path, timings["total_s"])
    return _result(manifest, uri)
