"""IsoFLOP studies: a plan run as an ordinary tuner study, and its finished runs read back.

A scaling study is a search space of fixed `points` (tuner.space): every planned (budget, size,
learning rate) is one point, a complete set of overrides on the base config that the grid
sampler runs exactly once. Everything else is the ordinary machinery: Optuna storage, the
MLflow parent run and one child run per trial, workers, resume, `study show`, the dashboard.
Each point sets `train.flops` to its budget, so a trial's own config carries the nominal
IsoFLOP budget its fit groups it by, and its schedule ends where the budget does (DESIGN.md,
decision 10). The plan itself (shape rule, vocabulary, budgets, learning rates) is kept in
the study's `scaling` attribute, so a fit and a recipe need only the study's name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import records
from tuner.config import apply_overrides, load_run_config, parse_overrides
from tuner.errors import ConfigError
from tuner.scaling.compute import ComputeModel, ShapeRule
from tuner.scaling.fit import ScalingFit, fit_scaling_law
from tuner.scaling.plan import IsoflopPlan, plan_isoflop, shape_rule_for
from tuner.scaling.points import MIN_POINTS, ScalingPoints, make_points
from tuner.space import SearchSpace, load_space, parse_space
from tuner.study import StudyHandle, create_study

PLAN_VERSION = 1


@dataclass(frozen=True)
class PreparedStudy:
    """A validated IsoFLOP study, not yet written anywhere (`--dry-run` prints it)."""

    space: SearchSpace
    plan: IsoflopPlan
    learning_rates: tuple[float, ...]
    record: dict[str, Any]
    """What the study keeps in its `scaling` attribute."""
    warnings: tuple[str, ...]

    def rows(self) -> list[dict[str, Any]]:
        """One row per trial, in trial order: what `--dry-run` shows."""
        return list(self.record["points"])


def parse_budgets(text: str) -> list[float]:
    """`1e11,3e11,1e12` (or 100G, 1T) -> FLOP budgets."""
    from tuner.units import parse_amount

    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError("--budgets: give compute budgets in FLOPs, e.g. 1e11,3e11,1e12")
    return [float(parse_amount(item.strip(), "--budgets") or 0.0) for item in items]


def read_fit_json(path: str | Path, flag: str) -> tuple[ScalingFit, dict[str, Any]]:
    """A fit written by `tuner scaling fit -o`, and its `source` block (empty for a CSV fit)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{flag} {path}: not a JSON file ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{flag} {path}: expected a JSON object")
    try:
        fit = ScalingFit.from_json(data)
    except ConfigError as err:
        raise ConfigError(f"{flag} {path}: {err}") from None
    source = data.get("source")
    return fit, source if isinstance(source, dict) else {}


def prepare_scaling_study(
    space_path: str | Path,
    budgets: list[float],
    *,
    sizes: int = 5,
    spread: float = 4.0,
    from_config: str | Path | None = None,
    prior: str | Path | None = None,
    lr_sweep: int = 1,
    lr_factor: float = 3.0,
    tokens_per_param: float = 20.0,
    aspect_ratio: float = 64.0,
    head_dim: int = 0,
    layers: int = 0,
    overrides: list[str] | None = None,
    seed: int | None = None,
) -> PreparedStudy:
    """Validate everything and lay out the trials; nothing is written but the token cache.

    The base config is the space's `base` (its params are not searched: every trial is a
    planned point) or, with `from_config`, an exported config; `--set` edits apply last.
    Sizes centre on a `prior` fit's optimum, else on `tokens_per_param` tokens a parameter;
    shapes follow the aspect ratio d_model / n_layer (or a fixed depth, `layers`), in
    multiples of `head_dim` (0: the base's own).
    Learning rates: the base's, or `lr_sweep` values spaced by `lr_factor` around it for
    every (budget, size); a fit then keeps each size's best.
    """
    from tuner.data import load_token_data

    space = load_space(space_path)
    base = load_run_config(from_config) if from_config else space.base
    base = apply_overrides(base, parse_overrides(overrides))
    if lr_sweep < 1:
        raise ConfigError(f"--lr-sweep: must be >= 1, got {lr_sweep}")
    if lr_sweep > 1 and not lr_factor > 1:
        raise ConfigError(f"--lr-factor: must be > 1, got {lr_factor}")
    rule = shape_rule_for(base.model, head_dim, aspect_ratio, layers)
    prior_fit = read_fit_json(prior, "--prior")[0] if prior else None
    data = load_token_data(base.data, base.tokenizer)
    plan = plan_isoflop(
        budgets,
        base,
        data.vocab_size,
        sizes=sizes,
        spread=spread,
        rule=rule,
        prior=prior_fit,
        tokens_per_param=tokens_per_param,
    )
    lrs = tuple(base.optim.lr * lr_factor ** (i - (lr_sweep - 1) / 2) for i in range(lr_sweep))
    points, rows = [], []
    for p in plan.points:
        for lr in lrs:
            points.append(p.overrides() | {"optim.lr": lr})
            rows.append(
                {
                    "budget": p.budget,
                    "target_params": p.target_params,
                    "params": p.params,
                    "n_layer": p.model.n_layer,
                    "d_model": p.model.d_model,
                    "n_head": p.model.n_head,
                    "tokens": p.tokens,
                    "steps": p.steps,
                    "flops": p.flops,
                    "lr": lr,
                }
            )
    warnings = list(plan.warnings)
    epoch = len(data.train)
    repeated = [r for r in rows if r["tokens"] > epoch]
    if repeated:
        warnings.append(
            f"{len(repeated)} trials train on more tokens than the training split holds "
            f"({epoch:,}): their data repeats, which a scaling law in N and D does not model"
        )
    raw = {
        "name": f"{space.name}-isoflop",
        "description": (
            f"IsoFLOP study: budgets {', '.join(f'{b:.3g}' for b in sorted(set(budgets)))} "
            f"FLOPs, {sizes} sizes each (spread {spread:g}), {len(lrs)} learning rate(s)"
        ),
        "base": base.to_dict(),
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "sampler": "grid",
        "pruner": "none",
        "seed": space.seed if seed is None else seed,
        "timeout": space.timeout,
        "points": points,
    }
    record = {
        "version": PLAN_VERSION,
        "budgets": sorted(set(budgets)),
        "sizes": sizes,
        "spread": spread,
        "tokens_per_param": None if prior else tokens_per_param,
        "rule": rule.to_json(),
        "vocab_size": data.vocab_size,
        "seq_len": base.train.seq_len,
        "train_tokens": epoch,
        "learning_rates": list(lrs),
        "prior": str(prior) if prior else None,
        "points": rows,
    }
    return PreparedStudy(parse_space(raw), plan, lrs, record, tuple(warnings))


