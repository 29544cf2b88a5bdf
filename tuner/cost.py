"""What a run costs: peak FLOP/s (measured once per machine), peak memory, price."""

from __future__ import annotations

import json
import resource
import sys
import time

import torch

from tuner import stores
from tuner.config import CostConfig
from tuner.device import device_name, synchronize
from tuner.files import atomic_write


def peak_flops(device: torch.device, cfg: CostConfig) -> float:
    """Configured peak, else a matmul measurement (bf16 on CUDA, fp32 elsewhere) cached on disk."""
    if cfg.peak_flops > 0:
        return cfg.peak_flops
    key = f"{device_name(device)}|threads={torch.get_num_threads()}"
    path = stores.cache_dir() / "peak_flops.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    if key not in known:
        known[key] = measure_matmul_flops(device)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(known, indent=2))  # workers may measure at the same time
    return float(known[key])


def measure_matmul_flops(device: torch.device, seconds: float = 0.5) -> float:
    """Best sustained FLOP/s of a square matmul on this device."""
    n = 4096 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        synchronize(device)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start))
    return best


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory on CUDA; the process's peak resident memory elsewhere."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def price_usd(wall_seconds: float, device: torch.device, cfg: CostConfig) -> float:
    """Device-hours times the price table entry for the GPU name, else the device type."""
    table = cfg.price_per_hour
    rate = table.get(device_name(device), table.get(device.type, 0.0))
    return wall_seconds / 3600.0 * rate
