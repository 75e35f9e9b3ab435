"""Stage 2: how many cached views (K) a first ``nolb retrain`` should extract, decided on validation.

For each given stage-1 run directory and each K in ``--views``, runs the real command
``python -m nolb retrain RUN --out FRESH retrain.views=K`` (a first run: features are
extracted, then the paper head and the validation-selected "nolb" head are trained) in a
fresh process and records its wall time, its CPU time (children's ``getrusage``, much
less disturbed by other jobs on a shared CPU than wall time) and the *validation* HM / AM /
lowest recall of both heads from ``retrain.json``.  Test numbers are not read: the default is chosen on validation only.

The order of (run, K) pairs is interleaved (K = 1, 4, 1, 4, ...).  The run directories are
only read (the outputs go to a temporary folder).

    python benchmarks/stage2_views.py RUN_DIR [RUN_DIR ...] --out benchmarks/results/stage2_views.json
    python benchmarks/stage2_views.py --summarize benchmarks/results/stage2_views.json   # paired summary only
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(run_dir: Path, views: int, work: Path, extra: list[str]) -> dict:
    out = work / f"{run_dir.name}-K{views}"
    cmd = [sys.executable, "-m", "nolb", "retrain", str(run_dir), "--out", str(out), "--quiet", f"retrain.views={views}",
           *extra]
    cpu0, wall0 = children_cpu_seconds(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall0, children_cpu_seconds() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    from nolb.io import read_json

    summary = read_json(out / "retrain.json")
    row = {"run": str(run_dir), "views": views, "wall_s": wall, "cpu_s": cpu, "load_1min": os.getloadavg()[0],
           "seconds_reported": summary.get("seconds"), "command": " ".join(cmd[1:])}
    for head in ("paper", "nolb"):
        if head in summary["heads"]:
            row[head] = {"val": summary["heads"][head]["val"], "settings": summary["heads"][head]["settings"]}
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--views", default="1,4")
    parser.add_argument("--set", nargs="*", default=[], help="extra retrain.* overrides")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--summarize", type=Path, help="only add the paired summary to this earlier result file")
    args = parser.parse_args(argv)
    if args.summarize:
        from nolb.io import read_json

        result = read_json(args.summarize)
        result["summary"] = summarize(result["rows"], result["views"])
        common.write_result(args.summarize, result)
        return 0
    views = [int(v) for v in args.views.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nolb-views-") as folder:
        for run_dir in args.runs:
            for k in views:
                row = one_run(run_dir, k, Path(folder), args.set)
                rows.append(row)
                print(f"{run_dir.name} K={k}: wall {row['wall_s']:.1f} s, CPU {row['cpu_s']:.1f} s (load "
                      f"{row['load_1min']:.1f}); val HM paper {100 * row['paper']['val']['hm']:.2f}, "
                      f"nolb {100 * row['nolb']['val']['hm']:.2f}", flush=True)
    result = {"provenance": common.provenance(), "views": views, "rows": rows, "summary": summarize(rows, views)}
    common.write_result(args.out, result)
    return 0


def summarize(rows: list[dict], views: list[int]) -> dict:
    """Per head: the mean over bases of (val HM with the last K) - (with the first K), with a 95% t interval
    over the bases (each base is one paired comparison), and the mean CPU-seconds of each K."""
    from scipy import stats

    first, last = views[0], views[-1]
    by_run = {}
    for row in rows:
        by_run.setdefault(row["run"], {})[row["views"]] = row
    pairs = [runs for runs in by_run.values() if first in runs and last in runs]
    out = {"compared": f"K={last} minus K={first}", "bases": len(pairs),
           "cpu_s": {str(k): statistics.mean(r[k]["cpu_s"] for r in pairs) for k in (first, last)}}
    for head in ("nolb", "paper"):
        diffs = [100 * (r[last][head]["val"]["hm"] - r[first][head]["val"]["hm"]) for r in pairs if head in r[first]]
        mean = statistics.mean(diffs)
        half = (stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
                if len(diffs) > 1 else float("nan"))
        out[head] = {"val_hm_diffs": diffs, "mean": mean, "ci95": [mean - half, mean + half]}
        print(f"{head} head, val HM K={last} - K={first}: " + ", ".join(f"{d:+.2f}" for d in diffs) +
              f"; mean {mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] (95% t interval over {len(diffs)} bases)")
    return out


if __name__ == "__main__":
    sys.exit(main())
