import torch

from nolb.metrics import recall_report
from nolb.retrain.scoring import validation_score


def test_validation_score_matches_recall_report():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(6).repeat_interleave(torch.tensor([5, 9, 3, 7, 4, 6]))
    logits = torch.randn(len(labels), 6, generator=generator)
    logits[torch.arange(len(labels)), labels] += 0.8
    logits[labels == 2, 2] = -10  # a zero-recall class exercises the correction
    score = validation_score(logits, labels, 6)
    reference = recall_report(labels.numpy(), logits.numpy(), num_classes=6)
    assert abs(score.hm - reference.hm) < 1e-12
    assert abs(score.am - reference.am) < 1e-12
    assert abs(score.lowest - reference.lowest) < 1e-12
    assert abs(score.accuracy - reference.accuracy) < 1e-12
