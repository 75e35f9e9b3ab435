"""Atomic, fsync'ed writes and safe reads.

Every file nolb produces (checkpoints, feature caches, reports, plots) goes through
:func:`atomic_write`: the data is written to a temporary file in the same folder, flushed
and fsync'ed, then renamed over the destination.  A kill at any moment leaves either the
old file or the new one, never a truncated one.  Only regular files are ever replaced (a
folder, device node or FIFO at the destination is refused); :func:`check_output_target`
checks a user-named output before any work and :func:`publish_together` makes several
outputs appear all together or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from nolb.errors import NolbError


def _file_mode() -> int:
    """The permissions ``open()`` gives a new file (0o666 minus the umask); mkstemp uses 0o600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _refuse_non_regular(path: Path) -> None:
    """NolbError when ``path`` exists as anything but a regular file or a symlink (a folder,
    a device node, a FIFO, a socket): renaming over it would destroy it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise NolbError(f"{path}: a parent of this path is a file, not a folder") from None
    if stat.S_ISDIR(mode):
        raise NolbError(f"{path}: is a folder; nolb writes only regular files")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise NolbError(f"{path}: is not a regular file (a device, FIFO or socket); nolb will not replace it")


def check_output_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check, before any work, that a user-named output ``path`` may be written.

    Accepted: a new path in a folder that exists (or can be made) and is writable, or, with
    ``overwrite``, an existing regular file.  Refused in one line: a folder, a symlink, a
    device node or other special file, an existing file without ``overwrite``, a path whose
    parent is a file, an unwritable folder.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    _refuse_non_regular(path)
    if path.is_symlink():
        raise NolbError(f"{path}: is a symbolic link; give the real file (nolb replaces only regular files)")
    if path.exists() and not overwrite:
        raise NolbError(f"{path}: already exists (pass --overwrite to replace it)")
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NolbError(f"{path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NolbError(f"{path}: folder {folder} is not writable")
    return path


@contextlib.contextmanager
def publish_together(paths: list[str | os.PathLike]) -> Iterator[list[Path]]:
    """All-or-nothing outputs: yield one temporary path per destination (same folder); when the
    block succeeds every temporary file is renamed over its destination, else all are removed.

    Example::

        with publish_together([json_path, png_path]) as (tmp_json, tmp_png):
            write_json(tmp_json, ...); plot(..., tmp_png)
    """
    finals = [Path(p) for p in paths]
    temps = []
    try:
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            # the final suffix is kept: figure writers choose the format from it
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent)
            os.close(fd)
            temps.append(Path(tmp))
        yield temps
        for final in finals:
            _refuse_non_regular(final)
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
            _fsync_dir(final.parent)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    path = Path(path)
    _refuse_non_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            os.fchmod(handle.fileno(), _file_mode())
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _refuse_non_regular(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def to_json(obj: Any) -> str:
    """JSON text with numpy/torch values converted and NaN refused."""
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, to_json(obj))


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise NolbError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NolbError(f"{path}: not valid JSON ({exc})") from None


def save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file (tensors are made contiguous and moved to the CPU)."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    write_bytes(path, save(clean, metadata=metadata))


def load_safetensors(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """Read a safetensors file; a missing, truncated or corrupt file raises NolbError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise NolbError(f"{path}: no such checkpoint file")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises several types for bad files
        raise NolbError(f"{path}: unreadable or truncated safetensors file ({one_line_exc(exc)})") from None
    return tensors, metadata


def safe_torch_load(path: str | os.PathLike) -> Any:
    """Read a foreign ``.pth``/``.th``/``.pt`` file with ``weights_only=True``: no code is unpickled."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise NolbError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _looks_truncated(exc):
            raise NolbError(f"{path}: unreadable or truncated checkpoint ({_unpickling_detail(exc)})") from None
        raise NolbError(
            f"{path}: refused to load: the file asks to run or build objects that are not plain "
            f"tensors ({_unpickling_detail(exc)}); nolb never unpickles code"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise NolbError(f"{path}: unreadable or truncated checkpoint ({one_line_exc(exc)[:200]})") from None


def _looks_truncated(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "truncated" in text or "ran out of input" in text or "eof" in text


def _unpickling_detail(exc: BaseException) -> str:
    """The useful part of torch's weights_only refusal, without its advice to retry with
    ``weights_only=False`` (which would run the file's code)."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "weights_only" not in line and "documentation" not in line
              and "trusted source" not in line]
    return (useful[0] if useful else "not a plain tensor file")[:200]


def one_line_exc(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
