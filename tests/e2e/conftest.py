"""The e2e suite uses the session-wide private stack (the ``stack`` fixture) from ``tests/conftest.py``.

Only helper functions are re-exported here: re-exporting the fixtures would make pytest keep a second,
e2e-only instance of the session stack, and start the whole stack twice.
"""

from tests.conftest import api_url, asgard, dashboard_url, token_path

__all__ = ["api_url", "asgard", "dashboard_url", "token_path"]
