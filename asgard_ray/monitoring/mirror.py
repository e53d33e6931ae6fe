"""Mirror monitoring records to MLflow: one run per model version, metrics with time and step.

The mirror runs off the acknowledgement path, in a background thread: the durable S3 log is its
outbox. Each run carries tags saying how far it was mirrored (``asgard.monitoring.mirrored_until``,
the last record's ``<timestamp>|<id>``, and ``asgard.monitoring.mirrored_count``, the next step), so a
restarted actor resumes from there and nothing acknowledged is lost or logged twice. It works in rounds:
it gathers records for ``linger_s`` (1 s) and logs them in one batch per model version, so a stream
of writes costs MLflow (and the actor's CPU) a call a second, not one per record.
"""

from __future__ import annotations

import itertools
import logging
import queue
import re
import threading
import time
from collections import defaultdict
from typing import Any

from tenacity import RetryCallState, Retrying, wait_exponential

from asgard_ray.config import Settings
from asgard_ray.monitoring.schemas import MonitoringRecord

__all__ = ["EXPERIMENT", "TAG_MIRRORED_COUNT", "TAG_MIRRORED_UNTIL", "TAG_MODEL", "TAG_VERSION", "MlflowMirror", "metric_key"]

log = logging.getLogger(__name__)

EXPERIMENT = "asgard-monitoring"
TAG_MODEL = "asgard.monitoring.model"
TAG_VERSION = "asgard.monitoring.version"
TAG_MIRRORED_UNTIL = "asgard.monitoring.mirrored_until"
TAG_MIRRORED_COUNT = "asgard.monitoring.mirrored_count"
_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


def metric_key(metric_type: str, name: str) -> str:
    """The MLflow metric key of a record's metric (``<metric_type>.<name>``, MLflow-safe)."""
    return _BAD.sub("_", f"{metric_type}.{name}")[:250]


def _order_key(record: MonitoringRecord) -> str:
    return f"{record.timestamp}|{record.monitoring_id}"


