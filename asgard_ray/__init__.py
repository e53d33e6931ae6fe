"""Asgard on Ray: an MLOps platform as a distributed Ray application."""

import os as _os

# Ray 2.60 clusters run with token auth, and a client sends its token (~/.ray/auth_token or
# RAY_AUTH_TOKEN) only when RAY_AUTH_MODE=token. Ray reads the mode when it is imported, so it must
# be set before the first `import ray`; set RAY_AUTH_MODE=disabled to talk to a cluster without auth.
_os.environ.setdefault("RAY_AUTH_MODE", "token")

from asgard_ray.config import Settings  # noqa: E402

__all__ = ["Settings", "__version__"]
__version__ = "0.1.0"
