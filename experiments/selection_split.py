"""Is the small validation split (100 images/class) what limits the nolb selection?

The test split is cut in two stratified halves A and B (seeded).  Every candidate head
(GML tau x lr x sampler, and cRT at each lr) is trained once; after every epoch it is
scored on val, on A and on B.  (candidate, epoch) is then chosen either on val (what
`nolb run` does) or on A (500 images/class for 10 classes), and both choices are scored
on B only.  Also reports the B-oracle.

    python experiments/selection_split.py RUN_DIR [...] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from itertools import product
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_variants import load  # noqa: E402

from nolb.retrain.heads import trainable_head  # noqa: E402
from nolb.retrain.settings import HeadSettings  # noqa: E402
from nolb.retrain.head_training import fit_head, linear_head_from  # noqa: E402
from nolb.retrain.scoring import head_logits, validation_score  # noqa: E402

torch.set_num_threads(1)


def halves(labels: torch.Tensor, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a, b = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        a.append(idx[: len(idx) // 2]); b.append(idx[len(idx) // 2:])
    return torch.cat(a), torch.cat(b)


def study(run: Path) -> dict:
    splits, orig, counts, cfg = load(run)
    tr, va, te = splits["train"], splits["val"], splits["test"]
    C = len(counts)
    ia, ib = halves(te.labels)
    A = (te.features[ia], te.labels[ia]); B = (te.features[ib], te.labels[ib])
    base = HeadSettings(**cfg)
    sc = lambda h, x, y: validation_score(head_logits(h, x), y, C)  # noqa: E731
    floor_val = sc(orig, va.features, va.labels).accuracy - 0.01
    floor_a = sc(orig, *A).accuracy - 0.01
    records = []
    cands = [("gml", tau, lr, s) for tau, lr, s in product([0.0, 0.25, 0.5, 0.75, 1.0], [0.02, 0.1],
                                                               ["instance", "class_balanced"])]
    cands += [("crt", 1.0, lr, "class_balanced") for lr in (0.02, 0.1)]
    for method, tau, lr, sampler in cands:
        st = replace(base, method=method, prior_strength=tau, lr=lr, sampler=sampler,
                     init="fresh" if method == "crt" else base.init)
        module = linear_head_from(orig, tr.features.shape[1], C, st.init, st.seed)
        epoch = [0]

        def ev(m, st=st, epoch=epoch):
            epoch[0] += 1
            m.eval()
            with torch.no_grad():
                r = {"method": st.method, "tau": st.prior_strength, "lr": st.lr, "sampler": st.sampler, "epoch": epoch[0]}
                for name, (x, y) in (("val", (va.features, va.labels)), ("A", A), ("B", B)):
                    s = sc(m, x, y)
                    r[name] = (s.hm, s.am, s.lowest, s.accuracy)
                pv = torch.softmax(head_logits(m, va.features), 1)
                pt = pv.gather(1, va.labels.view(-1, 1)).flatten().double()
                rc = torch.zeros(C, dtype=torch.float64).index_add_(0, va.labels, pt) / torch.bincount(va.labels, minlength=C)
                sa = float(C / (1.0 / rc.clamp_min(1e-3)).sum())
                r["valsoft"] = (sa, float(rc.mean()), float(rc.min()), r["val"][3])
            records.append(r)
            return (r["val"][0], r["val"][1])

        fit_head(module, tr.features, tr.labels, trainable_head(st, orig, tr.features.shape[1], counts)[1], num_classes=C, epochs=st.epochs,
                 batch_size=st.batch_size, lr=st.lr, weight_decay=st.weight_decay, momentum=st.momentum,
                 sampler=st.sampler, draws_per_epoch=tr.num_images, seed=st.seed, evaluate=ev)
    out = {"run": run.name}

    def pick(method_set, on, floor, taus=None):
        rs = [r for r in records if r["method"] in method_set and (taus is None or r["tau"] in taus)]
        r = max(rs, key=lambda r: (r[on][3] >= floor, r[on][0], r[on][1]))
        return {"choice": (r["method"], r["tau"], r["lr"], r["sampler"], r["epoch"]),
                "B_hm": 100 * r["B"][0], "B_lowest": 100 * r["B"][2], "B_acc": 100 * r["B"][3]}

    out["nolb on val (3 taus)"] = pick({"gml"}, "val", floor_val, {0.0, 0.5, 1.0})
    out["nolb on val (5 taus)"] = pick({"gml"}, "val", floor_val)
    out["nolb on A (3 taus)"] = pick({"gml"}, "A", floor_a, {0.0, 0.5, 1.0})
    out["nolb on A (5 taus)"] = pick({"gml"}, "A", floor_a)
    out["nolb on val soft-HM (5 taus)"] = pick({"gml"}, "valsoft", floor_val)
    out["nolb on val soft-HM (3 taus)"] = pick({"gml"}, "valsoft", floor_val, {0.0, 0.5, 1.0})
    out["cRT on val"] = pick({"crt"}, "val", -1)
    out["cRT on A"] = pick({"crt"}, "A", -1)
    out["gml+cRT on A"] = pick({"gml", "crt"}, "A", floor_a)
    out["B-oracle gml"] = pick({"gml"}, "B", -1)
    out["B-oracle cRT"] = pick({"crt"}, "B", -1)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--json")
    a = p.parse_args()
    res = []
    for r in a.runs:
        o = study(Path(r))
        res.append(o)
        print("==", o["run"])
        for k, v in o.items():
            if k != "run":
                print(f"  {k:22s} B: Acc {v['B_acc']:.1f} HM {v['B_hm']:.1f} low {v['B_lowest']:.1f}  {v['choice']}")
        sys.stdout.flush()
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
