"""``python -m benchmarks``: graceful_grpc side by side with raw grpc.aio, in one run.

Every figure that compares is a median of per-round ratios to the baseline mode of the same run
(raw grpc.aio; raw+uvloop for the uvloop modes), with its interquartile range.
"""

from __future__ import annotations

import os

# Before grpc is imported (here and in the child processes): grpc core's INFO lines, e.g. the
# GOAWAY of each mass-cancel pass, are noise in a results table.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import importlib.metadata
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

from graceful_grpc import COUNTER_IMPLEMENTATION

from .harness import drain, e2e, micro
from .harness.modes import available_modes
from .harness.plot import plot_ratios
from .harness.workloads import WORKLOADS

PROFILES = {
    # rounds, units per workload, micro calls, counter pairs, thread pairs, drains, streams
    "full": (9, {"unary": 3000, "unary-64": 6400, "stream-100": 10000, "bidi": 3000},
             200_000, 1_000_000, 1_000_000, 200, 10_000),
    "quick": (9, {"unary": 400, "unary-64": 1280, "stream-100": 2000, "bidi": 400},
              50_000, 200_000, 200_000, 100, 10_000),
    "smoke": (2, {"unary": 20, "unary-64": 128, "stream-100": 200, "bidi": 20},
              2000, 2000, 2000, 5, 200),
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a run under two minutes")
    size.add_argument("--smoke", action="store_true", help="the smallest run: proves it works")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 9)")
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    parser.add_argument("--plot", metavar="PATH", default="bench-results/ratios.png")
    args = parser.parse_args(argv)
    # The drain benchmarks abort calls on purpose; their WARNINGs would only clutter the table.
    logging.getLogger("graceful_grpc").setLevel(logging.ERROR)
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    rounds, units, micro_calls, pairs, thread_pairs, drains, streams = PROFILES[profile]
    rounds = args.rounds or rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    modes, modes_note = available_modes()
    workloads = list(WORKLOADS)
    started = time.perf_counter()
    server_cpu, _client_cpu, _ = e2e.pin_note()
    results: dict[str, Any] = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "profile": profile,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "grpcio": importlib.metadata.version("grpcio"),
            "counter": COUNTER_IMPLEMENTATION,
        },
        "modes_note": modes_note,
        "e2e": e2e.run_e2e(rounds, units, modes, workloads),
        "wrapper_fake": micro.wrapper_overhead_us(rounds, micro_calls),
        "wrapper_real": micro.wrapper_overhead_real_us(rounds, micro_calls // 5),
        "counter_pair": micro.counter_pair_ns(rounds, pairs),
        "counter_threads": micro.counter_threads(thread_pairs),
        "drain_latency": drain.close_latency(drains),
        "mass_cancel": drain.mass_cancel(streams, server_cpu),
    }
    results["plot"] = plot_ratios(results["e2e"], workloads, Path(args.plot))
    results["seconds"] = time.perf_counter() - started
    results["targets"] = targets(results)
    print(render(results, modes, workloads))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures the library promises, each with its bound and whether it held."""
    unary = results["e2e"]["unary"]
    bidi = results["e2e"]["bidi"]
    counters = results["counter_pair"]
    c_ns = counters.get("c", {}).get("ns_median", float("nan"))
    lock_ns = counters["lock"]["ns_median"]
    threads = results["counter_threads"].get("c", {})
    mass = results["mass_cancel"]
    rows = [
        ("graceful-c CPU per unary call vs raw", unary["graceful-c"]["cpu_us"]["ratio_median"],
         "<= 1.02", unary["graceful-c"]["cpu_us"]["ratio_median"] <= 1.02),
        ("graceful-c CPU per bidi message vs raw", bidi["graceful-c"]["cpu_us"]["ratio_median"],
         "<= 1.01", bidi["graceful-c"]["cpu_us"]["ratio_median"] <= 1.01),
        ("graceful-c CPU per unary call vs interceptor",
         unary["graceful-c"]["cpu_us"]["median"] / unary["interceptor"]["cpu_us"]["median"],
         "<= 0.92", unary["graceful-c"]["cpu_us"]["median"]
         <= 0.92 * unary["interceptor"]["cpu_us"]["median"]),
        ("fallback-path wrapper CPU per fake call (us)", results["wrapper_fake"]["added_us_median"],
         "<= 1.5", results["wrapper_fake"]["added_us_median"] <= 1.5),
        ("C counter incr()+decr() (ns)", c_ns, "<= 25", c_ns <= 25),
        ("Lock int / C counter", lock_ns / c_ns, ">= 3", lock_ns / c_ns >= 3),
        ("lost updates, 2 threads, C counter", threads.get("final_value", -1), "== 0",
         threads.get("final_value") == 0 and threads.get("errors") == 0),
        ("drain latency p99 after last call (ms)", results["drain_latency"]["p99_ms"], "<= 1",
         results["drain_latency"]["p99_ms"] <= 1),
        (f"close(grace=0), {mass['streams']} streams (s)", mass["close_seconds"], "<= 2",
         mass["close_seconds"] <= 2 and mass["cancelled"] == mass["streams"]
         and mass["in_flight_after"] == 0),
        ("added memory per tracked call (bytes)", mass["added_bytes_per_call"], "<= 300",
         mass["added_bytes_per_call"] <= 300),
    ]  # fmt: skip
    return [{"target": t, "measured": m, "bound": b, "met": bool(ok)} for t, m, b, ok in rows]


def render(results: dict[str, Any], modes: list[str], workloads: list[str]) -> str:
    e2e_results = results["e2e"]
    machine = results["machine"]
    lines = [
        f"machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"grpcio {machine['grpcio']}, counter={machine['counter']}",
        f"e2e: {e2e_results['pinning']}; {e2e_results['rounds']} rounds; units per mode and round:"
        f" {e2e_results['units']}",
    ]
    if results["modes_note"]:
        lines.append(results["modes_note"])
    lines.append(results["plot"])
    ratio = "x base"
    header = (
        f"  {'mode':<18} {'CPU/unit us':>11} {ratio:>7} {'IQR':>13}  {'units/s':>9} {ratio:>7}"
        f"  {'p50 ms':>7} {ratio:>7}  {'p99 ms':>7} {ratio:>7}"
    )
    for workload in workloads:
        unit = "message" if workload in ("stream-100", "bidi") else "call"
        lines += ["", f"{workload} (unit: {unit}); ratios: median of per-round ratios", header]
        for mode in modes:
            f = e2e_results[workload][mode]
            lo, hi = f["cpu_us"]["ratio_iqr"]
            lines.append(
                f"  {mode:<18} {f['cpu_us']['median']:11.2f} {f['cpu_us']['ratio_median']:7.3f}"
                f" {lo:6.3f}..{hi:5.3f}  {f['throughput']['median']:9.0f}"
                f" {f['throughput']['ratio_median']:7.3f}  {f['p50_ms']['median']:7.3f}"
                f" {f['p50_ms']['ratio_median']:7.3f}  {f['p99_ms']['median']:7.3f}"
                f" {f['p99_ms']['ratio_median']:7.3f}"
            )
    wrapper, real = results["wrapper_fake"], results["wrapper_real"]
    lines += [
        "",
        "microbenchmarks (no network)",
        f"  wrapper added CPU per call, fake call:        {wrapper['added_us_median']:.3f} us "
        f"(IQR {wrapper['added_us_iqr'][0]:.3f}..{wrapper['added_us_iqr'][1]:.3f}; "
        "the fallback path of intercepted and foreign calls)",
        f"  wrapper added CPU per call, real grpc call:   {real['added_us_median']:.3f} us "
        f"(IQR {real['added_us_iqr'][0]:.3f}..{real['added_us_iqr'][1]:.3f})",
    ]
    for name, figures in results["counter_pair"].items():
        lines.append(f"  counter incr()+decr() {name:<7} {figures['ns_median']:8.1f} ns")
    for name, figures in results["counter_threads"].items():
        lines.append(
            f"  2 threads x {figures['pairs_per_thread']} pairs, {name:<5}: final value "
            f"{figures['final_value']}, errors {figures['errors']}, {figures['seconds']:.2f} s"
        )
    latency, mass = results["drain_latency"], results["mass_cancel"]
    lines += [
        "",
        "drain",
        f"  close() after the last call completes ({latency['drains']} drains): "
        f"p50 {latency['p50_ms']:.3f} ms, p99 {latency['p99_ms']:.3f} ms, "
        f"max {latency['max_ms']:.3f} ms",
        f"  close(grace=0) with {mass['streams']} server streams in flight: "
        f"{mass['close_seconds']:.3f} s, cancelled {mass['cancelled']}, in flight after "
        f"{mass['in_flight_after']}; memory per tracked call: "
        f"raw {mass['raw_bytes_per_call']:.0f} B, "
        f"graceful adds {mass['added_bytes_per_call']:.0f} B",
        "",
        "targets",
    ]
    for row in results["targets"]:
        mark = "met   " if row["met"] else "MISSED"
        lines.append(f"  {mark} {row['target']:<48} {row['measured']:10.3f}  ({row['bound']})")
    lines.append(f"\nran in {results['seconds']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
