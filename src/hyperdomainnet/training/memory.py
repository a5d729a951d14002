"""Memory helpers for trainers: exact gradient accumulation over micro-batches, and a micro-batch
size that halves when a step runs out of memory.

``MicroBatched`` computes the gradient of a loss of per-sample outputs f(x_1…x_B) (rendered
images) while holding the autograd graph of only one micro-batch of f:

1. ``outputs()``: f of every micro-batch without autograd, concatenated into a leaf o;
2. ``backward(total)``: ``total.backward()`` gives ∂L/∂o (and the gradients of terms that do not
   go through f, e.g. regularisers), then each micro-batch is rendered again with autograd and
   back-propagated with its rows of ∂L/∂o.

By the chain rule the accumulated gradient is the full-batch gradient (up to float summation
order) for ANY loss of the outputs, pairwise ones included, provided f treats samples
independently (no BatchNorm over the batch inside f) and deterministically (fixed noise). The
cost is one extra forward pass of f. With a single micro-batch there is no second pass: the
outputs carry their graph and ``backward`` is ``total.backward()``.
"""
from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import torch

T = TypeVar("T")


def micro_slices(batch: int, micro_batch: int | None) -> list[slice]:
    """[0, batch) in consecutive slices of at most ``micro_batch`` samples (None: one slice)."""
    size = batch if micro_batch is None else max(1, min(micro_batch, batch))
    return [slice(start, min(start + size, batch)) for start in range(0, batch, size)]


def narrow_noise(noise: list[torch.Tensor | None], part: slice, batch: int) -> list[torch.Tensor | None]:
    """The samples ``part`` of per-layer noise maps; maps shared by the batch (leading 1) stay."""
    return [n[part] if n is not None and n.shape[0] == batch else n for n in noise]


class MicroBatched:
    """Per-sample outputs ``forward(part)`` ((n, …) for the samples ``part``) over ``parts``, with
    the exact full-batch gradient in ``backward``; see the module docstring.

    ``context`` (e.g. the trainer's autocast) wraps every call of ``forward``.
    """

    def __init__(self, forward: Callable[[slice], torch.Tensor], parts: list[slice],
                 context: Callable[[], AbstractContextManager] = nullcontext) -> None:
        self.forward, self.parts, self.context = forward, parts, context
        self._leaf: torch.Tensor | None = None

    def outputs(self) -> torch.Tensor:
        """Outputs for the whole batch: with their graph (one part) or as a leaf (several)."""
        if len(self.parts) == 1:
            with self.context():
                return self.forward(self.parts[0])
        with torch.no_grad(), self.context():
            self._leaf = torch.cat([self.forward(part) for part in self.parts]).requires_grad_(True)
        return self._leaf

    def backward(self, total: torch.Tensor) -> None:
        """Accumulate ∂total/∂(everything ``forward`` and ``total`` depend on) into ``.grad``."""
        total.backward()
        grad = None if self._leaf is None else self._leaf.grad
        self._leaf = None
        if grad is None:
            return
        for part in self.parts:
            with self.context():
                out = self.forward(part)
            out.backward(grad[part].to(out.dtype))


class AdaptiveMicroBatch:
    """A trainer's micro-batch size (None: the whole batch). With ``adaptive``, ``run`` retries a
    step that ran out of device memory with half as many samples per micro-batch (the gradient
    is the same, see ``MicroBatched``) and keeps the smaller size for later steps."""

    def __init__(self, batch: int, size: int | None = None, adaptive: bool = False) -> None:
        self.batch, self.adaptive = batch, adaptive
        self.size = batch if size is None else max(1, min(size, batch))

    def parts(self) -> list[slice]:
        return micro_slices(self.batch, self.size)

    def run(self, step: Callable[[list[slice]], T]) -> T:
        """``step(parts)``; on ``torch.OutOfMemoryError`` halve the size and retry (adaptive only).

        ``step`` must leave no state changed when it fails (zero the gradients before backward,
        update the optimiser last).
        """
        while True:
            try:
                return step(self.parts())
            except torch.OutOfMemoryError:
                if not self.adaptive or self.size == 1:
                    raise
            self.size = (self.size + 1) // 2
            _release_memory()


def _release_memory() -> None:
    """Drop the failed attempt's tensors and return cached device memory."""
    gc.collect()
    for module in _accelerators():
        module.empty_cache()


def _accelerators() -> Iterator:
    if torch.cuda.is_available():
        yield torch.cuda
    if hasattr(torch, "mps") and torch.backends.mps.is_available():
        yield torch.mps
