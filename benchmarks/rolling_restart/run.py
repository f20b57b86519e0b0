"""The rolling restart, run: backends restarted one by one under load; what the clients lost.

Three backend processes (``backend.py``), each calling one downstream Echo process through its
channel; 8 clients, each its own grpc.aio channel (its own TCP connection, as separate pods),
calling ``Unary`` in a loop and retrying at once; 2 watchers holding a server stream open and
re-opening it whenever it ends. Scenario ``proxy``: the clients reach the backends through an L4
balancer process (``proxy.py``); scenario ``round_robin``: each client balances over the three
addresses itself, with client-side health checking (``healthCheckConfig``). Each backend in turn
gets SIGTERM, shuts down the way its variant says, exits, and restarts on the same port.

Every wait is bounded: a backend that does not exit within its bound is killed and the run
fails.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from graceful_grpc.testing import EchoServerProcess, echo_pb2, echo_pb2_grpc

__all__ = ("Result", "Settings", "run")

CLIENTS = 8
WATCHERS = 2
START_BOUND = 20.0  # seconds a process may take to report it listens
_ROUND_ROBIN = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)


@dataclass(frozen=True)
class Settings:
    scenario: str  # "proxy" or "round_robin"
    variant: str  # "naive", "best" or "graceful"
    restarts: int = 3
    unready_delay: float = 0.5
    grace: float = 5.0
    probe_interval: float = 0.2
    warmup: float = 1.0
    settle: float = 1.0  # after a backend is back, before the next restart
    max_connection_age: float = 0.0  # the backends' grpc.max_connection_age_ms, in s (0: none)


@dataclass
class Result:
    settings: Settings
    calls_ok: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    failure_details: dict[str, str] = field(default_factory=dict)
    downstream_refused: int = 0
    downstream_failed: collections.Counter[str] = field(default_factory=collections.Counter)
    watcher_notices: list[float] = field(default_factory=list)  # s after the drain began
    watcher_ends: collections.Counter[str] = field(default_factory=collections.Counter)
    shutdowns: list[float] = field(default_factory=list)  # s from SIGTERM to exit
    drains: list[str] = field(default_factory=list)
    sigterms: list[float] = field(default_factory=list)
    drain_starts: list[float] = field(default_factory=list)  # s after each SIGTERM
    failure_times: list[tuple[float, str]] = field(default_factory=list)  # the first 1000

    def failures_after_sigterm(self) -> list[tuple[float, str]]:
        """Each recorded failure as (seconds after the latest SIGTERM before it, status)."""
        offsets = []
        for when, name in self.failure_times:
            before = [sigterm for sigterm in self.sigterms if sigterm <= when]
            offsets.append((round(when - before[-1], 4) if before else -1.0, name))
        return offsets

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.settings.scenario,
            "variant": self.settings.variant,
            "restarts": self.settings.restarts,
            "unready_delay": self.settings.unready_delay,
            "grace": self.settings.grace,
            "max_connection_age": self.settings.max_connection_age,
            "calls_ok": self.calls_ok,
            "failed": dict(self.failed),
            "failure_details": self.failure_details,
            "downstream_refused": self.downstream_refused,
            "downstream_failed": dict(self.downstream_failed),
            "watcher_notices_s": [round(t, 4) for t in self.watcher_notices],
            "watcher_ends": dict(self.watcher_ends),
            "shutdowns_s": [round(t, 4) for t in self.shutdowns],
            "drains": self.drains,
            "drain_starts_after_sigterm_s": [round(t, 4) for t in self.drain_starts],
            "failures_after_sigterm_s": self.failures_after_sigterm()[:50],
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Process:
    """A child process whose first stdout line is ``LISTENING <port>`` and whose line
    ``REPORT <json>`` (if any) is its report."""

    def __init__(self, *command: str) -> None:
        self._command = command
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.report: dict[str, Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, *self._command, stdout=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), START_BOUND)
        if not line.startswith(b"LISTENING "):
            raise RuntimeError(f"{self._command}: expected LISTENING, got {line!r}")
        self.port = int(line.split()[1])
        self._reader = asyncio.create_task(self._read_report())

    async def _read_report(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            if line.startswith(b"REPORT "):
                self.report = json.loads(line[len(b"REPORT ") :])

    async def terminate(self, bound: float) -> float:
        """SIGTERM, then waits for the exit (killing it after ``bound``); seconds it took."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), bound)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise RuntimeError(f"{self._command} did not exit within {bound}s of SIGTERM") from None
        took = time.monotonic() - began
        if self._reader is not None:
            await asyncio.wait_for(self._reader, START_BOUND)
        return took

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def _client(
    target: str, options: list[tuple[str, Any]], result: Result, stop: asyncio.Event
) -> None:
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        request = echo_pb2.EchoRequest(message="c")
        while not stop.is_set():
            try:
                await stub.Unary(request, timeout=10)
                result.calls_ok += 1
            except grpc.aio.AioRpcError as error:
                name = error.code().name
                result.failed[name] += 1
                result.failure_details.setdefault(name, error.details() or "")
                if len(result.failure_times) < 1000:
                    result.failure_times.append((time.monotonic(), name))
                await asyncio.sleep(0)  # retry at once, but let the others run


