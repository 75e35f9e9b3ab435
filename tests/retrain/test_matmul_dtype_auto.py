"""retrain.matmul_dtype=auto: bf16 only for large heads on CPUs with native bf16; small heads stay float32."""

from __future__ import annotations

import torch
from torch import nn

from nolb.config import load_config
from nolb.retrain import head_training
from nolb.retrain.head_training import SMALL_HEAD_MACS, fit_head, resolve_matmul_dtype


def test_explicit_values_are_kept(monkeypatch):
    monkeypatch.setattr(head_training, "cpu_has_native_bf16", lambda: True)
    assert resolve_matmul_dtype("float32", 10 * SMALL_HEAD_MACS) == "float32"
    assert resolve_matmul_dtype("bfloat16", 1) == "bfloat16"


def test_auto_follows_head_size_and_cpu(monkeypatch):
    monkeypatch.setattr(head_training, "cpu_has_native_bf16", lambda: True)
    assert resolve_matmul_dtype("auto", SMALL_HEAD_MACS) == "bfloat16"
    assert resolve_matmul_dtype("auto", SMALL_HEAD_MACS - 1) == "float32"
    monkeypatch.setattr(head_training, "cpu_has_native_bf16", lambda: False)
    assert resolve_matmul_dtype("auto", 100 * SMALL_HEAD_MACS) == "float32"


def test_the_default_is_auto():
    assert load_config().retrain.matmul_dtype == "auto"


def test_auto_on_a_small_head_is_exactly_float32():
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(200, 16, generator=g), torch.randint(0, 4, (200,), generator=g)

    def fit(dtype):
        torch.manual_seed(0)
        head = nn.Linear(16, 4)
        fit_head(head, feats, labels, nn.CrossEntropyLoss(), num_classes=4, epochs=2, batch_size=32, lr=0.1,
                 matmul_dtype=dtype)
        return head.weight.detach().clone()

    assert torch.equal(fit("auto"), fit("float32"))
