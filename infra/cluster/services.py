"""Starting and stopping the local cluster's processes: each gets a free port on
127.0.0.1, its own session (so it is stopped with everything it started), a log under
``<cluster>/logs/`` and its pid (with the process's start time, so a reused pid is never
signalled) in ``<cluster>/state.json``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from infra.cluster import read_state, write_state

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None once it has exited, also
    while it waits, a zombie, for its parent to reap it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def start(root: Path, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``argv`` and record it as service ``name``."""
    log = root / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    state = read_state(root)
    state.setdefault("pids", {})[name] = {"pid": process.pid, "started": _start_time(process.pid)}
    write_state(root, state)
    return process


def wait_until(check: Callable[[], bool], process: subprocess.Popen, name: str, log: Path, timeout: float) -> None:
    """Wait for ``check`` to pass while ``process`` lives; a clear error with the log's tail if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} while starting; its log {log} ends:\n"
                               + log.read_text(errors="replace")[-3000:])
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not become healthy within {timeout:.0f} s; see {log}")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=2).status_code < 500


def is_running(entry: dict) -> bool:
    return entry.get("started") is not None and _start_time(entry["pid"]) == entry["started"]


def _wait_gone(entries, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(is_running(e) for e in entries):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_all(root: Path, grace: float = 10.0) -> list[str]:
    """Stop every recorded service (SIGTERM to its session, SIGKILL after ``grace``);
    the names of those that were running. Safe to call again."""
    state = read_state(root)
    entries = state.get("pids", {})
    alive = {name: entry for name, entry in entries.items() if is_running(entry)}
    for entry in alive.values():
        try:
            os.killpg(entry["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    _wait_gone(alive.values(), grace)
    for entry in alive.values():
        if is_running(entry):
            try:
                os.killpg(entry["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    if not _wait_gone(alive.values(), grace):
        raise RuntimeError(f"processes still running after SIGKILL: {[e['pid'] for e in alive.values()]}")
    state["pids"] = {}
    write_state(root, state)
    return sorted(alive)
