"""What keeps an accelerator busy between the training loop's lines: batches drawn, pinned and
copied ahead of the step that needs them, and training losses read once the device has them
instead of waited for.

A CUDA step is queued, not run, when the loop's line returns; every `.item()` or copy from
pageable host memory makes the host wait until the device has drained its queue, and the device
then idles while the host prepares the next step. On a CPU both classes reduce to the plain
thing (draw now, read now), so CPU results do not change.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch


def is_async(device: torch.device) -> bool:
    """Whether a step on this device is queued rather than run when its line returns."""
    return device.type == "cuda"


def draw_windows(
    tokens: np.ndarray, batch_size: int, seq_len: int, gen: torch.Generator
) -> torch.Tensor:
    """Random windows of seq_len+1 tokens, (B, T+1) int64 on the CPU."""
    starts = torch.randint(len(tokens) - seq_len - 1, (batch_size,), generator=gen).numpy()
    window = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(window)


def sample_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of seq_len+1 tokens -> inputs and next-token targets, (B, T) each."""
    batch = draw_windows(tokens, batch_size, seq_len, gen).to(device, non_blocking=True)
    return batch[:, :-1], batch[:, 1:]


class BatchStream:
    """The batches `sample_batch` would draw, in the same order from the same generator.

    On CUDA the next batch is drawn, pinned and its copy queued (non-blocking) as soon as the
    current one is handed out, so neither the host's sampling nor a copy from pageable memory
    (which waits for the device) sits between two steps.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        seq_len: int,
        gen: torch.Generator,
        device: torch.device,
    ):
        self.args = (tokens, batch_size, seq_len, gen)
        self.device = device
        self.ahead = is_async(device)
        self._next = self._load() if self.ahead else None

    def _load(self) -> tuple[torch.Tensor, torch.Tensor]:
        window = draw_windows(*self.args)
        if self.ahead:
            window = window.pin_memory()  # the caching host allocator keeps it until copied
        batch = window.to(self.device, non_blocking=True)
        return batch[:, :-1], batch[:, 1:]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.ahead:
            return self._load()
        batch, self._next = self._next, self._load()
        return batch


class LossBook:
    """Per-step training losses in (0-d device tensors), checked in step order as they arrive.

    On CUDA a loss is copied to pinned host memory without waiting and read when its event has
    fired (`update()`), or when the loop must know (`update(wait=True)`: at milestones and at
    the end). Elsewhere it is read at once. Divergence: the first step whose loss is not finite
    or exceeds `factor` x the first step's loss; a CUDA run notices it a few queued steps late
    (the steps it ran are counted), with the same reason naming the same step.
    """

    def __init__(self, device: torch.device, factor: float, lazy: bool | None = None):
        self.lazy = is_async(device) if lazy is None else lazy
        self.factor = factor
        self.first: float | None = None
        self.window: list[float] = []
        """Losses since the last `take_window`."""
        self.reason = ""
        self._queued: deque[tuple[int, Any, Any]] = deque()

    def add(self, step: int, loss: torch.Tensor) -> None:
        if not self.lazy:
            self._check(step, loss.item())
            return
        self._queued.append((step, *self._enqueue(loss)))

    def _enqueue(self, loss: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """A pinned host copy of `loss` queued behind the step, and an event that fires when
        it has landed."""
        host = torch.empty((), dtype=loss.dtype, pin_memory=True)
        host.copy_(loss, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event

    def update(self, wait: bool = False) -> str:
        """Read every loss the device has produced (all of them with `wait`); the divergence
        reason, or '' while the run has not diverged."""
        while self._queued and not self.reason:
            step, host, event = self._queued[0]
            if wait:
                event.synchronize()
            elif not event.query():
                break
            self._queued.popleft()
            self._check(step, float(host))
        return self.reason

    def take_window(self) -> float:
        """Mean training loss since the last call (0.0 if none)."""
        mean = sum(self.window) / max(len(self.window), 1)
        self.window = []
        return mean

    def _check(self, step: int, loss: float) -> None:
        if self.reason:
            return
        self.first = loss if self.first is None else self.first
        self.reason = divergence(loss, self.first, self.factor, step)
        if not self.reason:
            self.window.append(loss)


def divergence(loss: float, first: float, factor: float, step: int) -> str:
    """Why a run has diverged at this step, or '' while it has not."""
    if math.isfinite(loss) and loss <= factor * first:
        return ""
    return f"diverged: train loss {loss:.4g} at step {step} (first {first:.4g}, limit x{factor:g})"
