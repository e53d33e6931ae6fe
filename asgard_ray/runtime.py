"""Joining the Ray cluster from an entrypoint (the CLI, ``jobs/*``, the Serve app, tests, benches).

Ray 2.60 clusters run with token auth. A process finds its token through ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, and sends it only when ``RAY_AUTH_MODE=token``.
The embedded stack keeps its own token at ``<ASGARD_HOME>/ray/auth_token`` (never in the user's
``~/.ray``): ``asgard up`` creates it with Ray's generator, and every process the platform starts gets
``RAY_AUTH_TOKEN_PATH`` in its environment, so no script needs a variable exported by hand.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, ResourcesUnavailable

__all__ = [
    "Capacity",
    "check_fits",
    "cluster_capacity",
    "connect",
    "ensure_token",
    "in_bundle",
    "prepare_auth",
    "ray_address",
    "read_token",
    "reserve_cpus",
]

log = logging.getLogger(__name__)


def ensure_token(path: Path) -> Path:
    """Create a Ray auth token at ``path`` (mode 0600) unless one is there; return the path.

    The token comes from Ray's own generator (what ``ray get-auth-token --generate`` uses), written
    atomically so two concurrent ``asgard up`` calls never leave a half-written file.
    """
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

    path = path.absolute()
    if path.exists() and path.read_text().strip():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(generate_new_authentication_token())
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another process created it first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    log.info("created the Ray auth token at %s", path)
    return path


def read_token(settings: Settings) -> str:
    """The embedded stack's Ray auth token (``FileNotFoundError`` before the first ``asgard up``)."""
    if settings.token_path is None:
        raise FileNotFoundError("no embedded token path in production mode; Ray uses RAY_AUTH_TOKEN or ~/.ray/auth_token")
    return settings.token_path.read_text().strip()


def prepare_auth(settings: Settings, *, create: bool = False) -> None:
    """Point this process (and the processes it starts) at the platform's token.

    Must run before Ray loads a token (before ``ray.init``). An explicit ``RAY_AUTH_TOKEN`` or
    ``RAY_AUTH_TOKEN_PATH`` in the environment wins. With ``create``, a missing embedded token is
    generated, which a process that starts a local cluster of its own (tests, benches) needs.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or settings.token_path is None:
        return
    if create:
        ensure_token(settings.token_path)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(settings.token_path)


def ray_address(settings: Settings) -> str:
    """The GCS address to join: explicit, else the embedded head."""
    if settings.ray_address:
        return settings.ray_address
    return f"127.0.0.1:{settings.asgard_ray_port}" if settings.embedded else "auto"


def connect(settings: Settings) -> None:
    """Join the cluster once per process, in the platform namespace, with the platform's token."""
    import ray

    if ray.is_initialized():
        return
    prepare_auth(settings)
    address = ray_address(settings)
    ray.init(
        address=address,
        namespace=settings.ray_namespace,
        runtime_env={"env_vars": settings.worker_env()},
        log_to_driver=False,
    )
    log.info("connected to Ray at %s (namespace %s)", address, settings.ray_namespace)


@dataclass(frozen=True)
class Capacity:
    """What the connected cluster can ever offer: its alive nodes' CPUs."""

    total_cpus: float
    largest_node_cpus: float
    nodes: int

    def describe(self) -> str:
        """``2 CPUs on 1 node (largest node 2)``."""
        return f"{self.total_cpus:g} CPUs on {self.nodes} node(s) (largest node {self.largest_node_cpus:g})"


def cluster_capacity() -> Capacity:
    """The CPUs of the cluster this process is connected to (a GCS call, milliseconds)."""
    import ray

    cpus = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    return Capacity(sum(cpus), max(cpus, default=0.0), len(cpus))


def check_fits(settings: Settings, bundles: Sequence[float], what: str, knobs: str, capacity: Capacity | None = None) -> None:
    """Refuse work whose CPU bundles the cluster can never hold at once (422, before any job starts).

    Each bundle (one trial, one data-parallel worker, one scoring actor) must fit on one node, and
    together they must fit in the cluster's total, unless ``ASGARD_CLUSTER_AUTOSCALING`` says the
    cluster grows on demand (then only the pending bound, ``ASGARD_JOB_PENDING_TIMEOUT_S``, applies).

    Args:
        settings: Platform settings.
        bundles: CPUs of each piece that must run at the same time.
        what: The work, for the message (``2 data-parallel workers x 1 CPU``).
        knobs: The request fields and settings that size it, for the message.
        capacity: The cluster's capacity (default: read it now).

    Raises:
        InvalidRequest: The bundles can never be placed.
    """
    if settings.asgard_cluster_autoscaling or not bundles:
        return
    have = capacity or cluster_capacity()
    need, widest = sum(bundles), max(bundles)
    if widest > have.largest_node_cpus or need > have.total_cpus:
        raise InvalidRequest(
            f"{what} need {need:g} CPUs at once ({widest:g} on one node), but the cluster has {have.describe()}; "
            f"it could never start. Change {knobs}",
            detail={
                "cpus_needed": need,
                "cpus_per_bundle": widest,
                "cluster_cpus": have.total_cpus,
                "largest_node_cpus": have.largest_node_cpus,
            },
        )


@contextmanager
def reserve_cpus(settings: Settings, bundles: Sequence[float], what: str, strategy: str = "PACK") -> Iterator[Any]:
    """Hold a placement group of CPU ``bundles`` for the length of a ``with`` block; yield it.

    Work that must run side by side (trials, the data-parallel workers of one fit) is placed in the
    group's bundles, so it starts together or not at all and never oversubscribes a node. Waiting for
    the CPUs is bounded by ``ASGARD_JOB_PENDING_TIMEOUT_S``: past it the group is removed and the job
    fails with what it waited for and what the cluster has, so it frees its slot instead of holding it.

    Raises:
        ResourcesUnavailable: The CPUs did not free up in time.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([{"CPU": float(c)} for c in bundles], strategy=strategy, name=f"asgard:{what}"[:100])
    waited = time.monotonic()
    try:
        ready, _ = ray.wait([group.ready()], timeout=settings.asgard_job_pending_timeout_s)
        if not ready:
            have = cluster_capacity()
            free = ray.available_resources().get("CPU", 0.0)
            raise ResourcesUnavailable(
                f"{what}: waited {time.monotonic() - waited:.0f} s for {{CPU: {sum(bundles):g}}} in {len(bundles)} bundle(s) of "
                f"{max(bundles):g}; the cluster has {have.describe()}, {free:g} free now (other jobs hold the rest). "
                "Retry when they finish, or raise ASGARD_JOB_PENDING_TIMEOUT_S",
                detail={"cpus_needed": sum(bundles), "cluster_cpus": have.total_cpus, "cpus_free": free},
            )
        log.info("%s: %d CPU bundle(s) of %g reserved in %.2fs", what, len(bundles), max(bundles), time.monotonic() - waited)
        yield group
    finally:
        remove_placement_group(group)


def in_bundle(group: Any, index: int) -> Any:
    """The scheduling strategy that runs a task in bundle ``index`` of a reserved ``group``."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=index)
