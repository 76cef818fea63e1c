"""``python -m bench [suite ...] [--scale X]``: run benchmark suites against the local stack.

Each suite writes bench/results/<suite>.json and .md. With no suite named, all run.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from bench.harness import BenchContext, write_results
from connectors.settings import Settings


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name[len("suite_") :].replace("_", "-")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("suite_")
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"default: all of {', '.join(available())}")
    parser.add_argument("--scale", type=float, default=1.0, help="record-count multiplier")
    args = parser.parse_args(argv)
    suites = args.suites or available()
    unknown = set(suites) - set(available())
    if unknown:
        parser.error(
            f"unknown suite(s) {', '.join(sorted(unknown))}; have {', '.join(available())}"
        )
    settings = Settings.from_env()
    from devstack.stack import Stack

    Stack(settings).up(report=lambda line: print(f"[stack] {line}"))
    ctx = BenchContext(settings=settings, scale=args.scale)
    for name in suites:
        print(f"\n=== suite {name}")
        started = time.perf_counter()
        metrics = importlib.import_module(f"bench.suite_{name.replace('-', '_')}").run(ctx)
        path = write_results(name, metrics)
        for m in metrics:
            ratio = f"  ratio {m.ratio:.2f} vs {m.baseline_metric}" if m.ratio is not None else ""
            print(f"{m.metric:<40} {m.value:>14,.1f} {m.unit:<10}{ratio}")
        print(f"-> {path} ({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
