"""`train.micro_batch_size: auto`: the largest micro-batch that fits on the GPU, found once per
(model shape, vocabulary, seq_len, precision, device, memory share) and cached on disk.

The candidates are the divisors of the batch, so every micro-batch has the same shape (a
compiled model never recompiles) and the accumulated gradient is the batch's. The search tries
the whole batch first, then bisects the divisors, assuming that what fits at size b fits below
b. The cache keeps, per key, the largest size known to fit and the smallest known not to, so a
later trial with another batch size probes only the sizes between the two. On CUDA a probe is a
forward and backward pass at that size (with the optimizer state's memory held aside) that
either runs or raises out-of-memory; elsewhere `auto` means no cap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import torch

from tuner import stores
from tuner.config import RunConfig
from tuner.device import device_name, synchronize
from tuner.files import atomic_write, file_lock
from tuner.models import resolve_shape

PROBED = ("cuda",)
"""Devices whose memory a probe measures; elsewhere `auto` means no cap."""
HEADROOM = 0.05
"""Share of the memory budget a probe leaves free (fragmentation, the loop's small tensors)."""


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def largest_fit(
    batch: int, fits: Callable[[int], bool], known_fit: int = 0, known_fail: int = 0
) -> tuple[int, int, int]:
    """The largest divisor of `batch` that `fits`, given sizes already known to fit
    (`known_fit`, 0 = none) or not (`known_fail`, 0 = none); returns (micro, fit, fail) with the
    bounds updated by what was probed. If not even 1 fits, micro is 1 (the run then fails as
    out of memory, with the allocator's message)."""
    sizes = divisors(batch)
    lo = max((i for i, s in enumerate(sizes) if s <= known_fit), default=-1)  # fits
    hi = min((i for i, s in enumerate(sizes) if known_fail and s >= known_fail), default=len(sizes))
    fit, fail = known_fit, known_fail

    def check(i: int) -> bool:
        nonlocal fit, fail
        ok = fits(sizes[i])
        if ok:
            fit = max(fit, sizes[i])
        else:
            fail = min(fail, sizes[i]) if fail else sizes[i]
        return ok

    if hi == len(sizes) and lo < hi - 1:  # the common case first: the whole batch fits
        if check(hi - 1):
            lo = hi - 1
        else:
            hi -= 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(mid):
            lo = mid
        else:
            hi = mid
    return (sizes[lo] if lo >= 0 else 1), fit, fail


def cache_key(config: RunConfig, vocab_size: int, device: torch.device, budget_bytes: int) -> str:
    """What a fit depends on: the model's shape, vocabulary, sequence length, dropout (its masks
    are kept for backward), precision, the optimizer (its state), the GPU and this process's
    memory budget."""
    shape = resolve_shape(config.model)
    m, tc = config.model, config.train
    return (
        f"{m.arch}|L{shape.n_layer}|d{shape.d_model}|h{shape.n_head}|ff{shape.d_ff}"
        f"|V{vocab_size}|T{tc.seq_len}|dropout={m.dropout > 0}|{tc.precision}|{config.optim.name}"
        f"|{device_name(device)}|{budget_bytes // 2**20}MiB"
    )


def cached_largest_fit(key: str, batch: int, fits: Callable[[int], bool]) -> int:
    """`largest_fit` with the bounds kept under stores.cache_dir() across trials and workers."""
    path = stores.cache_dir() / "micro_batch.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    known = _read(path).get(key, {})
    micro, fit, fail = largest_fit(batch, fits, known.get("fits", 0), known.get("fails", 0))
    if (fit, fail) != (known.get("fits", 0), known.get("fails", 0)):
        with file_lock(path.with_suffix(".lock")):  # other workers may write at the same time
            table = _read(path)
            entry = table.get(key, {})
            entry["fits"] = max(fit, entry.get("fits", 0))
            fails = [f for f in (fail, entry.get("fails", 0)) if f]
            entry["fails"] = min(fails) if fails else 0
            table[key] = entry
            atomic_write(path, json.dumps(table, indent=1, sort_keys=True))
    return micro


def _read(path: Path) -> dict:
    with suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def probe(
    attempt: Callable[[int], None],
    reset: Callable[[], None],
    device: torch.device,
    reserve_bytes: int,
) -> Callable[[int], bool]:
    """fits(size): does `attempt(size)` (a forward and backward pass) run on `device` while
    `reserve_bytes` (the optimizer state to come, plus headroom) are held aside? `reset` drops
    what the attempt left (gradients); the random state is restored, so probing does not change
    the run that follows."""
    cuda = device.type == "cuda"

    def run(size: int) -> None:
        with torch.random.fork_rng(devices=[device] if cuda else []):
            held = torch.empty(reserve_bytes, dtype=torch.uint8, device=device)
            attempt(size)
            synchronize(device)
            del held

    def fits(size: int) -> bool:
        try:
            run(size)
            ok = True
        except torch.OutOfMemoryError:  # the frames holding the activations are gone here
            ok = False
        reset()
        if cuda:
            torch.cuda.empty_cache()
        return ok

    return fits


def memory_budget(device: torch.device) -> int:
    """Bytes this process may allocate on a CUDA device: its total memory times the fraction
    set by tuner.device.apply_memory_fraction (1.0 when none)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    fraction = 1.0
    with suppress(AttributeError, RuntimeError):
        fraction = torch.cuda.get_per_process_memory_fraction(index)
    return int(total * fraction)
