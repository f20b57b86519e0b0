"""Runs the echo server in its own process, so client and server do not share a CPU or a loop."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from types import TracebackType

__all__ = ("EchoServerProcess",)

_READY_PREFIX = "LISTENING "


class EchoServerProcess:
    """An ``EchoServer`` in a child process (``python -m graceful_grpc.testing``).

    Example:
        with EchoServerProcess(cpu=0) as server:
            channel = grpc.aio.insecure_channel(server.target)

    Args:
        cpu: Pin the server process to this CPU (Linux only); None leaves it unpinned.
        startup_timeout: Seconds ``start()`` waits for the server to report its port before it
            kills the child and raises ``TimeoutError``.
    """

    def __init__(self, *, cpu: int | None = None, startup_timeout: float = 30.0) -> None:
        self._cpu = cpu
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._target = ""

    @property
    def target(self) -> str:
        """The ``host:port`` clients connect to."""
        if not self._target:
            raise RuntimeError("EchoServerProcess is not started")
        return self._target

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._process is None:
            raise RuntimeError("EchoServerProcess is not started")
        return self._process.pid

    def start(self) -> None:
        """Starts the child and waits until it listens.

        Raises:
            TimeoutError: the child did not report its port within ``startup_timeout`` (it is
                killed).
            RuntimeError: the child exited, or printed something else first.
        """
        command = [sys.executable, "-m", "graceful_grpc.testing", "--port", "0"]
        if self._cpu is not None:
            command += ["--cpu", str(self._cpu)]
        self._process = process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
        )
        line = _first_line(process, self._startup_timeout)
        if line is None:
            self._kill()
            raise TimeoutError(
                f"echo server process did not report its port within {self._startup_timeout:g}s"
            )
        if not line.startswith(_READY_PREFIX):
            self.stop()
            raise RuntimeError(f"echo server process failed to start: {line!r}")
        self._target = line[len(_READY_PREFIX) :].strip()

    def stop(self) -> None:
        """Asks the child to stop (closes its stdin) and waits for it."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> EchoServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _first_line(process: subprocess.Popen[str], timeout: float) -> str | None:
    """The child's first line of output, or None if none came within ``timeout`` seconds.

    ``readline()`` has no timeout, so it runs in a daemon thread; killing the child on a timeout
    closes the pipe's far end, which ends that read.
    """
    assert process.stdout is not None
    stdout = process.stdout
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.append(stdout.readline()), name="echo server startup", daemon=True
    )
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else None
