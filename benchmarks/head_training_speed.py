"""Stage-2 head training speed on cached features: the original loop vs nolb's fit_head.

Synthetic float16 features with class structure (class means + noise), so that the
harmonic mean of per-class recalls (HM) on a balanced synthetic test set is meaningful
and the variants can be compared for agreement, not only for speed:

* ``imagenet``: 115,846 x 2048 features, 1,000 classes, an ImageNet-LT-like exponential
  count profile (1,280 down to 5), GML (tau = 1), batch 256, lr 0.005, wd 5e-4, cosine;
* ``cifar100``: 10,847 x 64 features, 100 classes (CIFAR-100-LT IR 100 sizes), batch 128,
  lr 0.02, wd 2e-4.

Variants (run interleaved, ``--repeats`` times each, medians reported):

* ``reference``: the loop and the GML loss as they were before the speed work (SGD
  without foreach/fused, per-batch ``features[index].float()`` fancy indexing,
  ``float(loss)`` every step, GML clamping the whole (N, C) probability matrix), run with
  the global torch thread setting (``--threads``);
* ``fp32``: :func:`nolb.retrain.head_training.fit_head` (default, float32);
* ``bf16``: the same with ``matmul_dtype="bfloat16"`` (CPU bf16 autocast for the head).

Every variant starts from the same initial head and seed; the script prints seconds per
epoch (median over epochs), total seconds, the final-weight difference from the
reference and the test HM / accuracy.

    .venv/bin/python benchmarks/head_training_speed.py                 # both cases, 10 epochs
    .venv/bin/python benchmarks/head_training_speed.py --case cifar100 --repeats 3
    .venv/bin/python benchmarks/head_training_speed.py --case imagenet --epochs 2 --variants fp32 bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time

import numpy as np
import torch
from torch import nn

from nolb.losses import build_loss
from nolb.losses.geometric_mean import PROBABILITY_FLOOR, GeometricMeanLoss
from nolb.retrain.head_training import cosine_lr, epoch_indices, fit_head
from nolb.retrain.scoring import head_logits, validation_score

CASES = {
    "imagenet": {"rows": 115_846, "dim": 2048, "classes": 1000, "max": 1280, "min": 5,
                 "batch": 256, "lr": 0.005, "wd": 5e-4, "test_per_class": 10, "separation": 0.08},
    "cifar100": {"rows": 10_847, "dim": 64, "classes": 100, "max": 500, "min": 5,
                 "batch": 128, "lr": 0.02, "wd": 2e-4, "test_per_class": 100, "separation": 0.6},
}


def long_tail_counts(total: int, classes: int, largest: int, smallest: int) -> np.ndarray:
    """``n_r = largest (smallest/largest)^((r/(C-1))^p)``, p bisected so the counts sum to ~``total``."""
    t = np.arange(classes, dtype=np.float64) / max(classes - 1, 1)

    def counts(p: float) -> np.ndarray:
        return np.floor(largest * (smallest / largest) ** (t ** p) + 1e-9).astype(np.int64)

    lo, hi = 1e-3, 50.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counts(mid).sum() < total else (lo, mid)
    result = counts(hi)
    surplus = int(result.sum() - total)
    order = np.argsort(-result)
    i = 0
    while surplus > 0:  # trim the largest classes so the total is exact
        result[order[i % 10]] -= 1
        surplus -= 1
        i += 1
    while surplus < 0:
        result[order[classes // 2 + (i % 10)]] += 1
        surplus += 1
        i += 1
    return result


def make_case(spec: dict, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c, d = spec["classes"], spec["dim"]
    counts = torch.from_numpy(long_tail_counts(spec["rows"], c, spec["max"], spec["min"]))
    means = torch.randn(c, d, generator=g) * spec["separation"]
    labels = torch.repeat_interleave(torch.arange(c), counts)
    features = torch.empty(len(labels), d, dtype=torch.float16)
    for s in range(0, len(labels), 16384):  # chunked: keeps the float32 temporary small
        y = labels[s : s + 16384]
        features[s : s + 16384] = (means[y] + torch.randn(len(y), d, generator=g)).relu().half()
    test_labels = torch.arange(c).repeat_interleave(spec["test_per_class"])
    test = (means[test_labels] + torch.randn(len(test_labels), d, generator=g)).relu().half()
    head = nn.Linear(d, c)  # a "stage-1" head: fit briefly with CE so it is head-biased
    with torch.no_grad():
        head.weight.copy_(means * 0.5)
        head.bias.copy_(counts.double().log().float() * 0.5)
    return features, labels, counts, test, test_labels, head


class ReferenceGML(GeometricMeanLoss):
    """GML as it was computed before the speed work: the clamp (and its backward mask) over
    the whole (N, C) probability matrix before the gather.  Same values and gradients."""

    def forward(self, logits, target):
        logits = self._check(logits, target)
        target = target.long()
        if self.prior_strength != 0.0:
            logits = logits + self.prior_strength * self._log_counts_as(logits)
        probs = torch.softmax(logits, dim=1).clamp(PROBABILITY_FLOOR, 1.0)
        p_true = probs.gather(1, target[:, None]).squeeze(1)
        class_size = torch.zeros(self.num_classes, dtype=torch.int64).index_add(0, target, torch.ones_like(target))
        present = class_size > 0
        class_sum = torch.zeros(self.num_classes, dtype=logits.dtype).index_add(0, target, p_true)
        class_mean = class_sum / class_size.clamp_min(1).to(logits.dtype)
        per_class = -torch.log(torch.where(present, class_mean, torch.ones_like(class_mean)))
        return per_class.sum() / present.sum().to(logits.dtype)


def reference_fit(module, features, labels, loss_fn, *, num_classes, epochs, batch_size, lr,
                  weight_decay, momentum=0.9, sampler="instance", seed=0, float32_pool_bytes=4 << 30,
                  epoch_times=None):
    """The stage-2 loop before the speed work (kept here verbatim for the before/after)."""
    draws = int(features.shape[0])
    steps_per_epoch = max(1, math.ceil(draws / batch_size))
    total_steps = epochs * steps_per_epoch
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    labels = labels.long()
    if features.dtype != torch.float32 and features.numel() * 4 <= float32_pool_bytes:
        features = features.float()
    step = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        module.train()
        order = epoch_indices(labels, draws, sampler, num_classes, generator)
        total, seen = 0.0, 0
        for start in range(0, draws, batch_size):
            index = order[start : start + batch_size]
            x = features[index].float()
            y = labels[index]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, step, total_steps)
            loss = loss_fn(module(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total += float(loss.detach()) * len(index)
            seen += len(index)
        if epoch_times is not None:
            epoch_times.append(time.perf_counter() - t0)
    return module


def run_variant(name, case, spec, epochs, reference_weight=None):
    features, labels, counts, test, test_labels, head0 = case
    head = copy.deepcopy(head0)
    loss_fn = ReferenceGML(counts) if name == "reference" else build_loss("gml", counts, prior_strength=1.0)
    kwargs = dict(num_classes=spec["classes"], epochs=epochs, batch_size=spec["batch"], lr=spec["lr"],
                  weight_decay=spec["wd"], seed=0)
    epoch_times: list[float] = []
    start = time.perf_counter()
    if name == "reference":
        reference_fit(head, features, labels, loss_fn, epoch_times=epoch_times, **kwargs)
    else:
        # Time epochs through the evaluate hook (called after each epoch; scores nothing).
        last = [start]

        def tick(_module):
            now = time.perf_counter()
            epoch_times.append(now - last[0])
            last[0] = now
            return (float(len(epoch_times)),)  # increasing: the last epoch is kept, as without a hook

        fit_head(head, features, labels, loss_fn, evaluate=tick,
                 matmul_dtype="bfloat16" if name == "bf16" else "float32", **kwargs)
    total = time.perf_counter() - start
    score = validation_score(head_logits(head, test), test_labels, spec["classes"])
    weight = head.weight.detach().clone()
    out = {"variant": name, "seconds": total, "s_per_epoch": statistics.median(epoch_times),
           "first_epoch_s": epoch_times[0], "test_hm": score.hm, "test_acc": score.accuracy,
           "test_lowest": score.lowest}
    if reference_weight is not None:
        out["max_abs_weight_diff_vs_reference"] = float((weight - reference_weight).abs().max())
    return out, weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["reference", "fp32", "bf16"],
                        choices=["reference", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, help="override the number of training rows (quick checks)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for case_name in (CASES if args.case == "all" else [args.case]):
        spec = dict(CASES[case_name])
        if args.rows:
            spec["rows"] = args.rows
        t = time.perf_counter()
        case = make_case(spec)
        print(f"== {case_name}: {spec['rows']} x {spec['dim']} fp16, {spec['classes']} classes, batch "
              f"{spec['batch']}, {args.epochs} epochs GML (generated in {time.perf_counter() - t:.1f} s, "
              f"{torch.get_num_threads()} threads)", flush=True)
        rows: dict[str, list] = {v: [] for v in args.variants}
        ref_weight = None
        for _ in range(args.repeats):
            for variant in args.variants:  # interleaved
                out, weight = run_variant(variant, case, spec, args.epochs, ref_weight)
                if variant == "reference" and ref_weight is None:
                    ref_weight = weight
                rows[variant].append(out)
                print("  " + json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in out.items()}),
                      flush=True)
        summary = {}
        for variant, outs in rows.items():
            summary[variant] = {
                "median_seconds": statistics.median(o["seconds"] for o in outs),
                "median_s_per_epoch": statistics.median(o["s_per_epoch"] for o in outs),
                "test_hm": outs[-1]["test_hm"], "test_acc": outs[-1]["test_acc"], "runs": outs,
            }
            print(f"  {case_name:9s} {variant:9s}: {summary[variant]['median_s_per_epoch']:.3f} s/epoch, "
                  f"{summary[variant]['median_seconds']:.2f} s total ({len(outs)} run(s), median); "
                  f"test HM {outs[-1]['test_hm']:.4f}, Acc {outs[-1]['test_acc']:.4f}", flush=True)
        results[case_name] = summary
    import resource

    # peak resident memory of this process (all cases so far; Linux reports KiB)
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak RSS {results['peak_rss_mib']:.0f} MiB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
