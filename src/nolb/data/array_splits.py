"""Train / validation / test of an array dataset (CIFAR-LT, Fashion-MNIST-LT), disjoint by construction.

The training set is a long-tailed subsample of the official training arrays; validation
follows :func:`nolb.data.split_plans.plan_validation` (unused training images, else a seeded
stratified slice of the official test set, which then leaves the reported test set); the
reported test set is what remains of the official test set.  Image identities are
``"train:<row>"`` and ``"test:<row>"`` of the official arrays.
"""

from __future__ import annotations

import numpy as np

from nolb.data.split_plans import describe_array_splits, plan_validation
from nolb.data.splits import identities
from nolb.data.tensor_dataset import TensorImageDataset


def assemble_array_splits(x_train, y_train, x_test, y_test, names, kept: list[np.ndarray],
                          unused: list[np.ndarray], *, val_per_class: int, seed: int, val_seed: int,
                          val_source: str) -> dict:
    """Datasets, identities and info of the three splits.

    Args:
        x_train, y_train, x_test, y_test: the official arrays.
        names: class names.
        kept, unused: per class, the subsample's kept and unused training indices.
        val_per_class: validation images per class (0: none).
        seed: the subsample's seed (recorded).
        val_seed: seed of the validation draw.
        val_source: ``"auto"``, ``"test"`` or ``"borrow_train"`` (see ``plan_validation``).

    Returns:
        ``{"train", "val", "test", "splits", "info"}``; ``info`` says where validation and
        test come from (``val_source``, ``test_source``, ``val_from_test``,
        ``val_borrowed_from_train``).
    """
    train_idx = np.concatenate(kept)
    plan = plan_validation(unused, kept, y_test, val_per_class, val_seed, val_source)
    val, val_ids = None, []
    if val_per_class > 0:
        labels = np.concatenate([y_train[plan.from_train], y_test[plan.from_test]])
        order = np.argsort(labels, kind="stable")  # class by class
        images = np.concatenate([x_train[plan.from_train], x_test[plan.from_test]])[order]
        val = TensorImageDataset(images, labels[order], names)
        val_ids = [(identities("train", plan.from_train) + identities("test", plan.from_test))[k] for k in order]
    sources = describe_array_splits(plan, len(train_idx), len(y_train), len(y_test), val_per_class, seed, val_seed)
    from_test = {str(c): int((y_test[plan.from_test] == c).sum()) for c, k in plan.by_class.items() if k == "test"}
    info = {
        "seed": seed, "val_seed": val_seed, "val_per_class": val_per_class, "val_source_option": val_source,
        "val_source": sources["val"], "test_source": sources["test"], "val_from_test": from_test,
        "val_borrowed_from_train": {str(k): v for k, v in plan.borrowed.items()},
    }
    return {
        "train": TensorImageDataset(x_train[train_idx], y_train[train_idx], names), "val": val,
        "test": TensorImageDataset(x_test[plan.test_kept], y_test[plan.test_kept], names),
        "splits": {"train": identities("train", train_idx), "val": val_ids,
                   "test": identities("test", plan.test_kept), "sources": sources},
        "info": info,
    }
