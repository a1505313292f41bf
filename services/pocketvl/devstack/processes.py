"""Small helpers for the local stack's child processes: free ports, waiting, stopping by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pocketvl.errors import StackError


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago.

    All sockets stay bound until every port is chosen: asking one at a time can hand out the
    same number twice once the previous socket is closed.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it returns True; fail early if ``process`` dies."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log_tail(log) if log else ""
            raise StackError(f"{what} exited with code {process.returncode}:\n{tail}")
        try:
            if check():
                return
        except Exception:  # not ready yet: connection refused, not serving, ...
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    tail = f":\n{log_tail(log)}" if log else ""
    raise StackError(f"{what} was not ready after {timeout_s:.0f} s{tail}")


def pid_alive(pid: int, expect_in_cmdline: str) -> bool:
    """True if ``pid`` runs and is still the program we started (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return expect_in_cmdline.encode() in cmdline


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def stop_pid(pid: int, expect_in_cmdline: str, timeout_s: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL. Does nothing if the process is gone or not ours."""
    if not pid_alive(pid, expect_in_cmdline):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid, expect_in_cmdline) or _reaped(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _reaped(pid: int) -> bool:
    """Reap our own zombie child if it has exited."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid
