"""Smoke tests of the benchmark scripts at tiny sizes: they run, and their JSON holds the figures.

The real measurements are made by running the scripts (see docs/RESULTS.md); these tests
only keep the scripts working as the library changes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest


def _read(path):
    return json.loads(path.read_text())


def test_train_throughput_smoke(tmp_path):
    import train_throughput

    out = tmp_path / "train.json"
    assert train_throughput.main(["--synthetic", "--images", "64", "--batch-size", "8", "--steps", "1", "--warmup", "1",
                                  "--repeats", "1", "--in-process", "--out", str(out)]) == 0
    result = _read(out)
    assert set(result["results"]) == set(train_throughput.VARIANTS)
    for value in result["results"].values():
        assert value["images_per_second"]["median"] > 0 and value["peak_rss_mib"] > 0
    assert result["ratios"]["nolb_over_bare_fp32"] > 0 and result["ratios"]["nolb_bf16cl_over_reference"] > 0
    assert result["provenance"]["machine"]["cpu_count"] >= 1


def test_long_tail_profile_matches_imagenet_lt_shape():
    from retrain_speed import long_tail_counts

    counts = long_tail_counts(115_846, 1000, 1280, 5)
    assert counts.sum() == 115_846 and counts.max() == 1280 and counts.min() == 5 and len(counts) == 1000


def test_retrain_speed_smoke(tmp_path):
    import retrain_speed

    out = tmp_path / "retrain.json"
    assert retrain_speed.main(["--in-process", "--synthetic", "--rows", "1500", "--epochs", "1", "--profile-steps", "2",
                               "--views", "1", "--bootstrap", "20", "--out", str(out)]) == 0
    result = _read(out)["results"]
    assert result["imagenet"]["rows"] == 1500 and result["imagenet"]["seconds"] > 0
    assert set(result["imagenet"]["profile_seconds_per_step"]) == {"gather_cast", "forward", "loss", "backward", "step"}
    cifar = result["cifar"]
    assert {"cached_k1", "online"} <= set(cifar["rows"])
    assert all(0 <= row["hm"] <= 1 for row in cifar["rows"].values())
    assert cifar["ratios"]["online_over_cached_k1_first_run"] > 0


def test_eval_speed_smoke_agrees_with_sklearn(tmp_path):
    pytest.importorskip("imblearn")
    import eval_speed

    out = tmp_path / "eval.json"
    assert eval_speed.main(["--predictions", "2000", "--classes", "50", "--bootstrap", "50", "--repeats", "1",
                            "--naive-resamples", "2", "--out", str(out)]) == 0
    result = _read(out)
    assert max(result["point_value_abs_difference"].values()) < 1e-9
    assert result["results"]["nolb_bootstrap"]["seconds"]["median"] > 0
    assert result["results"]["sklearn_bootstrap_naive"]["extrapolated"] is True


def test_gpu_recipe_runs_on_cpu_with_a_tiny_epoch_count(tmp_path):
    """The device script end to end on the CPU: carry file -> 2 bases -> stage 2 -> ensemble -> tables."""
    import gpu_carry
    import gpu_cifar10_lt

    carry = tmp_path / "carry"
    assert gpu_carry.main(["--synthetic", "--out-dir", str(carry), "--test-per-class", "6"]) == 0
    out = tmp_path / "out"
    assert gpu_cifar10_lt.main(["--carry", str(carry / gpu_carry.CARRY_FILE), "--out", str(out), "--work-dir",
                                str(tmp_path / "work"), "--epochs", "1", "--max-steps-per-epoch", "2", "--views", "1",
                                "--eval-every", "1", "--device", "cpu", "--losses", "ce,bsce"]) == 0
    result = _read(out / "results.json")
    assert set(result["runs"]) == {"ce", "bsce"}
    for run in result["runs"].values():
        assert {"base", "GML (paper)", "ensemble", "cRT", "LWS", "tau-norm"} <= set(run["rows"])
        assert run["times_s"]["stage1_total"] > 0 and "| base |" in run["table"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, "the device tool brings back at most 8 files"
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert "## ce base" in (out / "results.md").read_text()


@pytest.mark.slow
def test_gpu_carry_of_the_real_data_fits_the_device_limit(tmp_path, shared_data):
    import gpu_carry

    if not (shared_data / "cifar10" / "train_0.npz").is_file():
        pytest.skip("shared CIFAR-10 not found")
    assert gpu_carry.main(["--out-dir", str(tmp_path)]) == 0
    path = tmp_path / gpu_carry.CARRY_FILE
    assert path.stat().st_size + gpu_carry.REPO_ALLOWANCE < gpu_carry.LIMIT_BYTES
    data = gpu_carry.load_carry(path)
    assert data.class_counts.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert len(data.val) == 1000 and len(data.test) == 5000
    assert np.bincount(data.test.labels.numpy()).tolist() == [500] * 10


def test_stage1_vs_plain_smoke(tmp_path):
    import stage1_vs_plain

    out = tmp_path / "stage1.json"
    assert stage1_vs_plain.main(["--synthetic", "--steps", "small_cnn=1,resnet32=1", "--warmup", "1", "--repeats", "1",
                                 "--rounds", "1", "--breakdown", "--out", str(out)]) == 0
    result = _read(out)
    assert [c["model"] for c in result["cases"]] == ["small_cnn", "resnet32"]
    for case in result["cases"]:
        assert set(case["images_per_cpu_second"]) == {"reference_fp32", "reference_fp32_cl", "nolb"}
        assert case["ratio_nolb_over_reference"] > 0
        assert set(case["breakdown"]["per_step_s"]) == {"data", "forward", "loss_check", "backward", "optimizer"}
        assert sum(case["breakdown"]["epoch_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["peak_rss_mib"] > 0


def test_plain_loop_crop_matches_a_per_image_loop():
    """The reference's batched crop equals cropping each zero-padded image at the same offsets."""
    import torch

    import stage1_vs_plain

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    loop = stage1_vs_plain.PlainLoop(torch.nn.Conv2d(3, 1, 1), images, torch.arange(6), batch_size=6, lr=0.1, momentum=0.0,
                                     weight_decay=0.0, mean=(0.0,) * 3, std=(1 / 255,) * 3, padding=2, flip=False,
                                     channels_last=False)
    torch.manual_seed(5)
    x, y = loop.batch()
    torch.manual_seed(5)
    dy, dx = torch.randint(0, 5, (6,)), torch.randint(0, 5, (6,))
    idx = loop.order[:6]
    for k in range(6):
        padded = torch.nn.functional.pad(images[idx[k]].float(), (2, 2, 2, 2))
        expected = padded[:, dy[k]:dy[k] + 8, dx[k]:dx[k] + 8]
        assert torch.allclose(x[k], expected)
    assert torch.equal(y, idx)


