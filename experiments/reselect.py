"""Re-run the nolb head selection of finished runs on their cached features with a given
criterion (``hm``: the arg-max validation HM of the study runs; ``soft_hm``: the soft
per-class recall) and score the chosen head on the full test split (after selection).

    python experiments/reselect.py RUN_DIR [...] [--criterion soft_hm] [--json OUT]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_variants import load, metrics  # noqa: E402

from nolb.retrain.settings import HeadSettings  # noqa: E402
from nolb.retrain.scoring import head_logits, validation_score  # noqa: E402

torch.set_num_threads(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--criterion", default="soft_hm")
    p.add_argument("--module", help="a selection.py to use instead of nolb.retrain.selection")
    p.add_argument("--json")
    a = p.parse_args()
    if a.module:
        spec = importlib.util.spec_from_file_location("selection_alt", a.module)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["selection_alt"] = mod
        spec.loader.exec_module(mod)
    else:
        import nolb.retrain.selection as mod
    out = {}
    for r in a.runs:
        run = Path(r)
        splits, orig, counts, cfg = load(run)
        tr, va, te = splits["train"], splits["val"], splits["test"]
        C = len(counts)
        base_val = validation_score(head_logits(orig, va.features), va.labels, C)
        from nolb.config_stages import RetrainConfig
        from nolb.retrain.scoring import Criterion

        rule = Criterion.named(a.criterion, C, base_val, RetrainConfig().select_acc_tolerance)
        sel = mod.select_head(mod.nolb_candidates(HeadSettings(**cfg), RetrainConfig()), tr, va, counts, orig, rule)
        b = sel.best
        m = metrics(head_logits(b.head, te.features), te.labels, C)
        out[run.name] = {**m, "choice": [b.settings.prior_strength, b.settings.lr, b.settings.sampler, b.best_epoch]}
        print(run.name, {k: (round(v, 1) if isinstance(v, float) else v) for k, v in out[run.name].items()}, flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
