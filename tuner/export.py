"""`tuner export`: the best trial that fits the constraints -> a standalone RunConfig YAML.

The file is exactly the trial's resolved config (seed included), so `tuner train` on it with
the trial's own budget reproduces the trial; a `provenance` block records where it came from
and is ignored when the file is read back. Everything is checked before anything is written,
and the file is replaced atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import optuna
import yaml

from tuner import metrics, version
from tuner.config import SIZE_PRESETS, RunConfig
from tuner.errors import ConfigError
from tuner.files import atomic_write, make_parent
from tuner.records import TrialRecord
from tuner.units import parse_amount


@dataclass(frozen=True)
class Constraints:
    """Upper bounds a trial must meet to be picked (None = no bound)."""

    max_params: float | None = None
    max_flops: float | None = None

    @classmethod
    def parse(cls, max_params: str | float | None, max_flops: str | float | None) -> Constraints:
        """From the CLI's text (`5M`, `2e15`); ConfigError for anything but a positive number."""
        return cls(parse_amount(max_params, "--max-params"), parse_amount(max_flops, "--max-flops"))

    def met_by(self, record: TrialRecord) -> bool:
        return _within(record.cost.get("n_params"), self.max_params) and _within(
            record.cost.get("train_flops"), self.max_flops
        )

    def describe(self) -> str:
        parts = [
            f"n_params <= {self.max_params:g}" if self.max_params else "",
            f"train_flops <= {self.max_flops:g}" if self.max_flops else "",
        ]
        return " and ".join(p for p in parts if p) or "none"

    def as_dict(self) -> dict[str, float]:
        return {
            k: v
            for k, v in (("max_params", self.max_params), ("max_flops", self.max_flops))
            if v is not None
        }


@dataclass(frozen=True)
class Pick:
    """The chosen trial, its config and the metric that chose it."""

    trial: TrialRecord
    config: RunConfig
    metric: str
    direction: str
    value: float
    warning: str = ""
    """Empty, or why the exported recipe may not carry the trial's result (see at_width)."""


def _within(value: Any, bound: float | None) -> bool:
    return bound is None or (value is not None and float(value) <= bound)


def direction_for(study: optuna.Study, objective_metrics: list[str], metric: str) -> str:
    """The study's own direction when `metric` is one of its objectives, else the natural one."""
    if metric in objective_metrics:
        return study.directions[objective_metrics.index(metric)].name.lower()
    return metrics.direction(metric)


def pick_trial(
    study: optuna.Study,
    objective_metrics: list[str],
    trial_number: int | None = None,
    metric: str | None = None,
    constraints: Constraints = Constraints(),
) -> Pick:
    """The best complete trial by `metric` (default: the first objective) that meets the
    constraints, or exactly `trial_number`; ConfigError when there is none."""
    metric = metric or objective_metrics[0]
    if metric not in metrics.OBJECTIVE_METRICS and metric not in objective_metrics:
        raise ConfigError(f"--metric {metric!r}: one of {', '.join(metrics.OBJECTIVE_METRICS)}")
    direction = direction_for(study, objective_metrics, metric)
    trials = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    if trial_number is not None:
        candidates = [_named_trial(study.study_name, trials, trial_number)]
    else:
        candidates = [t for t in trials if t.state == "COMPLETE"]
        if not candidates:
            raise ConfigError(
                f"study {study.study_name!r} has no complete trials yet "
                f"({len(trials)} in all); run or resume it first"
            )
    fitting = [t for t in candidates if constraints.met_by(t)]
    if not fitting:
        what = f"trial {trial_number}" if trial_number is not None else "no complete trial"
        verb = "does not meet" if trial_number is not None else "meets"
        raise ConfigError(
            f"study {study.study_name!r}: {what} {verb} the constraints ({constraints.describe()})"
        )
    scored = [(t.value(metric), t) for t in fitting]
    scored = [(v, t) for v, t in scored if v is not None]
    if not scored:
        raise ConfigError(f"--metric {metric}: not recorded for the candidate trials")
    sign = -1.0 if direction == "maximize" else 1.0
    value, best = min(scored, key=lambda vt: (sign * vt[0], vt[1].number))
    return Pick(best, best.run_config(), metric, direction, value)


def _named_trial(study_name: str, trials: list[TrialRecord], number: int) -> TrialRecord:
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        known = f"trials 0..{len(trials) - 1}" if trials else "no trials"
        raise ConfigError(f"--trial {number}: study {study_name!r} has no such trial ({known})")
    trial = by_number[number]
    if trial.state != "COMPLETE":
        reason = trial.reason
        raise ConfigError(
            f"--trial {number}: the trial is {trial.state}, not COMPLETE"
            + (f" ({reason.splitlines()[0][:120]})" if reason else "")
        )
    return trial


