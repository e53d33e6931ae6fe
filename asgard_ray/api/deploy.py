"""Deploy the control API onto the running cluster: ``python -m asgard_ray.api.deploy``."""

from __future__ import annotations

import logging

from ray import serve

from asgard_ray.api.predict import PREDICT_APP, PREDICT_PREFIX, build_predict_app
from asgard_ray.api.security import check_bind, check_serve_bind
from asgard_ray.api.serve import build_app
from asgard_ray.config import Settings
from asgard_ray.runtime import connect

log = logging.getLogger(__name__)

APP_NAME = "asgard"


def deploy(settings: Settings) -> str:
    """Start Serve's HTTP proxy on the configured host/port and run the app; return its URL."""
    check_bind(settings)
    connect(settings)
    serve.start(http_options={"host": settings.asgard_api_host, "port": settings.asgard_api_port})
    check_serve_bind(settings)  # a controller already running keeps its own http_options
    serve.run(build_app(), name=APP_NAME, route_prefix="/", blocking=False)
    # predictions run in an application of their own: a slow model never holds the control API
    serve.run(build_predict_app(), name=PREDICT_APP, route_prefix=PREDICT_PREFIX, blocking=False)
    log.info("Asgard API deployed at %s", settings.api_url)
    return settings.api_url


def main() -> None:
    """Entrypoint."""
    logging.basicConfig(level=logging.INFO)
    print(deploy(Settings()))


if __name__ == "__main__":
    main()
