"""``POST /mlops/serve``: real-time predictions, forwarded to the prediction app through a ``DeploymentHandle``.

The route is thin and never predicts in the control replica: it validates the body (422 before any
hop), checks the row limit (413), and awaits the prediction deployment with a timeout (503 if it
does not answer). A slow model therefore holds a prediction replica, never the control API.
``POST /feast/materialize`` lives here too: it fills the online store that these predictions read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response

from asgard_ray.api.deps import SettingsDep
from asgard_ray.api.errors import ErrorBody
from asgard_ray.errors import ServiceUnavailable
from asgard_ray.serving.materialize import MaterializeRequest, MaterializeResponse
from asgard_ray.serving.schemas import PredictRequest, PredictResponse

__all__ = ["prediction_handle", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["real-time serving"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 413, 422, 503)}


def prediction_handle(request: Request) -> Any:
    """The prediction deployment's handle, cached on the app (looked up again after a failure)."""
    services = request.app.state.services
    if "predict_handle" not in services:
        from ray import serve

        from asgard_ray.api.predict import DEPLOYMENT_NAME, PREDICT_APP

        services["predict_handle"] = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=PREDICT_APP)
    return services["predict_handle"]


async def forward(request: Request, method: str, *args: Any, timeout_s: float) -> Any:
    """Call ``method`` on the prediction deployment and await it with a timeout; domain errors come back as themselves."""
    from asgard_ray.api.predict import PREDICT_APP
    from asgard_ray.jobs import domain_error

    try:
        handle = await asyncio.to_thread(prediction_handle, request)
    except Exception as exc:
        request.app.state.services.pop("predict_handle", None)
        raise ServiceUnavailable(
            f"the prediction app {PREDICT_APP!r} is not deployed; run `asgard up` (or python -m asgard_ray.api.deploy)"
        ) from exc
    response = getattr(handle, method).remote(*args)
    try:
        return await asyncio.wait_for(response, timeout_s)
    except TimeoutError:
        response.cancel()
        raise ServiceUnavailable(f"the prediction app did not answer in {timeout_s:g}s (ASGARD_SERVE_TIMEOUT_S)") from None
    except Exception as exc:
        err = domain_error(exc)
        if err is not None:
            raise err from None
        request.app.state.services.pop("predict_handle", None)
        log.error("prediction app call %s failed: %s", method, exc)
        raise ServiceUnavailable("the prediction app failed to answer; the server log has the cause") from None


@router.post("/mlops/serve", response_model=PredictResponse, responses=_ERRORS)
async def serve_predictions(body: PredictRequest, settings: SettingsDep, request: Request) -> dict[str, Any]:
    """Real-time predictions for a few entities (features from the online store) or inline instances.

    `model_version` is a number or an alias (default: `champion` if set, else the latest version); the
    answer names the version that answered. More than ASGARD_SERVE_MAX_ROWS rows get 413: use
    `/mlops/serve/batch`.
    """
    from asgard_ray.serving.predictor import check_rows

    check_rows(body, settings.asgard_serve_max_rows)
    return await forward(request, "predict", body.model_dump(mode="json"), timeout_s=settings.asgard_serve_timeout_s)


@router.post(
    "/feast/materialize",
    response_model=MaterializeResponse,
    responses={202: {"model": MaterializeResponse}, 429: {"model": ErrorBody}, **_ERRORS},
)
async def materialize_features(body: MaterializeRequest, settings: SettingsDep, response: Response) -> MaterializeResponse:
    """Load feature views' latest values into the online store, as a job on Ray (200 when done, 202 while running)."""
    from asgard_ray import jobs
    from asgard_ray.api.routes.jobs import answer_status
    from asgard_ray.serving.materialize import MATERIALIZE_JOB

    record = await jobs.submit_job(MATERIALIZE_JOB, body, settings)
    response.status_code = answer_status(record)
    return MATERIALIZE_JOB.view(record)  # type: ignore[return-value]  # this kind's view is MaterializeResponse
