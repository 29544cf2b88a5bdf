"""What `tuner scaling fit` and `tuner scaling recommend` do, one function each, taking plain
arguments: pick the runs (a study, a CSV, or a saved fit), check every flag and output path
before anything is computed or written, fit, and write what was asked for."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import ConfigError
from tuner.files import atomic_write, make_parent
from tuner.scaling.fit import ScalingFit, fit_scaling_law
from tuner.scaling.points import load_csv
from tuner.scaling.recipe import Recipe, build_recipe, write_recipe
from tuner.scaling.recommend import Recommendation, recommend
from tuner.scaling.study import fit_document, fit_source, fit_study, log_fit, read_fit_json


@dataclass(frozen=True)
class CsvColumns:
    """`--csv FILE --params-column C (--tokens-column C | --flops-column C) --loss-column C`."""

    path: str
    params: str | None = None
    loss: str | None = None
    tokens: str | None = None
    flops: str | None = None

    def check(self) -> None:
        for flag, value in (("--params-column", self.params), ("--loss-column", self.loss)):
            if not value:
                raise ConfigError(f"{flag}: required with --csv")


@dataclass
class FitOutcome:
    fit: ScalingFit
    document: dict[str, Any]
    """The JSON: the fit, and for a study its source (base config, learning rate)."""
    written: list[Path] = field(default_factory=list)
    logged_run: str | None = None
    """The MLflow parent run the fit went to (a study's)."""
    dashboard: Path | None = None


def check_json_output(output: str | Path | None) -> Path | None:
    if output is None:
        return None
    path = Path(output)
    if path.is_dir() or path.suffix.lower() != ".json":
        raise ConfigError(f"-o {path}: expected a .json file name")
    make_parent(path, "-o")
    return path


def check_yaml_output(output: str | Path | None) -> Path | None:
    if output is None:
        return None
    from tuner.export import check_output

    return check_output(Path(output))


def _one_source(name: str | None, csv: CsvColumns | None, fit_path: str | None) -> None:
    given = [flag for flag, v in (("NAME", name), ("--csv", csv), ("--fit", fit_path)) if v]
    if len(given) != 1:
        which = ", ".join(given) if given else "none"
        raise ConfigError(
            f"give one source of runs: a study NAME, --csv FILE or --fit FILE (got {which})"
        )


def fit_runs(
    name: str | None = None,
    csv: CsvColumns | None = None,
    *,
    n_bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
    output: str | Path | None = None,
    storage_url: str | None = None,
    tracking_uri: str | None = None,
    mlflow: bool = True,
) -> FitOutcome:
    """`tuner scaling fit`: a study's finished IsoFLOP runs (logged to its MLflow parent run,
    its scaling page redrawn) or a CSV of anyone's runs; `output` gets the JSON."""
    _one_source(name, csv, None)
    path = check_json_output(output)
    if n_bootstrap < 0:
        raise ConfigError(f"--bootstrap: must be >= 0, got {n_bootstrap}")
    outcome = _fit(name, csv, n_bootstrap, level, seed, storage_url, tracking_uri, mlflow)
    if path is not None:
        atomic_write(path, json.dumps(outcome.document, indent=1) + "\n")
        outcome.written.append(path)
    return outcome


def _fit(
    name: str | None,
    csv: CsvColumns | None,
    n_bootstrap: int,
    level: float,
    seed: int,
    storage_url: str | None,
    tracking_uri: str | None,
    mlflow: bool,
) -> FitOutcome:
    if csv is not None:
        csv.check()
        assert csv.params and csv.loss
        points = load_csv(
            csv.path,
            params_column=csv.params,
            loss_column=csv.loss,
            tokens_column=csv.tokens,
            flops_column=csv.flops,
        )
        fit = fit_scaling_law(points, n_bootstrap=n_bootstrap, level=level, seed=seed)
        return FitOutcome(fit, fit_document(fit))
    from tuner.study import load_study

    assert name is not None
    handle = load_study(name, storage_url, tracking_uri)
    fit, runs = fit_study(handle, n_bootstrap=n_bootstrap, level=level, seed=seed)
    document = fit_document(fit, fit_source(handle, runs))
    outcome = FitOutcome(fit, document)
    if mlflow:
        from tuner.scaling.page import publish_scaling

        log_fit(handle, document)
        outcome.logged_run = handle.parent_run_id
        outcome.dashboard = publish_scaling(handle, fit=fit)
    return outcome


@dataclass
class RecommendOutcome:
    recommendation: Recommendation
    recipe: Recipe | None = None
    written: Path | None = None

    def to_json(self) -> dict[str, Any]:
        out = self.recommendation.to_json()
        if self.recipe is not None:
            out["recipe"] = {
                "path": str(self.written) if self.written else None,
                "prediction": self.recipe.prediction,
                "model": {
                    k: getattr(self.recipe.point.model, k)
                    for k in ("arch", "n_layer", "d_model", "n_head", "d_ff")
                },
            }
        return out


def recommend_runs(
    name: str | None = None,
    csv: CsvColumns | None = None,
    fit_path: str | None = None,
    *,
    flops: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    n_bootstrap: int = 200,
    output: str | Path | None = None,
    storage_url: str | None = None,
) -> RecommendOutcome:
    """`tuner scaling recommend`: N, D and the expected loss for a budget from a study's fit,
    a CSV's or a saved one; with `output`, a study's recipe as a complete RunConfig."""
    _one_source(name, csv, fit_path)
    path = check_yaml_output(output)
    if path is not None and csv is not None:
        raise ConfigError("-o: a recipe needs a study (NAME or its fit JSON); a CSV gives numbers")
    source: dict[str, Any] = {}
    if fit_path is not None:
        fit, source = read_fit_json(fit_path, "--fit")
    else:
        outcome = _fit(name, csv, n_bootstrap, 0.95, 0, storage_url, None, mlflow=False)
        fit, source = outcome.fit, outcome.document.get("source", {})
    rec = recommend(fit, flops=flops, params=params, tokens=tokens)
    result = RecommendOutcome(rec)
    if path is not None:
        result.recipe = build_recipe(fit, rec, source)
        result.written = write_recipe(path, result.recipe)
    return result