def create_scaling_study(
    name: str,
    prepared: PreparedStudy,
    storage_url: str | None = None,
    tracking_uri: str | None = None,
    local_workers: int = 1,
) -> StudyHandle:
    """Write the study (queue filled with every point), its plan, and the plan's MLflow params."""
    handle = create_study(name, prepared.space, storage_url, tracking_uri, local_workers)
    records.write_scaling_plan(handle.study, prepared.record)
    from mlflow.entities import Param

    client = handle.tracker().client
    record = prepared.record
    params = {
        "scaling.budgets": ",".join(f"{b:.4g}" for b in record["budgets"]),
        "scaling.sizes": record["sizes"],
        "scaling.spread": record["spread"],
        "scaling.learning_rates": ",".join(f"{lr:.4g}" for lr in record["learning_rates"]),
        "scaling.rule": json.dumps(record["rule"]),
    }
    client.log_batch(handle.parent_run_id, params=[Param(k, str(v)) for k, v in params.items()])
    client.log_text(handle.parent_run_id, json.dumps(record, indent=1), "scaling/plan.json")
    return handle


def is_scaling_study(handle: StudyHandle) -> bool:
    return records.scaling_plan(handle.study) is not None


def plan_of(handle: StudyHandle) -> dict[str, Any]:
    plan = records.scaling_plan(handle.study)
    if plan is None:
        raise ConfigError(
            f"study {handle.name!r} is not a scaling study (create one with `tuner scaling create`)"
        )
    return plan


def compute_model(plan: dict[str, Any]) -> ComputeModel:
    """tuner's FLOP convention for the study's shapes, vocabulary and context length."""
    return ComputeModel.tuner(ShapeRule(**plan["rule"]), plan["vocab_size"], plan["seq_len"])


@dataclass(frozen=True)
class StudyRun:
    """One (budget, size) of a study: its best complete trial over the learning rates."""

    budget: float
    params: int
    """Non-embedding parameters, as the trial counted them."""
    tokens: int
    loss: float
    """Final validation loss (nats per token), at the end of the run's own schedule."""
    trial: int
    lr: float
    tried: int
    """Complete trials of this (budget, size); the best of them is kept."""


