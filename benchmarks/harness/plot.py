"""A PNG of the per-round ratios to the baseline, per mode and workload (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ("plot_ratios",)

_FIGURES = (("cpu_us", "client CPU per unit"), ("throughput", "throughput"))


def plot_ratios(e2e: dict[str, Any], workloads: list[str], path: Path) -> str:
    """Writes the plot; returns a sentence saying what was done (or why it was skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib not installed (pip install --group bench)"
    figure, axes = plt.subplots(
        len(_FIGURES), len(workloads), figsize=(4.2 * len(workloads), 7), squeeze=False
    )
    for row, (key, label) in enumerate(_FIGURES):
        for column, workload in enumerate(workloads):
            ax = axes[row][column]
            modes = list(e2e[workload])
            data = [e2e[workload][mode][key]["ratios"] for mode in modes]
            ax.boxplot(data, showfliers=True)
            for index, values in enumerate(data, start=1):
                ax.scatter([index] * len(values), values, s=8, alpha=0.6)
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
            ax.set_xticks(range(1, len(modes) + 1), modes, rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{workload}: {label}", fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
            if column == 0:
                ax.set_ylabel("ratio to baseline (per round)", fontsize=8)
    figure.suptitle("graceful_grpc vs raw grpc.aio: per-round ratios (uvloop modes vs raw+uvloop)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return f"plot written to {path}"
