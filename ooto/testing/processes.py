"""Child processes the harness starts: logged to a file, stopped by PID, never outliving us.

Every process is started in its own session (so a terminal's Ctrl-C reaches only us, and we decide
the order of shutdown) and, when started from the main thread, with PR_SET_PDEATHSIG so that even a
SIGKILLed test run leaves no etcd or API server behind. `atexit` stops whatever is still running on
a normal interpreter exit, including after KeyboardInterrupt.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_running: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> Callable[[], None] | None:
    if threading.current_thread() is not threading.main_thread():
        # PDEATHSIG fires when the *thread* that forked exits, which would kill children early.
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def set_pdeathsig() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return set_pdeathsig


class ManagedProcess:
    """One child process with its output in `log_path`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl, async-signal-safe
            )
        _running.add(self)

    def exit_code(self) -> int | None:
        """None while running (or never started)."""
        return self._popen.poll() if self._popen else None

    def terminate(self) -> None:
        """Send SIGTERM to this PID (if it is still our running child)."""
        if self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.terminate()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; only this PID, and only if it is our child."""
        popen = self._popen
        if popen is None:
            return
        self.terminate()
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            popen.wait()
        self._popen = None
        _running.discard(self)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    processes: Sequence[ManagedProcess] = (),
    interval: float = 0.05,
) -> None:
    """Poll `condition` until true; fail early if one of `processes` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        for process in processes:
            code = process.exit_code()
            if code is not None:
                raise ProcessFailedError(f"{process.name} exited with code {code} while {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s while {what}")
        time.sleep(interval)


class ProcessFailedError(RuntimeError):
    """A child process died while we waited for it."""


@atexit.register
def _stop_all() -> None:
    for process in list(_running):
        process.stop(timeout=3.0)
