"""Processes the benchmark starts: launch, wait until they listen, read their
CPU time and memory from /proc, and stop every one of them on the way out."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The machine has two cores. The process under test gets core 0 to itself;
# the load generator, the upstreams and this driver share core 1, so that
# every relay is measured on one whole core and the load never competes
# with it (one worker process each).
SERVER_CPUS = {0}
LOAD_CPUS = {1}


def pin_self_to_load_cpus() -> None:
    if os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        os.sched_setaffinity(0, LOAD_CPUS)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    argv: list[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Supervisor:
    """Owns every process the benchmark started; ``stop_all`` ends them all.

    Each child runs in its own session (process group), so Ctrl-C in the
    terminal reaches only the driver, which then stops the children in order,
    and a child's own children (nginx workers) go with it.
    """

    log_dir: Path
    commands: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)

    def record(self, argv: list[str], env_note: str = "") -> None:
        self.commands.append((env_note + " " if env_note else "") + shlex.join(argv))

    def run(
        self, name: str, argv: list[str], *, env: dict | None = None, env_note: str = "", cwd=None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """Run a command to completion (setup steps); its output goes to a log."""
        self.record(argv, env_note)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=out, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed with exit code {done.returncode}; see {log}")
        return done

    def start(
        self, name: str, argv: list[str], *, env: dict | None = None, env_note: str = "", cwd=None, server: bool = False
    ) -> Proc:
        """Start a long-running process. ``server=True`` pins it to the
        server core; everything else stays on the load core."""
        self.record(argv, env_note)
        log = self.log_dir / f"{name}.log"
        cpus = SERVER_CPUS if server else LOAD_CPUS

        def pin() -> None:
            if (os.cpu_count() or 1) >= 2:
                os.sched_setaffinity(0, cpus)

        out = log.open("ab")
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=pin,
        )
        out.close()
        proc = Proc(name, popen, argv, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 15) -> None:
        if proc.popen.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)
        # Leftovers in its group (e.g. a worker that outlived its master).
        _signal_group(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"  could not stop {proc.name} ({proc.pid}): {exc}")


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for_port(port: int, proc: Proc | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- /proc readings -----------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """The pid and all its descendants (LiteLLM or uvicorn may fork)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree, in seconds (all threads included)."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    """VmRSS of the process tree."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total
