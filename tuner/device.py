"""Which device a run uses and at what precision: the one rule every caller shares."""

from __future__ import annotations

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
