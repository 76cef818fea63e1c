"""``python -m chaos --seed N`` (``make chaos SEED=N``): one chaos run, its report in
``chaos/reports/N.md``; exit status 1 when an invariant does not hold."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.run import PLANTS, REPORTS, ChaosRun, Options


def main() -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=150.0, help="length of the traffic")
    parser.add_argument("--rate", type=float, default=2.0, help="sessions per second")
    parser.add_argument("--plant", choices=sorted(PLANTS), help="run with a bug planted")
    parser.add_argument("--running-stack", action="store_true",
                        help="use the running stack (no broker or database faults)")  # fmt: skip
    parser.add_argument("--keep-stack", action="store_true", help="leave the chaos stack up")
    parser.add_argument("--report", type=Path, help="report file (default chaos/reports/SEED.md)")
    args = parser.parse_args()
    report = args.report or REPORTS / f"{args.seed}{'-' + args.plant if args.plant else ''}.md"
    options = Options(seed=args.seed, seconds=args.seconds, rate=args.rate, plant=args.plant,
                      own_stack=not args.running_stack, keep_stack=args.keep_stack,
                      report=report)  # fmt: skip
    outcome = ChaosRun(options).run()
    for finding in outcome.findings:
        mark = "holds" if finding.ok else "DOES NOT HOLD"
        figures = ", ".join(f"{k} {v}" for k, v in finding.figures.items())
        print(f"  {finding.invariant:<28} {mark:<14} {figures}")
        for problem in finding.problems[:3]:
            print(f"      {problem}")
    print(f"report: {report}")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
