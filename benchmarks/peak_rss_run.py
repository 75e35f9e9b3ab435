"""Peak resident memory of one ``nolb run`` (stage 1, 2, 3 and the report) in a child process.

Runs ``python -m nolb run RECIPE [key=value ...] --out TMP --quiet`` and records the
child's wall time and peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``) with provenance.

    python benchmarks/peak_rss_run.py cifar10_lt_cpu train.epochs=1 train.max_steps_per_epoch=2 \\
        --out benchmarks/results/peak_rss_run_cifar10_lt_cpu.json
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nolb-rss-") as folder:
        cmd = [sys.executable, "-m", "nolb", "run", args.recipe, *args.overrides, "--out", str(Path(folder) / "run"),
               "--quiet"]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    result = {"provenance": common.provenance(), "recipe": args.recipe, "overrides": args.overrides,
              "wall_seconds": wall, "peak_rss_mib": peak}
    print(f"nolb run {args.recipe} {' '.join(args.overrides)}: {wall:.1f} s, peak RSS {peak:.0f} MiB")
    common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