def redact_url(url: str) -> str:
    """A storage URL without its password, fit to write into a file."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def provenance(
    pick: Pick, study_name: str, storage_url: str, tracking_uri: str, constraints: Constraints
) -> dict[str, Any]:
    """Where the config came from; informational, ignored when the file is loaded."""
    trial = pick.trial
    return {
        "study": study_name,
        "storage": redact_url(storage_url),
        "trial": trial.number,
        "mlflow_run_id": trial.run_id,
        "tracking_uri": redact_url(tracking_uri),
        "metric": pick.metric,
        "value": pick.value,
        "direction": pick.direction,
        "constraints": constraints.as_dict(),
        "metrics": {k: float(v) for k, v in trial.metrics.items()},
        "n_params": trial.cost.get("n_params"),
        "train_flops": trial.cost.get("train_flops"),
        "params": dict(trial.params),
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tuner_version": version(),
    }


ZERO_MEANS = {
    ("data", "max_chars"): "the whole corpus",
    ("model", "n_layer"): "from the size preset",
    ("model", "d_model"): "from the size preset",
    ("model", "n_head"): "from the size preset",
    ("model", "d_ff"): "from the size preset",
    ("optim", "grad_clip"): "no clipping",
    ("train", "micro_batch_size"): "no cap: the whole batch in one pass",
    ("train", "flops"): "no FLOP budget: train.tokens is the budget",
    ("train", "threads"): "torch's default",
    ("cost", "peak_flops"): "measured once per machine",
}
"""What a zero means for the RunConfig fields where it stands for "not set"."""


def render(config: RunConfig, prov: dict[str, Any]) -> str:
    """The YAML text: a comment, the config (each "not set" zero explained), then the
    provenance block."""
    head = (
        f"# tuner export: trial {prov['trial']} of study {prov['study']} "
        f"({prov['metric']} {prov['value']:.6g}).\n"
        "# Train the final model: tuner train THIS_FILE [--tokens N]\n"
    )
    body = explain_zeros(yaml.safe_dump(config.to_dict(), sort_keys=False), config)
    tail = yaml.safe_dump({"provenance": prov}, sort_keys=False)
    return head + body + tail


def explain_zeros(body: str, config: RunConfig) -> str:
    """A comment after every `key: 0` of ZERO_MEANS (`n_layer: 0  # 0 = from the size preset
    (micro: 2)`); comments change nothing when the file is read back."""
    preset = SIZE_PRESETS.get(config.model.size)
    section = ""
    lines = []
    for line in body.splitlines():
        if line and not line.startswith(" "):
            section = line.split(":", 1)[0]
        key, _, value = line.strip().partition(": ")
        meaning = ZERO_MEANS.get((section, key)) if line.startswith("  ") else None
        if meaning and not line.startswith("   ") and value in ("0", "0.0"):
            if section == "model" and preset is not None:
                meaning += f" ({config.model.size}: {getattr(preset, key)})"
            line += f"  # 0 = {meaning}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def check_output(path: Path) -> Path:
    if path.is_dir():
        raise ConfigError(f"-o {path}: is a directory; name a file such as {path / 'best.yaml'}")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"-o {path}: expected a .yaml or .yml file name")
    make_parent(path, "-o")
    return path


def export_best(
    name: str,
    output: str | Path = "best.yaml",
    trial: int | None = None,
    metric: str | None = None,
    constraints: Constraints = Constraints(),
    storage_url: str | None = None,
    width: int | None = None,
    params: float | None = None,
) -> tuple[Path, Pick]:
    """Pick a trial of study `name` and write its config; returns the file and the pick.
    With `width` (d_model) or `params` (non-embedding), the same recipe at that width
    (`tuner.width.at_width`: under μP the tuned learning rate carries over)."""
    from tuner.study import load_study

    path = check_output(Path(output))
    handle = load_study(name, storage_url)
    objective_metrics = [o.metric for o in handle.space.objectives]
    pick = pick_trial(handle.study, objective_metrics, trial, metric, constraints)
    prov = provenance(pick, handle.name, handle.storage_url, handle.tracking_uri, constraints)
    if width is not None or params is not None:  # the recipe at another width
        from tuner.width import at_width, describe_transfer

        moved = at_width(pick.config, width, None if params is None else int(params))
        prov["width_transfer"] = describe_transfer(pick.config, moved.config)
        pick = replace(pick, config=moved.config, warning=moved.warning)
    atomic_write(path, render(pick.config, prov))
    return path, pick