class MlflowMirror:
    """Log records to their model version's monitoring run from a background thread."""

    def __init__(self, settings: Settings, experiment: str = EXPERIMENT, linger_s: float = 1.0) -> None:
        self.settings = settings
        self.linger_s = linger_s  # records gathered per round: MLflow takes a batch a second, not a call per record
        self.experiment = experiment
        self._client: Any = None
        self._experiment_id: str | None = None
        self._runs: dict[tuple[str, str], str] = {}
        self._steps: dict[tuple[str, str], int] = {}
        self._until: dict[tuple[str, str], str] = {}
        # ordered by (timestamp, id): resumed and live records reach MLflow in time order
        self._queue: queue.PriorityQueue[tuple[str, int, MonitoringRecord]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self.mirrored = 0
        self.imported = threading.Event()
        """Set once the thread has imported MLflow (the actor then freezes its start-up heap, ``asgard_ray.heap``)."""

    @property
    def client(self) -> Any:
        """The MLflow client (imported on first use, off the actor's start path)."""
        with self._lock:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=self.settings.tracking_uri)
            return self._client

    # --- runs ----------------------------------------------------------------------------------
    def _experiment(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = exp.experiment_id if exp else self.client.create_experiment(self.experiment)
        return self._experiment_id

    def run_id(self, model_name: str, model_version: str) -> str:
        """The monitoring run of a model version: found by tags, created once."""
        key = (model_name, model_version)
        with self._lock:
            if key in self._runs:
                return self._runs[key]
            exp = self._experiment()
            found = self.client.search_runs(
                [exp],
                filter_string=f"tags.`{TAG_MODEL}` = '{model_name}' and tags.`{TAG_VERSION}` = '{model_version}'",
                max_results=1,
                order_by=["attributes.start_time ASC"],
            )
            if found:
                run = found[0]
                self._steps[key] = int(run.data.tags.get(TAG_MIRRORED_COUNT, "0"))
                self._until[key] = run.data.tags.get(TAG_MIRRORED_UNTIL, "")
            else:
                run = self.client.create_run(
                    exp,
                    run_name=f"monitoring-{model_name}-v{model_version}",
                    tags={TAG_MODEL: model_name, TAG_VERSION: model_version, "asgard.kind": "monitoring"},
                )
                self._steps[key] = 0
                log.info("created monitoring run %s for %s v%s", run.info.run_id, model_name, model_version)
            self._runs[key] = run.info.run_id
            return run.info.run_id

    # --- lifecycle -----------------------------------------------------------------------------
    def resume(self, records: list[MonitoringRecord]) -> int:
        """Queue the records (oldest first) that each run has not mirrored yet; return how many."""
        by_key: dict[tuple[str, str], list[MonitoringRecord]] = defaultdict(list)
        for r in records:
            by_key[(r.model_name, r.model_version)].append(r)
        queued = 0
        for (model, version), recs in by_key.items():
            run = self.client.get_run(self.run_id(model, version))
            until = run.data.tags.get(TAG_MIRRORED_UNTIL, "")
            for r in recs:
                if _order_key(r) > until:
                    self._queue.put((_order_key(r), next(self._seq), r))
                    queued += 1
        if queued:
            log.info("monitoring mirror resumes with %d records not yet in MLflow", queued)
        return queued

    def start(self, records: list[MonitoringRecord] | None = None) -> None:
        """Start the background thread; it first queues what MLflow lacks of ``records``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(records or [],), name="monitoring-mlflow-mirror", daemon=True)
            self._thread.start()

    def _sleep(self, seconds: float) -> None:
        """Wait between retries, cut short when the mirror stops."""
        self._stop.wait(seconds)

    def _retrying(self, what: str) -> Retrying:
        """Retry until it works or the mirror stops: MLflow may be down for a while; the S3 log keeps everything."""

        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning("monitoring mirror: %s failed (try %d, retry in %.0fs): %s", what, state.attempt_number, wait, exc)

        return Retrying(
            wait=wait_exponential(multiplier=1, min=1, max=30),
            stop=lambda _: self._stop.is_set(),
            sleep=self._sleep,
            before_sleep=note,
            reraise=True,
        )

    def _run(self, records: list[MonitoringRecord]) -> None:
        # import MLflow now, while the actor starts, not under the first stream of writes (seconds of CPU)
        _ = self.client
        import mlflow.entities  # noqa: F401

        # MLflow loads its request-header plugins' entry points on the first REST call; Feast is one, and
        # importing it (typeguard instruments its modules) took 4 s of this actor's CPU under the first
        # monitoring writes (py-spy): every write waited for the GIL, 40-140 ms each. Load them now.
        import mlflow.tracking.request_header.registry  # noqa: F401

        self.imported.set()

        if records:
            try:
                for attempt in self._retrying("resume"):
                    with attempt:
                        self.resume(records)
            except Exception:  # only when stopped; what is left is resumed on restart
                return
        self._loop()

    def enqueue(self, record: MonitoringRecord) -> None:
        """Queue a durable record for MLflow."""
        self._idle.clear()
        self._queue.put((_order_key(record), next(self._seq), record))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the queue is drained; return whether it was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.is_set():
                return True
            time.sleep(0.05)
        return False

    def backlog(self) -> int:
        """Records waiting for MLflow."""
        return self._queue.qsize()

    def stop(self) -> None:
        """Stop the thread (what is left stays in the S3 log and is resumed on restart)."""
        self._stop.set()

    # --- the loop ------------------------------------------------------------------------------
    def _drain(self, first: MonitoringRecord) -> list[MonitoringRecord]:
        batch = [first]
        while len(batch) < 500:
            try:
                batch.append(self._queue.get_nowait()[2])
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.5)[2]
            except queue.Empty:
                self._idle.set()
                continue
            self._stop.wait(self.linger_s)
            pending = self._drain(first)
            try:
                for attempt in self._retrying(f"logging {len(pending)} records"):
                    with attempt:
                        self._log(pending)
            except Exception:  # only when stopped; the records stay in the S3 log
                return

    def _log(self, records: list[MonitoringRecord]) -> None:
        _ = self.client  # imports mlflow under the lock: two threads importing it at once break its init
        from mlflow.entities import Metric, RunTag

        by_key: dict[tuple[str, str], list[MonitoringRecord]] = defaultdict(list)
        for r in records:
            by_key[(r.model_name, r.model_version)].append(r)
        for key, all_recs in by_key.items():
            run_id = self.run_id(*key)
            # a retry after a partial failure skips the versions already logged
            recs = [r for r in all_recs if _order_key(r) > self._until.get(key, "")]
            if not recs:
                continue
            step = self._steps[key]
            metrics: list[Metric] = []
            for r in recs:
                ts_ms = int(r.ts.timestamp() * 1000)
                metrics.extend(Metric(metric_key(r.metric_type, k), v, ts_ms, step) for k, v in r.metrics.items())
                metrics.append(Metric(metric_key(r.metric_type, "alerts"), float(len(r.alerts)), ts_ms, step))
                step += 1
            for i in range(0, len(metrics), 900):
                self.client.log_batch(run_id, metrics=metrics[i : i + 900])
            tags = [RunTag(TAG_MIRRORED_UNTIL, _order_key(recs[-1])), RunTag(TAG_MIRRORED_COUNT, str(step))]
            self.client.log_batch(run_id, tags=tags)
            self._steps[key] = step
            self._until[key] = _order_key(recs[-1])
            self.mirrored += len(recs)
