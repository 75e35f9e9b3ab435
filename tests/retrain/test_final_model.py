"""The final model of a run: the validated best candidate, guard first, ties by preference."""

import json

import torch

from nolb.retrain.final_model import FinalChoice, choose_final, write_final_model
from nolb.retrain.scoring import Criterion


def one_hot_logits(predictions, num_classes=2):
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float() * 5


LABELS = torch.tensor([0, 0, 0, 1])


def test_highest_validation_hm_wins_and_ties_go_to_the_preferred_candidate():
    scores = {"base": one_hot_logits([0, 0, 0, 0]),      # recall (1, 0): HM ~ 0
              "paper": one_hot_logits([0, 0, 1, 1]),     # recall (2/3, 1)
              "ensemble": one_hot_logits([0, 1, 1, 1]),  # recall (1/3, 1)
              "nolb": one_hot_logits([0, 0, 1, 1])}      # same as paper: nolb is preferred
    choice = choose_final(scores, LABELS, Criterion(2))
    assert choice.candidate == "nolb" and "paper" in choice.reason
    assert choice.val["paper"]["hm"] == choice.val["nolb"]["hm"] == 2 / (1.5 + 1)


def test_the_accuracy_guard_comes_before_hm():
    scores = {"base": one_hot_logits([0, 0, 0, 0]), "nolb": one_hot_logits([0, 1, 1, 1])}
    guarded = Criterion(2, soft=True, accuracy_floor=0.7)  # base accuracy 0.75 passes, nolb 0.5 fails
    assert choose_final(scores, LABELS, guarded).candidate == "base"
    assert choose_final(scores, LABELS, Criterion(2)).candidate == "nolb"


def test_final_model_json_names_the_files(tmp_path):
    for candidate, files in (("nolb", {"model", "head"}), ("ensemble", {"ensemble"}), ("base", {"model"})):
        write_final_model(tmp_path, FinalChoice(candidate, "why", "rule"), "checkpoints/best.json")
        record = json.loads((tmp_path / "final_model.json").read_text())
        assert record["candidate"] == candidate and set(record["files"]) == files


def test_the_ensemble_needs_a_validation_hm_lead_above_the_margin():
    labels = torch.tensor([0] * 100 + [1] * 100)

    def predictions(correct0, correct1):  # per-class recall correct_c / 100
        return one_hot_logits([0] * correct0 + [1] * (100 - correct0) + [1] * correct1 + [0] * (100 - correct1))

    def hm(r0, r1):
        return 2 / (1 / r0 + 1 / r1)

    nolb = predictions(80, 80)
    close, far = predictions(84, 80), predictions(95, 95)  # HM leads 0.0195 and 0.15 over nolb's 0.80
    assert abs(hm(0.84, 0.80) - hm(0.80, 0.80) - 0.0195) < 1e-3
    narrow = choose_final({"nolb": nolb, "ensemble": close}, labels, Criterion(2))
    assert narrow.candidate == "nolb" and "margin" in narrow.reason and "next: ensemble" in narrow.reason
    assert choose_final({"nolb": nolb, "ensemble": close}, labels, Criterion(2), ensemble_margin=0.0).candidate == "ensemble"
    assert choose_final({"nolb": nolb, "ensemble": far}, labels, Criterion(2)).candidate == "ensemble"
