import dataclasses

import pytest
import torch

from nolb.config_stages import EnsembleConfig, RetrainConfig
from nolb.errors import NolbError
from nolb.retrain.heads import train_head
from nolb.retrain.scoring import Criterion, ValScore, head_logits, soft_scores, validation_score
from nolb.retrain.selection import baseline_candidates, nolb_candidates, select_head, spread
from nolb.retrain.settings import HeadSettings
from retrain_synthetic import head_biased_classifier, long_tailed_problem

BASE = HeadSettings(epochs=4, batch_size=64)
GRID = RetrainConfig(select_prior_strengths=[0.0, 1.0], select_lrs=[0.02, 0.2], select_samplers=["instance"])
CANDIDATES = nolb_candidates(BASE, GRID)


def test_selection_keeps_the_candidate_with_the_best_validation_hm():
    train, val, _, counts, means = long_tailed_problem()
    original = head_biased_classifier(means, counts)
    rule = Criterion(int(counts.numel()), soft=False)
    selection = select_head(CANDIDATES, train, val, counts, original, rule)
    naive = []
    for index, (tau, lr) in enumerate([(t, lr) for t in (0.0, 1.0) for lr in (0.02, 0.2)]):
        settings = dataclasses.replace(BASE, prior_strength=tau, lr=lr)
        trained = train_head(settings, train, counts, original, val, criterion=rule)
        naive.append(((trained.val_score.hm, trained.val_score.am, -index), trained))
    best = max(naive, key=lambda item: item[0])[1]
    assert selection.best.settings == best.settings
    assert torch.equal(selection.best.head.weight, best.head.weight)
    assert len(selection.table) == 4


def test_accuracy_floor_excludes_candidates_below_it():
    train, val, _, counts, means = long_tailed_problem()
    original = head_biased_classifier(means, counts)
    num_classes = int(counts.numel())
    free = select_head(CANDIDATES, train, val, counts, original, Criterion(num_classes, soft=False))
    accuracies = sorted(row["accuracy"] for row in free.table)
    # a base whose accuracy only the top candidate(s) reach within the tolerance
    floor_base = ValScore(hm=0.0, am=0.0, accuracy=accuracies[-1])
    constrained = select_head(CANDIDATES, train, val, counts, original,
                              Criterion.named("hm", num_classes, floor_base, 0.0))
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
    rule = Criterion.named("soft_hm", int(counts.numel()), base_score, 0.01)
    selection = select_head(CANDIDATES, train, val, counts, original, rule)
    assert "soft HM" in selection.best.details["selection_criterion"]
    feasible = [row for row in selection.table if row["feasible"]] or selection.table
    best_row = max(feasible, key=lambda row: (row["rank_hm"], row["rank_am"]))
    head = selection.best.head
    assert soft_scores(head_logits(head, val.features), val.labels, int(counts.numel()))[0] == best_row["rank_hm"]
    assert selection.best.settings.prior_strength == best_row["prior_strength"]
    assert selection.best.settings.lr == best_row["lr"]
    assert selection.best.val_score.hm > base_score.hm


def test_unknown_selection_criterion_is_refused():
    with pytest.raises(NolbError, match="criterion"):
        Criterion.named("accuracy", 3)


def test_baselines_get_as_many_candidates_as_the_nolb_head():
    config = RetrainConfig()
    nolb = nolb_candidates(BASE, config)
    for method in ("crt", "lws"):
        grid = baseline_candidates(method, BASE, config)
        assert len(grid) == len(nolb) == 12
        assert {s.method for s in grid} == {method}
        reach = 10.0 if method == "lws" else 1.0
        assert min(s.lr for s in grid) == min(config.select_lrs)
        assert max(s.lr for s in grid) == pytest.approx(max(config.select_lrs) * reach)
    assert len(baseline_candidates("tau_norm", BASE, config)) == 1
    assert spread([0.02, 0.1], 3) == pytest.approx([0.02, (0.02 * 0.1) ** 0.5, 0.1], rel=1e-2)  # 3 digits
    assert spread([0.1], 4) == [0.1]


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
    heads = {key: head.head for key, head in stage2.heads.items()}
    stage3 = run_stage3(source, heads, EnsembleConfig(temperature_grid=[0.5, 1.0]), stage2.criterion)
    choice, ensemble = stage3.temperatures, stage3.ensemble
    assert choice is not None and (ensemble.t1, ensemble.t2) == (choice.t1, choice.t2)
    assert stage3.final.candidate in ("base", "paper", "nolb", "ensemble") and set(stage3.final.val) >= {"base", "nolb"}
    with pytest.raises(AssertionError, match="test split was read"):
        source.split("test")


def test_config_selection_keys_are_checked_and_reach_the_head_settings():
    from nolb.config import apply_overrides, load_config

    config = load_config("digits_lt")
    for key, value in (("retrain.select_criterion", "argmax"), ("retrain.matmul_dtype", "float16"),
                       ("retrain.loss_options", "{aggregate: nope}"), ("retrain.loss_options", "{tau: 1}")):
        with pytest.raises(NolbError, match=key.replace(".", r"\.")):
            apply_overrides(config, [f"{key}={value}"])
    tuned = apply_overrides(config, ["retrain.matmul_dtype=bfloat16", "retrain.loss_options.aggregate=log_then_mean",
                                     "retrain.loss_options.power=2.0"])
    settings = HeadSettings.from_config(tuned.retrain)
    assert settings.matmul_dtype == "bfloat16"
    assert settings.loss_options == {"aggregate": "log_then_mean", "power": 2.0}
    assert HeadSettings.from_config(config.retrain).matmul_dtype == "auto"  # the default (issue 16)
    assert all(c.loss_options == settings.loss_options for c in nolb_candidates(settings, tuned.retrain))
