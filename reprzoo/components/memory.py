"""Memories of past embeddings, shared by methods: a FIFO queue (MoCo) and a bank keyed by sample index.

Both are module buffers, so they move with the model, live in checkpoints, and are identical on every rank:
writes all-gather the global batch first (no gradient flows into a memory).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.distributed import gather


class MemoryQueue(nn.Module):
    """A FIFO queue of ``size`` embeddings of width ``dim`` (MoCo's dictionary), optionally with their labels.

    ``enqueue`` writes the all-gathered keys over the oldest entries. ``size`` must be a multiple of the global
    batch for the pointer to wrap cleanly (MoCo's constraint); other sizes wrap by splitting the write.
    """

    def __init__(self, size: int, dim: int, normalize: bool = True):
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be positive, got {size}")
        initial = torch.randn(size, dim)
        self.register_buffer("embeddings", F.normalize(initial, dim=1) if normalize else initial)
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.normalize = normalize

    @property
    def size(self) -> int:
        return self.embeddings.shape[0]

    def valid(self) -> torch.Tensor:
        """The entries written so far (the random initial rows are excluded until the queue is full)."""
        return self.embeddings[: int(self.filled)]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        keys = gather(keys.detach())
        labels = gather(labels.detach()) if labels is not None else torch.full_like(keys[:, 0], -1, dtype=torch.long)
        if self.normalize:
            keys = F.normalize(keys, dim=1)
        keys, labels = keys[-self.size :], labels[-self.size :]
        start = int(self.pointer)
        positions = (torch.arange(keys.shape[0], device=keys.device) + start) % self.size
        self.embeddings[positions] = keys.to(self.embeddings.dtype)
        self.labels[positions] = labels
        self.pointer.fill_((start + keys.shape[0]) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + keys.shape[0]))


class MemoryBank(nn.Module):
    """One embedding per training sample, updated by momentum: m_i <- normalise(mu m_i + (1 - mu) v_i)
    (Wu et al. 2018's memory bank, used by InterCLR). Rows start as random unit vectors."""

    def __init__(self, num_samples: int, dim: int, momentum: float = 0.5):
        super().__init__()
        self.register_buffer("embeddings", F.normalize(torch.randn(num_samples, dim), dim=1))
        self.momentum = momentum

    @torch.no_grad()
    def update(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        indices, values = gather(indices.detach()), gather(values.detach())
        mixed = self.momentum * self.embeddings[indices] + (1 - self.momentum) * F.normalize(values.float(), dim=1)
        self.embeddings[indices] = F.normalize(mixed, dim=1).to(self.embeddings.dtype)
