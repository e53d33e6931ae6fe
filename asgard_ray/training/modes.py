"""Pick how a training request runs: in-memory trials, or data-parallel trials.

One request shape serves both. The in-memory mode (``asgard_ray.training.trials``) holds the whole
training frame in one process's memory and fits each trial as a Ray task. The data-parallel mode
(``asgard_ray.training.distributed``) keeps the training set as Ray Data blocks and fits each trial
with ``num_workers`` gang-scheduled workers (XGBoost's collective, LightGBM's data-parallel learner),
so a training set larger than one node's memory can still train.

The choice is made from the request alone (the entity rows it names) before any data is read:

* ``execution.mode`` ``in_memory`` or ``distributed`` is honoured as asked;
* ``auto`` (the default) goes data-parallel for xgboost and lightgbm from
  ``ASGARD_TRAIN_DISTRIBUTED_ROWS`` entity rows up;
* sklearn has no data-parallel trainer: at or past that limit it is refused with a message naming the
  alternatives, unless the request asks for ``execution.sample_rows``, which trains in memory on a
  seeded random sample that is recorded in the MLflow run and the answer. Never silently.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from asgard_ray.errors import InvalidRequest

if TYPE_CHECKING:
    from asgard_ray.config import Settings
    from asgard_ray.training.schemas import TrainRequest

__all__ = ["DISTRIBUTED_FRAMEWORKS", "ExecutionPlan", "choose_mode", "entity_rows", "fast_path", "sample_entities"]

log = logging.getLogger(__name__)

DISTRIBUTED_FRAMEWORKS = frozenset({"xgboost", "lightgbm"})
"""Frameworks with a data-parallel learner (XGBoost's collective, LightGBM's ``data_parallel``)."""

Mode = Literal["in_memory", "distributed"]


@dataclass(frozen=True)
class ExecutionPlan:
    """The mode a request runs in, and why."""

    mode: Mode
    rows: int
    num_workers: int = 1
    sample_rows: int | None = None
    reason: str = ""

    def describe(self) -> dict[str, Any]:
        """The plan as the response and the MLflow run record it."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def entity_rows(request: TrainRequest) -> int:
    """How many entity rows (hence training rows, before unlabelled rows are dropped) a request names."""
    entities = request.data_source.entities
    for key, values in entities.items():
        if key != "event_timestamp":
            return len(values)
    return len(next(iter(entities.values()), []))


def _sklearn_refusal(rows: int, limit: int, framework: str) -> InvalidRequest:
    return InvalidRequest(
        f"{framework} has no data-parallel trainer and this training set has {rows:,} entity rows, at or over the "
        f"in-memory limit of {limit:,} (setting ASGARD_TRAIN_DISTRIBUTED_ROWS); use framework xgboost or lightgbm "
        f'(they train data-parallel), or ask for a recorded random sample with "execution": '
        f'{{"sample_rows": N}} (N below {limit:,})',
        detail={"rows": rows, "limit": limit, "alternatives": ["xgboost", "lightgbm", "execution.sample_rows"]},
    )


