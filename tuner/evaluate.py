"""Scoring a language model on token arrays: loss, perplexity, bits per byte, accuracy.

Every trial scores exactly the same targets whatever its seq_len, and the final model is
scored the same way on the test split, so the numbers compare across trials and runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuner.errors import ConfigError
from tuner.models import logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tokens: np.ndarray,
    token_bytes: np.ndarray,
    seq_len: int,
    n_tokens: int,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, float]:
    """Loss, perplexity, bits per byte and accuracy on the first `n_tokens` targets of `tokens`.

    Windows of seq_len tile the range and the last one is cut short.
    """
    n_tokens = min(n_tokens, len(tokens) - 1)
    if n_tokens < 1:
        raise ConfigError("data: the evaluation split has fewer than 2 tokens")
    was_training = model.training
    model.eval()
    ids = torch.from_numpy(np.asarray(tokens[: n_tokens + 1]).astype(np.int64))
    byte_len = torch.from_numpy(token_bytes)
    nats = correct = 0.0
    full = n_tokens // seq_len
    chunks = [(ids[: full * seq_len + 1], seq_len)] if full else []
    if n_tokens % seq_len:
        chunks.append((ids[full * seq_len :], n_tokens % seq_len))
    for chunk, length in chunks:
        n_windows = (len(chunk) - 1) // length
        x = chunk[: n_windows * length].view(n_windows, length)  # (W, T)
        y = chunk[1 : n_windows * length + 1].view(n_windows, length)  # (W, T)
        for start in range(0, n_windows, batch_size):
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device)
            with autocast():
                out = logits(model, xb)  # (b, T, V)
            out = out.float()
            nats += F.cross_entropy(
                out.reshape(-1, out.size(-1)), yb.reshape(-1), reduction="sum"
            ).item()
            correct += (out.argmax(-1) == yb).sum().item()
    n_bytes = int(byte_len[ids[1:]].sum())
    model.train(was_training)
    loss = nats / n_tokens
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 700.0)),
        "val_bpb": nats / math.log(2) / max(n_bytes, 1),
        "val_accuracy": correct / n_tokens,
    }
