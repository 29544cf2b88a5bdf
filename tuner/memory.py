"""How much memory a run needs, estimated from its config before any model is built.

A trial whose model or batch cannot fit must fail with that reason in microseconds, not after
allocating gigabytes (a `seq_len` of ten million builds a 3 GB position table). The estimate
is arithmetic on the config:

    weights + gradients + optimizer state          (4 + 4 + 8 bytes a parameter for AdamW)
  + max(training step, evaluation pass)
    training step: per layer a_d·n·d + a_f·n·f (+ c·b·h·T² where attention scores are
                   materialised), n = micro-batch × seq_len tokens; logits n·V in fp32, kept
                   four times over (logits, log-softmax, their gradients)
    evaluation:    one layer's temporaries and the logits of eval_batch_size sequences

The coefficients are measured (bench/memory_estimate.py: estimate vs peak RSS on CPU). The
memory available is MemAvailable (capped by a cgroup limit) on CPU, free device memory on
CUDA, or TUNER_MEMORY_LIMIT (bytes, `8G`) where set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tuner.config import RunConfig, Shape
from tuner.errors import ConfigError
from tuner.units import parse_amount, si

# Saved activations per token and layer, in elements of d_model (a_d) and of d_ff (a_f).
ACTIVATIONS = {"gpt2": (11.0, 2.0), "llama": (19.0, 4.0), "lstm": (9.5, 0.0), "gru": (9.0, 0.0)}
SCORES_BYTES = 14.0
"""Bytes per attention score kept for backward where scores are materialised (scores, softmax,
dropout mask and output): PyTorch's CPU attention with dropout > 0."""
LOGIT_COPIES = 4
EVAL_LOGIT_COPIES = 3
ACCUMULATION = 1.4
"""Micro-batches that accumulate gradients need this much more than one micro-batch's
activations: the next one's are allocated while the last one's logits are still held, and the
allocator does not reuse every freed block (measured on CPU, bench/memory_estimate.py)."""
SAFETY = 0.9
"""Share of the available memory a run may plan to use."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs at its peak, by part."""

    params: int
    """Parameter count (tied embeddings once)."""
    weights: int
    gradients: int
    optimizer: int
    activations: int
    """A training step's saved activations, logits included."""
    evaluation: int
    """An evaluation pass's temporaries and logits."""

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + max(self.activations, self.evaluation - self.gradients)
        )

    def describe(self) -> str:
        return (
            f"{si(self.total)}B ({si(self.params)} params: weights, gradients and optimizer "
            f"{si(self.weights + self.gradients + self.optimizer)}B; "
            f"activations {si(self.activations)}B)"
        )


def shape_of(config: RunConfig) -> Shape:
    from tuner.models import resolve_shape  # models imports torch only when building

    return resolve_shape(config.model)


def param_count(config: RunConfig, vocab_size: int) -> int:
    """Parameters of the model `config` builds (tied input/output embedding counted once)."""
    s = shape_of(config)
    d, f, n_layer = s.d_model, s.d_ff, s.n_layer
    arch = config.model.arch
    if arch == "gpt2":
        block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
        return vocab_size * d + config.train.seq_len * d + n_layer * block + 2 * d
    if arch == "llama":
        return vocab_size * d + n_layer * (4 * d * d + 3 * d * f + 2 * d) + d
    gates = 4 if arch == "lstm" else 3
    return vocab_size * d + n_layer * gates * (2 * d * d + 2 * d)


def attention_materialised(config: RunConfig, device_type: str) -> bool:
    """PyTorch's fused attention keeps no T×T scores, except its CPU/MPS kernel with dropout."""
    return (
        config.model.arch in ("gpt2", "llama")
        and device_type != "cuda"
        and config.model.dropout > 0
    )


