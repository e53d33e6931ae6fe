"""Real servers for the production profile, from Debian's packages: Redis, Postgres, Prometheus; and the stack's own.

Each ``Service`` is one process this test session starts on 127.0.0.1, on a free port, with its data
in a temporary folder, and stops by its pid (SIGTERM, or the signal the server wants; then every
process still carrying the session's mark, by pid). Nothing here looks processes up by name.
Restarting keeps the port and the data folder, which is what the restart tests need.

Postgres refuses to run as root: when the session runs as root, ``initdb`` and ``postgres`` run as
the ``postgres`` system user (Debian's package creates it; ``nobody`` otherwise) through
``subprocess.Popen(user=...)``, in a folder that user owns, so the pid we hold is the server's own.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from asgard_ray.local.procs import STACK_ENV, port_open, tail

__all__ = [
    "Service",
    "http_ok",
    "postgres_bin",
    "postgres_service",
    "prometheus_service",
    "redis_service",
    "require",
    "stop_marked",
]

log = logging.getLogger(__name__)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return 200 <= r.status < 300
    except OSError:
        return False


def require(binary: str, package: str) -> str:
    """The path of a Debian package's binary, or a failure that says how to install it."""
    path = shutil.which(binary) or (binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else None)
    if not path:
        raise RuntimeError(
            f"{binary} is not installed: the production tier needs Debian's {package} (make test or .ci/run install it as root)"
        )
    return path


def postgres_bin() -> Path:
    """Debian's Postgres binaries (the newest major version installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError(
            "Postgres is not installed: the production tier needs Debian's postgresql (make test or .ci/run install it as root)"
        )
    return Path(found[-1]).parent


@dataclass
class Service:
    """One server process: how to start it, when it is ready, and how it wants to be stopped."""

    name: str
    command: list[str]
    ready: Callable[[], bool]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    user: str | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    stop_tree: bool = False
    """Stop the processes under the leader first, then the leader (Ray: its leader alone drains for up to 30 s)."""
    timeout: float = 120.0
    retries: int = 0
    """Starts to try again after the process exits before it is ready (Ray's raylet has a fixed 30 s join wait)."""
    proc: subprocess.Popen[bytes] | None = None
    _launched: float = 0.0

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> Service:
        """Start the process and wait until it is ready; fail with its log's tail if it exits first."""
        return self.launch().wait_ready()

    def launch(self) -> Service:
        """Start the process (``wait_ready`` waits for it): servers that do not need each other start together."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._launched = time.monotonic()
        with open(self.log_path, "ab") as logf:
            kwargs: dict[str, object] = {}
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,
            )
        return self

    def wait_ready(self) -> Service:
        """Wait until the launched process is ready; fail with its log's tail if it exits first."""
        assert self.proc is not None, f"{self.name} was not launched"
        started = self._launched
        deadline = started + self.timeout
        tries = self.retries
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and tries > 0:
                tries -= 1
                log.warning("%s exited with %s before it was ready; starting it again", self.name, self.proc.returncode)
                self.launch()
                continue
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready:\n" + "\n".join(tail(self.log_path, 25))
                )
            if self.ready():
                log.info("%s ready (pid %d) in %.1fs", self.name, self.proc.pid, time.monotonic() - started)
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} was not ready in {self.timeout:.0f}s:\n" + "\n".join(tail(self.log_path, 25)))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and everything it started (its process tree), by pid."""
        if self.proc is None:
            return
        began = time.monotonic()
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        if self.stop_tree:  # the processes first (Ray's leader would drain the node for up to 30 s), then the leader
            _terminate([p for p in tree if p.is_running()], timeout=5)
            timeout = min(timeout, 5.0)
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored signal %d for %.0fs; killing it", self.name, self.proc.pid, self.stop_signal, timeout)
                self.proc.kill()
                self.proc.wait(10)
        _terminate([p for p in tree if p.is_running()])
        log.info("%s (pid %d) stopped in %.1fs", self.name, self.proc.pid, time.monotonic() - began)
        self.proc = None

    def restart(self) -> Service:
        """Stop and start again: same command, port and data folder."""
        self.stop()
        return self.start()


def _terminate(procs: list[psutil.Process], timeout: float = 10.0) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def stop_marked(mark: str) -> int:
    """Stop every process still carrying this session's mark (``ASGARD_STACK=<mark>``), by pid; return how many."""
    me = os.getpid()
    marked = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != me and proc.environ().get(STACK_ENV) == mark:
                marked.append(proc)
        except psutil.Error:
            continue
    _terminate(marked)
    return len(marked)


def redis_service(root: Path, port: int, password: str, env: dict[str, str]) -> Service:
    """Redis on 127.0.0.1:``port``, data in ``root`` (append-only file, fsync per write: a restart keeps every key)."""
    import redis

    root.mkdir(parents=True, exist_ok=True)
    conf = root / "redis.conf"  # the password lives in a file, not on the command line
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {root}",
                "appendonly yes",
                "appendfsync always",
                'save ""',
                "daemonize no",
                "protected-mode yes",
                f"requirepass {password}",
                "",
            ]
        )
    )
    conf.chmod(0o600)

    def ready() -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    return Service("redis", [require("redis-server", "redis-server"), str(conf)], ready, root / "redis.log", env=env, cwd=root)


@dataclass
class Postgres:
    """A Postgres cluster: the server, its superuser's password, and connection URLs."""

    service: Service
    port: int
    user: str
    password: str

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URL of one database (with the password: a secret)."""
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> object:
        """A psycopg connection (autocommit)."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=database, autocommit=True, connect_timeout=5
        )

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name``."""
        with self.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(f'CREATE DATABASE "{name}"')


def postgres_service(root: Path, port: int, password: str, env: dict[str, str]) -> Postgres:
    """Initialise a cluster in ``root`` and return its (not yet started) server on 127.0.0.1:``port``.

    As root, the cluster belongs to the ``postgres`` user (``nobody`` without one): Postgres refuses to
    run as root. Host connections need the password (scram-sha-256); the Unix socket stays in ``root``.
    """
    import psycopg

    bindir = postgres_bin()
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    data = root / "data"
    kwargs: dict[str, object] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    result = subprocess.run(  # type: ignore[call-overload]
        [
            str(bindir / "initdb"), "-D", str(data), "-U", "asgard", f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        ],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False, **kwargs,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr[-2000:]}")
    pwfile.unlink()

    def ready() -> bool:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="asgard", password=password, dbname="postgres", connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    service = Service(
        "postgres",
        [
            str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "shared_buffers=64MB",
        ],
        ready,
        root / "postgres.log",  # opened by this process (the server writes to the inherited descriptor)
        env=env,
        user=user,
        cwd=root,
        stop_signal=signal.SIGINT,  # "fast" shutdown: clients (pooled MLflow connections) are disconnected, data is flushed
    )  # fmt: skip
    return Postgres(service, port, "asgard", password)


def prometheus_service(root: Path, port: int, targets: list[str], env: dict[str, str]) -> Service:
    """Prometheus on 127.0.0.1:``port`` scraping ``targets`` every second, its database in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: ray\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
    )
    return Service(
        "prometheus",
        [
            require("prometheus", "prometheus"), f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d",
        ],
        lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"),
        root / "prometheus.log",
        env=env,
        cwd=root,
    )  # fmt: skip


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll ``check`` until it is true; ``TimeoutError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")


def port_free_again(port: int, timeout: float = 30.0) -> None:
    """Wait until nothing listens on ``port`` (a restarted server binds the same one)."""
    wait_for(lambda: not port_open(port), timeout, f"port {port} to close")
