"""Draws docs/throughput-scaling.png, BENCHMARKS.md's "how throughput scales" figure, from the
load scenarios' recorded results (benches/results/*.json, written by
``python -m benches.load_scenarios NAME --save``).

Run: ``pip install matplotlib && python scripts/plot_scaling.py``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # a file, no display
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
OUTPUT = ROOT / "docs" / "throughput-scaling.png"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _bars(axes: Any, labels: list[str], values: list[float], title: str, unit: str) -> None:
    bars = axes.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868"][: len(values)])
    axes.bar_label(bars, fmt="%.0f")
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(unit)


def main() -> None:
    figure, grid = plt.subplots(2, 2, figsize=(10, 7))
    (slots_axes, size_axes), (backlog_axes, history_axes) = grid
    slots = _load("slots")
    if slots:
        _bars(
            slots_axes,
            ["defaults\n(100 slots)", "1,000 slots"],
            [slots["defaults_wf_per_s"], slots["slots_1000_wf_per_s"]],
            "Slots: 1,000 wf x 3 activities, SQLite",
            "workflows/s",
        )
    size = _load("store_size")
    if size:
        _bars(
            size_axes,
            ["empty file", f"{size['closed_runs']:,} closed runs"],
            [size["empty_wf_per_s"], size["full_wf_per_s"]],
            "Store size: 1,000 new workflows",
            "workflows/s",
        )
    backlog = _load("backlog")
    if backlog:
        tenths = backlog["wf_per_s_per_tenth"]
        step = backlog["workflows"] // len(tenths)
        marks = [step * (index + 1) for index in range(len(tenths))]
        backlog_axes.plot(marks, tenths, marker="o", label="wf/s in each tenth")
        backlog_axes.set_ylim(bottom=0)
        backlog_axes.set_title(f"Backlog of {backlog['workflows']:,}, drained", fontsize=10)
        backlog_axes.set_xlabel("workflows closed")
        backlog_axes.set_ylabel("workflows/s")
        rss = backlog_axes.twinx()
        rss.plot(marks, backlog["rss_mib_per_tenth"], color="#c44e52", linestyle="--")
        rss.set_ylabel("worker RSS, MiB (dashed)")
        rss.set_ylim(bottom=0)
    history = _load("long_history")
    if history:
        _bars(
            history_axes,
            ["first 1,000 steps", "last 1,000 steps"],
            [history["first_steps_ms_each"] * 1000, history["last_steps_ms_each"] * 1000],
            f"History length: one workflow of {history['steps']:,} activities",
            "microseconds per step",
        )
    figure.suptitle("How Mainspring's throughput scales (WorkerConfig() defaults)")
    figure.tight_layout()
    figure.savefig(OUTPUT, dpi=90)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
