"""How many trials fit side by side: a rough estimate of one trial's memory (weights, gradients,
optimizer state, activations, logits), the largest trial a search space can sample, and the
check behind `--workers` / `--gpus`.

The estimate is deliberately simple and errs high; it decides only whether K workers can
possibly fit, never a trial's micro-batch (`train.micro_batch_size: auto` measures that).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from tuner.config import RunConfig
from tuner.device import CONTEXT_BYTES
from tuner.errors import ConfigError
from tuner.models import resolve_shape
from tuner.space import ParamSpec, SearchSpace

GiB = 2**30
PROCESS_BYTES = 400 * 2**20
"""A worker process on the host: Python, torch, transformers, Optuna, MLflow."""
MEMORY_PATHS = {
    "model.arch",
    "model.size",
    "model.n_layer",
    "model.d_model",
    "model.n_head",
    "model.d_ff",
    "model.dropout",
    "optim.name",
    "tokenizer.kind",
    "tokenizer.vocab_size",
    "train.batch_size",
    "train.micro_batch_size",
    "train.seq_len",
    "train.precision",
}
"""Config fields a trial's memory depends on."""
MAX_COMBINATIONS = 4096


def vocab_estimate(config: RunConfig) -> int:
    """The vocabulary a trial will have (a pretrained tokenizer's is unknown here: GPT-2's)."""
    kind = config.tokenizer.kind
    return {"bpe": config.tokenizer.vocab_size, "byte": 260, "char": 1024}.get(kind, 50_257)


def param_count(config: RunConfig, vocab: int) -> int:
    """Weights of the model `config` describes (tied embeddings counted once)."""
    s = resolve_shape(config.model)
    d, ff, layers = s.d_model, s.d_ff, s.n_layer
    arch = config.model.arch
    if arch in ("lstm", "gru"):
        gates = 4 if arch == "lstm" else 3
        return vocab * d + layers * gates * (2 * d * d + 2 * d)
    mlp = 3 * d * ff if arch == "llama" else 2 * d * ff + ff + d
    positions = config.train.seq_len * d if arch == "gpt2" else 0
    return vocab * d + positions + layers * (4 * d * d + 4 * d + mlp + 4 * d)


def trial_bytes(config: RunConfig, on_gpu: bool = True) -> int:
    """Peak memory of one training step of `config`, roughly: fp32 weights and gradients, the
    optimizer state (AdamW: two moments, SGD: one), and the activations of one micro-batch
    (per token and layer about 16·d + 4·d_ff bytes in bf16, twice that in fp32, as in
    Korthikanti et al. 2022 with fused attention), plus its logits (about 14 bytes each: the
    bf16 logits, their fp32 copy, its gradient and the softmax). `auto` micro-batches count
    as one sequence, since they shrink to what fits."""
    vocab = vocab_estimate(config)
    params = param_count(config, vocab)
    moments = 2 if config.optim.name == "adamw" else 1
    state = params * (4 + 4 + 4 * moments)
    tc = config.train
    micro = (
        1
        if tc.micro_batch_size == "auto"
        else min(tc.micro_batch_size or tc.batch_size, tc.batch_size)
    )
    tokens = micro * tc.seq_len
    s = resolve_shape(config.model)
    half = tc.precision == "bf16" or (tc.precision == "auto" and on_gpu)
    per_layer = (16 * s.d_model + 4 * s.d_ff) * (1 if half else 2)
    activations = tokens * (s.n_layer * per_layer + 14 * vocab)
    return int(state + activations)


def _candidates(p: ParamSpec) -> list[Any]:
    """The values of a param that can matter for memory: every choice, or both ends."""
    return list(p.choices) if p.kind == "categorical" else [p.low, p.high]


def largest_trial(space: SearchSpace, on_gpu: bool = True) -> tuple[int, RunConfig]:
    """The largest `trial_bytes` over the space's memory-relevant values (choices and range
    ends, all combinations up to MAX_COMBINATIONS), with the config that has it."""
    params = [p for p in space.params if p.path in MEMORY_PATHS]
    best = (trial_bytes(space.base, on_gpu), space.base)
    combos = itertools.product(*(_candidates(p) for p in params))
    for combo in itertools.islice(combos, MAX_COMBINATIONS):
        try:
            config = space.apply({p.name: v for p, v in zip(params, combo, strict=True)})
        except ConfigError:
            continue  # a combination the space cannot sample (e.g. d_model % n_head)
        need = trial_bytes(config, on_gpu)
        if need > best[0]:
            best = (need, config)
    return best


def describe(config: RunConfig) -> str:
    s, tc = resolve_shape(config.model), config.train
    return (
        f"{config.model.arch} {config.model.size} (L{s.n_layer} d{s.d_model}), "
        f"batch {tc.batch_size} x {tc.seq_len}, micro-batch {tc.micro_batch_size or 'none'}"
    )


def check_fit(
    space: SearchSpace,
    workers: int,
    gpus: list[int],
    inventory: list[tuple[str, int]],
    host_bytes: int | None = None,
) -> None:
    """ConfigError unless `workers` trials of the space's largest model fit at once: in each
    GPU's share (`gpus`, round robin; default device 0) when there are GPUs, else in the
    host's memory."""
    flag = f"--workers {workers}" + (f" --gpus {','.join(map(str, gpus))}" if gpus else "")
    if inventory:
        need, config = largest_trial(space, on_gpu=True)
        need += CONTEXT_BYTES
        for gpu in sorted(set(gpus or [0])):
            sharing = sum(1 for i in range(workers) if (gpus or [0])[i % len(gpus or [0])] == gpu)
            name, total = inventory[gpu]
            if need * sharing > total:
                raise ConfigError(
                    f"{flag}: {sharing} workers on GPU {gpu} ({name}, {total / GiB:.1f} GiB) "
                    f"get {total / sharing / GiB:.2f} GiB each, but the space's largest trial "
                    f"({describe(config)}) needs about {need / GiB:.2f} GiB (estimate); "
                    f"at most {max(1, total // need)} fit on it"
                )
        return
    total = host_bytes if host_bytes is not None else host_memory()
    if not total:
        return
    need, config = largest_trial(space, on_gpu=False)
    need += PROCESS_BYTES
    if need * workers > total:
        raise ConfigError(
            f"{flag}: {workers} workers need about {need * workers / GiB:.1f} GiB of this "
            f"machine's {total / GiB:.1f} GiB for the space's largest trial "
            f"({describe(config)}, ~{need / GiB:.2f} GiB each, estimate); "
            f"at most {max(1, total // need)} fit"
        )


def host_memory() -> int:
    """Physical memory of this machine in bytes (0 if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
