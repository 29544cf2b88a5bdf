"""Architectures and size presets; parameter and FLOP counts.

`gpt2` and `llama` are built from config with transformers (random init, input and output
embeddings tied); `lstm` and `gru` are plain PyTorch. Every model maps input ids (B, T) to
logits (B, T, V) through `logits(model, ids)`.
"""

from __future__ import annotations

import torch
from torch import nn

from tuner.config import SIZE_PRESETS, ModelConfig, Shape
from tuner.errors import ConfigError


def resolve_shape(cfg: ModelConfig) -> Shape:
    """Preset values, overridden by any explicit non-zero field."""
    base = SIZE_PRESETS.get(cfg.size, Shape(0, 0, 0, 0))
    shape = Shape(
        n_layer=cfg.n_layer or base.n_layer,
        d_model=cfg.d_model or base.d_model,
        n_head=cfg.n_head or base.n_head or 1,
        d_ff=cfg.d_ff or base.d_ff or 4 * (cfg.d_model or base.d_model),
    )
    if cfg.arch in ("gpt2", "llama") and shape.d_model % shape.n_head:
        raise ConfigError(
            f"model: d_model {shape.d_model} is not divisible by n_head {shape.n_head}"
        )
    return shape


class RecurrentLM(nn.Module):
    """Embedding -> dropout -> LSTM/GRU stack -> dropout -> tied output projection."""

    def __init__(self, arch: str, vocab_size: int, shape: Shape, dropout: float):
        super().__init__()
        rnn_cls = nn.LSTM if arch == "lstm" else nn.GRU
        self.embed = nn.Embedding(vocab_size, shape.d_model)
        self.drop = nn.Dropout(dropout)
        self.rnn = rnn_cls(
            shape.d_model,
            shape.d_model,
            num_layers=shape.n_layer,
            dropout=dropout if shape.n_layer > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(shape.d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.embed(input_ids))  # (B, T, d)
        h, _ = self.rnn(h)  # (B, T, d)
        return self.head(self.drop(h))  # (B, T, V)


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int) -> nn.Module:
    """A freshly initialised model; seed torch before calling for reproducibility."""
    shape = resolve_shape(cfg)
    if cfg.arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2Config(
            vocab_size=vocab_size,
            n_positions=seq_len,
            n_embd=shape.d_model,
            n_layer=shape.n_layer,
            n_head=shape.n_head,
            n_inner=shape.d_ff,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            activation_function="gelu_pytorch_tanh",  # GPT-2's tanh GELU in one kernel
            tie_word_embeddings=True,
            bos_token_id=0,
            eos_token_id=0,
        )
        return _parametrize(GPT2LMHeadModel(hf), cfg)
    if cfg.arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        hf = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=shape.d_model,
            intermediate_size=shape.d_ff,
            num_hidden_layers=shape.n_layer,
            num_attention_heads=shape.n_head,
            num_key_value_heads=shape.n_head,
            max_position_embeddings=seq_len,
            attention_dropout=cfg.dropout,
            tie_word_embeddings=True,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=None,
        )
        return _parametrize(LlamaForCausalLM(hf), cfg)
    return RecurrentLM(cfg.arch, vocab_size, shape, cfg.dropout)


def _parametrize(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """SP as transformers builds it, or its μP form (tuner/mup.py)."""
    if cfg.parametrization != "mup":
        return model
    from tuner.mup import apply_mup

    return apply_mup(model, cfg.base_width)


def logits(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, T, V) logits for any architecture."""
    out = model(input_ids=input_ids) if hasattr(model, "config") else model(input_ids)
    return out.logits if hasattr(out, "logits") else out


def max_positions(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, non-embedding) parameter counts; tied weights are counted once."""
    seen: set[int] = set()
    total = 0
    embedding = 0
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            total += param.numel()
            if isinstance(module, nn.Embedding):
                embedding += param.numel()
    return total, total - embedding


def flops_per_token(
    n_params_non_embedding: int, vocab_size: int, cfg: ModelConfig, seq_len: int
) -> float:
    """Training FLOPs per token: 6·N (N = non-embedding weights + the output projection)
    plus the attention term 6·L·T·d for transformers (Kaplan et al. 2020)."""
    shape = resolve_shape(cfg)
    matmul_params = n_params_non_embedding + vocab_size * shape.d_model
    attention = 6 * shape.n_layer * seq_len * shape.d_model if cfg.arch in ("gpt2", "llama") else 0
    return 6.0 * matmul_params + attention
