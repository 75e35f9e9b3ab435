"""Class-balanced weights from the effective number of samples (Cui et al., CVPR 2019).

Y. Cui, M. Jia, T.-Y. Lin, Y. Song, S. Belongie, "Class-Balanced Loss Based on Effective
Number of Samples", CVPR 2019. The effective number of n samples is
E_n = (1 - beta^n) / (1 - beta); the weight of class c is proportional to 1 / E_{n_c},

    w_c = C * (1 - beta) / (1 - beta^{n_c})  /  sum_k (1 - beta) / (1 - beta^{n_k}),

so that sum_c w_c = C (the normalisation of Cui et al. and of LDAM-DRW's re-weighting).
beta = 0 gives equal weights; beta -> 1 tends to inverse-frequency weights.
"""

from __future__ import annotations

from typing import Any

import torch

from nolb.losses._checks import as_class_counts, check_real

__all__ = ["class_balanced_weights"]


def class_balanced_weights(class_counts: Any, beta: float = 0.9999, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-class weights proportional to the inverse effective number of samples.

    Args:
        class_counts: Training images per class, shape (C,), every count >= 1.
        beta: Hyper-parameter in [0, 1); 0.9999 is the LDAM-DRW / Cui et al. default.
        dtype: Floating dtype of the result (computed in float64 either way).

    Returns:
        A tensor of shape (C,) and the given dtype on the CPU whose entries sum to C.

    Raises:
        NolbError: Invalid counts (including a zero count) or beta outside [0, 1).
    """
    owner = "class_balanced_weights"
    beta = check_real(owner, "beta", beta, minimum=0.0, maximum=1.0, strict_maximum=True)
    counts = as_class_counts(class_counts, owner=owner, positive=True).to(torch.float64)
    if beta == 0.0:
        inverse_effective = torch.ones_like(counts)
    else:
        # 1 - beta^n computed as -expm1(n log beta): exact even when beta^n is close to 1.
        inverse_effective = (1.0 - beta) / -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=torch.float64)))
    weights = inverse_effective / inverse_effective.sum() * counts.numel()
    return weights.to(dtype)
