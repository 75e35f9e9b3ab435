"""How stage 2 runs the frozen backbone: CPU chunks, channels-last and bf16 change speed, not the features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nolb.errors import NolbError
from nolb.models import build_model
from nolb.retrain import inference
from nolb.retrain.backbone import split_classifier
from nolb.retrain.inference import CPU_CHUNK, backbone_features, resolve_extract_dtype
from nolb.retrain.ranks import sharded_batches
from nolb.engine.distributed import DistInfo


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = build_model("resnet32", 10).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as in a trained model
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    backbone, _ = split_classifier(model)
    return model, backbone


def test_chunked_channels_last_features_equal_the_models_forward(resnet):
    model, backbone = resnet
    x = torch.randn(CPU_CHUNK + 7, 3, 32, 32)  # one full chunk and a short one
    with torch.no_grad():
        expected = model.forward_features(x)
    got = backbone_features(backbone, x)
    assert got.dtype == torch.float32 and got.shape == (len(x), 64) and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # float32 rounding only
    assert not got.requires_grad
    # the chunk size changes nothing but speed: per-image features (eval-mode BatchNorm)
    torch.testing.assert_close(backbone_features(backbone, x, chunk=5), got, rtol=1e-5, atol=1e-5)
    exact = backbone_features(backbone, x, channels_last=False, chunk=len(x))
    assert torch.equal(exact, expected)  # the whole batch, NCHW, float32: bit for bit the model's forward


def test_bf16_features_are_bf16_rounded_float32(resnet):
    model, backbone = resnet
    x = torch.randn(20, 3, 32, 32)
    with torch.no_grad():
        expected = model.forward_features(x)
    got = backbone_features(backbone, x, dtype="bfloat16")
    assert got.dtype == torch.float32
    assert not torch.equal(got, expected)  # really computed in bf16
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 0.05 * scale  # ~2-3 significant digits through 31 layers


def test_a_backbone_that_does_not_return_features_is_refused():
    with pytest.raises(NolbError, match="expected \\(N, D\\)"):
        backbone_features(torch.nn.Identity(), torch.randn(2, 3, 4, 4))


def test_resolve_extract_dtype(monkeypatch):
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: True)
    assert resolve_extract_dtype("auto", "cpu") == "bfloat16"
    assert resolve_extract_dtype("auto", "cuda") == "float32"  # accelerators: the model's own precision
    assert resolve_extract_dtype("float32", "cpu") == "float32"
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: False)
    assert resolve_extract_dtype("auto", "cpu") == "float32"
    assert resolve_extract_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(NolbError, match="retrain.extract_dtype"):
        resolve_extract_dtype("float16", "cpu")


class _Batches:
    """A loader of fixed batches (no set_epoch)."""

    def __init__(self, xs, ys):
        self.xs, self.ys = xs, ys

    def __len__(self):
        return len(self.xs)

    def __iter__(self):
        return iter(zip(self.xs, self.ys))


def test_sharded_batches_fast_and_exact_paths(resnet):
    model, backbone = resnet
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(n, 3, 32, 32, generator=g) for n in (CPU_CHUNK * 2 + 1, 3)]
    ys = [torch.randint(0, 10, (len(x),), generator=g) for x in xs]
    with torch.no_grad():
        expected = torch.cat([model.forward_features(x) for x in xs])

    def run(**kwargs):
        out = list(sharded_batches(backbone, _Batches(xs, ys), views=1, device=torch.device("cpu"),
                                   info=DistInfo(), desc="t", **kwargs))
        return torch.from_numpy(np.concatenate([f for f, _ in out])), np.concatenate([y for _, y in out])

    exact, labels = run(dtype=torch.float32)
    assert torch.equal(exact, expected) and np.array_equal(labels, torch.cat(ys).numpy())
    fast, _ = run(dtype=torch.float16, fast=True)
    assert fast.dtype == torch.float16
    torch.testing.assert_close(fast.float(), expected, rtol=1e-3, atol=1e-3)  # float16 storage
    bf16, _ = run(dtype=torch.float16, fast=True, compute_dtype="bfloat16")
    assert (bf16.float() - expected).abs().max() <= 0.05 * expected.abs().max()


def test_extract_dtype_is_part_of_the_training_cache_fingerprint():
    from nolb.data import build_data
    from nolb.retrain.feature_source import FeatureSource

    data = build_data("digits_lt", imbalance_ratio=20)
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, in_channels=1, width=8).eval()
    fp32 = FeatureSource(model, data, extract_dtype="float32")
    bf16 = FeatureSource(model, data, extract_dtype="bfloat16")
    assert fp32.fingerprint("train") != bf16.fingerprint("train")  # a cache of the other precision is rebuilt
    assert fp32.fingerprint("val") == bf16.fingerprint("val")  # validation/test: always exact float32
    assert bf16.compute_dtype("train") == "bfloat16" and bf16.compute_dtype("test") == "float32"
    train32, train16 = fp32.split("train").features.float(), bf16.split("train").features.float()
    assert not torch.equal(train32, train16)
    assert (train16 - train32).abs().max() <= 0.05 * train32.abs().max()
    assert torch.equal(fp32.split("val").features, bf16.split("val").features)
