"""torchrun integration: process group set-up from the environment, rank helpers.

``torchrun --nproc_per_node=N -m nolb train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` then joins the process group (gloo on the CPU,
NCCL on GPUs).  Without those variables everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (idempotent).

    Args:
        device: The training device: NCCL for CUDA, gloo otherwise.

    Returns:
        The rank, world size and local rank.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def local_rank() -> int:
    """torchrun's ``LOCAL_RANK`` (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_flag(value: bool, device: torch.device) -> bool:
    """True on every rank when ``value`` is true on any rank (e.g. a non-finite loss)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    flag = torch.tensor([1.0 if value else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step
    each rank holds statistics updated by its own batch; evaluation and checkpoints must
    all use rank 0's.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
