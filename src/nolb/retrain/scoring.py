"""Validation scores used to choose settings: HM first, ties broken by AM.

Per-class recall ``R_c`` from the arg-max prediction; ``HM = C / sum_c 1/R'_c`` with
``R'_c = max(R_c, zero_recall)`` (METHOD.md section 2; the same correction as
``nolb.metrics``).  Computed in torch from logits so that a selection loop over many
candidates stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nolb.errors import NolbError


@dataclass(frozen=True, order=True)
class ValScore:
    """Ordered by (hm, am): the larger, the better.  ``lowest``/``accuracy`` are carried along."""

    hm: float
    am: float
    lowest: float = 0.0
    accuracy: float = 0.0

    def to_dict(self) -> dict:
        return {"hm": self.hm, "am": self.am, "lowest": self.lowest, "accuracy": self.accuracy}


def per_class_recall(logits_or_pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) float64 recall of each class; a class without validation samples raises."""
    pred = logits_or_pred.argmax(1) if logits_or_pred.dim() == 2 else logits_or_pred
    labels = labels.long()
    counts = torch.bincount(labels, minlength=num_classes).double()
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten()[:5].tolist()
        raise NolbError(f"validation split: classes {missing} have no sample; cannot score per-class recall")
    correct = torch.bincount(labels[pred == labels], minlength=num_classes).double()
    return correct / counts


def validation_score(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, zero_recall: float = 1e-3
) -> ValScore:
    """Score predictions on a validation split.

    Args:
        logits: (N, C) scores (or (N,) predicted labels).
        labels: (N,) true labels.
        num_classes: C.
        zero_recall: the value a zero recall takes in the harmonic mean.

    Returns:
        ValScore(hm, am, lowest, accuracy).
    """
    recall = per_class_recall(logits, labels, num_classes)
    hm = num_classes / float((1.0 / recall.clamp_min(zero_recall)).sum())
    pred = logits.argmax(1) if logits.dim() == 2 else logits
    accuracy = float((pred == labels).double().mean())
    return ValScore(hm=hm, am=float(recall.mean()), lowest=float(recall.min()), accuracy=accuracy)


@torch.no_grad()
def head_logits(head: torch.nn.Module, features: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Logits of ``head`` on (N, D) features of any float dtype, in float32 batches."""
    head.eval()
    outputs = [head(features[i : i + batch_size].float()) for i in range(0, features.shape[0], batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)
