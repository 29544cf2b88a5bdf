"""Model shapes for any parameter count, and how training compute maps to N and D.

The convention (DESIGN.md, decision 10) is the one `tuner.models.flops_per_token` counts and
every trial records: C = flops_per_token(N) · D, with

    flops_per_token = 6 · (N + V·d) + 6 · L · T · d

where N is the non-embedding parameter count (`count_params`' second figure), V·d the tied
output projection, and 6·L·T·d the attention scores (Kaplan et al. 2020). A scaling fit of a
tuner study is therefore a law in non-embedding N and training tokens D, and a compute budget
is turned into (N, D) through this formula (`ComputeModel.tuner`). Runs from elsewhere, whose
architecture tuner does not know, use the plain C = 6·N·D (`ComputeModel.six_nd`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from tuner.config import ConfigError, ModelConfig


@dataclass(frozen=True)
class ShapeRule:
    """Depth and width for a target non-embedding parameter count.

    Width d_model is a multiple of a fixed head dimension; depth follows the aspect ratio
    d_model / n_layer (64 matches most of tuner's presets; Kaplan et al. 2020 found the loss
    flat for ratios of roughly 20 to 200); the feed-forward width is `ff_ratio`·d_model, as in
    the presets, for gpt2 and llama alike. With `n_layer` set, depth is fixed and only the
    width follows N: at a few thousand parameters depth can only move in jumps (one layer or
    two), which change the loss more than N does, so one family of shapes fits a law better.
    """

    arch: Literal["gpt2", "llama"] = "gpt2"
    aspect_ratio: float = 64.0
    """d_model / n_layer."""
    head_dim: int = 32
    """d_model / n_head; widths are multiples of it."""
    ff_ratio: int = 4
    """d_ff / d_model."""
    n_layer: int = 0
    """A fixed depth for every size (0: depth from the aspect ratio)."""

    def __post_init__(self) -> None:
        if self.arch not in ("gpt2", "llama"):
            raise ConfigError(
                f"model.arch: the shape rule covers gpt2 and llama, not {self.arch!r}"
            )
        if self.aspect_ratio <= 0 or self.head_dim <= 0 or self.ff_ratio <= 0:
            raise ConfigError("shape rule: aspect_ratio, head_dim and ff_ratio must be > 0")
        if self.n_layer < 0:
            raise ConfigError(
                f"--layers: must be >= 1 (or 0 for the aspect ratio), got {self.n_layer}"
            )

    def params(self, n_layer: ArrayLike, d_model: ArrayLike) -> Any:
        """Non-embedding parameters of a shape, exactly as `tuner.models.count_params` counts
        them for the model `build_model` makes (position embeddings count as embedding)."""
        n_layer, d = np.asarray(n_layer, dtype=float), np.asarray(d_model, dtype=float)
        ff = self.ff_ratio * d
        if self.arch == "gpt2":  # qkv+proj with biases, two LayerNorms, MLP with biases; ln_f
            per_layer = 4 * d * d + 4 * d + 4 * d + 2 * d * ff + ff + d
            return n_layer * per_layer + 2 * d
        per_layer = 4 * d * d + 3 * d * ff + 2 * d  # no biases; two RMSNorms; SwiGLU MLP
        return n_layer * per_layer + d

    def continuous(self, n: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(n_layer, d_model) as real numbers for N, before rounding: the compute model uses
        these so that FLOPs are a smooth function of N."""
        n = np.asarray(n, dtype=float)
        quad = 4 + 2 * self.ff_ratio if self.arch == "gpt2" else 4 + 3 * self.ff_ratio
        if self.n_layer:  # params = L·(quad·d² + lin·d) + final·d, solved for d
            lin, final = (9 + self.ff_ratio, 2) if self.arch == "gpt2" else (2, 1)
            a, b = self.n_layer * quad, self.n_layer * lin + final
            d_model = (np.sqrt(b * b + 4 * a * n) - b) / (2 * a)
            return np.full_like(d_model, float(self.n_layer)), d_model
        d_model = np.cbrt(n * self.aspect_ratio / quad)
        return d_model / self.aspect_ratio, d_model

    def smallest_width(self) -> int:
        """The width of the smallest model `shape` makes: one layer, and the narrowest
        multiple of the head dimension whose aspect ratio is within a factor 2 of the rule's."""
        if self.n_layer:
            return self.head_dim
        return self.head_dim * max(1, math.ceil(self.aspect_ratio / 2 / self.head_dim - 1e-9))

    def smallest_params(self) -> int:
        """Non-embedding parameters of the smallest model `shape` makes."""
        return int(self.params(self.n_layer or 1, self.smallest_width()))

    def shape(self, n: float, base: ModelConfig | None = None) -> ModelConfig:
        """A `size: custom` ModelConfig whose non-embedding count is close to `n`.

        Candidate widths are the multiples of the head dimension within a factor of 2 of the
        continuous width; each gets the depth that best matches `n`. Among the candidates whose
        aspect ratio is within a factor of 2 of the rule's (all of them if none is), the winner
        is the closest to `n` in log, with a small preference for the rule's aspect ratio.
        With a fixed depth, the width closest to `n` in log wins. Other fields (dropout) come
        from `base`.
        """
        if not n > 0:
            raise ConfigError(f"shape rule: target parameter count must be > 0, got {n}")
        _, d_cont = self.continuous(n)
        hd = self.head_dim
        low, high = max(1, math.floor(d_cont / 2 / hd)), max(1, math.ceil(2 * d_cont / hd))
        candidates = []
        for d in range(low * hd, high * hd + 1, hd):
            per_layer = float(self.params(1, d) - self.params(0, d))
            n_layer = self.n_layer or max(1, round((n - float(self.params(0, d))) / per_layer))
            if self.n_layer:
                miss = abs(math.log(float(self.params(n_layer, d)) / n))
                candidates.append((False, miss, n_layer, d))
                continue
            skew = abs(math.log(d / n_layer / self.aspect_ratio))
            miss = abs(math.log(float(self.params(n_layer, d)) / n))
            candidates.append((skew > math.log(2), miss + 0.1 * skew, n_layer, d))
        _, _, n_layer, d = min(candidates)
        fields = {
            "arch": self.arch,
            "size": "custom",
            "n_layer": n_layer,
            "d_model": d,
            "n_head": d // hd,
            "d_ff": self.ff_ratio * d,
        }
        return dataclasses.replace(base, **fields) if base else ModelConfig(**fields)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ComputeModel:
    """Training FLOPs per token as a function of N, so that C = flops_per_token(N) · D."""

    convention: Literal["6N", "tuner"] = "6N"
    """`6N`: C = 6·N·D. `tuner`: tuner's count with the output projection and attention."""
    vocab_size: int = 0
    seq_len: int = 0
    rule: ShapeRule | None = None
    """How N becomes a shape (tuner convention only)."""

    @classmethod
    def six_nd(cls) -> ComputeModel:
        return cls()

    @classmethod
    def tuner(cls, rule: ShapeRule, vocab_size: int, seq_len: int) -> ComputeModel:
        """tuner's convention for models made by `rule`, with this vocabulary and context."""
        if vocab_size <= 0 or seq_len <= 0:
            raise ConfigError("compute model: vocab_size and seq_len must be > 0")
        return cls("tuner", vocab_size, seq_len, rule)

    def flops_per_token(self, n: ArrayLike) -> np.ndarray:
        n = np.asarray(n, dtype=float)
        if self.convention == "6N":
            return 6.0 * n
        assert self.rule is not None
        n_layer, d_model = self.rule.continuous(n)
        return 6.0 * (n + self.vocab_size * d_model) + 6.0 * n_layer * self.seq_len * d_model

    def describe(self) -> str:
        if self.convention == "6N":
            return "C = 6·N·D"
        assert self.rule is not None
        return (
            f"C = (6·(N + V·d) + 6·L·T·d)·D, N non-embedding, V={self.vocab_size}, "
            f"T={self.seq_len}, {self.rule.arch} shapes with "
            + (
                f"{self.rule.n_layer} layers"
                if self.rule.n_layer
                else f"d/L={self.rule.aspect_ratio:g}"
            )
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"convention": self.convention, "formula": self.describe()}
        if self.convention == "tuner":
            assert self.rule is not None
            out.update(vocab_size=self.vocab_size, seq_len=self.seq_len, rule=self.rule.to_json())
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComputeModel:
        if data.get("convention", "6N") == "6N":
            return cls()
        return cls.tuner(ShapeRule(**data["rule"]), int(data["vocab_size"]), int(data["seq_len"]))
