"""Try variants of the nolb head selection on the cached features of finished runs (no test
reading during selection; test metrics are computed afterwards for the table only).

    python experiments/selection_variants.py RUN_DIR [RUN_DIR ...] [--json OUT.json]

Variants (each chooses on the validation split only):
  current     the default grid (tau {0,.5,1} x lr {.02,.1} x sampler {instance, class_balanced}),
              max (feasible, val HM, val AM) -- what `nolb run` does;
  +adjust     the current winner, then a post-hoc logit adjustment z - g log n with g chosen on
              val (g in -0.5..1.5 step 0.1, max (feasible, HM, AM));
  all+adjust  every candidate gets its own g; max over candidates x g;
  5 taus (hm) the same criterion over tau {0,.25,.5,.75,1}
  oracle      the candidate (5-tau grid) with the best TEST HM (an upper bound on what selection could reach).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from nolb.retrain.features import FeatureSplit
from nolb.retrain.heads import train_head
from nolb.retrain.settings import HeadSettings
from nolb.retrain.scoring import Criterion, head_logits, per_class_recall, validation_score

torch.set_num_threads(1)
TAUS = [0.0, 0.25, 0.5, 0.75, 1.0]
GAMMAS = [round(g, 2) for g in np.arange(-0.5, 1.51, 0.1)]


def load(run: Path):
    f = run / "retrain" / "features"
    splits = {}
    for s in ("train", "val", "test"):
        x = torch.from_numpy(np.load(f / f"{s}.features.npy").astype(np.float32))
        y = torch.from_numpy(np.load(f / f"{s}.labels.npy").astype(np.int64))
        n = json.loads((f / f"{s}.manifest.json").read_text())["fingerprint"]["num_images"]
        splits[s] = FeatureSplit(x, y, n)
    sd = load_file(run / "checkpoints" / "best.safetensors")
    w, b = sd["classifier.weight"].float(), sd["classifier.bias"].float()
    head = torch.nn.Linear(w.shape[1], w.shape[0])
    head.weight.data.copy_(w); head.bias.data.copy_(b)
    manifest = json.loads((f / "train.manifest.json").read_text())
    counts = torch.tensor(manifest["fingerprint"]["data_info"]["counts"], dtype=torch.float64)
    cfg = json.loads((run / "retrain" / "retrain.json").read_text())["heads"]["paper"]["settings"]
    return splits, head, counts, cfg


def metrics(logits, labels, C):
    r = per_class_recall(logits, labels, C)
    s = validation_score(logits, labels, C)
    return {"acc": 100 * s.accuracy, "hm": 100 * s.hm, "lowest": 100 * s.lowest,
            "gm": 100 * float(torch.exp(torch.log(r.clamp_min(1e-3)).mean()))}


def adjusted(logits, counts, g):
    return logits - g * torch.log(counts).float()


def best_gamma(val_logits, val_labels, counts, C, floor):
    best = None
    for g in GAMMAS:
        s = validation_score(adjusted(val_logits, counts, g), val_labels, C)
        key = (s.accuracy >= floor, s.hm, s.am, -abs(g))
        if best is None or key > best[0]:
            best = (key, g)
    return best


def study(run: Path) -> dict:
    splits, orig, counts, cfg = load(run)
    tr, va, te = splits["train"], splits["val"], splits["test"]
    C = len(counts)
    base = HeadSettings(**cfg)
    bval = validation_score(head_logits(orig, va.features), va.labels, C)
    floor = bval.accuracy - 0.01
    out = {"run": run.name, "base": metrics(head_logits(orig, te.features), te.labels, C)}
    ob = best_gamma(head_logits(orig, va.features), va.labels, counts, C, floor)
    out["base+adjust (post-hoc LA)"] = {**metrics(adjusted(head_logits(orig, te.features), counts, ob[1]), te.labels, C), "g": ob[1]}
    cands = []
    for tau, lr, sampler in product(TAUS, [0.02, 0.1], ["instance", "class_balanced"]):
        t = train_head(replace(base, method="gml", prior_strength=tau, lr=lr, sampler=sampler), tr, counts, orig, va,
                       criterion=Criterion(C, soft=False))
        vl, tl = head_logits(t.head, va.features), head_logits(t.head, te.features)
        s = t.val_score
        kb = best_gamma(vl, va.labels, counts, C, floor)
        cands.append({"tau": tau, "lr": lr, "sampler": sampler, "epoch": t.best_epoch,
                      "val": {"hm": 100 * s.hm, "acc": 100 * s.accuracy, "lowest": 100 * s.lowest},
                      "key": (s.accuracy >= floor, s.hm, s.am), "test": metrics(tl, te.labels, C),
                      "g": kb[1], "gkey": kb[0], "test_adj": metrics(adjusted(tl, counts, kb[1]), te.labels, C)})
    # the default grid's candidates, in the default order (tau 0, .5, 1)
    idx = max((i for i in range(len(cands)) if cands[i]["tau"] in (0.0, 0.5, 1.0)),
              key=lambda i: (cands[i]["key"], -[0.0, 0.5, 1.0].index(cands[i]["tau"]) * 100 - i))
    c = cands[idx]
    out["current"] = {**c["test"], "choice": (c["tau"], c["lr"], c["sampler"], c["epoch"])}
    out["current+adjust"] = {**c["test_adj"], "g": c["g"]}
    j = max((i for i in range(len(cands)) if cands[i]["tau"] in (0.0, 0.5, 1.0)), key=lambda i: (cands[i]["gkey"][:3], -i))
    out["all+adjust"] = {**cands[j]["test_adj"], "choice": (cands[j]["tau"], cands[j]["lr"], cands[j]["sampler"], cands[j]["g"])}
    i5 = max(range(len(cands)), key=lambda i: (cands[i]["key"], -i))
    c5 = cands[i5]
    out["5 taus (hm)"] = {**c5["test"], "choice": (c5["tau"], c5["lr"], c5["sampler"], c5["epoch"])}
    k = max(range(len(cands)), key=lambda i: cands[i]["test"]["hm"])
    out["oracle (test-chosen)"] = {**cands[k]["test"], "choice": (cands[k]["tau"], cands[k]["lr"], cands[k]["sampler"])}
    out["candidates"] = [{kk: v for kk, v in cc.items() if kk not in ("key", "gkey")} for cc in cands]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--json")
    a = p.parse_args()
    results = []
    for r in a.runs:
        res = study(Path(r))
        results.append(res)
        print(f"== {res['run']}")
        for k, v in res.items():
            if k in ("run", "candidates"):
                continue
            extra = {kk: vv for kk, vv in v.items() if kk not in ("acc", "hm", "lowest", "gm")}
            print(f"  {k:28s} Acc {v['acc']:5.1f} HM {v['hm']:5.1f} GM {v['gm']:5.1f} Low {v['lowest']:5.1f} {extra}")
        print("  candidates: tau lr sampler ep | val HM/acc/low | test HM/acc/low")
        for cc in res["candidates"]:
            print(f"   {cc['tau']} {cc['lr']} {cc['sampler'][:4]} {cc['epoch']} | {cc['val']['hm']:.1f}/{cc['val']['acc']:.1f}/{cc['val']['lowest']:.0f}"
                  f" | {cc['test']['hm']:.1f}/{cc['test']['acc']:.1f}/{cc['test']['lowest']:.1f}  g={cc['g']}")
        sys.stdout.flush()
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
