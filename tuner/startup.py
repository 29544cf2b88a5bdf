"""What a run says before its first step: the slow start-up steps, each announced, and one
line on what it trains.

A cold start spends seconds building the token cache (corpus, tokenizer training, encoding)
and importing transformers' model code; `warm_up` does both up front, saying so, so that the
first trial's timer and tokens/s measure training. `describe_run` is the line `tuner train`
prints before its bar: architecture and size, parameters, budget, learning rate, device.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from tuner.config import RunConfig
from tuner.data import load_token_data
from tuner.device import device_name, resolve_device, uses_bf16
from tuner.models import build_model, count_params, flops_per_token, resolve_shape
from tuner.train import plan_budget
from tuner.units import si

if TYPE_CHECKING:
    from tuner.space import SearchSpace

MODEL_CODE = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
"""The transformers classes behind each architecture (lstm and gru are plain PyTorch)."""


def describe_data(config: RunConfig) -> str:
    """`shakespeare, bpe 2048`: the corpus and the tokenizer, in a few words."""
    data, tok = config.data, config.tokenizer
    corpus = {"hub": data.name, "files": f"{len(data.paths)} file(s)"}.get(data.source)
    detail = {"bpe": f" {tok.vocab_size}", "pretrained": f" {tok.name}"}.get(tok.kind, "")
    return f"{corpus or data.source}, {tok.kind}{detail}"


def warm_up(space: SearchSpace, say: Callable[[str], None]) -> None:
    """Build (or open) the token cache of a study and import the model code its trials can
    use, saying each step."""
    config = space.base
    say(f"loading data: {describe_data(config)}")  # built once, then cached
    load_token_data(config.data, config.tokenizer)
    archs = {config.model.arch}
    archs.update(c for p in space.params if p.path == "model.arch" for c in p.choices or ())
    classes = sorted({MODEL_CODE[a] for a in archs if a in MODEL_CODE})
    if classes:
        say("loading model code: transformers")
        module = importlib.import_module("transformers")
        for name in classes:
            getattr(module, name)  # transformers imports a model's code on first access


def count_model(
    config: RunConfig, vocab_size: int, model: nn.Module | None = None
) -> tuple[int, int]:
    """(total, non-embedding) parameters of `model`, or of the model `config` builds (on the
    meta device: no memory, no initialisation)."""
    if model is None:
        with torch.device("meta"):
            model = build_model(config.model, vocab_size, config.train.seq_len)
    return count_params(model)


def describe_run(config: RunConfig, vocab_size: int, model: nn.Module | None = None) -> str:
    """Two lines: what is trained, how big, where; then the budget and the learning rate.

    `training gpt2 micro (2 layers × 128, 675k params) on cpu, fp32`
    `197k tokens = 96 steps of 16×128; lr 0.003, cosine schedule`
    """
    m, t = config.model, config.train
    shape = resolve_shape(m)
    n_params, n_non_embedding = count_model(config, vocab_size, model)
    plan = plan_budget(config, flops_per_token(n_non_embedding, vocab_size, m, t.seq_len))
    device = resolve_device(t.device)
    precision = "bf16" if uses_bf16(t.precision, device) else "fp32"
    budget = f"{si(plan.tokens)} tokens = {plan.steps} steps of {t.batch_size}×{t.seq_len}"
    if t.flops > 0:
        budget = f"{si(t.flops)} FLOPs = {budget}"
    return (
        f"training {m.arch} {m.size} ({shape.n_layer} layers × {shape.d_model}, "
        f"{si(n_params)} params) on {device_name(device)}, {precision}\n"
        f"{budget}; lr {config.optim.lr:.3g}, {config.schedule.kind} schedule"
    )
