"""A recommendation made trainable: the compute-optimal N at budget C as a complete RunConfig.

The recommended N becomes a real shape (the study's shape rule) trained for the whole steps
of C FLOPs (`train.flops`), on the study's base config with the study's learning rate. The
continuous optimum and the shape built differ a little, so the loss the recipe promises is the
fitted law at the shape built and the tokens it will see, with its bootstrap interval; it goes
in the `provenance` block, where `tuner train` finds it and reports the achieved loss beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tuner import version
from tuner.config import RunConfig, apply_overrides, from_dict
from tuner.errors import ConfigError
from tuner.files import atomic_write
from tuner.scaling.fit import ScalingFit
from tuner.scaling.law import percentile_interval, predict
from tuner.scaling.plan import PlanPoint, plan_point
from tuner.scaling.recommend import Recommendation


@dataclass(frozen=True)
class Recipe:
    config: RunConfig
    point: PlanPoint
    provenance: dict[str, Any]

    @property
    def prediction(self) -> dict[str, Any]:
        return self.provenance["prediction"]


def build_recipe(fit: ScalingFit, rec: Recommendation, source: dict[str, Any]) -> Recipe:
    """The RunConfig for `rec` on the study's base config; ConfigError when the fit is not a
    study's (no base config or shape rule) or the budget is too small to train."""
    if not isinstance(source.get("base"), dict) or fit.compute.rule is None:
        raise ConfigError(
            "-o: a recipe needs a study's fit (its base config and shape rule); "
            "a CSV fit gives numbers only"
        )
    base = from_dict(RunConfig, source["base"])
    vocab = fit.compute.vocab_size
    point = plan_point(rec.flops, rec.params, base, vocab, fit.compute.rule)
    if point.steps < base.train.milestones:
        raise ConfigError(
            f"--flops {rec.flops:.3g}: the recommended model trains {point.steps} steps of "
            f"{base.train.batch_size * base.train.seq_len:,} tokens, fewer than "
            f"train.milestones={base.train.milestones}; raise the budget"
        )
    lr = float(source.get("learning_rate") or base.optim.lr)
    config = apply_overrides(base, list((point.overrides() | {"optim.lr": lr}).items()), "recipe")
    law = fit.law
    loss = float(law.predict(point.params, point.tokens))
    interval = None
    if len(law.samples):
        interval = list(
            percentile_interval(predict(law.samples, point.params, point.tokens), law.level)
        )
    prediction = {
        "metric": "val_loss",
        "val_loss": loss,
        "interval": interval,
        "level": law.level,
        "params": point.params,
        "tokens": point.tokens,
        "flops": point.flops,
        "budget": rec.flops,
        "compute_optimal": {"params": rec.params, "tokens": rec.tokens, "loss": rec.loss},
        "approach2": {"params": rec.approach2_params, "tokens": rec.approach2_tokens},
    }
    provenance = {
        "kind": "scaling recipe",
        "study": source.get("study"),
        "storage": source.get("storage"),
        "given": list(rec.given),
        "learning_rate_from": source.get("learning_rate_from"),
        "fit": {
            "E": law.E,
            "A": law.A,
            "B": law.B,
            "alpha": law.alpha,
            "beta": law.beta,
            "n_points": fit.n_points,
            "ranges": {k: list(v) for k, v in fit.ranges.items()},
            "compute": fit.compute.describe(),
        },
        "prediction": prediction,
        "warnings": list(rec.warnings),
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tuner_version": version(),
    }
    return Recipe(config, point, provenance)


def render_recipe(recipe: Recipe) -> str:
    """The YAML text: a comment, the RunConfig, then the provenance with the prediction."""
    p = recipe.prediction
    shape = recipe.point.model
    head = (
        f"# tuner scaling recipe from study {recipe.provenance['study']}: "
        f"{p['params']:,} non-embedding params (n_layer {shape.n_layer}, d_model {shape.d_model}), "
        f"{p['tokens']:,} tokens, {p['flops']:.3g} FLOPs\n"
        f"# predicted val_loss {p['val_loss']:.4f}"
        + (f" [{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]" if p["interval"] else "")
        + "\n# Train it: tuner train THIS_FILE (reports the achieved loss against the prediction)\n"
    )
    body = yaml.safe_dump(recipe.config.to_dict(), sort_keys=False)
    tail = yaml.safe_dump({"provenance": recipe.provenance}, sort_keys=False, allow_unicode=True)
    return head + body + tail


def write_recipe(path: str | Path, recipe: Recipe) -> Path:
    return atomic_write(Path(path), render_recipe(recipe))
