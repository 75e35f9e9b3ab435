"""The fast paths of stage-2 head training: they must not change what is learned.

* the fp32 loop of ``fit_head`` (fused SGD, a converted and remembered pool, index_select,
  a thread policy) gives the same head, up to float rounding, as the straightforward loop;
* the opt-in bf16 matmul gives the same predictions / validation HM within a tolerance;
* the pool cache converts once, follows in-place changes and forgets dead tensors.
"""

import copy
import gc
import math

import pytest
import torch

from nolb.errors import NolbError
from nolb.losses import build_loss
from nolb.retrain import _pool
from nolb.retrain.heads import train_head
from nolb.retrain.settings import HeadSettings
from nolb.retrain.head_training import cosine_lr, epoch_indices, fit_head
from nolb.retrain.scoring import head_logits, validation_score
from retrain_synthetic import head_biased_classifier, long_tailed_problem


def naive_fit(module, features, labels, loss_fn, *, num_classes, epochs, batch_size, lr, weight_decay, seed):
    """The plain loop: SGD (for-loop), per-batch fancy indexing and float32 conversion."""
    draws = features.shape[0]
    total_steps = epochs * math.ceil(draws / batch_size)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, foreach=False)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        order = epoch_indices(labels, draws, "instance", num_classes, generator)
        for start in range(0, draws, batch_size):
            index = order[start : start + batch_size]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, step, total_steps)
            loss = loss_fn(module(features[index].float()), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return module


@pytest.fixture(scope="module")
def problem():
    train, val, test, counts, means = long_tailed_problem(dim=16, seed=3)
    return train, val, test, counts, head_biased_classifier(means, counts)


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_fast_fp32_loop_matches_the_naive_loop(problem, threads):
    train, _, _, counts, biased = problem
    features = train.features.half()  # what the cache stores
    options = dict(num_classes=counts.numel(), epochs=3, batch_size=32, lr=0.05, weight_decay=2e-4, seed=5)
    loss = build_loss("gml", counts)
    expected = naive_fit(copy.deepcopy(biased), features, train.labels, loss, **options)
    before = torch.get_num_threads()
    fit = fit_head(copy.deepcopy(biased), features, train.labels, loss, num_threads=threads, **options)
    assert torch.get_num_threads() == before  # the thread setting is restored
    torch.testing.assert_close(fit.module.weight, expected.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fit.module.bias, expected.bias, rtol=1e-4, atol=1e-5)


def test_bf16_matmul_keeps_predictions_and_hm(problem):
    train, val, test, counts, biased = problem
    settings = HeadSettings(method="gml", lr=0.05, epochs=4, batch_size=32)
    fp32 = train_head(settings, train, counts, biased, val)
    bf16 = train_head(HeadSettings(**{**settings.to_dict(), "matmul_dtype": "bfloat16"}), train, counts, biased, val)
    assert bf16.head.weight.dtype == torch.float32  # master weights stay float32
    torch.testing.assert_close(bf16.head.weight, fp32.head.weight, rtol=0.0, atol=2e-2)
    z32, z16 = head_logits(fp32.head, test.features), head_logits(bf16.head, test.features)
    agreement = float((z32.argmax(1) == z16.argmax(1)).double().mean())
    assert agreement >= 0.98
    hm32 = validation_score(z32, test.labels, counts.numel()).hm
    hm16 = validation_score(z16, test.labels, counts.numel()).hm
    assert abs(hm32 - hm16) <= 0.02
    # and GML still beats the head-biased classifier with the bf16 path
    assert hm16 > validation_score(head_logits(biased, test.features), test.labels, counts.numel()).hm


def test_unknown_matmul_dtype_is_a_clear_error(problem):
    train, _, _, counts, biased = problem
    with pytest.raises(NolbError, match="matmul_dtype"):
        fit_head(copy.deepcopy(biased), train.features, train.labels, build_loss("ce", counts),
                 num_classes=counts.numel(), epochs=1, batch_size=32, lr=0.1, matmul_dtype="float16")


def test_pool_cache_converts_once_and_follows_changes():
    _pool.clear_cache()
    source = torch.randn(50, 4).half()
    first = _pool.working_copy(source)
    assert first.dtype == torch.float32 and first.is_contiguous()
    assert _pool.working_copy(source) is first  # remembered
    assert torch.equal(first, source.float())
    source[0, 0] = 7.0  # in-place change: converted again
    again = _pool.working_copy(source)
    assert again is not first and again[0, 0].item() == 7.0
    already = torch.randn(5, 3)
    assert _pool.working_copy(already) is already  # contiguous float32: no copy
    del source, first, again
    gc.collect()
    assert _pool._CACHE == []  # a dead source is forgotten


def test_bf16_autocast_path_for_other_modules_matches_fp32(problem):
    """LWS is not an nn.Linear: it goes through CPU bf16 autocast and stays close to fp32."""
    train, val, test, counts, biased = problem
    settings = HeadSettings(method="lws", lr=0.05, epochs=3, batch_size=32, sampler="class_balanced")
    fp32 = train_head(settings, train, counts, biased, val)
    bf16 = train_head(HeadSettings(**{**settings.to_dict(), "matmul_dtype": "bfloat16"}), train, counts, biased, val)
    z32, z16 = head_logits(fp32.head, test.features), head_logits(bf16.head, test.features)
    assert float((z32.argmax(1) == z16.argmax(1)).double().mean()) >= 0.98
    assert abs(fp32.val_score.hm - bf16.val_score.hm) <= 0.02
