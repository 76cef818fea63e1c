"""``python -m bench.ab_projector REV [--events N] [--pairs P]``: the ledger projector of this
checkout against the one of git revision REV, on the same events, in alternating pairs.

The events are published once; each run projects exactly that offset range into a fresh
database with one in-process projector (``bench.suite_ledger.project_in_process``), in its own
process: REV from a git worktree (its C extensions built in place), this checkout from here.
Runs alternate (this, REV, this, REV...), so a machine that slows down mid-way slows both
sides; the figure to quote is the median of the per-pair ratios this/REV. Results go to
bench/results/ab_projector.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.harness import RESULTS_DIR

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import json, os, sys
checkout, range_file = sys.argv[1], sys.argv[2]
sys.path.insert(0, checkout)
os.chdir(checkout)
try:  # a revision from before the composition root moved (this checkout has no such module)
    from connectors.bootstrap import bootstrap
except ImportError:
    from entrypoints.bootstrap import bootstrap
import bench.suite_ledger as suite
spans = json.load(open(range_file))
starts = {(t, p): o for t, p, o in spans["starts"]}
targets = {(t, p): o for t, p, o in spans["targets"]}
result = suite.project_in_process(bootstrap(), starts, targets)
print(json.dumps({"events_per_s": result[0], "events": result[1]}))
"""


def publish(events: int, range_file: Path) -> int:
    """Publish about ``events`` payment events; write the offset range they occupy."""
    from bench import suite_ledger as suite
    from entrypoints.bootstrap import bootstrap

    app = bootstrap()
    batch = suite.payment_events(events, f"ab-{uuid.uuid4().hex[:6]}")
    starts = suite.ends(app)
    publisher = app.publisher()
    publisher.publish_many(batch)
    publisher.flush()
    targets = suite.ends(app)
    range_file.write_text(
        json.dumps(
            {
                "starts": [[t, p, o] for (t, p), o in starts.items()],
                "targets": [[t, p, o] for (t, p), o in targets.items()],
            }
        )
    )
    return sum(targets[k] - starts.get(k, 0) for k in targets)


def worktree(rev: str, where: Path) -> Path:
    """A checkout of ``rev`` with its C extensions built in place."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", str(where), rev],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=where,
                   check=True, capture_output=True)  # fmt: skip
    return where


def project(checkout: Path, range_file: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _RUN, str(checkout), str(range_file)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["events_per_s"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab_projector", description=__doc__)
    parser.add_argument("rev", help="git revision to compare against (e.g. a commit or main~3)")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--pairs", type=int, default=6)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="evledger-ab-") as tmp:
        range_file = Path(tmp) / "range.json"
        total = publish(args.events, range_file)
        before = worktree(args.rev, Path(tmp) / "before")
        try:
            pairs = []
            for i in range(args.pairs):
                this, that = project(ROOT, range_file), project(before, range_file)
                pairs.append((this, that))
                print(f"pair {i + 1}: this {this:,.0f} ev/s, {args.rev} {that:,.0f} ev/s, "
                      f"ratio {this / that:.3f}", flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                           check=False, capture_output=True)  # fmt: skip
    ratios = [a / b for a, b in pairs]
    result = {
        "against": args.rev,
        "events": total,
        "pairs": [{"this": a, "against": b} for a, b in pairs],
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "ab_projector.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "".join(
        f"| {i + 1} | {a:,.0f} | {b:,.0f} | {a / b:.3f} |\n" for i, (a, b) in enumerate(pairs)
    )
    (RESULTS_DIR / "ab_projector.md").write_text(
        f"# Ledger projector, this checkout vs {args.rev}\n\n"
        f"{total:,} payment events, one in-process projector, {len(pairs)} alternating pairs.\n\n"
        "| pair | this (events/s) | against (events/s) | ratio |\n|---|---|---|---|\n"
        f"{rows}\nMedian ratio {result['ratio_median']:.3f} "
        f"(min {result['ratio_min']:.3f}, max {result['ratio_max']:.3f}).\n"
    )
    print(f"median ratio this/{args.rev}: {result['ratio_median']:.3f} "
          f"(min {result['ratio_min']:.3f}, max {result['ratio_max']:.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