def test_extract_dtype_quality_smoke(tmp_path):
    import extract_dtype_quality

    out = tmp_path / "quality.json"
    assert extract_dtype_quality.main(["--synthetic", "--seeds", "0", "--epochs", "1", "--bootstrap", "20",
                                       "--out", str(out)]) == 0
    result = _read(out)
    assert [r["extract_dtype"] for r in result["rows"]] == ["float32", "bfloat16"]
    assert all(0 <= r["val"]["hm"] <= 1 and r["extract_cpu_seconds"] > 0 for r in result["rows"])
    assert result["feature_difference"][0]["max_abs"] > 0  # bf16 really ran


def test_stage2_extract_profile_smoke(tmp_path):
    import stage2_extract_profile

    out = tmp_path / "profile.json"
    assert stage2_extract_profile.main(["--synthetic", "--images", "60", "--repeats", "1", "--out", str(out)]) == 0
    result = _read(out)
    assert result["images"] == 60 and len(result["median_cpu_seconds"]) == 7
    assert all(v > 0 for v in result["ratios"].values())


def test_cpu_recipes_smoke(tmp_path):
    import cpu_recipes

    out = tmp_path / "recipes.json"
    cpu_recipes.main(["--recipe", "digits_lt", "--variants", "w16-d1-e15", "--seeds", "0", "--set", "train.epochs=1",
                      "--runs", str(tmp_path / "runs"), "--out", str(out)])
    result = _read(out)
    (row,) = result["rows"]
    assert row["variant"] == "w16-d1-e15" and row["overrides"][-1] == "train.epochs=1" and row["cpu_seconds"] > 0
    assert set(row["val"]) == {"am", "hm", "gm", "lowest", "accuracy"} and result["split"] == "validation"
    assert result["means"]["w16-d1-e15"]["seeds"] == 1
    assert json.loads((tmp_path / "runs" / "w16-d1-e15_s0" / "metrics.json").read_text())["epochs"] == 1


def test_stage2_views_summary_is_a_paired_t_interval():
    from stage2_views import summarize

    def row(run, k, nolb_hm, cpu):
        return {"run": run, "views": k, "cpu_s": cpu, "nolb": {"val": {"hm": nolb_hm}}, "paper": {"val": {"hm": 0.5}}}

    rows = [row("a", 1, 0.70, 10), row("a", 4, 0.71, 20), row("b", 1, 0.70, 12), row("b", 4, 0.72, 22),
            row("c", 1, 0.70, 14), row("c", 4, 0.73, 24)]
    summary = summarize(rows, [1, 4])
    nolb = summary["nolb"]
    assert nolb["val_hm_diffs"] == pytest.approx([1.0, 2.0, 3.0]) and nolb["mean"] == pytest.approx(2.0)
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) with t = 4.3027 from a t table
    assert nolb["ci95"] == pytest.approx([2 - 4.3027 / 3 ** 0.5, 2 + 4.3027 / 3 ** 0.5], abs=1e-3)
    assert summary["paper"]["mean"] == 0.0 and summary["cpu_s"] == {"1": 12, "4": 22} and summary["bases"] == 3
