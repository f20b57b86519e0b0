"""``python -m benchmarks [--quick] [--json PATH]``: graceful_grpc against raw grpc.aio."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

from graceful_grpc import COUNTER_IMPLEMENTATION

from . import e2e, micro


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (under two minutes)")
    parser.add_argument("--smoke", action="store_true", help="tiny run that only proves it works")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9)")
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.smoke else 5 if args.quick else 9)
    calls = 20 if args.smoke else 1000 if args.quick else 3000
    micro_calls = 2000 if args.smoke else 100_000
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"Python {platform.python_version()} counter={COUNTER_IMPLEMENTATION}",
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    results["wrapper"] = micro.wrapper_overhead_us(rounds, micro_calls)
    results["wrapper_real"] = micro.wrapper_overhead_real_us(rounds, micro_calls // 5)
    results["counter_pair"] = micro.counter_pair_ns(rounds, micro_calls)
    results["counter_threads"] = micro.counter_threads(2000 if args.smoke else 1_000_000)
    results["e2e"] = e2e.run_e2e(rounds, calls, list(e2e.MODES), list(e2e.WORKLOADS))
    _print(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def _print(results: dict[str, Any]) -> None:
    print(f"machine: {results['machine']}")
    print(
        f"e2e: {results['e2e']['pinning']}; {results['e2e']['rounds']} rounds, "
        f"{results['e2e']['calls_per_round']} calls per mode per round\n"
    )
    wrapper = results["wrapper"]
    print(
        f"wrapper added CPU per call (fake call): {wrapper['added_us_median']:.3f} us "
        f"(IQR {wrapper['added_us_iqr'][0]:.3f}..{wrapper['added_us_iqr'][1]:.3f})"
    )
    real = results["wrapper_real"]
    lo, hi = real["added_us_iqr"]
    print(
        "wrapper added CPU per call (real grpc call, no network): "
        f"{real['added_us_median']:.3f} us (IQR {lo:.3f}..{hi:.3f})"
    )
    for name, figures in results["counter_pair"].items():
        print(f"counter incr()+decr() {name:>6}: {figures['ns_median']:.1f} ns")
    threads = results["counter_threads"]
    print(
        f"2 threads x {threads['pairs_per_thread']} pairs ({threads['implementation']}): "
        f"final value {threads['final_value']}, errors {threads['errors']}\n"
    )
    for workload in ("unary", "bidi"):
        label = "per unary call" if workload == "unary" else "per bidi message"
        print(f"client CPU {label}: median of per-round ratios to raw (IQR)")
        for mode, figures in results["e2e"][workload].items():
            lo, hi = figures["ratio_to_raw_iqr"]
            cpu, ratio = figures["cpu_us_median"], figures["ratio_to_raw_median"]
            print(f"  {mode:<12} {cpu:8.1f} us   x{ratio:.4f}  ({lo:.4f}..{hi:.4f})")
        print()


if __name__ == "__main__":
    sys.exit(main())
