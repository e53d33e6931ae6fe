"""Unit tests are hermetic: no platform variable a session fixture exported leaks into them."""

from __future__ import annotations

import pytest

from asgard_ray.config import Settings


@pytest.fixture(autouse=True)
def _no_platform_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ``Settings`` variable (the integration fixtures export a stack's ``worker_env()``)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