def estimate(config: RunConfig, vocab_size: int, device_type: str = "cpu") -> MemoryEstimate:
    """The peak memory of training `config` (see the module docstring for the terms)."""
    import torch

    from tuner.device import uses_bf16

    s = shape_of(config)
    tc = config.train
    params = param_count(config, vocab_size)
    act = 2 if uses_bf16(tc.precision, torch.device(device_type)) else 4
    state = {"adamw": 8, "sgd": 4}[config.optim.name]
    if tc.micro_batch_size == "auto":  # a GPU splits the batch until it fits (tuner.microbatch)
        micro = 1 if device_type == "cuda" else tc.batch_size  # on a CPU, auto is no cap
    else:
        micro = min(tc.micro_batch_size or tc.batch_size, tc.batch_size)
    n = micro * tc.seq_len
    a_d, a_f = ACTIVATIONS[config.model.arch]
    per_layer = (a_d * s.d_model + a_f * s.d_ff) * n * act
    if config.model.dropout > 0:
        per_layer += 3 * n * s.d_model  # dropout masks, one byte an element
    if attention_materialised(config, device_type):
        per_layer += SCORES_BYTES * micro * s.n_head * tc.seq_len**2
    embed = 4 * n * s.d_model * act
    logits = LOGIT_COPIES * n * vocab_size * 4
    n_eval = tc.eval_batch_size * tc.seq_len
    evaluation = (
        n_eval * (4 * s.d_model + s.d_ff) * act + EVAL_LOGIT_COPIES * n_eval * vocab_size * 4
    )
    activations = s.n_layer * per_layer + embed + logits
    if micro < tc.batch_size:
        activations *= ACCUMULATION
    return MemoryEstimate(
        params=params,
        weights=4 * params,
        gradients=4 * params,
        optimizer=state * params,
        activations=int(activations),
        evaluation=int(evaluation),
    )


def vocab_guess(config: RunConfig) -> int:
    """The vocabulary a tokenizer config will give, before any data is read (for checks that
    must stay cheap): the BPE target, 256 for bytes, a generous bound for the others."""
    kind = config.tokenizer.kind
    if kind == "bpe":
        return config.tokenizer.vocab_size
    if kind == "byte":
        return 259
    return 50_304 if kind == "pretrained" else 4_096


def available(device_type: str = "cpu", index: int | None = None) -> int | None:
    """Bytes this run may use: TUNER_MEMORY_LIMIT, else free CUDA memory, else MemAvailable
    capped by a cgroup limit; None where it cannot be told."""
    limit = os.environ.get("TUNER_MEMORY_LIMIT", "").strip()
    if limit:
        value = parse_amount(limit, "TUNER_MEMORY_LIMIT")
        return int(value) if value is not None else None
    if device_type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(index if index is not None else 0)
        return int(free)
    return _host_available()


def _host_available() -> int | None:
    values = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    if not values:
        try:
            import psutil

            return int(psutil.virtual_memory().available)
        except ImportError:
            return None
    return min(values)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """A container's memory limit less what it uses (cgroup v2, then v1)."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            raw = Path(limit_file).read_text().strip()
            if raw == "max" or int(raw) >= 1 << 60:
                return None
            return int(raw) - int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def fit_problem(config: RunConfig, vocab_size: int, device_type: str = "cpu") -> str:
    """Why `config` cannot fit in the memory available ('' when it fits or nobody can tell)."""
    need = estimate(config, vocab_size, device_type)
    have = available(device_type)
    if have is None or need.total <= SAFETY * have:
        return ""
    return (
        f"out of memory (estimated before allocating): needs {need.describe()}, "
        f"{si(have)}B available on {device_type}"
    )


def require_fit(config: RunConfig, vocab_size: int, device_type: str = "cpu") -> None:
    """Raise `WontFit` if `config` cannot fit; called before the model is built."""
    problem = fit_problem(config, vocab_size, device_type)
    if problem:
        raise WontFit(problem)


class WontFit(ConfigError):
    """A run that the memory estimate says cannot fit on this machine."""
