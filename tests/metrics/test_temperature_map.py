"""The (T1, T2) map, its selection rules, temperature scaling, and the analysis files."""

import json

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import log_loss

from nolb.errors import NolbError
from nolb.metrics import recall_report
from nolb.metrics.analysis_plots import plot_recall_distribution, plot_reliability
from nolb.metrics.ensemble_analysis import write_ensemble_analysis
from nolb.metrics.temperature_map import fit_temperature, select_point, temperature_map
from nolb.retrain.ensemble import ensemble_log_probs, select_temperatures

GRID = (0.5, 1.0, 2.0)


def heads(seed=0, num=300, classes=6):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(classes), rng.integers(0, classes, num - classes)])
    z1 = rng.normal(size=(num, classes)) * 2
    z1[np.arange(num), labels] += 1.5
    z1[:, 0] += 1.0  # the original head favours a head class
    z2 = rng.normal(size=(num, classes)) * 1.5
    z2[np.arange(num), labels] += 1.2
    return z1, z2, labels


@pytest.mark.parametrize("space", ["prob", "log"])
def test_every_point_matches_the_ensemble_and_the_report(space):
    z1, z2, y = heads()
    grid = temperature_map(z1, z2, y, GRID, space=space)
    for i, t1 in enumerate(GRID):
        for j, t2 in enumerate(GRID):
            log_p = ensemble_log_probs(torch.from_numpy(z1), torch.from_numpy(z2), t1, t2, space).double().numpy()
            report = recall_report(y, log_p, num_classes=6, calibration="logits")
            assert grid.values["hm"][i, j] == pytest.approx(report.hm, abs=1e-9)
            assert grid.values["lowest"][i, j] == pytest.approx(report.lowest, abs=1e-9)
            assert grid.values["am"][i, j] == pytest.approx(report.am, abs=1e-9)
            assert grid.values["ece"][i, j] == pytest.approx(report.calibration.ece, abs=1e-5)
            probs = np.exp(log_p)
            probs /= probs.sum(axis=1, keepdims=True)  # float32 ensemble: renormalise for sklearn
            assert grid.values["nll"][i, j] == pytest.approx(log_loss(y, probs, labels=range(6)), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hm_rule_is_the_rule_of_select_temperatures(seed):
    z1, z2, y = heads(seed)
    choice = select_point(temperature_map(z1, z2, y, GRID), "hm")
    theirs = select_temperatures(torch.from_numpy(z1), torch.from_numpy(z2), torch.from_numpy(y), 6, GRID)
    assert (choice.t1, choice.t2) == (theirs.t1, theirs.t2)


def test_hm_with_an_ece_bound_and_nll_rules_follow_a_brute_force_search():
    z1, z2, y = heads(3)
    grid = temperature_map(z1, z2, y, GRID)
    bound = float(np.median(grid.values["ece"]))
    choice = select_point(grid, "hm_ece", ece_bound=bound)
    admissible = [(grid.values["hm"][i, j], i, j) for i in range(3) for j in range(3) if grid.values["ece"][i, j] <= bound]
    assert choice.validation["hm"] == max(admissible)[0] and choice.validation["ece"] <= bound and not choice.note
    low = select_point(grid, "hm_ece", ece_bound=0.0)
    assert low.validation["ece"] == grid.values["ece"].min() and "lowest ECE" in low.note
    nll = select_point(grid, "nll")
    assert nll.validation["nll"] == grid.values["nll"].min()
    with pytest.raises(NolbError, match="ece_bound"):
        select_point(grid, "hm_ece")
    with pytest.raises(NolbError, match="criterion"):
        select_point(grid, "accuracy")


def test_fit_temperature_minimises_validation_nll():
    z1, _, y = heads(4)
    sharp = z1 * 3.0  # over-confident logits need T > 1
    fitted = fit_temperature(sharp, y)
    reference = minimize_scalar(lambda t: log_loss(y, _softmax(sharp / t), labels=range(6)),
                                bounds=(0.05, 50), method="bounded", options={"xatol": 1e-8}).x
    assert fitted == pytest.approx(reference, rel=1e-4) and fitted > 1
    assert fit_temperature(torch.from_numpy(sharp), torch.from_numpy(y)) == pytest.approx(fitted, rel=1e-9)


def test_analysis_writes_the_map_json_and_the_plots(tmp_path):
    val, test = heads(5), heads(6)
    counts = np.array([500, 200, 90, 40, 15, 6])
    analysis = write_ensemble_analysis(tmp_path / "ensemble", val=val, test=test, train_counts=counts,
                                       grid=GRID, criterion="hm_ece", ece_bound=0.2, bootstrap=20)
    data = json.loads((tmp_path / "ensemble" / "temperature_map.json").read_text())
    assert data["choice"]["t1"] == analysis.choice.t1 and data["choice"]["criterion"] == "hm_ece"
    assert len(data["map"]["values"]["hm"]) == 3 and set(data["temperature_scaling"]) == {"original", "retrained"}
    chosen = data["test_at_choice"]
    z1, z2, y = test
    log_p = ensemble_log_probs(torch.from_numpy(z1), torch.from_numpy(z2), analysis.choice.t1, analysis.choice.t2)
    assert chosen["hm"] == pytest.approx(recall_report(y, log_p.numpy(), num_classes=6).hm)
    assert {"ece", "nll", "brier", "classwise_ece"} <= set(chosen)
    for name in ("temperature_map.png", "reliability.png", "recall_distribution.png"):
        assert (tmp_path / "ensemble" / name).read_bytes()[:4] == b"\x89PNG"
    only_val = write_ensemble_analysis(tmp_path / "val_only", val=val, grid=GRID)
    assert not only_val.rows and not (tmp_path / "val_only" / "reliability.png").exists()


def test_recall_distribution_at_1000_classes_and_bad_suffixes(tmp_path):
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(1000), 5)
    scores = rng.normal(size=(5000, 1000)).astype(np.float32)
    scores[np.arange(5000), y] += rng.uniform(0, 4, 1000)[y]
    report = recall_report(y, scores, num_classes=1000, calibration="logits")
    plot_recall_distribution({"a": report, "b": recall_report(y, scores * 2, num_classes=1000)}, tmp_path / "d.svg")
    assert b"<svg" in (tmp_path / "d.svg").read_bytes()[:500]
    with pytest.raises(NolbError, match="cannot write a plot"):
        plot_recall_distribution({"a": report}, tmp_path / "d.gif")
    with pytest.raises(NolbError, match="no calibration"):
        plot_reliability({"b": recall_report(y, scores, num_classes=1000)}, tmp_path / "r.png")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
