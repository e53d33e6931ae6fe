"""The e2e suite uses the session-wide private stack from ``tests/conftest.py``."""

from tests.conftest import api_url, asgard, dashboard_url, stack, stack_env, token_path

__all__ = ["api_url", "asgard", "dashboard_url", "stack", "stack_env", "token_path"]
