"""Counting every evaluation sample exactly once under ``DistributedSampler`` padding.

When the dataset size n is not divisible by the world size w, ``DistributedSampler(drop_last=False)`` pads
its index list to a multiple of w by repeating indices from the start, then gives rank r the positions
r, r + w, r + 2w, ... of that list. A position p is a repeat exactly when p >= n, so rank r's k-th sample
(p = r + k w) is real for k < len(range(r, n, w)) and a repeat after. Repeats always come last in a rank's
stream, so the callback keeps a count of samples seen and drops the tail: no change to the sampler, no
communication, and the distributed result equals a single-device run over the same data.
"""

from __future__ import annotations

from torch.utils.data import DataLoader, DistributedSampler


def real_samples_on_rank(dataloader: object) -> int | None:
    """How many of this rank's samples are real, or None when the loader does not pad (nothing to drop).

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.arange(7))
        >>> loader = DataLoader(data, sampler=DistributedSampler(data, num_replicas=2, rank=1, shuffle=False))
        >>> real_samples_on_rank(loader)  # rank 1 sees positions 1, 3, 5, 7; position 7 repeats sample 0
        3
    """
    sampler = _distributed_sampler(dataloader)
    if sampler is None or sampler.drop_last:
        return None
    return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))


def _distributed_sampler(dataloader: object) -> DistributedSampler | None:
    if not isinstance(dataloader, DataLoader):
        return None
    candidates = [dataloader.sampler, getattr(dataloader.batch_sampler, "sampler", None)]
    return next((s for s in candidates if isinstance(s, DistributedSampler)), None)


class SampleBudget:
    """Per-dataloader count of samples seen in an epoch, and how many of a new batch's rows are real."""

    def __init__(self) -> None:
        self.limits: dict[int, int | None] = {}
        self.seen: dict[int, int] = {}

    def reset(self, dataloaders: object) -> None:
        loaders = dataloaders if isinstance(dataloaders, (list, tuple)) else [dataloaders]
        self.limits = {index: real_samples_on_rank(loader) for index, loader in enumerate(loaders)}
        self.seen = {index: 0 for index in self.limits}

    def rows_to_keep(self, dataloader_idx: int, batch_rows: int) -> int:
        seen = self.seen.get(dataloader_idx, 0)
        self.seen[dataloader_idx] = seen + batch_rows
        limit = self.limits.get(dataloader_idx)
        return batch_rows if limit is None else max(0, min(batch_rows, limit - seen))
