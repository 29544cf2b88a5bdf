"""What a run costs: FLOPs per token in two conventions, peak FLOP/s (measured once per machine,
and the data-sheet figure for known GPUs), MFU, peak memory, price."""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from typing import Any

import torch
from torch import nn

from tuner import stores
from tuner.config import CostConfig, RunConfig
from tuner.device import device_name, synchronize
from tuner.files import atomic_write
from tuner.models import count_params, resolve_shape

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, in FLOP/s, keyed by
# a fragment of torch.cuda.get_device_name(); the longest fragment found as a whole word wins
# ("NVIDIA H100 PCIe" -> "H100 PCIe", "NVIDIA A100-SXM4-80GB" -> "A100", "NVIDIA A10G" -> none).
DATASHEET_BF16_PEAK: dict[str, float] = {
    "H100": 989.4e12,  # H100 SXM5; its name reads "NVIDIA H100 80GB HBM3"
    "H100 PCIe": 756.0e12,
    "H100 NVL": 835.0e12,
    "H200": 989.4e12,  # H200 SXM
    "H200 NVL": 835.0e12,
    "GH200": 989.4e12,
    "B200": 2250e12,
    "A100": 312.0e12,
    "A10": 125.0e12,
    "L40S": 362.05e12,
    "L40": 181.05e12,
    "L4": 121.0e12,
    "RTX 4090": 165.2e12,  # with fp32 accumulation, as PyTorch's bf16 matmuls use
}


def datasheet_peak(name: str) -> float:
    """The data-sheet dense bf16 peak of a GPU by its CUDA name; 0.0 if not in the table."""
    found = [
        fragment
        for fragment in DATASHEET_BF16_PEAK
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(fragment)}(?![A-Za-z0-9])", name, re.I)
    ]
    return DATASHEET_BF16_PEAK[max(found, key=len)] if found else 0.0


def flops_per_token(
    n_matmul_params: int, n_layer: int, d_model: int, seq_len: int, convention: str = "kaplan"
) -> float:
    """Training FLOPs per token: 6·N for the weight matmuls (forward + backward, N = weights
    that take part in a matmul: non-embedding ones plus the output projection) plus attention.

    kaplan: + 6·L·T·d (Kaplan et al. 2020: 2·L·T·d forward; tuner's budgets and `mfu` use it).
    palm:   + 12·L·T·d (Chowdhery et al. 2022, app. B: 6N + 12·L·H·Q·T with H·Q = d; both
            attention matmuls, QK^T and AV, counted in full as the hardware computes them).
    An architecture without attention passes n_layer=0.
    """
    per_layer = {"kaplan": 6, "palm": 12}[convention]
    return 6.0 * n_matmul_params + per_layer * n_layer * seq_len * d_model


def mfu(tokens_per_second: float, flops_per_tok: float, peak: float) -> float:
    """Model FLOPs utilisation: the model's FLOPs per second over the peak (0.0 without one)."""
    return tokens_per_second * flops_per_tok / peak if peak > 0 else 0.0


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


def conventions(n_non_embedding: int, vocab_size: int, config: RunConfig) -> dict[str, float]:
    """Training FLOPs per token of `config`'s model in both conventions (`kaplan` is the one
    tuner.models.flops_per_token gives, which budgets use)."""
    shape = resolve_shape(config.model)
    layers = shape.n_layer if config.model.arch in ("gpt2", "llama") else 0
    n_matmul = n_non_embedding + vocab_size * shape.d_model
    return {
        c: flops_per_token(n_matmul, layers, shape.d_model, config.train.seq_len, c)
        for c in ("kaplan", "palm")
    }


def run_figures(
    model: nn.Module,
    config: RunConfig,
    vocab_size: int,
    tokens_seen: int,
    budget_tokens: int,
    timing: dict[str, float],
    device: torch.device,
) -> dict[str, Any]:
    """What a run cost: parameters, FLOPs, tokens, time, MFU, memory, device and price.

    `mfu` counts 6·N + 6·L·T·d FLOPs per token against the run's peak (configured, else
    measured); `mfu_palm` counts 6·N + 12·L·T·d (PaLM) against the same peak; on a GPU in the
    data-sheet table, `mfu_palm_datasheet` is PaLM's count against its dense bf16 peak.
    """
    n_params, n_non_embedding = count_params(model)
    flops = conventions(n_non_embedding, vocab_size, config)
    train_seconds = max(timing["train_seconds"], 1e-9)
    tokens_per_second = tokens_seen / train_seconds
    peak = peak_flops(device, config.cost)
    name = device_name(device)
    figures = {
        "n_params": n_params,
        "n_params_non_embedding": n_non_embedding,
        "flops_per_token": flops["kaplan"],
        "flops_per_token_palm": flops["palm"],
        "train_flops": flops["kaplan"] * tokens_seen,
        "tokens_seen": tokens_seen,
        "budget_tokens": budget_tokens,
        **timing,
        "tokens_per_second": tokens_per_second,
        "mfu": mfu(tokens_per_second, flops["kaplan"], peak),
        "mfu_palm": mfu(tokens_per_second, flops["palm"], peak),
        "peak_flops": peak,
        "peak_memory_bytes": peak_memory_bytes(device),
        "device": name,
        "price_usd": price_usd(timing["wall_seconds"], device, config.cost),
    }
    datasheet = datasheet_peak(name) if device.type == "cuda" else 0.0
    if datasheet:
        figures["peak_flops_datasheet"] = datasheet
        figures["mfu_palm_datasheet"] = mfu(tokens_per_second, flops["palm"], datasheet)
    return figures
