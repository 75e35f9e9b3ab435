"""Write ../shared/data/cifar10 (npz chunks) as the official ``cifar-10-batches-py`` layout.

The same construction as the test suite and the benchmarks (``benchmarks/common.py``:
fixed permutation, ``nolb.data.write_cifar10_batches``).
Usage: python experiments/make_cifar10_batches.py [DEST_ROOT]  (default data/cifar10)
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import common  # noqa: E402


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "data" / "cifar10"
    root = common.cifar10_pickle_root(dest)
    print(f"{root}/cifar-10-batches-py ready")


if __name__ == "__main__":
    main()
