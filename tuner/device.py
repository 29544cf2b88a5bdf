"""Which device a run uses and at what precision: the one rule every caller shares; whether
torch.compile works here; a worker's share of its GPU."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def uses_bf16(precision: str, device: torch.device) -> bool:
    """`auto` means bf16 autocast on CUDA and fp32 elsewhere."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast_for(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the autocast context every forward pass of a run is wrapped in."""
    if uses_bf16(precision, device):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- torch.compile, GPU share

MEMORY_FRACTION_ENV = "TUNER_GPU_MEMORY_FRACTION"
"""The share of its GPU a worker process may allocate (set by tuner.spawn for K workers)."""
CONTEXT_BYTES = 768 * 2**20
"""GPU memory a CUDA context takes outside PyTorch's allocator (a rough, generous figure)."""


@functools.cache
def compile_problem(device_type: str) -> str:
    """'' if torch.compile can build and run a kernel on this device type here, else why not
    (one line): a platform without a C++ compiler or Triton fails here, before a trial does."""
    try:
        probe = torch.compile(lambda t: torch.sin(t) * 2 + 1, dynamic=False)
        probe(torch.ones(8, device=device_type))
        return ""
    except Exception as err:  # noqa: BLE001 - any failure means: no compiler here
        return one_line(err)


def is_compile_error(err: BaseException) -> bool:
    """An exception raised by torch.compile's machinery (dynamo, inductor, a backend)."""
    module = type(err).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor"))


def one_line(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def warn_eager(reason: str) -> None:
    """The one-line warning a run prints when train.compile falls back to eager mode."""
    if reason not in _warned:
        _warned.add(reason)
        print(f"warning: train.compile: running eager ({reason})", file=sys.stderr, flush=True)


_warned: set[str] = set()


def apply_memory_fraction(device: torch.device) -> float:
    """Cap this process's CUDA allocations at its share of the GPU (TUNER_GPU_MEMORY_FRACTION,
    less one CUDA context), so K workers on one GPU cannot starve each other: a trial beyond its
    share fails as out of memory. Returns the fraction set (0.0: none)."""
    raw = os.environ.get(MEMORY_FRACTION_ENV, "")
    if device.type != "cuda" or not raw:
        return 0.0
    share = float(raw)
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (index, share)
    if key not in _fractions:
        total = torch.cuda.get_device_properties(index).total_memory
        fraction = min(1.0, max(share / 2, share - CONTEXT_BYTES / total))
        torch.cuda.set_per_process_memory_fraction(fraction, index)
        _fractions[key] = fraction
    return _fractions[key]


_fractions: dict[tuple[int, float], float] = {}
