"""Child process for test_atomic_writes: writes self-checking files through nolb.io forever.

Usage: python _writer_child.py FOLDER MODE SEED.  MODE is ``bytes`` (atomic_write, slow writes),
``json`` (write_json), ``npz`` (write_npz), ``safetensors`` (save_safetensors) or ``naive``
(the same slow writes to a plain open(..., 'wb'), used to show that the checker does catch truncation).
Prints ``ready`` after its first complete file, then keeps rewriting the same file.
"""

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

folder, mode, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
SIZE = 4 << 20  # 4 MiB per file: a write takes long enough to be killed inside it


def payload(i: int) -> bytes:
    body = np.random.default_rng(seed * 1000 + i).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    return hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def main() -> None:
    from nolb import io

    target = folder / {"bytes": "out.bin", "naive": "out.bin", "json": "out.json", "npz": "out.npz",
                       "safetensors": "out.safetensors"}[mode]
    def slow_write(f, data: bytes) -> None:
        # 64 KiB at a time with a pause: most of the child's life is spent inside a write.
        for start in range(0, len(data), 1 << 16):
            f.write(data[start:start + (1 << 16)])
            f.flush()
            time.sleep(0.0005)

    payloads = [payload(0), payload(1)]
    i = 0
    while True:
        if mode == "bytes":
            with io.atomic_write(target, "wb") as f:
                slow_write(f, payloads[i % 2])
        elif mode == "naive":
            with open(target, "wb") as f:
                slow_write(f, payloads[i % 2])
        elif mode == "json":
            values = np.random.default_rng(i).standard_normal(100_000).tolist()
            io.write_json(target, {"i": i, "values": values, "sum": float(np.sum(values)), "end": True})
        elif mode == "npz":
            x = np.random.default_rng(i).standard_normal(SIZE // 8)
            io.write_npz(target, x=x, checksum=np.array(hashlib.sha256(x.tobytes()).hexdigest()))
        elif mode == "safetensors":
            import torch

            x = torch.from_numpy(np.random.default_rng(i).standard_normal(SIZE // 8))
            io.save_safetensors(target, {"x": x}, metadata={"sha256": hashlib.sha256(x.numpy().tobytes()).hexdigest()})
        if i == 0:
            print("ready", flush=True)
        i += 1


main()
