"""How a saved gpt2/llama folder behaves in transformers' own `generate` and pipelines.

A tuner model knows `train.seq_len` positions (its context). transformers 5.x never stops a
`generate(max_new_tokens=N)` call at a model's context: `max_new_tokens` overrides any
`max_length` in generation_config.json, and the length check only logs a reminder. A GPT-2's
learned position table then runs out and `pipeline("text-generation")` raises IndexError.
Nothing in a folder (without `trust_remote_code`) can stop that call, so the saved folder:

- stops at the context when no length is asked for (`max_length` = context in
  generation_config.json, which also keeps the pipeline's default of 256 new tokens away);
- lets longer requests run: the GPT-2 position table gets `EXTRA_POSITIONS` more rows, each a
  copy of the last trained one, so every token past the context is read as sitting at the
  last trained position (the trained rows are untouched: scores within the context are
  exactly the trained model's). Text past the context is extrapolation; `tuner generate`
  slides a window instead and never leaves the trained range. llama's rotary positions need
  no table and extrapolate on their own (transformers logs a reminder).

`config.json` records the trained context as `tuner_context`; `trained_model` cuts a loaded
GPT-2 back to it, so tuner itself only ever sees the model it trained.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tuner.models import max_positions

EXTRA_POSITIONS = 1024
"""Room for this many tokens past the trained context in a saved GPT-2."""
CONTEXT_KEY = "tuner_context"


def for_transformers(model: nn.Module) -> nn.Module:
    """A copy of a trained gpt2/llama, ready for `save_pretrained` (see the module notes)."""
    context = max_positions(model)
    model = copy.deepcopy(model)
    setattr(model.config, CONTEXT_KEY, context)
    model.generation_config.max_length = context
    if model.config.model_type == "gpt2":
        _extend_positions(model, context + EXTRA_POSITIONS)
    return model


def trained_model(model: nn.Module) -> nn.Module:
    """A loaded gpt2 cut back to its trained positions (a no-op for any other model)."""
    context = getattr(model.config, CONTEXT_KEY, None)
    if model.config.model_type == "gpt2" and context and model.config.n_positions > context:
        wpe = model.transformer.wpe
        model.transformer.wpe = _embedding(wpe.weight.data[:context])
        model.config.n_positions = context
    return model


def _extend_positions(model: nn.Module, n_positions: int) -> None:
    weight = model.transformer.wpe.weight.data  # (context, d_model)
    rows = torch.arange(n_positions).clamp(max=weight.shape[0] - 1)
    model.transformer.wpe = _embedding(weight[rows])
    model.config.n_positions = n_positions


def _embedding(weight: torch.Tensor) -> nn.Embedding:
    table = nn.Embedding(weight.shape[0], weight.shape[1])
    table.weight.data.copy_(weight)
    return table
