"""Write /work/shared/data/cifar10 (npz chunks) as the official ``cifar-10-batches-py`` layout.

Re-uses the code of tests/conftest.py's ``cifar10_root`` fixture (same fixed permutation,
same pickles), by calling the undecorated fixture function.
Usage: python experiments/make_cifar10_batches.py [DEST_ROOT]  (default data/cifar10)
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import conftest  # noqa: E402


class _Factory:
    def __init__(self, dest: Path):
        self.dest = dest

    def mktemp(self, name: str) -> Path:
        self.dest.mkdir(parents=True, exist_ok=True)
        return self.dest


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "data" / "cifar10"
    if (dest / "cifar-10-batches-py" / "test_batch").is_file():
        print(f"{dest}/cifar-10-batches-py exists")
        return
    fixture = conftest.cifar10_root
    fn = getattr(fixture, "__wrapped__", None) or getattr(fixture, "_get_wrapped_function", lambda: None)()
    if fn is None:
        fn = fixture.__pytest_wrapped__.obj
    root = fn(REPO.parent / "shared" / "data", _Factory(dest))
    print(f"wrote {root}/cifar-10-batches-py")


if __name__ == "__main__":
    main()
