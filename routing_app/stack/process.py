"""Child processes that outlive the command that started them, tracked by pid files.

A pid file records the pid and the exact argv. Anything is signalled only if that pid is
alive *and* its /proc/<pid>/cmdline is still that argv, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from routing_app.stack.errors import StackError

# Popen objects of children started by this Python process, kept so they can be reaped
# (otherwise a stopped child stays a zombie that still looks alive to kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def read_cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return read_cmdline(pid) is not None


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on ``host:port`` (or on every interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR ignores TIME_WAIT leftovers of a stack that just stopped; a live
        # listener still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports nothing listens on, chosen BELOW the kernel's ephemeral range.

    A port the kernel hands out for bind(0) lies in the ephemeral range, where every outgoing
    connection (librdkafka opens many) also takes its local port: between choosing and a
    server binding it, a client can grab it. Below that range only listeners compete.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    chosen: list[int] = []
    for port in candidates:
        if len(chosen) == count:
            break
        if not port_in_use(port, host):
            chosen.append(port)
    if len(chosen) < count:
        raise OSError(f"no {count} free TCP ports below {low} on {host}")
    return chosen


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class ManagedProcess:
    """One named service of a stack: its pid file, its log, and how to start/stop it."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def _read_pid_file(self) -> tuple[int, list[str]] | None:
        try:
            data = json.loads(self.pid_file.read_text())
            return int(data["pid"]), [str(a) for a in data["argv"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def running_pid(self) -> int | None:
        """Our live pid, or None; a pid file that no longer describes a live child is removed."""
        recorded = self._read_pid_file()
        if recorded is None:
            if self.pid_file.exists():
                self.pid_file.unlink(missing_ok=True)
            return None
        pid, argv = recorded
        if pid_alive(pid) and read_cmdline(pid) == argv:
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists():
            # Keeps one previous run around; the current log then starts with this run only.
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with open(self.log_file, "wb") as log:
            child = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C in the terminal that ran `stack up` must not reach it.
                start_new_session=True,
            )
        _CHILDREN[child.pid] = child
        # Popen returns as exec starts; for a moment the new image's cmdline reads empty
        # (the kernel fills it in after close-on-exec fired). Callers compare it right away.
        deadline = time.monotonic() + 5
        while read_cmdline(child.pid) != list(argv) and child.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self.pid_file.write_text(json.dumps({"pid": child.pid, "argv": list(argv)}) + "\n")
        return child.pid

    def exited(self, pid: int) -> bool:
        return not pid_alive(pid)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. False when nothing of ours was running."""
        return bool(stop_all([self], timeout_s))


def stop_all(procs: Sequence[ManagedProcess], timeout_s: float = 30.0) -> list[str]:
    """Stops several processes together: SIGTERM to all, then SIGKILL to what is left after
    ``timeout_s``. Returns the names of those that were running.

    Together, because the nodes of a KRaft cluster shut down cleanly only while a majority of
    its controllers runs: stopped one after the other, the last would wait for a quorum that
    is already gone until it is killed.
    """
    live = [(proc, pid) for proc in procs if (pid := proc.running_pid()) is not None]
    for _, pid in live:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(pid) for _, pid in live):
        time.sleep(0.2)
    stubborn = [(proc, pid) for proc, pid in live if pid_alive(pid)]
    for _, pid in stubborn:
        _signal(pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + 10
    while time.monotonic() < kill_deadline and any(pid_alive(pid) for _, pid in stubborn):
        time.sleep(0.1)
    for proc, pid in stubborn:
        if pid_alive(pid):
            raise StackError(f"{proc.name} (pid {pid}) did not exit even after SIGKILL.")
    for proc, pid in live:
        proc.pid_file.unlink(missing_ok=True)
        _CHILDREN.pop(pid, None)
    return [proc.name for proc, _ in live]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_answering(
    proc: ManagedProcess,
    pid: int | None,
    what: str,
    address: str,
    answers: Callable[[], bool],
    timeout_s: float,
) -> float:
    """Blocks until ``answers()``; returns the seconds waited. A process that exits while
    starting, or never answers, raises StackError with the tail of its log."""
    start = time.monotonic()
    while True:
        if answers():
            return time.monotonic() - start
        if pid is not None and proc.exited(pid):
            raise StackError(
                f"{what} exited while starting. Last lines of {proc.log_file}:\n{tail(proc.log_file)}"
            )
        if time.monotonic() - start > timeout_s:
            raise StackError(
                f"{what} did not answer on {address} within {timeout_s:.0f} s. "
                f"Last lines of {proc.log_file}:\n{tail(proc.log_file)}"
            )
        time.sleep(0.5)