def choose_mode(request: TrainRequest, settings: Settings, rows: int | None = None) -> ExecutionPlan:
    """Decide the execution mode of a request (pure: no data is read).

    Args:
        request: The training request.
        settings: Limits: ``ASGARD_TRAIN_DISTRIBUTED_ROWS``, ``ASGARD_TRAIN_MAX_WORKERS``, ``ASGARD_TRAIN_DEFAULT_WORKERS``.
        rows: Training rows, when known; default the request's entity rows.

    Returns:
        The plan: mode, rows, workers per trial and the sample size (in-memory sampling only).

    Raises:
        InvalidRequest: Workers over the limit, a data-parallel request for sklearn, sklearn past the row limit
            without ``sample_rows``, or ``sample_rows`` with a data-parallel mode or past the limit.
    """
    spec = request.execution
    rows = entity_rows(request) if rows is None else rows
    limit = settings.asgard_train_distributed_rows
    max_workers = settings.asgard_train_max_workers
    framework = request.framework
    if spec.num_workers is not None and spec.num_workers > max_workers:
        raise InvalidRequest(
            f"execution.num_workers={spec.num_workers} is over the limit of {max_workers} workers per trial "
            "(setting ASGARD_TRAIN_MAX_WORKERS); ask for fewer",
            detail={"num_workers": spec.num_workers, "max_workers": max_workers},
        )
    if spec.sample_rows is not None:
        if spec.mode == "distributed":
            raise InvalidRequest("execution.sample_rows trains in memory on a sample; leave it out for mode distributed")
        if spec.num_workers is not None:
            raise InvalidRequest("execution.num_workers sizes data-parallel trials; leave it out with sample_rows")
        if spec.sample_rows >= limit:
            raise InvalidRequest(
                f"execution.sample_rows={spec.sample_rows:,} is at or over the in-memory limit of {limit:,} rows "
                "(setting ASGARD_TRAIN_DISTRIBUTED_ROWS); ask for fewer",
                detail={"sample_rows": spec.sample_rows, "limit": limit},
            )
        sample = spec.sample_rows if spec.sample_rows < rows else None
        reason = f"sample of {sample:,} of {rows:,} rows asked for" if sample else "sample_rows covers every row"
        return ExecutionPlan("in_memory", rows, 1, sample, reason)
    if spec.mode == "distributed":
        if framework not in DISTRIBUTED_FRAMEWORKS:
            raise InvalidRequest(
                f"execution.mode distributed needs framework xgboost or lightgbm; {framework} has no data-parallel "
                "trainer (use mode in_memory, or execution.sample_rows for a large training set)"
            )
        return ExecutionPlan(
            "distributed", rows, spec.num_workers or settings.asgard_train_default_workers, None, "mode distributed asked for"
        )
    if spec.mode == "in_memory":
        if spec.num_workers is not None:
            raise InvalidRequest("execution.num_workers sizes data-parallel trials; leave it out for mode in_memory")
        return ExecutionPlan("in_memory", rows, 1, None, "mode in_memory asked for")
    if spec.num_workers is not None and framework not in DISTRIBUTED_FRAMEWORKS:
        raise InvalidRequest(f"execution.num_workers sizes data-parallel trials, which {framework} does not have; leave it out")
    if rows < limit:
        if spec.num_workers is not None:
            return ExecutionPlan("distributed", rows, spec.num_workers, None, "num_workers asked for")
        return ExecutionPlan("in_memory", rows, 1, None, f"{rows:,} rows < ASGARD_TRAIN_DISTRIBUTED_ROWS={limit:,}")
    if framework not in DISTRIBUTED_FRAMEWORKS:
        raise _sklearn_refusal(rows, limit, framework)
    return ExecutionPlan(
        "distributed",
        rows,
        spec.num_workers or settings.asgard_train_default_workers,
        None,
        f"{rows:,} rows >= ASGARD_TRAIN_DISTRIBUTED_ROWS={limit:,}",
    )


def sample_entities(request: TrainRequest, plan: ExecutionPlan) -> tuple[dict[str, list[Any]], list[Any] | None]:
    """The entity rows (and timestamps) to retrieve: all of them, or the plan's seeded random sample.

    The sample is drawn with ``split.seed``, so the same request trains on the same rows.
    """
    import numpy as np

    ds = request.data_source
    if not plan.sample_rows:
        return ds.entities, ds.event_timestamps
    rng = np.random.default_rng(request.split.seed)
    keep = np.sort(rng.choice(plan.rows, size=plan.sample_rows, replace=False))
    entities = {k: [v[i] for i in keep] for k, v in ds.entities.items()}
    timestamps = None if ds.event_timestamps is None else [ds.event_timestamps[i] for i in keep]
    log.info("sampled %d of %d entity rows (seed %d)", plan.sample_rows, plan.rows, request.split.seed)
    return entities, timestamps


def fast_path(request: TrainRequest, settings: Settings) -> tuple[bool, str]:
    """Whether a request may train on a warm worker (``asgard_ray.jobs.warm``), and why (not).

    The fast path runs the trials one after another in the warm worker's process, so it takes only
    work whose trials are few: in-memory mode, at most ``ASGARD_FAST_PATH_ROWS`` entity rows and at most
    ``ASGARD_FAST_PATH_TRIALS`` trials. Anything else runs on the cluster path.
    """
    from asgard_ray.training.trials import count_trials

    hp = request.hyperparameters
    rows = entity_rows(request)
    if settings.asgard_fast_path_rows <= 0:
        return False, "fast path off (ASGARD_FAST_PATH_ROWS=0)"
    if rows > settings.asgard_fast_path_rows:
        return False, f"{rows:,} entity rows > ASGARD_FAST_PATH_ROWS={settings.asgard_fast_path_rows:,}"
    if choose_mode(request, settings).mode != "in_memory":
        return False, "data-parallel trials run on the cluster"
    _, _, total = count_trials(hp.search_space, hp.num_trials)
    if total > settings.asgard_fast_path_trials:
        return False, f"{total} trials > ASGARD_FAST_PATH_TRIALS={settings.asgard_fast_path_trials}"
    return True, f"{rows:,} entity rows, {total} trial(s)"
