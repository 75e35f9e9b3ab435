"""Which model a run hands over: the validated best of the candidates it built.

The candidates are the stage-1 model (``base``), the stage-2 heads on its backbone
(``nolb``, ``paper``) and the stage-3 ensemble, in that order of preference on ties.  Each
is scored on the validation split by the run's rule (:class:`~nolb.retrain.scoring.Criterion`:
the accuracy guard, then HM, then AM) on the arg-max recall: the soft recall is not
comparable between models whose temperatures differ.  The ensemble (two heads, twice the
head cost) must also lead the best other candidate on validation HM by more than
:data:`ENSEMBLE_MARGIN` (when both keep the guard); otherwise that candidate is kept.  The
margin was decided on Digits-LT, a dataset no quality claim reports (docs/QUALITY.md, "How the
selection defaults were decided": +0.3 [+0.0, +0.8] test HM over the plain maximum in 20 runs,
a borderline gain; ``python experiments/rule_development.py all``).  ``RUN/final_model.json``
records the choice for the tools that load "the model of a run":

    {"candidate": "nolb", "kind": "head",
     "files": {"model": "checkpoints/best.safetensors", "head": "retrain/heads/nolb.safetensors"},
     "rule": "...", "reason": "...", "val": {"base": {...}, "nolb": {...}, ...}}

``kind`` is ``base`` (files: model), ``head`` (files: model + head: the stage-1 model with
its classifier replaced by the head) or ``ensemble`` (files: ensemble, one file holding
backbone and both heads).  Paths are relative to the run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from nolb.io import write_json
from nolb.retrain.scoring import Criterion, validation_score

PREFERENCE = ("nolb", "ensemble", "paper", "base")
ENSEMBLE_MARGIN = 0.05  # validation HM lead the ensemble needs over the best other candidate


@dataclass
class FinalChoice:
    """The chosen candidate, why, and every candidate's validation score."""

    candidate: str
    reason: str
    rule: str
    val: dict = field(default_factory=dict)


def rank_final(scores: dict[str, dict], accuracy_floor: float = -1.0,
               ensemble_margin: float = ENSEMBLE_MARGIN) -> tuple[str, str | None, float, bool]:
    """The final-model rule on validation scores: ``(chosen, runner-up, ensemble lead, demoted)``.

    Args:
        scores: candidate name -> ``{"accuracy", "hm", "am", ...}`` on validation (arg-max recall),
            as :func:`choose_final` records them in ``final_model.json``.
        accuracy_floor: the accuracy guard (-1: none).
        ensemble_margin: the validation HM lead the ensemble needs (0: the plain maximum).

    Ranked by (guard kept, HM, AM), ties in :data:`PREFERENCE` order; an ensemble on top is
    demoted to the runner-up when both are on the same side of the guard and its HM lead is at
    most the margin (``lead`` is then that lead; ``demoted`` says it happened).
    """
    names = sorted(scores, key=lambda name: PREFERENCE.index(name) if name in PREFERENCE else len(PREFERENCE))
    keys = {name: (scores[name]["accuracy"] >= accuracy_floor, scores[name]["hm"], scores[name]["am"], -i)
            for i, name in enumerate(names)}
    ranked = sorted(names, key=keys.__getitem__, reverse=True)
    best, runner = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    lead = scores[best]["hm"] - scores[runner]["hm"] if runner is not None else 0.0
    demoted = best == "ensemble" and runner is not None and keys[runner][0] == keys[best][0] and lead <= ensemble_margin
    return (runner, best, lead, True) if demoted else (best, runner, lead, False)


def choose_final(val_scores: dict[str, torch.Tensor], labels: torch.Tensor, criterion: Criterion,
                 ensemble_margin: float = ENSEMBLE_MARGIN) -> FinalChoice:
    """The candidate :func:`rank_final` puts first on the validation scores of ``val_scores``.

    Args:
        val_scores: candidate name -> (N, C) validation logits or log-probabilities.
        labels: (N,) validation labels.
        criterion: the run's rule (its accuracy guard is kept; the ranking uses arg-max recall).
        ensemble_margin: the validation HM lead the ensemble needs (0: the plain maximum).
    """
    rule = Criterion(criterion.num_classes, soft=False, accuracy_floor=criterion.accuracy_floor)
    names = sorted(val_scores, key=lambda name: PREFERENCE.index(name) if name in PREFERENCE else len(PREFERENCE))
    scores = {name: validation_score(val_scores[name], labels, criterion.num_classes).to_dict() for name in names}
    best, runner, lead, demoted = rank_final(scores, rule.accuracy_floor, ensemble_margin)
    reason = f"best on validation: HM {scores[best]['hm']:.2%}, AM {scores[best]['am']:.2%}"
    if demoted:
        reason = (f"kept over the ensemble, whose validation HM lead {lead:.2%} is not above the margin "
                  f"{ensemble_margin:.0%}: HM {scores[best]['hm']:.2%}, AM {scores[best]['am']:.2%}")
    if runner is not None:
        reason += f" (next: {runner}, HM {scores[runner]['hm']:.2%}, AM {scores[runner]['am']:.2%})"
    if not scores[best]["accuracy"] >= rule.accuracy_floor:
        reason += "; no candidate kept the validation accuracy guard"
    margin = f"; the ensemble needs a validation HM lead above {ensemble_margin:g}" if ensemble_margin > 0 else ""
    return FinalChoice(best, reason, rule.describe() + margin, scores)


def write_final_model(run_dir: Path, choice: FinalChoice, checkpoint: str) -> Path:
    """Write ``RUN/final_model.json`` (see the module docstring) and return its path."""
    if choice.candidate == "ensemble":
        kind, files = "ensemble", {"ensemble": "ensemble/ensemble.safetensors"}
    elif choice.candidate == "base":
        kind, files = "base", {"model": checkpoint}
    else:
        kind, files = "head", {"model": checkpoint, "head": f"retrain/heads/{choice.candidate}.safetensors"}
    path = Path(run_dir) / "final_model.json"
    write_json(path, {"candidate": choice.candidate, "kind": kind, "files": files, "rule": choice.rule,
                      "reason": choice.reason, "val": choice.val})
    return path
