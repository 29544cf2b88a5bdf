"""How long a 10,000-trial study takes to draw, and how big the page is.

Goal: under 10 s and under 20 MB on the project's 2-core machine. The study is synthetic
(in-memory Optuna storage, trials shaped like objective.py's), so no training runs.

    python bench/dashboard_scale.py [--trials 10000] [--out /tmp/dashboard-scale.html]
"""

from __future__ import annotations

import argparse
import importlib
import math
import random
import sys
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.space import load_space  # noqa: E402
from tuner.study import StudyHandle  # noqa: E402

SIZES = {"nano": 0.12e6, "micro": 0.8e6, "tiny": 3.2e6}
GOAL_SECONDS = 10.0
GOAL_MB = 20.0


def synthetic_trial(rng: random.Random, number: int, space) -> optuna.trial.FrozenTrial:
    """One trial with objective.py's user attributes; ~15% pruned, ~2% diverged, ~1% failed."""
    params = {
        "learning_rate": 10 ** rng.uniform(-3.5, -1.53),
        "batch_size": rng.choice([8, 16, 32]),
        "seq_len": rng.choice([64, 128]),
        "dropout": rng.choice([0.0, 0.1]),
        "model_size": rng.choice(list(SIZES)),
    }
    n_params = SIZES[params["model_size"]] * rng.uniform(0.95, 1.05)
    loss = 1.6 + 2e5 / n_params + 0.2 * (math.log10(params["learning_rate"]) + 2.5) ** 2
    roll = rng.random()
    state, reason, milestones = optuna.trial.TrialState.COMPLETE, "", 4
    if roll < 0.15:
        state, reason, milestones = optuna.trial.TrialState.PRUNED, "pruned at milestone 1", 2
    elif roll < 0.17:
        state, reason, milestones = optuna.trial.TrialState.PRUNED, "diverged: loss nan", 1
    elif roll < 0.18:
        state, reason = optuna.trial.TrialState.FAIL, "RuntimeError: synthetic failure"
    curve = [
        [32768 * (i + 1), loss + 1.2 / (i + 1) - 0.3 + rng.uniform(0, 0.05)]
        for i in range(milestones)
    ]
    tokens = curve[-1][0]
    wall = 6 * n_params * tokens / 3e10
    final = curve[-1][1]
    attrs = {
        "config": {
            "model": {"arch": "gpt2", "size": params["model_size"]},
            "optim": {"lr": params["learning_rate"]},
            "train": {"batch_size": params["batch_size"], "seq_len": params["seq_len"]},
            "tokenizer": {"kind": "bpe", "vocab_size": 2048},
        },
        "metrics": {
            "val_loss": final,
            "val_perplexity": math.exp(final),
            "val_bpb": final / 2.4,
            "val_accuracy": 0.35,
            "train_loss": final - 0.05,
        },
        "cost": {
            "n_params": n_params,
            "train_flops": 6 * n_params * tokens,
            "tokens_seen": tokens,
            "wall_seconds": wall,
            "price_usd": wall / 3600 * 0.1,
            "device": "cpu",
        },
        "curve": curve,
        "mlflow_run_id": f"{number:032x}",
    }
    if reason:
        attrs["reason"] = reason
    complete = state == optuna.trial.TrialState.COMPLETE
    return optuna.trial.create_trial(
        state=state,
        value=final if complete else None,
        params=params,
        distributions=space.distributions(),
        user_attrs=attrs,
        intermediate_values={i: v for i, (_, v) in enumerate(curve)},
    )


def synthetic_handle(n_trials: int, seed: int = 0) -> StudyHandle:
    space = load_space(ROOT / "search_spaces" / "quick.yaml")
    rng = random.Random(seed)
    study = optuna.create_study(study_name=f"scale-{n_trials}", direction="minimize")
    study.add_trials([synthetic_trial(rng, i, space) for i in range(n_trials)])
    return StudyHandle(study, space, "memory", "sqlite:///unused/mlflow.db", "0", "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--out", default="/tmp/dashboard-scale.html")
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    t0 = time.perf_counter()
    handle = synthetic_handle(args.trials)
    print(
        f"synthetic study: {args.trials} trials built in {time.perf_counter() - t0:.1f} s "
        "(not counted)"
    )

    t0 = time.perf_counter()
    for module in ("optuna.importance", "optuna.visualization", "plotly.graph_objects"):
        importlib.import_module(module)  # once per process; optuna.importance: scikit-learn
    from tuner import dashboards, figures
    from tuner.page import render_html

    imports = time.perf_counter() - t0

    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    data = dashboards.gather(handle)
    steps["gather"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    figs = figures.figures(data)
    steps["figures"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    page = render_html(data, figs)
    steps["html"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = Path(args.out)
    out.write_text(page, encoding="utf-8")
    steps["write"] = time.perf_counter() - t0

    total = sum(steps.values())
    size_mb = out.stat().st_size / 1e6
    print("  ".join(f"{k} {v:.2f} s" for k, v in steps.items()) + f"  (imports {imports:.2f} s)")
    print(
        f"render time: {total:.2f} s (goal < {GOAL_SECONDS:g} s: {total / GOAL_SECONDS:.2f}x "
        f"of goal; with imports {total + imports:.2f} s)"
    )
    print(
        f"page size:   {size_mb:.1f} MB (goal < {GOAL_MB:g} MB: {size_mb / GOAL_MB:.2f}x of goal)"
        f"  -> {out}"
    )
    print(f"drawn: {len(data.complete)} complete trials, {len(data.curves)} learning curves")


if __name__ == "__main__":
    main()
