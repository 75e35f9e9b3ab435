"""Validation scores and the one rule that ranks candidates on them.

Per-class recall ``R_c`` from the arg-max prediction; ``HM = C / sum_c 1/R'_c`` with
``R'_c = max(R_c, ZERO_RECALL)`` (METHOD.md section 2; the same correction as
``nolb.metrics``).  The *soft* recall of a class is the mean softmax probability of its
true label over its validation images.  :class:`Criterion` is the selection rule every
stage-2/3 choice uses (candidate heads, their epochs, baselines, tau-norm's tau, the final
model): feasibility first (validation accuracy at least the base model's minus a tolerance),
then HM, then AM, of the soft or the arg-max recall.  Computed in torch from logits so that
a selection over many candidates stays cheap.  Only validation data is ever passed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nolb.errors import NolbError
from nolb.metrics.constants import ZERO_RECALL


@dataclass(frozen=True, order=True)
class ValScore:
    """Ordered by (hm, am): the larger, the better.  ``lowest``/``accuracy`` are carried along."""

    hm: float
    am: float
    lowest: float = 0.0
    accuracy: float = 0.0

    def to_dict(self) -> dict:
        return {"hm": self.hm, "am": self.am, "lowest": self.lowest, "accuracy": self.accuracy}


def _class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).double()
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten()[:5].tolist()
        raise NolbError(f"validation split: classes {missing} have no sample; cannot score per-class recall")
    return counts


def per_class_recall(logits_or_pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) float64 recall of each class; a class without validation samples raises."""
    pred = logits_or_pred.argmax(1) if logits_or_pred.dim() == 2 else logits_or_pred
    labels = labels.long()
    counts = _class_counts(labels, num_classes)
    correct = torch.bincount(labels[pred == labels], minlength=num_classes).double()
    return correct / counts


def soft_scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                floor: float = ZERO_RECALL) -> tuple[float, float]:
    """(HM, AM) of the soft per-class recall (HM with the same ``max(R, ZERO_RECALL)`` guard)."""
    labels = labels.long()
    p_true = torch.softmax(logits.float(), 1).gather(1, labels.view(-1, 1)).flatten().double()
    counts = _class_counts(labels, num_classes)
    recall = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, p_true) / counts
    return float(num_classes / (1.0 / recall.clamp_min(floor)).sum()), float(recall.mean())


def validation_score(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, zero_recall: float = ZERO_RECALL
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


@dataclass(frozen=True)
class Criterion:
    """The selection rule: ``key(logits, labels)`` is compared lexicographically, larger wins.

    Attributes:
        num_classes: C.
        soft: rank by the soft recall's (HM, AM) (``soft_hm``) instead of the arg-max one (``hm``).
        accuracy_floor: validation accuracy a candidate needs to be feasible (the base
            model's minus ``retrain.select_acc_tolerance``); -1 makes every candidate feasible.
    """

    num_classes: int
    soft: bool = True
    accuracy_floor: float = -1.0

    @classmethod
    def named(cls, name: str, num_classes: int, base: ValScore | None = None, tolerance: float = 0.0) -> "Criterion":
        """``soft_hm`` or ``hm``, with the accuracy guard ``base.accuracy - tolerance`` when ``base`` is given."""
        if name not in ("soft_hm", "hm"):
            raise NolbError(f"retrain.select_criterion: unknown rule {name!r}, expected soft_hm or hm")
        floor = base.accuracy - tolerance if base is not None else -1.0
        return cls(num_classes, soft=name == "soft_hm", accuracy_floor=floor)

    @property
    def name(self) -> str:
        return "soft_hm" if self.soft else "hm"

    def key(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple:
        """(feasible, HM, AM) of validation ``logits``."""
        score = validation_score(logits, labels, self.num_classes)
        ranking = soft_scores(logits, labels, self.num_classes) if self.soft else (score.hm, score.am)
        return (score.accuracy >= self.accuracy_floor, *ranking)

    def head_key(self, head: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor) -> tuple:
        """:meth:`key` of a head's logits on validation ``features``."""
        return self.key(head_logits(head, features), labels)

    def describe(self) -> str:
        guard = f"val accuracy >= {self.accuracy_floor:.4f}, then " if self.accuracy_floor > -1 else ""
        return f"{guard}{'soft ' if self.soft else ''}HM, then {'soft ' if self.soft else ''}AM on validation"
