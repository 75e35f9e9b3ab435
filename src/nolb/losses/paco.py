"""Parametric contrastive loss (PaCo; Cui, Zhong, Liu, Yu, Jia, ICCV 2021).

J. Cui et al., "Parametric Contrastive Learning", ICCV 2021 (public code:
dvlab-research/Parametric-Contrastive-Learning, ``PaCo/LT/losses.py``).  Each query q_i
(the L2-normalised projection of view 1 of image i) is contrasted against two kinds of
"keys", all in one softmax:

* the C learnable class centres, whose logits are the classifier's logit-adjusted scores
  ``s_{i,c} = (z_{i,c} + log pi_c) / T_sup`` (pi_c = n_c / sum n, the training prior);
* the sample keys: the other queries of the batch, the momentum-encoder keys of view 2,
  and the queue of past keys, with logits ``q_i . k_j / T``.

With positives P(i) = sample keys of class y_i (the query itself excluded) and weights
beta on the centre of y_i, alpha on each sample positive, gamma on the sample terms of
the denominator:

    log p_{i,j} = l_{i,j} - log( sum_c exp s_{i,c} + gamma sum_{j != i} exp(q_i . k_j / T) )
    L_i = -(T / T_base) (beta log p_{i,y_i} + alpha sum_{j in P(i)} log p_{i,j}) / (beta + alpha |P(i)|)

and L is the batch mean.  Small alpha (0.01 to 0.05 in the paper's recipes) rebalances
the sample-sample term, which favours head classes, against the centre term.  Predict
with the raw classifier logits z (the + log pi is the balanced-softmax correction).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nolb.errors import NolbError
from nolb.losses._base import ClassCountLoss
from nolb.losses._checks import check_batch, check_real

__all__ = ["PaCoLoss"]


class PaCoLoss(ClassCountLoss):
    """PaCo's loss over classifier logits, queries and the contrast set.

    Args:
        class_counts: Training images per class, shape (C,), every count >= 1.
        alpha: Weight of each sample-sample positive (paper: 0.01 CIFAR-100-LT IR 100,
            0.05 ImageNet-LT).
        beta: Weight of the sample-centre positive (1.0).
        gamma: Weight of the sample terms in the denominator (1.0).
        temperature: T of the sample-sample logits (the code's ``moco_t``).
        supervised_temperature: T_sup dividing the centre logits (1.0).
        base_temperature: T_base; the loss is scaled by T / T_base (default T: scale 1).
        queue_size, projection_dim, momentum: options of the model wrapper
            (:class:`nolb.models.paco.PaCoModel`), kept here so that ``loss.options``
            holds every PaCo setting; the loss itself does not use them.
    """

    def __init__(self, class_counts: Any, alpha: float = 0.05, beta: float = 1.0, gamma: float = 1.0,
                 temperature: float = 0.07, supervised_temperature: float = 1.0,
                 base_temperature: float | None = None, queue_size: int = 1024, projection_dim: int = 128,
                 momentum: float = 0.999) -> None:
        super().__init__(class_counts, positive_counts=True)
        name = self._name
        self.alpha = check_real(name, "alpha", alpha, minimum=0.0)
        self.beta = check_real(name, "beta", beta, minimum=0.0)
        self.gamma = check_real(name, "gamma", gamma, minimum=0.0)
        if self.alpha == 0 and self.beta == 0:
            raise NolbError(f"{name}: alpha and beta cannot both be 0 (no positive left)")
        self.temperature = check_real(name, "temperature", temperature, minimum=0.0, strict_minimum=True)
        self.supervised_temperature = check_real(name, "supervised_temperature", supervised_temperature,
                                                 minimum=0.0, strict_minimum=True)
        base = self.temperature if base_temperature is None else base_temperature
        self.base_temperature = check_real(name, "base_temperature", base, minimum=0.0, strict_minimum=True)
        if int(queue_size) != queue_size or queue_size < 1:
            raise NolbError(f"{name}: queue_size must be a whole number >= 1, got {queue_size!r}")
        if int(projection_dim) != projection_dim or projection_dim < 1:
            raise NolbError(f"{name}: projection_dim must be a whole number >= 1, got {projection_dim!r}")
        self.momentum = check_real(name, "momentum", momentum, minimum=0.0, maximum=1.0)
        self.queue_size, self.projection_dim = int(queue_size), int(projection_dim)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                queue: torch.Tensor, queue_labels: torch.Tensor) -> torch.Tensor:
        """The mean PaCo loss of a batch.

        Args:
            logits: Classifier scores of view 1, (N, C).
            target: Labels, (N,).
            query: L2-normalised projections of view 1, (N, D) (gradients flow).
            key: Momentum-encoder projections of view 2, (N, D) (labels ``target``).
            queue: Past keys, (K, D); ``queue_labels`` their labels, (K,).

        Returns:
            The scalar loss.
        """
        logits = check_batch(self._name, logits, target, self.num_classes)
        target = target.long()
        n = logits.shape[0]
        if query.shape[0] != n or key.shape != query.shape or queue.shape[1:] != query.shape[1:]:
            raise NolbError(f"{self._name}: query {tuple(query.shape)}, key {tuple(key.shape)} and queue "
                            f"{tuple(queue.shape)} must be (N, D), (N, D), (K, D) with N = {n}")
        with torch.autocast(logits.device.type, enabled=False):  # fp32 (or fp64) matmuls under AMP too
            dtype = logits.dtype
            contrast = torch.cat((query, key.detach(), queue.detach()), dim=0).to(dtype)
            contrast_labels = torch.cat((target, target, queue_labels.to(target.device).long()))
            prior = self._counts_as(logits)
            centre_logits = (logits + (prior / prior.sum()).log()) / self.supervised_temperature
            sample_logits = query.to(dtype) @ contrast.T / self.temperature
            all_logits = torch.cat((centre_logits, sample_logits), dim=1)
            all_logits = all_logits - all_logits.max(dim=1, keepdim=True).values.detach()

            not_self = torch.ones_like(sample_logits)
            not_self[torch.arange(n), torch.arange(n)] = 0.0
            denominator_weight = torch.cat((torch.ones_like(centre_logits), self.gamma * not_self), dim=1)
            log_prob = all_logits - (all_logits.exp() * denominator_weight).sum(dim=1, keepdim=True).log()

            same_class = (target[:, None] == contrast_labels[None, :]).to(dtype) * not_self
            positive_weight = torch.cat((self.beta * F.one_hot(target, self.num_classes).to(dtype),
                                         self.alpha * same_class), dim=1)
            mean_log_prob = (positive_weight * log_prob).sum(dim=1) / positive_weight.sum(dim=1)
            return -(self.temperature / self.base_temperature) * mean_log_prob.mean()
