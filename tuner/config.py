"""RunConfig: one frozen, complete description of a training run.

A trial trains a RunConfig, `tuner export` writes one and `tuner train` reads one, so a trial
is reproducible from its exported config alone. Every section is a frozen dataclass; YAML goes
in through `yaml.safe_load` and `from_dict` (tuner.schema), which rejects unknown keys and
wrong types with a `ConfigError` that names the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tuner.errors import ConfigError
from tuner.evalconfig import EvalConfig
from tuner.schema import assign, coerce, flatten, from_dict, load_yaml, to_dict
from tuner.schema import check as _check
from tuner.schema import field_type as _field_type

__all__ = ["ConfigError", "RunConfig", "from_dict", "load_yaml", "to_dict"]


@dataclass(frozen=True)
class Shape:
    """The dimensions of a transformer (for lstm/gru: layers and hidden size)."""

    n_layer: int
    d_model: int
    n_head: int
    d_ff: int


# Non-embedding parameter counts are for gpt2 (12·L·d² roughly); add vocab·d for the embedding.
SIZE_PRESETS: dict[str, Shape] = {
    "nano": Shape(2, 64, 2, 256),  # ~0.1M non-embedding
    "micro": Shape(2, 128, 4, 512),  # ~0.4M
    "tiny": Shape(4, 128, 4, 512),  # ~0.8M
    "mini": Shape(4, 256, 4, 1024),  # ~3.2M
    "small": Shape(6, 384, 6, 1536),  # ~10.6M
    "medium": Shape(8, 512, 8, 2048),  # ~25M
    "base": Shape(12, 768, 12, 3072),  # ~85M (GPT-2 small)
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Text clean-up applied to every document before splitting and tokenizing."""

    normalize: Literal["none", "NFC", "NFKC"] = "NFC"
    """Unicode normalisation form."""
    lowercase: bool = False
    strip_markup: bool = True
    """Remove markdown/HTML markup (`**`, `_`, `#`, tags)."""
    strip_punctuation: bool = False
    min_doc_chars: int = 1
    """Documents shorter than this (after clean-up) are dropped."""

    def __post_init__(self) -> None:
        _check(self.min_doc_chars >= 0, "preprocess.min_doc_chars", "must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it is split into train / validation / test."""

    source: Literal["shakespeare", "hub", "files"] = "shakespeare"
    """`shakespeare` (built in, offline), `hub` (a Hugging Face dataset) or `files`."""
    name: str = ""
    """Hub dataset name (source=hub)."""
    config_name: str = ""
    """Hub dataset configuration (source=hub)."""
    split: str = "train"
    """Hub split to read (source=hub); tuner makes its own train/val/test split from it."""
    paths: tuple[str, ...] = ()
    """Local files: .txt (one document per file), .jsonl, .parquet, .csv (source=files)."""
    text_column: str = "text"
    max_chars: int = 0
    """Keep only the first N characters of the corpus (0 = all); for quick runs and tests."""
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 1234
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        _check(self.source != "hub" or bool(self.name), "data.name", "required for source=hub")
        _check(
            self.source != "files" or bool(self.paths), "data.paths", "required for source=files"
        )
        _check(0 < self.val_fraction < 0.5, "data.val_fraction", "must be in (0, 0.5)")
        _check(0 < self.test_fraction < 0.5, "data.test_fraction", "must be in (0, 0.5)")
        _check(self.max_chars >= 0, "data.max_chars", "must be >= 0")


@dataclass(frozen=True)
class TokenizerConfig:
    """How text becomes token ids."""

    kind: Literal["bpe", "byte", "char", "pretrained"] = "bpe"
    vocab_size: int = 2048
    """Vocabulary size for a trained BPE tokenizer (ignored by byte/char/pretrained)."""
    name: str = ""
    """Hugging Face tokenizer name or local directory (kind=pretrained)."""

    def __post_init__(self) -> None:
        _check(
            self.kind != "pretrained" or bool(self.name),
            "tokenizer.name",
            "required for kind=pretrained",
        )
        _check(
            self.kind != "bpe" or 260 <= self.vocab_size <= 1_000_000,
            "tokenizer.vocab_size",
            "must be between 260 and 1000000 for bpe",
        )


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and size. A `size` preset fills n_layer/d_model/n_head/d_ff (see models.py);
    explicit fields override the preset."""

    arch: Literal["gpt2", "llama", "lstm", "gru"] = "gpt2"
    size: str = "tiny"
    n_layer: int = 0
    d_model: int = 0
    n_head: int = 0
    d_ff: int = 0
    dropout: float = 0.0
    """Applied at every dropout site of the architecture."""
    parametrization: Literal["sp", "mup"] = "sp"
    """`sp` (standard) or `mup`: μP, under which a learning rate tuned at `base_width` stays
    optimal at other widths (gpt2 and llama; see tuner/mup.py)."""
    base_width: int = 0
    """The d_model that μP scales from, i.e. the tuned proxy's width (0 = this model's own)."""

    def __post_init__(self) -> None:
        _check(
            self.size in SIZE_PRESETS or self.size == "custom",
            "model.size",
            f"unknown preset {self.size!r}; one of {sorted(SIZE_PRESETS)} or 'custom'",
        )
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        for name in ("n_layer", "d_model", "n_head", "d_ff"):
            _check(getattr(self, name) >= 0, f"model.{name}", "must be >= 0")
        if self.size == "custom":
            _check(
                self.n_layer > 0 and self.d_model > 0,
                "model.size",
                "'custom' needs n_layer and d_model",
            )
        _check(self.base_width >= 0, "model.base_width", "must be >= 0")
        _check(
            self.parametrization == "sp" or self.arch in ("gpt2", "llama"),
            "model.parametrization",
            f"mup is defined for gpt2 and llama, not {self.arch}",
        )
        if self.parametrization == "mup" and self.base_width:
            preset = SIZE_PRESETS.get(self.size, Shape(0, 0, 0, 0))
            d_model, n_head = self.d_model or preset.d_model, self.n_head or preset.n_head or 1
            head_dim = max(1, d_model // n_head)
            _check(
                self.base_width % head_dim == 0,
                "model.base_width",
                f"{self.base_width} is not a multiple of the head dim {head_dim} "
                f"(d_model {d_model} / n_head {n_head}), so the base model "
                "would not have whole heads",
            )


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.1
    """Applied to matrices only; never to norms, biases or embeddings."""
    beta1: float = 0.9
    beta2: float = 0.95
    momentum: float = 0.9
    """SGD only."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = off)."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", "must be > 0")
        _check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        _check(
            0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1/beta2", "must be in [0, 1)"
        )
        _check(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning rate: linear warmup, then decay to `min_lr_ratio * lr`."""

    kind: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        _check(0 <= self.warmup_fraction < 1, "schedule.warmup_fraction", "must be in [0, 1)")
        _check(0 <= self.min_lr_ratio <= 1, "schedule.min_lr_ratio", "must be in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    """Batch geometry, budget, evaluation and runtime."""

    batch_size: int = 16
    """Sequences per optimizer step."""
    seq_len: int = 128
    """Tokens per sequence; also the model's positional range."""
    micro_batch_size: int | Literal["auto"] = 0
    """Cap on sequences per forward pass; larger batches accumulate gradients (0 = no cap;
    auto = the largest divisor of the batch that fits the GPU, found once and cached)."""
    tokens: int = 200_000
    """Training budget in tokens; steps = tokens / (batch_size * seq_len)."""
    flops: float = 0.0
    """If > 0, the budget in training FLOPs instead of tokens."""
    milestones: int = 4
    """Evaluations at evenly spaced token milestones; the pruner sees them as steps 0..n-1."""
    eval_tokens: int = 16_384
    """Validation tokens evaluated at each milestone (the same text in every trial)."""
    eval_batch_size: int = 16
    device: str = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto = bf16 autocast on CUDA, fp32 elsewhere."""
    compile: bool = False
    """torch.compile the model."""
    diverge_factor: float = 4.0
    """Stop as diverged when the train loss exceeds this multiple of its first value."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "milestones", "eval_tokens", "eval_batch_size"):
            _check(getattr(self, name) > 0, f"train.{name}", "must be > 0")
        _check(
            self.micro_batch_size == "auto" or self.micro_batch_size >= 0,
            "train.micro_batch_size",
            "must be >= 0 or auto",
        )
        _check(self.tokens > 0 or self.flops > 0, "train.tokens", "a budget must be > 0")
        _check(self.diverge_factor > 1, "train.diverge_factor", "must be > 1")


@dataclass(frozen=True)
class CostConfig:
    """How wall time becomes money, and the peak that MFU is measured against."""

    price_per_hour: dict[str, float] = field(
        default_factory=lambda: {"cpu": 0.10, "cuda": 2.50, "mps": 0.50}
    )
    """US dollars per device-hour, by device type (or by full GPU name)."""
    peak_flops: float = 0.0
    """Device peak FLOP/s for MFU (0 = measured once per machine and cached)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; the seed makes it reproducible on CPU."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        _check(
            self.model.parametrization == "sp" or self.optim.name == "adamw",
            "optim.name",
            f"mup's learning-rate rules are for adamw, not {self.optim.name}",
        )
        _check(0 <= self.seed <= 2**32 - 1, "seed", "must be between 0 and 2**32 - 1")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """Every field as `section.key: value` (for MLflow params)."""
        return flatten(self.to_dict(), keep=("price_per_hour",))

    def replace(self, path: str, value: Any) -> RunConfig:
        """A copy with the field at dotted `path` set to `value` (type-checked)."""
        return set_path(self, path, value)


def field_type(path: str) -> Any:
    """The declared type of the RunConfig field at dotted `path`; ConfigError if none."""
    return _field_type(RunConfig, path)


def set_path(config: RunConfig, path: str, value: Any) -> RunConfig:
    """Return a copy of `config` with dotted `path` set, validated like YAML input."""
    data = config.to_dict()
    assign(data, path, coerce(field_type(path), value, path))
    return from_dict(RunConfig, data)


def parse_overrides(items: list[str] | None) -> list[tuple[str, Any]]:
    """`--set key=value` items -> (path, value), values parsed as YAML scalars."""
    out = []
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def apply_overrides(
    config: RunConfig, overrides: list[tuple[str, Any]], flag: str = "--set"
) -> RunConfig:
    """Set every override, then validate the result once, so that overrides which only make
    sense together (data.source=files with data.paths=...) work in any order."""
    data = config.to_dict()
    for path, value in overrides:
        try:
            value = coerce(field_type(path), value, path)
        except ConfigError as err:
            raise ConfigError(f"{flag} {path}={value}: {err}") from None
        assign(data, path, value)
    try:
        return from_dict(RunConfig, data)
    except ConfigError as err:
        shown = " ".join(f"{p}={v}" for p, v in overrides)
        raise ConfigError(f"{flag} {shown}: {err}") from None


def load_run_config(path: str | Path) -> RunConfig:
    """Read a RunConfig YAML (as `tuner export` writes it); `provenance` is informational."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data = {k: v for k, v in data.items() if k != "provenance"}
    try:
        return from_dict(RunConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
