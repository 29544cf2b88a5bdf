"""Section 3 of bench/scaling.py: a scaling law fitted on the built-in corpus, then tested by
training at four times the largest budget it saw.

The commands a user would type run as subprocesses (`tuner scaling create`, `fit`,
`recommend -o recipe.yaml`, `tuner train recipe.yaml`) on throwaway stores, and their output
goes into the report as it was printed. Then a 3-point sweep of N at the same budget (the
sizes one would try without a fit: the best size at C_max, and 2x and 4x it) is trained
in-process with the same seed, base config and evaluation text as the recipe.

One-epoch regime: a character tokenizer turns the Shakespeare corpus into ~4.45M training
tokens; every run here is checked to stay below that (training batches are random windows,
so "one epoch" means as many tokens as the split holds, not each window once).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from _common import markdown_table

from tuner.config import RunConfig, apply_overrides, from_dict
from tuner.data import load_token_data
from tuner.scaling.plan import plan_point, shape_rule_for
from tuner.train import train_run

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_LOG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO mlflow")
MODES = {  # the IsoFLOP budgets, as fractions of the largest one, C_max
    "quick": {"c_max": 1e10, "fractions": (1 / 4, 1 / 2, 1.0), "sizes": 5, "eval_tokens": 32_768},
    "full": {"c_max": 3e10, "fractions": (1 / 8, 1 / 4, 1 / 2, 1.0), "sizes": 6,
             "eval_tokens": 65_536},
}  # fmt: skip
SPREAD = 4.0
ASPECT, HEAD_DIM, LAYERS = 16.0, 8, 1
"""One-layer models, widths in steps of 8 (888 to 50k parameters): the compute-optimal models
at these budgets have a few thousand parameters, where one layer more or less changes the loss
more than N does (a first run with the aspect-ratio rule mixed one- and two-layer shapes and
missed by 3.5 %)."""
TOKENS_PER_PARAM = 100.0
"""Where the sizes are centred: pilots at 3e10 and 6e10 FLOPs put the optimum at a few
thousand parameters, some 100 to 500 tokens a parameter (tiny models want far more data than
Chinchilla's 20)."""
TARGET = 4.0  # the recipe is trained at TARGET x C_max
BASE = {
    "data": {"source": "shakespeare"},
    "tokenizer": {"kind": "char"},
    "model": {"arch": "gpt2", "size": "custom", "n_layer": 1, "d_model": 32, "n_head": 4},
    "optim": {"lr": 0.003},
    "schedule": {"kind": "cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.1},
    "train": {
        "batch_size": 8,
        "seq_len": 64,
        "tokens": 100_000,
        "milestones": 1,
        "eval_batch_size": 32,
        "threads": 1,
    },
}


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[str, float]:
    """`python -m tuner ARGS`: its stdout (what a user reads) and wall seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tuner", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"tuner {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
        )
    shown = [line for line in done.stdout.splitlines() if not MLFLOW_LOG.match(line)]
    notes = [line for line in done.stderr.splitlines() if line.startswith(("wrote", "warning"))]
    return "\n".join(shown + notes), seconds


def end_to_end(quick: bool, say: Any, home: Path) -> dict[str, Any]:
    mode = MODES["quick" if quick else "full"]
    c_max = mode["c_max"]
    budgets = [c_max * f for f in mode["fractions"]]
    target = TARGET * c_max
    base_dict = json.loads(json.dumps(BASE))
    base_dict["train"]["eval_tokens"] = mode["eval_tokens"]
    work = home / "e2e"
    work.mkdir(parents=True, exist_ok=True)
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "e2e", "base": base_dict}, sort_keys=False))
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "120",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    budget_text = ",".join(f"{b:.4g}" for b in budgets)
    commands = [
        ["scaling", "create", "e2e", "--space", str(space), "--budgets", budget_text,
         "--sizes", str(mode["sizes"]), "--spread", f"{SPREAD:g}", "--aspect-ratio", f"{ASPECT:g}",
         "--head-dim", str(HEAD_DIM), "--layers", str(LAYERS),
         "--tokens-per-param", f"{TOKENS_PER_PARAM:g}"],
        ["scaling", "fit", "e2e", "-o", "fit.json"],
        ["scaling", "recommend", "e2e", "--flops", f"{target:.4g}", "-o", "recipe.yaml"],
        ["train", "recipe.yaml", "--out", "final"],
    ]  # fmt: skip
    say(
        f"C_max {c_max:.3g} FLOPs; budgets {budget_text}; {mode['sizes']} sizes each (spread "
        f"{SPREAD:g}, depth {LAYERS}, heads of {HEAD_DIM}); recipe and sweep at "
        f"{TARGET:g} x C_max = {target:.3g} FLOPs; char tokenizer, batch 8 x 64, lr 3e-3 for "
        "every size, 1 thread"
    )
    outputs, seconds = [], []
    for args in commands:
        text, wall = run_cli(args, env, work)
        shown = " ".join(a if a != str(space) else "space.yaml" for a in args)
        say(f"\n$ tuner {shown}   # {wall:.0f} s\n```\n{text}\n```")
        outputs.append(text)
        seconds.append(wall)
    fit = json.loads((work / "fit.json").read_text())
    recipe = yaml.safe_load((work / "recipe.yaml").read_text())
    prediction = recipe["provenance"]["prediction"]
    final = json.loads((work / "final" / "metrics.json").read_text())
    achieved = final["val"]["val_loss"]
    base = from_dict(RunConfig, base_dict)
    data = load_token_data(base.data, base.tokenizer)
    epoch = len(data.train)
    sweep = sweep_runs(base, data, target, say)
    rec_row = {
        "N": prediction["params"],
        "tokens": prediction["tokens"],
        "val_loss": achieved,
        "shape": f"{recipe['model']['n_layer']} x {recipe['model']['d_model']}",
    }
    rows = [[f"sweep: {f}", r["shape"], r["N"], r["tokens"], f"{r['tokens'] / epoch:.2f}",
             f"{r['val_loss']:.4f}"] for f, r in sweep.items()]  # fmt: skip
    rows.append(["recommended", rec_row["shape"], rec_row["N"], rec_row["tokens"],
                 f"{rec_row['tokens'] / epoch:.2f}", f"{achieved:.4f}"])  # fmt: skip
    say()
    say(markdown_table(["run", "layers x width", "N", "tokens D", "D / epoch", "val loss"], rows))
    error = achieved / prediction["val_loss"] - 1.0
    best_sweep = min(r["val_loss"] for r in sweep.values())
    within = abs(error) <= 0.02
    as_good = achieved <= best_sweep
    one_epoch = max([rec_row["tokens"], *(r["tokens"] for r in sweep.values())]) <= epoch
    band = prediction.get("interval") or [float("nan")] * 2
    say(
        f"\npredicted val loss {prediction['val_loss']:.4f} [{band[0]:.4f}, {band[1]:.4f}], "
        f"achieved {achieved:.4f}; fit alpha {fit['alpha']:.3f}, beta {fit['beta']:.3f}, "
        f"E {fit['E']:.3f}, approach 2 a = {_a2(fit)}"
    )
    say(
        f"one-epoch regime: largest run {max(r['tokens'] for r in [rec_row, *sweep.values()]):,} "
        f"tokens of {epoch:,} in the training split ({'held' if one_epoch else 'NOT held'})"
    )
    say(
        f"goal predicted final val loss within 2 % of achieved: {100 * error:+.2f} % "
        f"({'met' if within else 'NOT met'})"
    )
    say(
        f"goal recommended N at least as good as the best of a 3-point sweep: "
        f"{achieved:.4f} vs {best_sweep:.4f} ({'met' if as_good else 'NOT met'})"
    )
    return {
        "measured": True,
        "c_max": c_max,
        "budgets": budgets,
        "target_flops": target,
        "base": base_dict,
        "commands": [" ".join(c) for c in commands],
        "command_seconds": seconds,
        "outputs": outputs,
        "fit": {k: fit[k] for k in ("E", "A", "B", "alpha", "beta", "a", "b", "intervals")},
        "approach2_a": (fit.get("approach2") or {}).get("a"),
        "approach2_b": (fit.get("approach2") or {}).get("b"),
        "prediction": prediction,
        "achieved_val_loss": achieved,
        "prediction_error": error,
        "sweep": sweep,
        "train_split_tokens": epoch,
        "one_epoch": one_epoch,
        "goal_prediction_met": within,
        "goal_sweep_met": as_good,
        "figures": [str(p.relative_to(ROOT)) for p in figure_files(quick, fit)],
    }


def figure_files(quick: bool, fit_json: dict[str, Any]) -> list[Path]:
    """The scaling page's figures as small HTML files in bench/results (plotly.js from its
    CDN; the page itself, dashboards/e2e-scaling.html, inlines it and stays in the temp store)."""
    from _common import write_html

    from tuner.scaling.figures import scaling_figures
    from tuner.scaling.fit import ScalingFit
    from tuner.scaling.gather import gather_scaling
    from tuner.study import load_study

    fit = ScalingFit.from_json(fit_json)
    figures = scaling_figures(gather_scaling(load_study("e2e"), fit))
    stem = "scaling-e2e" + ("-quick" if quick else "")
    return [write_html(fig, f"{stem}-{key}") for key, fig in figures.items()]


def sweep_runs(base: RunConfig, data: Any, target: float, say: Any) -> dict[str, dict[str, Any]]:
    """What one would try at the target budget without a fit: the best size at C_max (from
    the study's runs, no law), and 2x and 4x that (the optimum grows with compute)."""
    from tuner.scaling.study import study_runs
    from tuner.study import load_study

    runs = study_runs(load_study("e2e"))
    top = max(r.budget for r in runs)
    best = min((r for r in runs if r.budget == top), key=lambda r: r.loss)
    rule = shape_rule_for(base.model, HEAD_DIM, ASPECT, LAYERS)
    out = {}
    for factor in (1, 2, 4):
        point = plan_point(target, best.params * factor, base, data.vocab_size, rule)
        config = apply_overrides(base, list(point.overrides().items()), "sweep")
        start = time.perf_counter()
        result = train_run(config, data)
        name = f"{factor}x best at C_max"
        out[name] = {
            "N": point.params,
            "shape": f"{point.model.n_layer} x {point.model.d_model}",
            "tokens": int(result.cost["tokens_seen"]),
            "val_loss": float(result.metrics["val_loss"]),
            "seconds": time.perf_counter() - start,
        }
        say(
            f"sweep {name}: {point.params:,} params, {out[name]['tokens']:,} tokens, "
            f"val loss {out[name]['val_loss']:.4f} ({out[name]['seconds']:.0f} s)"
        )
    return out


def _a2(fit: dict[str, Any]) -> str:
    iso = fit.get("approach2") or {}
    return f"{iso['a']:.3f}" if iso.get("a") is not None else "n/a"
