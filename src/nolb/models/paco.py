"""PaCo's model: any nolb model plus a projection MLP, a momentum encoder and a key queue.

Following PaCo's public code (MoCo v2 layout, ``PaCo/LT/moco/builder.py``): the query
encoder is the wrapped model's backbone; a projection MLP (Linear - BatchNorm - ReLU -
Linear) maps its pooled features to the contrastive space; a momentum copy of backbone and
projection ("key encoder", updated as ``k <- m k + (1 - m) q`` before each key forward,
never by gradients) encodes the second view; a FIFO queue of the last K keys and their
labels (buffers, so they are saved in every checkpoint) extends the contrast set.  The
classifier stays on the backbone's features, so stages 2 and 3 see an ordinary model:
``forward_features``, ``classifier`` and ``feature_dim`` are the wrapped model's, and
``forward(x) = classifier(forward_features(x))``.

Two deliberate differences from the public code: the initial queue holds random *unit*
rows (the code normalises its (K, D) random queue along K, a leftover of MoCo's (D, K)
layout), and the keys are enqueued at ``(ptr + arange(B)) % K`` so any batch size works
(the code asserts K % B == 0).  MoCo's cross-GPU batch shuffle for the key encoder's
BatchNorm is not reproduced (a single process has nothing to shuffle).
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["PaCoModel"]


class PaCoModel(nn.Module):
    """Wrap ``model`` (with ``forward_features``, ``classifier``, ``feature_dim``) for PaCo.

    Args:
        model: The model to train; its classifier is moved onto the wrapper.
        num_classes: C (labels of the random initial queue).
        queue_size: K, keys kept in the queue.
        projection_dim: Output size of the projection MLP.
        momentum: m of the key encoder's update.
    """

    def __init__(self, model: nn.Module, num_classes: int, *, queue_size: int = 1024, projection_dim: int = 128,
                 momentum: float = 0.999) -> None:
        super().__init__()
        self.momentum = float(momentum)
        self.feature_dim = int(model.feature_dim)
        self.classifier = model.classifier
        model.classifier = nn.Identity()
        self.encoder = model
        d = self.feature_dim
        self.projection = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
                                        nn.Linear(d, projection_dim))
        self.key_encoder = copy.deepcopy(self.encoder)
        self.key_projection = copy.deepcopy(self.projection)
        for parameter in [*self.key_encoder.parameters(), *self.key_projection.parameters()]:
            parameter.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("queue_labels", torch.randint(0, num_classes, (queue_size,)))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.int64))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features, (N, feature_dim)."""
        return self.encoder.forward_features(x)

    def forward(self, x: torch.Tensor, key_images: torch.Tensor | None = None):
        """``classifier(forward_features(x))``; with ``key_images`` the training outputs.

        With ``key_images`` (view 2 of the same images) it first moves the key encoder
        towards the query encoder, then returns ``(logits, query, key)``: the classifier's
        logits of view 1, the normalised projection of view 1 and the key encoder's
        normalised projection of view 2 (no gradient).
        """
        features = self.forward_features(x)
        logits = self.classifier(features)
        if key_images is None:
            return logits
        query = F.normalize(self.projection(features), dim=1)
        with torch.no_grad():
            self.momentum_update()
            key = F.normalize(self.key_projection(self.key_encoder.forward_features(key_images)), dim=1)
        return logits, query, key

    @torch.no_grad()
    def momentum_update(self) -> None:
        """k <- m k + (1 - m) q over the encoder and projection parameters."""
        pairs = zip([*self.encoder.parameters(), *self.projection.parameters()],
                    [*self.key_encoder.parameters(), *self.key_projection.parameters()])
        for query_param, key_param in pairs:
            key_param.mul_(self.momentum).add_(query_param.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, key: torch.Tensor, labels: torch.Tensor) -> None:
        """Write this step's keys (all processes' under DDP, in rank order) into the queue."""
        key, labels = _gather(key.detach()), _gather(labels.detach())
        size = self.queue.shape[0]
        if key.shape[0] > size:
            key, labels = key[-size:], labels[-size:]
        slots = (int(self.queue_ptr) + torch.arange(key.shape[0], device=self.queue.device)) % size
        self.queue[slots] = key.to(self.queue.dtype)
        self.queue_labels[slots] = labels.to(self.queue_labels.dtype)
        self.queue_ptr[0] = (int(self.queue_ptr) + key.shape[0]) % size


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """All processes' ``tensor`` concatenated in rank order (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
