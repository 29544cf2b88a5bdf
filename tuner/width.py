"""The same recipe at another width: what `tuner export --width/--params` writes.

Depth stays, the head dim stays (the head count grows with width), d_ff keeps its ratio to
d_model, and the base width stays where it was, so under μP the tuned learning rate (and every
other hyperparameter) carries over unchanged. Under SP the width still changes, with a warning
that the learning rate will not transfer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from tuner.config import RunConfig, from_dict
from tuner.errors import ConfigError
from tuner.models import build_model, count_params, resolve_shape


class WidthTransfer(NamedTuple):
    config: RunConfig
    warning: str
    """Empty, or why the recipe may not transfer (SP: the learning rate will not)."""


def at_width(
    config: RunConfig, width: int | None = None, params: int | None = None
) -> WidthTransfer:
    """`config` at d_model `width`, or at the width whose non-embedding parameter count is
    closest to `params` (in ratio); ConfigError (naming `width`/`params`) if impossible."""
    if (width is None) == (params is None):
        raise ConfigError("--width/--params: give exactly one of them")
    if params is not None:
        width = width_for_params(config, params)
    assert width is not None
    mc = config.model
    shape = resolve_shape(mc)
    step = _width_step(config)
    if width <= 0 or width % step:
        raise ConfigError(
            f"--width {width}: not a positive multiple of the head dim {step} "
            f"(model.d_model {shape.d_model} / model.n_head {shape.n_head})"
        )
    model = {
        "size": "custom",
        "n_layer": shape.n_layer,
        "d_model": width,
        "n_head": width // step if mc.arch in ("gpt2", "llama") else mc.n_head,
        "d_ff": max(1, round(shape.d_ff * width / shape.d_model)),
        # μP scales from the tuned proxy: a base of 0 ("my own width") becomes that width
        "base_width": mc.base_width or (shape.d_model if mc.parametrization == "mup" else 0),
    }
    data = config.to_dict()
    data["model"].update(model)
    try:
        new = from_dict(RunConfig, data)
    except ConfigError as err:
        raise ConfigError(f"--width {width}: {err}") from None
    warning = ""
    if mc.parametrization == "sp" and width != shape.d_model:
        warning = (
            f"model.parametrization is sp: the learning rate tuned at width {shape.d_model} "
            f"will not transfer to width {width} (tune with model.parametrization: mup)"
        )
    return WidthTransfer(new, warning)


def describe_transfer(source: RunConfig, moved: RunConfig) -> dict[str, object]:
    """What `tuner export --width/--params` records in the provenance block."""
    return {
        "from_width": resolve_shape(source.model).d_model,
        "to_width": moved.model.d_model,
        "parametrization": moved.model.parametrization,
        "base_width": moved.model.base_width,
        "non_embedding_params": non_embedding_params(moved),
    }


def _width_step(config: RunConfig) -> int:
    """Widths come in multiples of the head dim (transformers) or of 1 (recurrent)."""
    shape = resolve_shape(config.model)
    return shape.d_model // shape.n_head if config.model.arch in ("gpt2", "llama") else 1


def non_embedding_params(config: RunConfig) -> int:
    """Non-embedding parameters of `config`'s model, counted on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_model(config.model, vocab_size=8, seq_len=8)
    return count_params(model)[1]


def width_for_params(config: RunConfig, params: int) -> int:
    """The multiple of the head dim whose model has the non-embedding parameter count nearest
    `params` (nearest in ratio, since counts grow as width squared)."""
    if params <= 0:
        raise ConfigError(f"--params {params}: must be > 0")
    step = _width_step(config)

    def count(k: int) -> int:
        return non_embedding_params(at_width(config, width=k * step).config)

    low, high = 1, 1
    while count(high) < params:  # double, then bisect: counts are monotone in width
        low, high = high, high * 2
        if high * step > 1 << 20:
            raise ConfigError(f"--params {params:g}: needs a width beyond {1 << 20}")
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < params else (low, mid)
    best = min((low, high), key=lambda k: abs(math.log(count(k) / params)))
    return best * step
