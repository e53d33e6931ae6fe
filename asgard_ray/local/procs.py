"""Process bookkeeping for the embedded stack: pid files, readiness waits that watch the child, stopping.

Every service is spawned as a session leader with ``ASGARD_STACK=<home>`` in its environment. Its
children inherit both, so ``down`` can find the whole tree (MLflow's uvicorn workers and job runners,
Ray's GCS, raylet, workers and job drivers, even ones that started a session of their own) and stop
exactly those processes, nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import psutil

__all__ = [
    "STACK_ENV",
    "ChildExited",
    "PidFiles",
    "port_holder",
    "port_open",
    "service_processes",
    "spawn",
    "stack_processes",
    "stop_processes",
    "tail",
    "wait_ready",
]

log = logging.getLogger(__name__)

STACK_ENV = "ASGARD_STACK"
"""Environment variable that marks a process as part of one embedded stack (its value: the stack's home)."""


class ChildExited(RuntimeError):
    """A service exited before it was ready."""

    def __init__(self, name: str, code: int | None, log_path: Path) -> None:
        self.name, self.code, self.log_path = name, code, log_path
        lines = tail(log_path, 20)
        super().__init__(
            f"{name} exited with code {code} before it was ready; last {len(lines)} lines of {log_path}:\n"
            + "\n".join(f"  | {line}" for line in lines)
        )


def tail(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of a text file (empty if it does not exist)."""
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-n:]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def port_holder(port: int) -> str:
    """Describe the process listening on ``port`` (``pid N (name)``), as far as this user can see."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except psutil.Error:
        pass
    return "another process"


def wait_ready(
    name: str,
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes] | None,
    log_path: Path,
    timeout: float,
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until true; raise ``ChildExited`` as soon as ``proc`` exits, ``TimeoutError`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ChildExited(name, proc.returncode, log_path)
        try:
            if check():
                return
        except Exception:  # noqa: S110 - a service still starting may refuse or reset connections
            pass
        time.sleep(interval)
    raise TimeoutError(f"{name} did not become ready within {timeout:.0f}s; see {log_path}")


class PidFiles:
    """Pid files under ``<home>/run``; one file per service, one pid per line."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dir = home / "run"
        self.logs = home / "logs"

    def path(self, name: str) -> Path:
        """The pid file of ``name``."""
        return self.dir / f"{name}.pid"

    def log(self, name: str) -> Path:
        """The log file of ``name``."""
        return self.logs / f"{name}.log"

    def write(self, name: str, pids: Sequence[int]) -> None:
        """Record ``pids`` for ``name`` (atomically)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(name).with_suffix(".tmp")
        tmp.write_text("\n".join(str(p) for p in pids) + "\n")
        os.replace(tmp, self.path(name))

    def read(self, name: str) -> list[int]:
        """The recorded pids of ``name``."""
        p = self.path(name)
        if not p.exists():
            return []
        return [int(x) for x in p.read_text().split() if x.strip().isdigit()]

    def alive(self, name: str) -> list[int]:
        """The recorded pids that still run (and are not zombies) and belong to this stack."""
        return [pid for pid in self.read(name) if _is_ours(pid, self.home)]

    def remove(self, name: str) -> None:
        """Forget ``name``'s pids."""
        self.path(name).unlink(missing_ok=True)


def _is_ours(pid: int, home: Path) -> bool:
    """Whether ``pid`` runs, is no zombie, and carries this stack's mark (a reused pid does not)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.environ().get(STACK_ENV) == str(home)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # another user's process cannot be ours
        return False


def spawn(name: str, cmd: Sequence[str], env: dict[str, str], pids: PidFiles, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a detached service (a session leader) with its output in ``<home>/logs/<name>.log``."""
    pids.logs.mkdir(parents=True, exist_ok=True)
    with open(pids.log(name), "ab") as logf:  # the child keeps its own copy of the handle
        logf.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        logf.flush()
        proc = subprocess.Popen(
            list(cmd),
            env={**env, STACK_ENV: str(pids.home)},
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )
    pids.write(name, [proc.pid])
    log.info("started %s (pid %d)", name, proc.pid)
    return proc


def _others() -> Iterator[psutil.Process]:
    """Every process but this one and its ancestors (a CLI run from a stack process must not stop itself)."""
    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents())}
    return (p for p in psutil.process_iter() if p.pid not in mine)


def service_processes(leaders: Iterable[int]) -> list[psutil.Process]:
    """The live processes of one service: its leaders' sessions, and their descendants wherever they went."""
    leaders = set(leaders)
    out = []
    for proc in _others():
        try:
            if os.getsid(proc.pid) in leaders or any(parent.pid in leaders for parent in proc.parents()):
                out.append(proc)
        except (OSError, psutil.Error):
            continue
    return out


def stack_processes(home: Path) -> list[psutil.Process]:
    """Every live process marked as part of the stack at ``home`` (``ASGARD_STACK``)."""
    out = []
    for proc in _others():
        try:
            if proc.environ().get(STACK_ENV) == str(home):
                out.append(proc)
        except psutil.Error:
            continue
    return out


def stop_processes(procs: list[psutil.Process], leaders: Iterable[int] = (), timeout: float = 20.0) -> int:
    """SIGTERM the leaders first (they shut their children down cleanly), then the rest; SIGKILL stragglers."""
    if not procs:
        return 0
    lead = [p for p in procs if p.pid in set(leaders)]
    for p in lead:
        _signal(p, "terminate")
    psutil.wait_procs(lead, timeout=timeout / 2)
    rest = [p for p in procs if p.is_running()]
    for p in rest:
        _signal(p, "terminate")
    _, alive = psutil.wait_procs(rest, timeout=timeout / 2)
    for p in alive:
        _signal(p, "kill")
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


def _signal(proc: psutil.Process, how: str) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        getattr(proc, how)()
