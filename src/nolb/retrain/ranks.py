"""Stages 2-3 under torchrun: features extracted once over all ranks, the rest on rank 0.

Under ``torchrun`` (``WORLD_SIZE > 1``) stage 1 is data-parallel; stages 2-3 split the work
as follows.  Feature extraction is sharded: every rank walks the same list of batches of a
split (the one-process loader: same images per batch, same augmentation draws) and runs the
backbone on batch ``b`` only when ``b % world_size == rank``; the features are gathered to
rank 0 one view at a time, put back in batch order and written there once (atomically,
manifest last) while the other ranks wait at a barrier.  The cache is therefore the one a
single process writes, whatever the world size.  Head training, selection, the ensemble and
the report then run on rank 0 only (a head is a small matmul over cached rows; docs/SCALING.md
says why data-parallel heads do not pay), and rank 0 broadcasts its exit code so that every
rank leaves with the same code while only rank 0 prints.

The coordination uses its own gloo group with a long timeout (CPU objects, whatever the
training backend): ranks > 0 may wait hours at the final broadcast while rank 0 trains heads.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from nolb.engine.distributed import DistInfo, init_distributed
from nolb.errors import NolbError
from nolb.progress import track
from nolb.retrain.inference import backbone_features

T = TypeVar("T")
WAIT_TIMEOUT = timedelta(days=7)
_GROUPS: dict[int, Any] = {}


class OtherRankExit(SystemExit):
    """Raised on ranks > 0 when rank 0's stage 2-3 work failed: exit with rank 0's code, silently."""


def join(device: torch.device) -> DistInfo:
    """This process's rank (joining the torchrun process group if it is not joined yet)."""
    return init_distributed(device)


def _group(info: DistInfo):
    if info.world_size not in _GROUPS:
        _GROUPS[info.world_size] = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
    return _GROUPS[info.world_size]


def broadcast_value(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not info.distributed:
        return value
    box = [value if info.is_main else None]
    dist.broadcast_object_list(box, src=0, group=_group(info))
    return box[0]


def own_batches(loader: Any, *, view: int, seed: int, info: DistInfo) -> Iterator[tuple[int, Any, Any]]:
    """``(b, x, y)`` for the batches ``b`` of ``loader`` (one view) that this rank runs: ``b % world == rank``.

    In-memory loaders (whole-batch augmentation from one generator) are walked in full, so
    that each batch gets the draws it gets on one process; only the backbone is skipped.
    Per-image loaders (a torch ``DataLoader`` without workers) decode only this rank's
    batches; each batch's random transforms are drawn from the global RNG seeded by
    ``(seed, view, b)`` (restored afterwards), so they do not depend on the world size.
    """
    dataloader = getattr(loader, "loader", None)
    if not (isinstance(dataloader, torch.utils.data.DataLoader) and dataloader.num_workers == 0
            and dataloader.batch_size and hasattr(loader, "sampler")):
        for b, (x, y) in enumerate(loader):
            if b % info.world_size == info.rank:
                yield b, x, y
        return
    order, size = list(iter(loader.sampler)), dataloader.batch_size
    for b in range(info.rank, -(-len(order) // size), info.world_size):
        state = np.random.SeedSequence([seed, view, b]).generate_state(1, dtype=np.uint64)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
            x, y = dataloader.collate_fn([dataloader.dataset[i] for i in order[b * size:(b + 1) * size]])
        yield b, x, y


@torch.no_grad()
def sharded_batches(backbone: torch.nn.Module, loader: Any, *, views: int, device: torch.device,
                    info: DistInfo, desc: str, seed: int = 0, dtype: torch.dtype = torch.float16,
                    fast: bool = False, compute_dtype: str = "float32") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(features (B, D) of ``dtype``, labels (B,))`` of every batch in loader order, on rank 0.

    ``fast`` (the float16 training views): the backbone runs through
    :func:`nolb.retrain.inference.backbone_features` with channels-last input, CPU chunks
    of cache-sized batches and ``compute_dtype`` (values equal up to float32 rounding in
    float32; bf16 rounding under ``"bfloat16"``).  Otherwise each batch runs whole, as given,
    in float32: bit for bit the model's own forward (validation and test).

    Every rank must consume this generator (the gathers are collective); ranks > 0 get
    nothing from it.  Each batch is run through the backbone by exactly one rank.
    """
    backbone.eval()
    for view in range(views):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(view)
        mine = []
        own = -(-(len(loader) - info.rank) // info.world_size)
        for b, x, y in track(own_batches(loader, view=view, seed=seed, info=info), total=own,
                             desc=f"{desc} (view {view + 1}/{views})", unit="batch"):
            x = x.to(device)
            feats = backbone_features(backbone, x, channels_last=fast, chunk=None if fast else len(x),
                                      dtype=compute_dtype if fast else "float32")
            mine.append((b, feats.cpu().to(dtype).numpy(), torch.as_tensor(y).cpu().long().numpy()))
        if not info.distributed:
            gathered: list[Any] | None = [mine]
        else:
            gathered = [None] * info.world_size if info.is_main else None
            dist.gather_object(mine, gathered, dst=0, group=_group(info))
        if info.is_main:
            for _, feats, labels in sorted((item for part in gathered for item in part), key=lambda item: item[0]):
                yield feats, labels


def share_features(source: Any, info: DistInfo) -> None:
    """Extract every split of ``source`` once over all ranks; rank 0 ends up holding them.

    Rank 0 decides which splits its cache lacks (or holds stale); those are extracted
    sharded and written by rank 0 (the others wait at a barrier).  On one process this does
    nothing: the splits stay lazy (computed on first request).
    """
    if not info.distributed:
        return
    splits = [name for name in ("train", "val", "test") if source.has(name)]
    cached = {}
    if info.is_main and source.cache is not None:
        cached = {name: source.cache.load(name, source.fingerprint(name)) for name in splits}
    missing = broadcast_value([name for name in splits if cached.get(name) is None], info)
    for name in splits:
        if name not in missing:
            if info.is_main:
                source.remember(name, cached[name], reused=True)
            continue
        batches = source.batches(name, info)
        if info.is_main:
            source.store(name, batches)
        else:
            for _ in batches:  # the gathers are collective; rank > 0 receives nothing
                pass
        dist.barrier(group=_group(info))


def on_rank0(work: Callable[[], T], info: DistInfo) -> T | None:
    """Run ``work`` on rank 0 only; every rank then leaves with rank 0's outcome.

    Returns ``work()``'s result on rank 0 and None on the other ranks.  If ``work`` raises
    on rank 0, rank 0 re-raises (it prints the error) and the other ranks raise
    :class:`OtherRankExit` with the same exit code (2 for a ``NolbError``, 130 for an
    interrupt, 1 otherwise), printing nothing.
    """
    if not info.distributed:
        return work()
    if not info.is_main:
        code = broadcast_value(None, info)
        if code:
            raise OtherRankExit(code)
        return None
    try:
        result = work()
    except NolbError:
        broadcast_value(2, info)
        raise
    except KeyboardInterrupt:
        broadcast_value(130, info)
        raise
    except BaseException:
        broadcast_value(1, info)
        raise
    broadcast_value(0, info)
    return result
