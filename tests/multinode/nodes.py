"""Ray nodes that share no disk: a head on this machine, workers each in a mount namespace of their own.

A worker node is ``ray start --address=127.0.0.1:<port>`` run under ``unshare --mount --propagation
private``, after private tmpfs mounts over ``/tmp`` (so Ray's session folder, spill files and every
temporary file are its own), ``/dev/shm`` (its object store) and the head's ``ASGARD_HOME``. What a
node image would carry stays visible: the checkout's code and the virtualenv, bound back read-only if
they sat under a hidden folder. The network is shared, so the nodes join over loopback and reach
S3 and MLflow as any node reaches them over the network.

The Ray token travels to the workers as a value (``RAY_AUTH_TOKEN``): its file is on the head's disk.
Every node is stopped by the pid this module started it with (its whole process tree).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["Node", "namespace_support", "start_head", "start_worker", "wait_port", "wait_started"]

RAY = str(Path(sys.executable).parent / "ray")

# Runs as the namespace's first process: mount the private folders, bind the image's folders back, exec Ray.
_SETUP = r"""
import os, subprocess, sys
hide, keep, cmd = sys.argv[1].split(os.pathsep), sys.argv[2].split(os.pathsep), sys.argv[3:]
held = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in keep}   # reachable after the tmpfs hides them
for path in hide:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", path], check=True)
for path, fd in held.items():
    if not os.path.isdir(path):   # hidden by a tmpfs above: bind it back, read-only
        os.makedirs(path)
        subprocess.run(["mount", "--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", path], check=True)  # the fd, not its old path
        subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)
    os.close(fd)
os.execvp(cmd[0], cmd)
"""


def namespace_support() -> str | None:
    """``None`` if this machine can give a process a private mount namespace with tmpfs mounts; else why not."""
    if shutil.which("unshare") is None:
        return "the unshare command (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /tmp && touch /tmp/probe"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot make a private mount namespace with a tmpfs here: {probe.stderr.strip() or probe.returncode}"
    return None


@dataclass
class Node:
    """One Ray node process (``ray start --block``) this test started."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the node's whole process tree at once, SIGKILL what is left after ``timeout``."""
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _start(name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> Node:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Node(name, proc, log_path)


def start_head(env: dict[str, str], port: int, dashboard_port: int, agent_port: int, temp_dir: str, log_dir: Path) -> Node:
    """The head on this machine: no CPU (work must land on workers), its dashboard for the Jobs API and state."""
    cmd = [
        RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "0", "--object-store-memory", str(400 * 1024 * 1024),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--dashboard-agent-listen-port", str(agent_port), "--temp-dir", temp_dir, "--disable-usage-stats",
    ]  # fmt: skip
    return _start("head", cmd, {k: v for k, v in env.items() if k != "RAY_ADDRESS"}, log_dir)


def start_worker(
    name: str, env: dict[str, str], head_port: int, agent_port: int, hide: list[Path], keep: list[Path], log_dir: Path, num_cpus: int = 1
) -> Node:
    """A worker node in a mount namespace of its own: private tmpfs over each of ``hide``; ``keep`` stays visible."""
    ray_cmd = [
        RAY, "start", "--block", f"--address=127.0.0.1:{head_port}", "--node-ip-address", "127.0.0.1",
        "--num-cpus", str(num_cpus), "--object-store-memory", str(400 * 1024 * 1024),
        "--dashboard-agent-listen-port", str(agent_port), "--disable-usage-stats",
    ]  # fmt: skip
    cmd = [
        "unshare", "--mount", "--propagation", "private", "--",
        sys.executable, "-c", _SETUP, os.pathsep.join(map(str, hide)), os.pathsep.join(map(str, keep)), *ray_cmd,
    ]  # fmt: skip
    token_file = env.get("RAY_AUTH_TOKEN_PATH")
    worker_env = {k: v for k, v in env.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    if token_file:  # the file is on the head's disk: the token travels as a value
        worker_env["RAY_AUTH_TOKEN"] = Path(token_file).read_text().strip()
    return _start(name, cmd, worker_env, log_dir)


def wait_started(node: Node, timeout: float = 300) -> bool:
    """Wait until ``ray start`` says the node runs (True), or the process exits (False, e.g. Ray's fixed 30 s
    raylet registration wait ran out on an overloaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in node.log_path.read_text(errors="replace"):
            return True
        if node.proc.poll() is not None:
            return False
        time.sleep(0.5)
    raise TimeoutError(f"{node.name} did not start within {timeout:.0f}s: {node.log_path.read_text()[-3000:]}")


def wait_port(port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 240) -> None:
    """Wait until ``port`` accepts connections on loopback; fail with the log's tail if the process died."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"port {port} did not open within {timeout}s: {log_path.read_text()[-3000:]}")
