"""``predict(model, inputs)``: class predictions for image files, in batches, as CSV rows.

    result = predict("runs/demo", ["photos/"], top_k=3)
    write_predictions_csv("p.csv", result)

One row per readable image: its path, the top-k class names (and indices) with their
probabilities, and for an ensemble also the top-1 class and probability of the original
head and of the re-trained head (each ``softmax(z / T)``).  A file that cannot be decoded as
an image is reported by name in ``result.skipped`` and left out; nothing stops mid-way.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from nolb.deploy.description import ModelDescription
from nolb.deploy.images import UnreadableImage, build_preprocess, collect_images, prepare_image
from nolb.errors import NolbError
from nolb.io import write_text
from nolb.progress import Progress


@dataclass
class Predictions:
    """What :func:`predict` returns.

    Attributes:
        paths: the predicted images, in input order.
        probabilities: (N, C) float32 probabilities of the model.
        head_probabilities: for an ensemble, ``{"original": (N, C), "new": (N, C)}``.
        skipped: ``(path, reason)`` of every file that could not be read.
        description: the model's :class:`ModelDescription`.
        top_k: how many classes each CSV row lists.
    """

    paths: list[Path]
    probabilities: torch.Tensor
    head_probabilities: dict[str, torch.Tensor]
    skipped: list[tuple[Path, str]]
    description: ModelDescription
    top_k: int = 5
    predicted: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.predicted = self.probabilities.argmax(dim=1) if len(self.paths) else torch.zeros(0, dtype=torch.long)

    def header(self) -> list[str]:
        cols = ["path"]
        for i in range(1, self.top_k + 1):
            cols += [f"class_{i}", f"index_{i}", f"prob_{i}"]
        if self.head_probabilities:
            cols += ["original_class", "original_prob", "new_class", "new_prob"]
        return cols

    def rows(self) -> Iterable[list[Any]]:
        names = self.description.class_names
        k = min(self.top_k, self.probabilities.shape[1])
        top_p, top_i = self.probabilities.topk(k, dim=1)
        heads = {key: value.max(dim=1) for key, value in self.head_probabilities.items()}
        for n, path in enumerate(self.paths):
            row: list[Any] = [str(path)]
            for j in range(k):
                row += [names[int(top_i[n, j])], int(top_i[n, j]), f"{float(top_p[n, j]):.6f}"]
            row += ["", "", ""] * (self.top_k - k)
            for key in ("original", "new") if heads else ():
                row += [names[int(heads[key].indices[n])], f"{float(heads[key].values[n]):.6f}"]
            yield row

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header())
        writer.writerows(self.rows())
        return buffer.getvalue()


def predict(model: Any, inputs: Iterable[str | Path], *, top_k: int = 5, batch_size: int = 64,
            device: str | torch.device = "cpu") -> Predictions:
    """Predict the class of every image under ``inputs``.

    Args:
        model: a model file or a run directory (its final model), or ``(module, description)``
            from :func:`nolb.load_model`.
        inputs: image files, folders (recursive) and list files.
        top_k: classes per row (>= 1).
        batch_size: images per forward pass.
        device: where the network runs.

    Returns:
        :class:`Predictions` (readable images only; the others in ``skipped``).
    """
    from nolb.deploy.model_file import load_model

    if top_k < 1:
        raise NolbError(f"--top-k: must be >= 1, got {top_k}")
    if batch_size < 1:
        raise NolbError(f"--batch-size: must be >= 1, got {batch_size}")
    paths = collect_images(list(inputs))
    module, description = load_model(model) if not isinstance(model, tuple) else model
    device = torch.device(device)
    module = module.to(device).eval()
    transform = build_preprocess(description.preprocessing)
    kept: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    outputs: list[list[torch.Tensor]] = []
    with Progress(total=len(paths), desc="predict", unit="image") as bar, torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            chunk, batch = paths[start:start + batch_size], []
            for path in chunk:
                try:
                    batch.append(prepare_image(path, description.preprocessing, transform))
                    kept.append(path)
                except UnreadableImage as exc:
                    skipped.append((path, str(exc)))
            if batch:
                probs = module.all_probabilities(torch.stack(batch).to(device))
                outputs.append([p.float().cpu() for p in probs])
            bar.update(len(chunk), skipped=len(skipped))
    num_classes = description.num_classes
    columns = [torch.cat(parts) for parts in zip(*outputs)] if outputs else [torch.zeros(0, num_classes)] * 3
    heads = {"original": columns[1], "new": columns[2]} if module.is_ensemble else {}
    return Predictions(kept, columns[0], heads, skipped, description, top_k=top_k)


def write_predictions_csv(path: str | Path, predictions: Predictions) -> None:
    """Write the CSV (atomically): a header and one row per predicted image."""
    write_text(path, predictions.to_csv())
