"""``/mlops/health`` (liveness) and ``/mlops/status`` (every backing service)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from asgard_ray import __version__
from asgard_ray.api.deps import FeaturesDep, SettingsDep, service
from asgard_ray.config import Settings
from asgard_ray.features.registry import FeatureRegistry

router = APIRouter(prefix="/mlops", tags=["health"])

WARM = threading.Event()
"""Set once this process has warmed up (the Serve replica clears it when it starts and sets it when its warm-up is
done; a plain uvicorn process never warms up, so it starts set). Process state, not ``app.state``: Serve's ingress
serves a copy of the FastAPI app, not the object the replica's constructor sees."""
WARM.set()


class Health(BaseModel):
    """Liveness of the API process."""

    status: Literal["healthy"] = "healthy"
    version: str = __version__
    warm: bool = True
    """False while the replica still starts what the first requests need (the Feast registry writer, the job
    supervisor and its warm workers, clients); ``asgard up`` waits for true."""


class ComponentStatus(BaseModel):
    """One backing service."""

    name: str
    healthy: bool
    url: str | None = None
    detail: str | None = None
    latency_ms: float | None = None


class PlatformStatus(BaseModel):
    """Every backing service and links to look at."""

    status: Literal["healthy", "degraded"]
    components: list[ComponentStatus]
    links: dict[str, str]
    monitoring_quarantined_records: int | None = None
    """Monitoring records that could not be read back from storage and were moved to quarantine."""
    serving: dict | None = None
    gold_catalog: dict | None = None
    """The gold layer's Iceberg catalog (type, name, namespace, warehouse, tables, health); no secret."""
    """Real-time predictions per model (requests, errors, mean/p50/p99 ms) of one prediction replica; ``{"error"}`` without one."""


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Answer as long as the API process runs; ``warm`` says whether its start-up warm-up is done."""
    return Health(warm=WARM.is_set())


def _timed(name: str, url: str | None, check) -> ComponentStatus:  # noqa: ANN001
    start = time.perf_counter()
    try:
        detail = check()
        return ComponentStatus(name=name, healthy=True, url=url, detail=detail, latency_ms=round((time.perf_counter() - start) * 1000, 1))
    except Exception as exc:  # report, never raise: this endpoint exists to show what is down
        return ComponentStatus(name=name, healthy=False, url=url, detail=f"{type(exc).__name__}: {exc}"[:300])


@router.get("/status", response_model=PlatformStatus)
async def platform_status(settings: SettingsDep, features: FeaturesDep, request: Request) -> PlatformStatus:
    """Check Ray, MLflow, Feast, S3, the monitoring actor and the job supervisor (with its warm workers); report each."""
    return await asyncio.to_thread(_platform_status, settings, features, request)  # blocking checks: off the loop


def _platform_status(settings: Settings, features: FeatureRegistry, request: Request) -> PlatformStatus:
    """``/mlops/status``'s checks, each a blocking call to a backing service (run on a thread)."""
    import ray

    from asgard_ray.storage import filesystem

    def ray_check() -> str:
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialized in this process")
        cpus = ray.cluster_resources().get("CPU", 0)
        return f"{len(ray.nodes())} node(s), {cpus:g} CPUs"

    def mlflow_check() -> str:
        with urllib.request.urlopen(f"{settings.tracking_uri}/health", timeout=3) as resp:  # noqa: S310
            return resp.read().decode()[:50]

    def s3_check() -> str:
        info = filesystem(settings).get_file_info(settings.s3_bucket)
        if info.type.name == "NotFound":
            raise RuntimeError(f"bucket {settings.s3_bucket} not found")
        return f"bucket {settings.s3_bucket}"

    def feast_check() -> str:
        st = features.status()
        if not st.healthy:
            raise RuntimeError(st.error or "unhealthy")
        return f"{st.feature_views} feature view(s), registry {st.registry_version}"

    monitoring_stats: dict = {}

    def monitoring_check() -> str:
        from asgard_ray.monitoring.actor import MonitoringClient

        monitoring_stats.update(service(request, "monitoring", MonitoringClient).stats(timeout_s=10))  # type: ignore[attr-defined]
        return (
            f"{monitoring_stats['records']} record(s), {monitoring_stats['records_in_memory']} in memory, "
            f"{monitoring_stats['quarantined_records']} quarantined"
        )

    def jobs_check() -> str:
        from asgard_ray.jobs import run_sync, supervisor_info

        info = run_sync(supervisor_info(settings))
        warm = info["warm_workers"]
        ready = sum(1 for w in warm if w["ready"] and not w["job_id"])
        busy = sum(1 for w in warm if w["job_id"])
        broken = sum(1 for w in warm if w["broken"])
        starting = len(warm) - ready - busy - broken
        running, queued = sum(info["running"].values()), sum(info["queued"].values())
        return (
            f"supervisor epoch {info['epoch']}, {running} job(s) running, {queued} queued; warm workers: {ready} ready, "
            f"{busy} busy, {starting} starting, {broken} broken"
        )

    components = [
        _timed("ray", settings.dashboard_url, ray_check),
        _timed("mlflow", settings.tracking_uri, mlflow_check),
        _timed("s3", settings.s3_endpoint, s3_check),
        _timed("feast", settings.state_uri("feast", "registry.pb"), feast_check),
        _timed("monitoring", None, monitoring_check),
        _timed("jobs", None, jobs_check),
    ]
    serving = None
    try:  # informative: a stack without the prediction app is not degraded by it
        from asgard_ray.api.routes.serving import prediction_handle

        serving = prediction_handle(request).served.remote().result(timeout_s=5)
    except Exception as exc:
        request.app.state.services.pop("predict_handle", None)
        serving = {"error": f"prediction app unavailable: {type(exc).__name__}"}
    from asgard_ray.gold import catalog_status

    return PlatformStatus(
        serving=serving,
        gold_catalog=catalog_status(settings),
        status="healthy" if all(c.healthy for c in components) else "degraded",
        components=components,
        links={"docs": f"{settings.api_url}/docs", "dashboard": settings.dashboard_url, "mlflow": settings.tracking_uri},
        monitoring_quarantined_records=monitoring_stats.get("quarantined_records"),
    )
