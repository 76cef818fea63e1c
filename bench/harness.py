"""The benchmark harness: every metric is a ratio to a baseline measured in the same run.

A suite is a module ``bench/suite_<name>.py`` exposing ``run(ctx: BenchContext) -> list[Metric]``.
``python -m bench <suite> ...`` (``make bench``) runs suites and writes
``bench/results/<suite>.json`` (a list of metric dicts) and ``bench/results/<suite>.md``.
"""

from __future__ import annotations

import json
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Metric:
    """One measured figure, with the baseline it is judged against (measured in the same run)."""

    metric: str
    value: float
    unit: str
    baseline_metric: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    note: str = ""

    @classmethod
    def against(
        cls, metric: str, value: float, unit: str, baseline: Metric, note: str = ""
    ) -> Metric:
        """A metric expressed as a ratio to ``baseline`` (value / baseline.value)."""
        ratio = value / baseline.value if baseline.value else None
        return cls(metric, value, unit, baseline.metric, baseline.value, ratio, note)


@dataclass
class BenchContext:
    """What a suite gets: settings (bootstrap servers, registry URL, database URL) and a scale."""

    settings: Any = None
    scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def n(self, base: int) -> int:
        """Scaled record count (``--scale 0.1`` for a quick smoke run)."""
        return max(1, int(base * self.scale))


def rate(count: int, fn: Callable[[], Any], repeats: int = 3) -> float:
    """Best-of-``repeats`` throughput of ``fn`` (which processes ``count`` items), items/s."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server a suite starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def write_results(suite: str, metrics: list[Metric], directory: Path = RESULTS_DIR) -> Path:
    """Write ``<suite>.json`` and ``<suite>.md`` and return the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = [asdict(m) for m in metrics]
    path = directory / f"{suite}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    (directory / f"{suite}.md").write_text(markdown_table(suite, metrics))
    return path


def markdown_table(suite: str, metrics: list[Metric]) -> str:
    lines = [
        f"# bench suite `{suite}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
        f"Python {platform.python_version()}; ratios are against a baseline from the same run.",
        "",
        "| metric | value | unit | baseline | baseline value | ratio | note |",
        "| --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for m in metrics:
        base = f"{m.baseline_value:,.0f}" if m.baseline_value is not None else ""
        ratio = f"{m.ratio:.2f}" if m.ratio is not None else ""
        lines.append(
            f"| {m.metric} | {m.value:,.1f} | {m.unit} | {m.baseline_metric or ''} | {base} "
            f"| {ratio} | {m.note} |"
        )
    return "\n".join(lines) + "\n"
