"""PaCoLoss against a naive per-anchor loop written from the paper's equation, plus its model wrapper.

Cui et al., ICCV 2021, eq. (PaCo loss): for query q_i with label y_i, positives are the
class centre of y_i (weight beta, logit (z_{i,y} + log pi_y) / T_sup) and every other
sample key of class y_i among the batch queries, the momentum keys and the queue (weight
alpha, logit q_i . k_j / T); the softmax runs over all centres and (gamma-weighted) sample
keys except q_i itself; the loss is the weighted mean of -log p over the positives, times
T / T_base, averaged over the batch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nolb.errors import NolbError
from nolb.losses import BalancedSoftmaxLoss, PaCoLoss, build_loss
from nolb.models import build_model
from nolb.models.paco import PaCoModel
from nolb.retrain.backbone import split_classifier


def naive_paco(logits, target, query, key, queue, queue_labels, counts, *, alpha, beta, gamma, t, t_sup, t_base):
    n, c = logits.shape
    prior = [counts[k] / sum(counts) for k in range(c)]
    contrast = [query[j] for j in range(n)] + [key[j].detach() for j in range(n)] + \
               [queue[j].detach() for j in range(queue.shape[0])]
    labels = [int(y) for y in target] * 2 + [int(y) for y in queue_labels]
    total = 0.0
    for i in range(n):
        centre = [(logits[i, k] + math.log(prior[k])) / t_sup for k in range(c)]
        samples = {j: torch.dot(query[i], contrast[j]) / t for j in range(len(contrast)) if j != i}
        denominator = sum(torch.exp(s) for s in centre) + gamma * sum(torch.exp(s) for s in samples.values())
        log_denominator = torch.log(denominator)
        numerator = beta * (centre[int(target[i])] - log_denominator)
        weight = beta
        for j, s in samples.items():
            if labels[j] == int(target[i]):
                numerator = numerator + alpha * (s - log_denominator)
                weight += alpha
        total = total - (t / t_base) * numerator / weight
    return total / n


def _batch(seed, n=5, c=3, d=4, k=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, c, (n,), generator=g)
    target[:c] = torch.arange(c)
    raw_query = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    key = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    queue_labels = torch.randint(0, c, (k,), generator=g)
    return logits, target, raw_query, key, queue, queue_labels


SETTINGS = [
    dict(alpha=0.05, beta=1.0, gamma=1.0, t=0.07, t_sup=1.0, t_base=0.07),
    dict(alpha=1.0, beta=1.0, gamma=1.0, t=0.2, t_sup=1.0, t_base=0.2),
    dict(alpha=0.3, beta=0.5, gamma=0.4, t=0.5, t_sup=2.0, t_base=0.25),
]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop_values_and_gradients(setting, seed):
    counts = [40, 10, 3]
    logits, target, raw_query, key, queue, queue_labels = _batch(seed)
    loss = PaCoLoss(counts, alpha=setting["alpha"], beta=setting["beta"], gamma=setting["gamma"],
                    temperature=setting["t"], supervised_temperature=setting["t_sup"],
                    base_temperature=setting["t_base"])
    query = F.normalize(raw_query, dim=1)
    ours = loss(logits, target, query, key, queue, queue_labels)
    grads = torch.autograd.grad(ours, (logits, raw_query))
    query = F.normalize(raw_query, dim=1)
    reference = naive_paco(logits, target, query, key, queue, queue_labels, counts, **setting)
    expected = torch.autograd.grad(reference, (logits, raw_query))
    assert torch.allclose(ours, reference, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)


def test_gradcheck():
    logits, target, raw_query, key, queue, queue_labels = _batch(3)
    loss = PaCoLoss([40, 10, 3], alpha=0.2, gamma=0.7, temperature=0.3)

    def fn(z, q):
        return loss(z, target, F.normalize(q, dim=1), key, queue, queue_labels)

    assert torch.autograd.gradcheck(fn, (logits, raw_query))


def test_keys_and_queue_get_no_gradient():
    logits, target, raw_query, key, queue, queue_labels = _batch(4)
    key.requires_grad_(True)
    queue.requires_grad_(True)
    PaCoLoss([40, 10, 3]).forward(logits, target, F.normalize(raw_query, dim=1), key, queue, queue_labels).backward()
    assert key.grad is None and queue.grad is None and raw_query.grad is not None


def test_centre_term_alone_is_balanced_softmax():
    """alpha = 0 and gamma = 0 leave -log softmax(z + log pi)_y: BSCE (log pi vs log n is a shift)."""
    counts = [40, 10, 3]
    logits, target, raw_query, key, queue, queue_labels = _batch(5)
    paco = PaCoLoss(counts, alpha=0.0, gamma=0.0)(logits, target, F.normalize(raw_query, dim=1), key, queue,
                                                  queue_labels)
    assert torch.allclose(paco, BalancedSoftmaxLoss(counts)(logits, target), rtol=1e-12)


def test_queue_labels_decide_the_positives():
    """Relabelling the queue to the anchors' classes changes the loss; the naive loop agrees."""
    counts = [40, 10, 3]
    logits, target, raw_query, key, queue, queue_labels = _batch(6)
    setting = SETTINGS[0]
    query = F.normalize(raw_query, dim=1)
    loss = PaCoLoss(counts, alpha=0.05, temperature=0.07)
    relabelled = torch.full_like(queue_labels, int(target[0]))
    a = loss(logits, target, query, key, queue, queue_labels)
    b = loss(logits, target, query, key, queue, relabelled)
    assert not torch.allclose(a, b)
    assert torch.allclose(b, naive_paco(logits, target, query, key, queue, relabelled, counts, **setting))


