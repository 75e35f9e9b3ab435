"""``export_model(model, format, out)``: a file that runs without nolb (ONNX or torch.export).

The exported graph takes ``image`` (N, C, S, S) float32, already prepared as the
description's preprocessing says, with a dynamic batch dimension N, and returns
``probabilities`` (N, C); for an ensemble also ``original_probabilities`` and
``new_probabilities`` (each head's ``softmax(z / T)``).  Both heads and the temperature
averaging are inside the graph.  ``<out>.json`` (e.g. ``model.onnx.json``) beside the file holds the preprocessing,
the class names, the input/output names and the source model's checksum.

* ``onnx``: ``torch.onnx.export`` (dynamo exporter), checked with ``onnx.checker``;
  run it with ONNX Runtime (``onnxruntime.InferenceSession``).
* ``torch-export``: ``torch.export.export`` + ``torch.export.save``; run it with
  ``torch.export.load(path).module()(x)``.

After writing, the file is loaded back (ONNX Runtime / torch.export.load) and its outputs
compared with the native model on a batch: the largest absolute difference of
probabilities is returned (:class:`ExportResult`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nolb.deploy.classifier import AllOutputs
from nolb.errors import NolbError
from nolb.io import write_json

FORMATS = ("onnx", "torch-export")
EXTRA = "pip install 'nolb[export]'"


@dataclass
class ExportResult:
    """Where the export went and how closely it reproduces the native model."""

    path: Path
    description_path: Path
    output_names: list[str]
    max_abs_diff: float


def _require(module: str, fmt: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise NolbError(f"--format {fmt} needs the '{module}' package: {EXTRA}") from None


def output_names(is_ensemble: bool) -> list[str]:
    return ["probabilities", "original_probabilities", "new_probabilities"] if is_ensemble else ["probabilities"]


def export_model(model: Any, fmt: str, out: str | Path, *, overwrite: bool = False, check_batch: torch.Tensor | None = None,
                 ) -> ExportResult:
    """Export a model file / run directory's final model.

    Args:
        model: a model file, a run directory, or ``(module, description)`` from ``nolb.load_model``.
        fmt: ``"onnx"`` or ``"torch-export"``.
        out: the file to write (``.onnx`` / ``.pt2`` by convention); ``<out>.json`` goes beside it.
        overwrite: replace existing files.
        check_batch: prepared images for the after-export comparison (default: 3 random ones).

    Returns:
        An :class:`ExportResult`.
    """
    from nolb.deploy.model_file import load_model

    if fmt not in FORMATS:
        raise NolbError(f"--format: unknown format {fmt!r}, expected one of {', '.join(FORMATS)}")
    out = Path(out)
    description_path = out.with_name(out.name + ".json")
    for path in (out, description_path):
        if path.exists() and not overwrite:
            raise NolbError(f"{path}: exists; pass --overwrite to replace it")
    module, description = load_model(model) if not isinstance(model, tuple) else model
    wrapper = AllOutputs(module.cpu().eval()).eval()
    p = description.preprocessing
    example = torch.zeros(2, p.channels, p.input_size, p.input_size)
    names = output_names(module.is_ensemble)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        if fmt == "onnx":
            _export_onnx(wrapper, example, tmp, names)
        else:
            _export_torch(wrapper, example, tmp)
        batch = check_batch if check_batch is not None else torch.randn(3, p.channels, p.input_size, p.input_size,
                                                                         generator=torch.Generator().manual_seed(0))
        diff = compare(tmp, fmt, wrapper, batch)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    write_json(description_path, {
        "format": fmt, "file": out.name, "input": "image", "input_layout": "NCHW float32 (prepared as 'preprocessing' says)",
        "outputs": names, "preprocessing": p.to_dict(), "class_names": description.class_names,
        "train_counts": description.train_counts, "heads": description.heads, "kind": description.kind,
        "source_checksum": description.checksum, "provenance": description.provenance,
        "check": {"max_abs_diff_probabilities": diff, "batch": int(batch.shape[0])},
    })
    return ExportResult(out, description_path, names, diff)


def _export_onnx(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, names: list[str]) -> None:
    onnx = _require("onnx", "onnx")
    _require("onnxscript", "onnx")
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(wrapper, (example,), input_names=["image"], output_names=names,
                                dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def _export_torch(wrapper: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(wrapper, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


@torch.no_grad()
def run_exported(path: str | Path, fmt: str, images: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of an exported file on prepared ``images`` (ONNX Runtime or torch.export.load)."""
    if fmt == "onnx":
        ort = _require("onnxruntime", "onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [torch.from_numpy(o) for o in session.run(None, {"image": images.numpy()})]
    return list(torch.export.load(str(path)).module()(images))


@torch.no_grad()
def compare(path: Path, fmt: str, wrapper: torch.nn.Module, images: torch.Tensor) -> float:
    """Largest absolute difference between the exported and the native outputs."""
    native = wrapper(images)
    exported = run_exported(path, fmt, images)
    return max(float((a - b).abs().max()) for a, b in zip(native, exported))
