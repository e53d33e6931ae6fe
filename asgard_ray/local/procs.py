"""Process bookkeeping for the embedded stack: pid files, port waits, stopping by pid."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll ``check`` until it is true, or raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # a service still starting may refuse or reset connections
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")


class PidFiles:
    """Pid files under ``<home>/run``; one file per service, one pid per line."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "run"
        self.logs = home / "logs"

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def write(self, name: str, pids: Sequence[int]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path(name).write_text("\n".join(str(p) for p in pids) + "\n")

    def read(self, name: str) -> list[int]:
        p = self.path(name)
        if not p.exists():
            return []
        return [int(x) for x in p.read_text().split() if x.strip().isdigit()]

    def alive(self, name: str) -> list[int]:
        """The recorded pids that still run (and are not zombies)."""
        out = []
        for pid in self.read(name):
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                continue
        return out

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)


def spawn(name: str, cmd: Sequence[str], env: dict[str, str], pids: PidFiles, cwd: Path | None = None) -> int:
    """Start a detached service process with its output in ``<home>/logs/<name>.log``."""
    pids.logs.mkdir(parents=True, exist_ok=True)
    logf = open(pids.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns the handle
    proc = subprocess.Popen(
        list(cmd), env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=cwd,
    )
    pids.write(name, [proc.pid])
    log.info("started %s (pid %d)", name, proc.pid)
    return proc.pid


def session_members(leader: int) -> list[psutil.Process]:
    """Every live process in the session that ``leader`` started (``start_new_session=True``)."""
    me = os.getpid()
    out = []
    for p in psutil.process_iter():
        try:
            if p.pid != me and os.getsid(p.pid) == leader:
                out.append(p)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return out


def stop_session(leader: int, timeout: float = 20.0) -> int:
    """Stop a service: SIGTERM the leader, then every process of its session; SIGKILL stragglers.

    Services are spawned as session leaders, so this reaches daemons they forked (Ray's GCS,
    raylet, workers) and nothing else on the machine. Returns how many processes were stopped.
    """
    procs = session_members(leader)
    if not procs:
        return 0
    leader_proc = [p for p in procs if p.pid == leader]
    for p in leader_proc:  # let the leader shut its children down cleanly first
        p.terminate()
    psutil.wait_procs(leader_proc, timeout=timeout / 2)
    procs = session_members(leader)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout / 2)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(procs) + len(leader_proc)