def test_option_errors_are_one_line():
    with pytest.raises(NolbError, match="temperature"):
        build_loss("paco", [3, 2], temperature=0)
    with pytest.raises(NolbError, match="unknown option"):
        build_loss("paco", [3, 2], tau=1.0)
    with pytest.raises(NolbError, match="queue_size"):
        build_loss("paco", [3, 2], queue_size=0)


def _wrapped(queue_size=8, seed=0):
    torch.manual_seed(seed)
    return PaCoModel(build_model("small_cnn", 3, in_channels=1, width=4), 3, queue_size=queue_size,
                     projection_dim=5, momentum=0.9)


def test_model_contract_for_stages_2_and_3():
    model = _wrapped().eval()
    x = torch.randn(4, 1, 8, 8)
    assert model.feature_dim == 16 and model.forward_features(x).shape == (4, 16)
    assert torch.equal(model(x), model.classifier(model.forward_features(x)))
    backbone, head = split_classifier(model)
    assert head is model.classifier
    assert torch.equal(backbone(x), model.forward_features(x))
    keys = model.state_dict().keys()
    assert {"queue", "queue_labels", "queue_ptr"} <= set(keys)
    assert any(k.startswith("key_encoder.") for k in keys) and any(k.startswith("projection.") for k in keys)


def test_momentum_update_and_training_outputs():
    model = _wrapped().train()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.key_encoder.parameters()]
    queries = list(model.encoder.parameters())
    logits, query, key = model(torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8))
    assert logits.shape == (4, 3) and query.shape == key.shape == (4, 5)
    assert torch.allclose(query.norm(dim=1), torch.ones(4)) and not key.requires_grad
    for old, new, q in zip(before, model.key_encoder.parameters(), queries):
        assert torch.allclose(new, 0.9 * old + 0.1 * q)
    assert all(not p.requires_grad for p in model.key_encoder.parameters())


def test_enqueue_is_fifo_and_wraps_around():
    model = _wrapped(queue_size=5)
    first = F.normalize(torch.randn(3, 5), dim=1)
    model.enqueue(first, torch.tensor([0, 1, 2]))
    assert int(model.queue_ptr) == 3 and torch.equal(model.queue[:3], first)
    second = F.normalize(torch.randn(3, 5), dim=1)
    model.enqueue(second, torch.tensor([2, 2, 1]))
    assert int(model.queue_ptr) == 1
    assert torch.equal(model.queue[3:], second[:2]) and torch.equal(model.queue[0], second[2])
    assert model.queue_labels.tolist() == [1, 1, 2, 2, 2]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    logits, target, raw_query, key, queue, queue_labels = _batch(7)
    loss = PaCoLoss([40, 10, 3], temperature=0.05)
    args = [t.detach().to(dtype) for t in (logits, F.normalize(raw_query, dim=1), key, queue)]
    value = loss(args[0], target, args[1], args[2], args[3], queue_labels)
    single = loss(*[a.float() for a in args[:1]], target, *[a.float() for a in args[1:]], queue_labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, single)


def test_extreme_logits_give_finite_loss_and_gradients():
    logits, target, raw_query, key, queue, queue_labels = _batch(8)
    big = (1e4 * logits.detach().sign()).requires_grad_(True)
    value = PaCoLoss([40, 10, 3], temperature=0.01)(big, target, F.normalize(raw_query, dim=1), key, queue,
                                                   queue_labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(big.grad).all() and torch.isfinite(raw_query.grad).all()


def test_autocast_does_not_lower_the_loss_precision():
    logits, target, raw_query, key, queue, queue_labels = _batch(9)
    args = [t.detach().float() for t in (logits, F.normalize(raw_query, dim=1), key, queue)]
    loss = PaCoLoss([40, 10, 3], temperature=0.05)
    expected = loss(args[0], target, args[1], args[2], args[3], queue_labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(args[0], target, args[1], args[2], args[3], queue_labels)
    assert value.dtype == torch.float32 and torch.equal(value, expected)
