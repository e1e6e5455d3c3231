"""Stopping the child processes tests start in a process group of their
own (gunicorn and its workers, a trustpool service)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen | None) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL it after 10 s, and reap
    it; nothing when it has already ended."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