def study_runs(handle: StudyHandle) -> list[StudyRun]:
    """The study's complete trials as fit points, one per (budget, size). A trial enters only
    if its schedule ran to its end (tokens seen = its budget's tokens)."""
    plan_of(handle)
    best: dict[tuple[float, int], StudyRun] = {}
    tried: dict[tuple[float, int], int] = {}
    for trial in handle.study.get_trials(deepcopy=False):
        record = records.TrialRecord.of(trial)
        loss = record.metrics.get("val_loss")
        if record.state != "COMPLETE" or loss is None or not math.isfinite(loss):
            continue
        cost = record.cost
        if cost.get("tokens_seen") != cost.get("budget_tokens"):
            continue  # not a finished schedule (cannot happen unpruned; kept out if it does)
        budget = float(record.config.get("train", {}).get("flops") or 0.0)
        params = int(cost["n_params_non_embedding"])
        key = (budget, params)
        lr = float(record.config.get("optim", {}).get("lr", math.nan))
        run = StudyRun(budget, params, int(cost["tokens_seen"]), float(loss), trial.number, lr, 0)
        tried[key] = tried.get(key, 0) + 1
        if key not in best or run.loss < best[key].loss:
            best[key] = run
    runs = [
        StudyRun(r.budget, r.params, r.tokens, r.loss, r.trial, r.lr, tried[k])
        for k, r in best.items()
    ]
    return sorted(runs, key=lambda r: (r.budget, r.params))


def runs_to_points(runs: list[StudyRun]) -> ScalingPoints:
    return make_points(
        [r.params for r in runs],
        [r.loss for r in runs],
        tokens=[r.tokens for r in runs],
        flops=[r.budget for r in runs],
        where="scaling study",
    )


def fit_study(
    handle: StudyHandle, n_bootstrap: int = 200, level: float = 0.95, seed: int = 0
) -> tuple[ScalingFit, list[StudyRun]]:
    """Both fits on the study's finished runs; ConfigError (naming what is missing) when the
    runs do not yet make two budgets of three sizes or five points."""
    plan = plan_of(handle)
    runs = study_runs(handle)
    total = len(plan["points"])
    complete = sum(r.tried for r in runs)
    status = f"study {handle.name!r}: {complete} of {total} trials complete"
    if len(runs) < MIN_POINTS:
        raise ConfigError(
            f"{status}, {len(runs)} (budget, size) points; the fit needs at least {MIN_POINTS} "
            f"(run or resume the study: `tuner study resume {handle.name}`)"
        )
    try:
        fit = fit_scaling_law(
            runs_to_points(runs),
            compute=compute_model(plan),
            n_bootstrap=n_bootstrap,
            level=level,
            seed=seed,
            approach2="require",
        )
    except ConfigError as err:
        raise ConfigError(f"{status}; {err}") from None
    return fit, runs


def recipe_learning_rate(plan: dict[str, Any], runs: list[StudyRun]) -> tuple[float, str]:
    """The recipe's learning rate and where it came from: the study's one rate, or, after a
    sweep, the rate of the best run at the largest budget (the closest to the recipe's scale)."""
    rates = plan["learning_rates"]
    if len(rates) == 1 or not runs:
        return float(rates[len(rates) // 2]), "the study's base config"
    top = max(r.budget for r in runs)
    winner = min((r for r in runs if r.budget == top), key=lambda r: r.loss)
    return winner.lr, f"trial {winner.trial}, the best at the largest budget {top:.3g}"


def fit_source(handle: StudyHandle, runs: list[StudyRun]) -> dict[str, Any]:
    """What a recipe needs besides the fit, stored beside it in the fit JSON: the base config,
    the learning rate, and where the runs came from."""
    from tuner.export import redact_url

    plan = plan_of(handle)
    lr, lr_from = recipe_learning_rate(plan, runs)
    return {
        "study": handle.name,
        "storage": redact_url(handle.storage_url),
        "base": handle.space.base.to_dict(),
        "learning_rate": lr,
        "learning_rate_from": lr_from,
        "trials": [r.trial for r in runs],
    }


def fit_document(fit: ScalingFit, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON `--json` prints and `-o` writes: the fit, and for a study its source."""
    return fit.to_json() | ({"source": source} if source else {})


def log_fit(handle: StudyHandle, document: dict[str, Any]) -> None:
    """The fit on the study's MLflow parent run: settings as params, coefficients as metrics
    (step = number of points, so refits after a resume stack up), the JSON as an artifact."""
    from mlflow.entities import Metric, Param

    client = handle.tracker().client
    run_id = handle.parent_run_id
    iso = document.get("approach2") or {}
    values = {name: document[name] for name in ("E", "A", "B", "alpha", "beta", "a", "b")}
    values |= {"log_rmse": document["residuals"]["log_rmse"], "n_points": document["n_points"]}
    values |= {"bootstrap": document["bootstrap"]["n"]}
    if iso.get("a") is not None:
        values |= {"approach2_a": iso["a"], "approach2_b": iso["b"]}
    step, now = int(document["n_points"]), _now()
    metrics = [Metric(f"scaling.{k}", float(v), now, step) for k, v in values.items()]
    params = [Param("scaling.compute", document["compute"]["formula"])]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_text(run_id, json.dumps(document, indent=1), "scaling/fit.json")


def _now() -> int:
    import time

    return int(time.time() * 1000)