async def _watcher(
    target: str,
    options: list[tuple[str, Any]],
    ends: list[tuple[int, float, str]],
    stop: asyncio.Event,
) -> None:
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        while not stop.is_set():
            port = 0
            status = "OK"
            call = stub.ServerStream(echo_pb2.EchoRequest(message="w"))
            try:
                async for response in call:
                    port = int(response.message)
                    if stop.is_set():
                        call.cancel()
                        return
            except grpc.aio.AioRpcError as error:
                status = error.code().name
            if port:
                ends.append((port, time.monotonic(), status))
            else:
                await asyncio.sleep(0.01)  # no backend reached: do not spin


async def run(settings: Settings) -> Result:
    """One run of a scenario and variant; raises if a process misbehaves."""
    result = Result(settings)
    downstream = EchoServerProcess()
    downstream.start()
    ports = [_free_port() for _ in range(3)]

    def backend(port: int) -> _Process:
        return _Process(
            "-m", "benchmarks.rolling_restart.backend",
            "--port", str(port),
            "--downstream", downstream.target,
            "--variant", settings.variant,
            "--unready-delay", str(settings.unready_delay),
            "--grace", str(settings.grace),
            "--max-connection-age", str(settings.max_connection_age),
        )  # fmt: skip

    backends = [backend(port) for port in ports]
    proxy: _Process | None = None
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    ends: list[tuple[int, float, str]] = []
    try:
        for process in backends:
            await process.start()
        options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
        if settings.scenario == "proxy":
            proxy = _Process(
                "-m", "benchmarks.rolling_restart.proxy",
                "--backends", ",".join(map(str, ports)),
                "--probe-interval", str(settings.probe_interval),
            )  # fmt: skip
            await proxy.start()
            target = f"127.0.0.1:{proxy.port}"
            await asyncio.sleep(3 * settings.probe_interval)  # every backend probed SERVING
        else:
            target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
            options.append(("grpc.service_config", _ROUND_ROBIN))
        tasks += [
            asyncio.create_task(_client(target, options, result, stop)) for _ in range(CLIENTS)
        ]
        tasks += [
            asyncio.create_task(_watcher(target, options, ends, stop)) for _ in range(WATCHERS)
        ]
        await asyncio.sleep(settings.warmup)
        bound = settings.grace + settings.unready_delay + 10.0
        for restart in range(settings.restarts):
            index = restart % len(backends)
            old = backends[index]
            result.sigterms.append(time.monotonic())
            result.shutdowns.append(await old.terminate(bound))
            report = old.report or {}
            if "drain_start" in report:  # the same monotonic clock: one machine
                result.drain_starts.append(report["drain_start"] - result.sigterms[-1])
            _account(result, report, ends)
            backends[index] = backend(ports[index])
            await backends[index].start()
            await asyncio.sleep(settings.settle)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30.0)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for process in [*backends, *([proxy] if proxy else [])]:
            await process.kill()
        downstream.stop()
    return result


def _account(result: Result, report: dict[str, Any], ends: list[tuple[int, float, str]]) -> None:
    port, drain_start, stopped = report["port"], report["drain_start"], report["stopped"]
    failed = report.get("downstream_failed", {})
    result.downstream_failed.update(failed)
    result.downstream_refused += sum(failed.values())
    result.drains.append(
        str(report.get("server_drain") or f"stopped after {stopped - drain_start:.3f}s")
    )
    for end_port, when, status in ends:
        if end_port == port and drain_start <= when <= stopped + 1.0:
            result.watcher_notices.append(when - drain_start)
            result.watcher_ends[status] += 1


def describe(result: Result) -> str:
    s = result.settings
    failed = ", ".join(f"{name} {count}" for name, count in sorted(result.failed.items())) or "0"
    notices = ", ".join(f"{t * 1000:.0f}" for t in result.watcher_notices) or "-"
    shutdowns = ", ".join(f"{t:.2f}" for t in result.shutdowns)
    return (
        f"{s.scenario:<11} {s.variant:<8} ok={result.calls_ok:<6} failed: {failed}; "
        f"downstream refused={result.downstream_refused}; "
        f"watchers told after [ms]: {notices} ({dict(result.watcher_ends)}); "
        f"shutdowns [s]: {shutdowns}"
    )
