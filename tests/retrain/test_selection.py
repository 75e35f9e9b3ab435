import dataclasses

import pytest
import torch

from nolb.errors import NolbError
from nolb.retrain.config import EnsembleConfig, RetrainConfig
from nolb.retrain.head_methods import HeadSettings, train_head
from nolb.retrain.scoring import ValScore, head_logits, validation_score
from nolb.retrain.selection import select_head, soft_scores
from retrain_synthetic import head_biased_classifier, long_tailed_problem

CANDIDATES = dict(prior_strengths=(0.0, 1.0), lrs=(0.02, 0.2), samplers=("instance",))
BASE = HeadSettings(epochs=4, batch_size=64)


def test_selection_keeps_the_candidate_with_the_best_validation_hm():
    train, val, _, counts, means = long_tailed_problem()
    original = head_biased_classifier(means, counts)
    selection = select_head(BASE, train, val, counts, original, criterion="hm", **CANDIDATES)
    naive = []
    for tau in CANDIDATES["prior_strengths"]:
        for lr in CANDIDATES["lrs"]:
            settings = dataclasses.replace(BASE, prior_strength=tau, lr=lr)
            trained = train_head(settings, train, counts, original, val, early_stopping=True)
            naive.append(((trained.val_score.hm, trained.val_score.am), trained))
    best = max(naive, key=lambda item: item[0])[1]
    assert selection.best.settings == best.settings
    assert torch.equal(selection.best.head.weight, best.head.weight)
    assert len(selection.table) == 4


def test_accuracy_floor_excludes_candidates_below_it():
    train, val, _, counts, means = long_tailed_problem()
    original = head_biased_classifier(means, counts)
    free = select_head(BASE, train, val, counts, original, criterion="hm", **CANDIDATES)
    accuracies = sorted(row["accuracy"] for row in free.table)
    # a base whose accuracy only the top candidate(s) reach within the tolerance
    floor_base = ValScore(hm=0.0, am=0.0, accuracy=accuracies[-1])
    constrained = select_head(BASE, train, val, counts, original, base_val_score=floor_base, acc_tolerance=0.0,
                              criterion="hm", **CANDIDATES)
    assert constrained.best.val_score.accuracy == accuracies[-1]
    assert all(row["feasible"] == (row["accuracy"] >= accuracies[-1]) for row in constrained.table)


def test_soft_scores_match_hand_computed_values():
    labels = torch.tensor([0, 0, 1, 1])
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6]]))
    hm, am = soft_scores(logits, labels, 2)
    # soft recalls: class 0 (0.9 + 0.5) / 2 = 0.7, class 1 (0.8 + 0.6) / 2 = 0.7
    assert am == pytest.approx(0.7)
    assert hm == pytest.approx(0.7)
    hm, _ = soft_scores(torch.log(torch.tensor([[0.9, 0.1], [0.7, 0.3]])), torch.tensor([0, 1]), 2)
    assert hm == pytest.approx(2 / (1 / 0.9 + 1 / 0.3))


def test_default_soft_selection_keeps_the_best_feasible_soft_hm_and_lifts_hm():
    train, val, _, counts, means = long_tailed_problem()
    original = head_biased_classifier(means, counts)
    base_score = validation_score(head_logits(original, val.features), val.labels, int(counts.numel()))
    selection = select_head(BASE, train, val, counts, original, base_val_score=base_score, **CANDIDATES)
    assert selection.best.details["selection_criterion"] == "soft_hm"
    feasible = [row for row in selection.table if row["feasible"]] or selection.table
    best_row = max(feasible, key=lambda row: (row["soft_hm"], row["soft_am"]))
    assert selection.best.settings.prior_strength == best_row["prior_strength"]
    assert selection.best.settings.lr == best_row["lr"]
    assert selection.best.val_score.hm > base_score.hm


def test_unknown_selection_criterion_is_refused():
    train, val, _, counts, means = long_tailed_problem()
    with pytest.raises(NolbError, match="criterion"):
        select_head(BASE, train, val, counts, head_biased_classifier(means, counts), criterion="accuracy",
                    **CANDIDATES)


def test_prior_strength_outside_unit_interval_is_refused():
    train, val, _, counts, means = long_tailed_problem()
    with pytest.raises(NolbError, match=r"\[0, 1\]"):
        select_head(BASE, train, val, counts, head_biased_classifier(means, counts), prior_strengths=(1.5,))


class UnreadableSplit(torch.utils.data.Dataset):
    """A test split that fails on any access: proves a code path never reads it."""

    def __len__(self):
        raise AssertionError("the test split was read")

    def __getitem__(self, index):
        raise AssertionError("the test split was read")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AssertionError(f"the test split was read ({name})")


def test_stage2_and_temperature_selection_never_read_the_test_split():
    data_module = pytest.importorskip("nolb.data")
    models = pytest.importorskip("nolb.models")
    from nolb.retrain.feature_source import FeatureSource
    from nolb.retrain.stages import run_stage2, run_stage3

    data = data_module.build_data("digits_lt", imbalance_ratio=20)
    guarded = dataclasses.replace(data, test=UnreadableSplit())
    torch.manual_seed(0)
    model = models.build_model("small_cnn", 10, in_channels=1, width=8)
    source = FeatureSource(model, guarded, views=1, batch_size=256)
    config = RetrainConfig(epochs=2, select_prior_strengths=[0.0, 1.0], select_lrs=[0.1],
                           select_samplers=["instance"], baselines=["crt", "lws", "tau_norm"])
    stage2 = run_stage2(source, config, log=lambda line: None)
    assert set(stage2.heads) == {"paper", "nolb", "crt", "lws", "tau_norm"}
    ensemble, choice = run_stage3(source, stage2.heads["nolb"].head,
                                  EnsembleConfig(select_temperatures=True, temperature_grid=[0.5, 1.0]))
    assert choice is not None and (ensemble.t1, ensemble.t2) == (choice.t1, choice.t2)
    with pytest.raises(AssertionError, match="test split was read"):
        source.split("test")


def test_config_selection_criterion_is_checked_and_reaches_the_selection():
    from nolb.retrain.config import EnsembleConfig, RetrainConfig, check_stage_configs

    with pytest.raises(NolbError, match="retrain.select_criterion"):
        check_stage_configs(RetrainConfig(select_criterion="argmax"), EnsembleConfig())
    check_stage_configs(RetrainConfig(select_criterion="hm"), EnsembleConfig())
    import inspect

    import nolb.retrain.stages as stages

    assert "criterion=config.select_criterion" in inspect.getsource(stages)


def test_config_matmul_dtype_is_checked_and_reaches_the_head_settings():
    from nolb.retrain.config import EnsembleConfig, RetrainConfig, check_stage_configs
    from nolb.retrain.stages import settings_from_config

    with pytest.raises(NolbError, match="retrain.matmul_dtype"):
        check_stage_configs(RetrainConfig(matmul_dtype="float16"), EnsembleConfig())
    assert settings_from_config(RetrainConfig(matmul_dtype="bfloat16")).matmul_dtype == "bfloat16"
    assert settings_from_config(RetrainConfig()).matmul_dtype == "float32"
