"""``nolb retrain --features``: stage 2's heads on feature files instead of a run directory.

Each file is an ``.npz`` with ``features`` (or ``logits``) of shape (N, D), ``labels`` (N,)
and, optionally, ``train_counts`` (C,) in the training file (the prior n_c when the rows
are not the whole training set).  Integer labels are class ids ``0..C-1``; other labels
(strings) are sorted and numbered.  The training file fits the heads, the validation file
chooses their settings, the test file is read last and only scored.

Rows of the report: ``base`` (the arrays themselves when they are ``logits`` of one column
per class), the paper-exact GML head (stage 2's recipe: prior strength 1, lr 0.02, 10
epochs, instance sampling), the ``nolb`` head (GML with prior strength, lr, sampler and
epoch chosen on validation: :class:`~nolb.estimators.GMLClassifier`), and the baselines
cRT, tau-norm (of a cross-entropy head) and post-hoc logit adjustment (of the logits, or
of a cross-entropy head).  On logits the trained heads start from the identity (the
model's own classifier, stage 2's ``init=original``); on other features, afresh.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nolb.errors import NolbError

FEATURE_KEYS = ("features", "logits")


@dataclass
class FeatureFile:
    """One split read from an ``.npz`` file."""

    path: Path
    features: np.ndarray
    labels: np.ndarray
    kind: str  # "features" or "logits"
    train_counts: np.ndarray | None = None


def read_feature_file(path: str | Path, what: str) -> FeatureFile:
    """Read and check one ``.npz`` split; every problem is a one-line :class:`NolbError`."""
    path = Path(path)
    if not path.is_file():
        raise NolbError(f"{path}: no such file (the {what} features)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {key: z[key] for key in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise NolbError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    keys = [key for key in FEATURE_KEYS if key in arrays]
    if len(keys) != 1:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise NolbError(f"{path}: needs exactly one of the arrays 'features' or 'logits' (found {found})")
    if "labels" not in arrays:
        raise NolbError(f"{path}: has no 'labels' array")
    features, labels = arrays[keys[0]], arrays["labels"]
    if features.ndim != 2 or features.shape[0] == 0 or features.dtype.kind not in "fiu":
        raise NolbError(f"{path}: '{keys[0]}' must be a non-empty 2-D numeric array, got shape {features.shape} "
                        f"of {features.dtype}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise NolbError(f"{path}: 'labels' must be 1-D with one label per row ({features.shape[0]}), "
                        f"got shape {labels.shape}")
    if not np.all(np.isfinite(features)):
        raise NolbError(f"{path}: '{keys[0]}' holds NaN or infinite values")
    counts = arrays.get("train_counts")
    if counts is not None and (counts.ndim != 1 or counts.dtype.kind not in "iu" or np.any(counts < 1)):
        raise NolbError(f"{path}: 'train_counts' must be a 1-D array of whole numbers >= 1")
    return FeatureFile(path, features.astype(np.float32, copy=False), labels, keys[0], counts)


@dataclass
class FeatureRetrainResult:
    """What :func:`retrain_feature_files` produced."""

    rows: dict
    record: dict
    out_dir: Path | None
    table: str


def retrain_feature_files(
    train: str | Path,
    val: str | Path,
    test: str | Path,
    out: str | Path | None = None,
    *,
    epochs: int = 10,
    lr: float = 0.02,
    batch_size: int = 128,
    weight_decay: float = 2e-4,
    prior_strength: float = 1.0,
    matmul_dtype: str = "float32",
    seed: int = 0,
    overwrite: bool = False,
    command: list[str] | None = None,
    log=print,
) -> FeatureRetrainResult:
    """Fit stage 2's heads on the training file, choose settings on the validation file,
    report every row on the test file (``report.md``, ``per_class.csv``, plot, ``metrics.json``
    under ``out/report``; ``retrain.json`` and ``heads/*.safetensors`` under ``out``).

    Raises:
        NolbError: a bad file, mismatched files, or ``out`` already holding a report.
    """
    from nolb.estimators.linear_head import BalancedRefitClassifier, GMLClassifier, LinearHeadClassifier
    from nolb.estimators.posthoc import LogitAdjustedClassifier, TauNormClassifier

    started = time.perf_counter()
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (out_dir / "retrain.json").exists() and not overwrite:
        raise NolbError(f"{out_dir / 'retrain.json'}: exists; pass --overwrite to replace it")
    splits = {name: read_feature_file(path, name) for name, path in (("train", train), ("val", val), ("test", test))}
    classes, codes = _encode(splits)
    num_classes = classes.size
    counts = _counts(splits["train"], codes["train"], num_classes)
    dims = {name: split.features.shape[1] for name, split in splits.items()}
    if len(set(dims.values())) != 1:
        raise NolbError(f"{splits['val'].path}: features have {dims['val']} columns, the training file "
                        f"{dims['train']} and the test file {dims['test']}")
    X, Xv, Xt = (splits[name].features for name in ("train", "val", "test"))
    y, yv = codes["train"], codes["val"]
    logits = splits["train"].kind == "logits" and X.shape[1] == num_classes
    init = "identity" if logits else None
    recipe = dict(lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay, matmul_dtype=matmul_dtype,
                  random_state=seed, class_counts=counts)
    log(f"retrain --features: {X.shape[0]} training rows x {X.shape[1]} columns, {num_classes} classes; "
        f"heads start from {'the logits (identity)' if logits else 'scratch'}")
    models: dict[str, Any] = {}
    if logits:
        models["base"] = LogitAdjustedClassifier("scores", tau=0.0).fit(X, y)
    models["GML (paper)"] = LinearHeadClassifier(method="gml", prior_strength=prior_strength, init_coef=init,
                                                 **recipe).fit(X, y, X_val=Xv, y_val=yv)
    models["nolb (val-tuned GML)"] = GMLClassifier(init_coef=init, epochs=epochs, batch_size=batch_size,
                                                   weight_decay=weight_decay, matmul_dtype=matmul_dtype,
                                                   random_state=seed, class_counts=counts).fit(X, y, X_val=Xv, y_val=yv)
    models["cRT"] = BalancedRefitClassifier(lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay,
                                            matmul_dtype=matmul_dtype, random_state=seed).fit(X, y, X_val=Xv, y_val=yv)
    ce_head = LinearHeadClassifier(method="ce", init_coef=init, **recipe)
    models["tau-norm"] = TauNormClassifier(ce_head).fit(X, y, X_val=Xv, y_val=yv)
    models["post-hoc LA"] = LogitAdjustedClassifier("scores" if logits else ce_head, class_counts=counts).fit(
        X, y, X_val=Xv, y_val=yv)
    rows, record = _report_rows(models, Xt, codes["test"], classes, counts, out_dir)
    record.update({"command": command, "files": {name: str(split.path) for name, split in splits.items()},
                   "num_classes": num_classes, "feature_kind": splits["train"].kind, "init": init or "fresh",
                   "seconds": time.perf_counter() - started})
    table = rows.pop("_table")
    if out_dir is not None:
        from nolb.io import write_json

        write_json(out_dir / "retrain.json", record)  # last: its presence means "finished"
    return FeatureRetrainResult(rows=rows, record=record, out_dir=out_dir, table=table)


def _encode(splits: dict[str, FeatureFile]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Class list and (N,) codes per split; integer labels keep their ids 0..C-1."""
    train = splits["train"]
    labels = train.labels
    if labels.dtype.kind in "iu":
        if labels.min() < 0:
            raise NolbError(f"{train.path}: negative class id {int(labels.min())} in 'labels'")
        num_classes = int(labels.max()) + 1
        if train.train_counts is not None:
            num_classes = max(num_classes, train.train_counts.size)
        classes = np.arange(num_classes)
    else:
        classes = np.unique(labels)
    codes = {}
    for name, split in splits.items():
        index = np.searchsorted(classes, split.labels)
        index = np.clip(index, 0, classes.size - 1)
        unknown = classes[index] != split.labels
        if np.any(unknown):
            bad = split.labels[np.flatnonzero(unknown)[0]].tolist()
            raise NolbError(f"{split.path}: label {bad!r} is not a class of the training file {train.path}")
        codes[name] = index.astype(np.int64)
    return classes, codes


def _counts(train: FeatureFile, codes: np.ndarray, num_classes: int) -> np.ndarray:
    if train.train_counts is not None:
        if train.train_counts.size != num_classes:
            raise NolbError(f"{train.path}: 'train_counts' has {train.train_counts.size} values for {num_classes} classes")
        return train.train_counts.astype(np.int64)
    counts = np.bincount(codes, minlength=num_classes)
    if np.any(counts == 0):
        raise NolbError(f"{train.path}: class {int(np.flatnonzero(counts == 0)[0])} has no training row; "
                        "give 'train_counts' or drop the class")
    return counts


def _report_rows(models: dict, Xt: np.ndarray, yt: np.ndarray, classes: np.ndarray, counts: np.ndarray,
                 out_dir: Path | None) -> tuple[dict, dict]:
    """Test scores -> the run report (the same files as ``nolb run``), and the record."""
    import torch

    from nolb.io import save_safetensors
    from nolb.retrain.report import reports_from_scores, write_report

    scores = {name: torch.from_numpy(np.asarray(model.predict_log_proba(Xt), dtype=np.float32))
              for name, model in models.items()}
    names = None if classes.dtype.kind in "iu" else [str(c) for c in classes]
    rows = reports_from_scores(scores, torch.from_numpy(yt), classes.size, train_counts=counts, class_names=names)
    notes, record = [], {"rows": {}}
    for name, model in models.items():
        entry = {key.rstrip("_"): getattr(model, key) for key in
                 ("head_settings_", "best_epoch_", "val_score_", "tau_", "selection_table_") if hasattr(model, key)}
        record["rows"][name] = entry
        if "head_settings" in entry:
            s = entry["head_settings"]
            notes.append(f"{name}: {s['method']}, prior strength {s['prior_strength']}, lr {s['lr']}, "
                         f"{s['sampler']} sampling, epoch {entry['best_epoch']} of {s['epochs']}")
        if "tau" in entry:
            notes.append(f"{name}: tau {entry['tau']:g} (chosen on validation)")
        if out_dir is not None and hasattr(model, "coef_"):
            tensors = {"weight": torch.from_numpy(np.ascontiguousarray(model.coef_, dtype=np.float32))}
            if hasattr(model, "intercept_"):
                tensors["bias"] = torch.from_numpy(np.ascontiguousarray(model.intercept_, dtype=np.float32))
            save_safetensors(out_dir / "heads" / f"{_slug(name)}.safetensors", tensors)
    notes.append("intervals: 95% stratified bootstrap over test images (1000 resamples)")
    record["metrics"] = {name: report.to_dict() for name, report in rows.items()}
    table = None
    if out_dir is not None:
        files = write_report(rows, out_dir / "report", title="stage 2 on feature files", notes=notes)
        table = files.table
    else:
        from nolb.metrics import format_table

        table = format_table(rows, intervals=True)
    rows["_table"] = table
    return rows, record


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()
