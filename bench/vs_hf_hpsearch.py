"""tuner against `Trainer.hyperparameter_search(backend="optuna")`, the route most transformers
users would take first, both at their best.

Both routes search the same space (learning rate, batch size, dropout, model size) with the
same sampler (tuner's default TPE as an Optuna object, same seed, parameters suggested in the
same order, so the startup trials draw the same points), the same token budget per trial (the
Trainer gets max_steps = tokens / (batch x seq_len) per trial from its hp_space), the same
number of trials and evaluations, on the same tokenized data (tuner.data.load_token_data; the
Trainer gets a `datasets.Dataset` of fixed-length chunks of it). Both prune: tuner with its
default Hyperband at its token milestones, the Trainer with Optuna's HyperbandPruner through
its own evaluation reports (`trial.report(objective, global_step)`; --hf-pruner). tuner logs
every trial to MLflow as it always does; the Trainer logs nowhere (report_to="none").

Each route's best model is scored the same way: every complete Trainer trial's final model is
also evaluated with tuner's evaluator on the same validation targets (that time is left out of
the Trainer's wall time), so "best val_loss" compares like with like.

The figure: the wall time tuner needs until a completed trial reaches the Trainer route's
final best loss (or better), divided by the Trainer route's whole wall time; median over
repeats run in alternating order, repeat r with seed + r for both routes (--same-seed reruns
one seed).

Both have the whole machine: with --workers K tuner runs K workers as `tuner study create
--workers K` does (this process, its imports paid like the Trainer's, and K-1 processes started
beside it; a share of the cores each, trials in parallel), and the Trainer, whose
`hyperparameter_search` runs trials one after another in one process, gets every core as
torch threads (--hf-threads).

  python bench/vs_hf_hpsearch.py --quick   # 6 trials of 16k tokens a route, 3 repeats
  python bench/vs_hf_hpsearch.py           # 16 trials of 65k tokens a route, 3 repeats
  python bench/vs_hf_hpsearch.py --workers 2 --repeats 5   # the committed full-mode figure
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    THREADS_HELP,
    Report,
    machine,
    machine_line,
    markdown_table,
    median,
    quiet,
    ratio,
    save_results,
    set_threads,
    use_temp_stores,
)

LR = (3e-4, 3e-2)
BATCH_SIZES = [8, 16, 32]
DROPOUT = (0.0, 0.2, 0.05)  # low, high, step
SIZES = ["nano", "micro", "tiny"]
SEQ_LEN = 128


@dataclass
class RouteResult:
    """One route's search, in figures comparable across routes."""

    route: str
    wall_seconds: float
    train_tokens: int
    train_seconds: float
    eval_seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    """number, params, val_loss (tuner's evaluator; inf if pruned), objective (the route's
    own), state, seconds (from the route's start to the trial's end)."""
    create_seconds: float = 0.0
    """tuner: create_study (validation, Optuna study, MLflow experiment and parent run)."""

    @property
    def best(self) -> dict[str, Any]:
        return min(self.trials, key=lambda t: t["val_loss"])

    def seconds_to(self, target: float) -> float:
        """Seconds from the route's start until a completed trial reached `target`."""
        hits = [t["seconds"] for t in self.trials if t["val_loss"] <= target + 1e-9]
        return min(hits) if hits else float("inf")


def search_objects(args: argparse.Namespace) -> tuple[Any, Any]:
    """The sampler both routes use (tuner's default TPE, built by tuner.samplers for this
    space) and the pruner the Trainer route uses (its evaluations report global steps)."""
    import optuna

    from tuner.samplers import make_sampler
    from tuner.space import parse_space

    sampler = make_sampler(parse_space(tuner_space(args)), args.seed)
    pruner = {
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3),
        "median": optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        "none": optuna.pruners.NopPruner(),
    }[args.hf_pruner]
    return sampler, pruner


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data": {"source": "shakespeare"},
        "tokenizer": {"kind": "bpe", "vocab_size": 2048},
        "model": {"arch": "gpt2", "size": "micro"},
        "optim": {"lr": 1e-3, "weight_decay": 0.1, "beta2": 0.95, "grad_clip": 1.0},
        "schedule": {"kind": "cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.1},
        "train": {
            "batch_size": 16,
            "seq_len": SEQ_LEN,
            "tokens": args.tokens,
            "milestones": args.milestones,
            "eval_tokens": args.eval_tokens,
            "eval_batch_size": 16,
        },
    }


# ---------------------------------------------------------------- tuner


def tuner_space(args: argparse.Namespace, n_trials: int | None = None) -> dict[str, Any]:
    return {
        "name": "vs-hf",
        "base": base_config(args),
        "sampler": "tpe",
        "pruner": args.pruner,
        "n_trials": n_trials or args.trials,
        "seed": args.seed,
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "params": {
            "learning_rate": {"low": LR[0], "high": LR[1], "log": True},
            "batch_size": {"choices": BATCH_SIZES},
            "dropout": {"low": DROPOUT[0], "high": DROPOUT[1], "step": DROPOUT[2]},
            "model_size": {"choices": SIZES},
        },
    }


def warm_up(args: argparse.Namespace, workdir: Path) -> None:
    """Pay the one-off costs outside both timings: imports (torch, transformers' GPT-2 and
    Trainer, accelerate, mlflow, optuna) and the creation of the MLflow and Optuna stores."""
    from transformers import Trainer, TrainingArguments

    from tuner.config import ModelConfig
    from tuner.models import build_model
    from tuner.space import parse_space
    from tuner.study import create_study

    create_study("warm-up", parse_space(tuner_space(args, 1)))
    model = build_model(ModelConfig(arch="gpt2", size="nano"), 256, SEQ_LEN)
    Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(workdir / "warm"), report_to="none", use_cpu=True),
    )


def run_tuner(args: argparse.Namespace) -> RouteResult:
    from tuner.space import parse_space
    from tuner.study import create_study, run_study

    started, epoch = time.perf_counter(), time.time()
    name = f"vs-hf-{time.time_ns()}"
    handle = create_study(name, parse_space(tuner_space(args)), local_workers=args.workers)
    created = time.perf_counter()
    if args.workers > 1:  # tuner's --workers: this process and K-1 beside it, a core each
        from tuner.workers import run_workers

        if run_workers(handle, args.workers, None):
            raise SystemExit("a tuner worker failed")
    else:
        run_study(handle)
    wall = time.perf_counter() - started
    result = RouteResult("tuner", wall, 0, 0.0, 0.0)
    result.create_seconds = created - started
    for t in handle.study.get_trials(deepcopy=False):
        cost = t.user_attrs.get("cost", {})
        result.train_tokens += int(cost.get("tokens_seen", 0))
        result.train_seconds += float(cost.get("train_seconds", 0.0))
        result.eval_seconds += float(cost.get("eval_seconds", 0.0))
        loss = t.value if t.value is not None else float("inf")
        result.trials.append(
            {
                "number": t.number,
                "params": dict(t.params),
                "val_loss": loss,
                "objective": loss,
                "state": t.state.name,
                "seconds": t.datetime_complete.timestamp() - epoch,
                "tokens_per_second": float(cost.get("tokens_per_second", 0.0)),
            }
        )
    return result


# ---------------------------------------------------------------- Hugging Face Trainer


def chunk_dataset(tokens: np.ndarray, seq_len: int, limit: int | None = None) -> Any:
    """Non-overlapping windows of seq_len tokens as a `datasets.Dataset` (the usual
    group_texts result); the model predicts seq_len - 1 targets per window."""
    from datasets import Dataset

    n = (len(tokens) if limit is None else min(limit, len(tokens))) // seq_len
    windows = np.asarray(tokens[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
    ds = Dataset.from_dict({"input_ids": windows})
    ds.set_format("torch")
    return ds


def causal_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    ids = torch.stack([item["input_ids"] for item in items])
    return {"input_ids": ids, "labels": ids}


def hf_hp_space(args: argparse.Namespace) -> Any:
    """The Trainer's hp_space: same names, distributions and order as tuner's space; the
    per-trial step count and evaluation interval keep the token budget fixed."""

    def space(trial: Any) -> dict[str, Any]:
        lr = trial.suggest_float("learning_rate", LR[0], LR[1], log=True)
        batch = trial.suggest_categorical("batch_size", BATCH_SIZES)
        trial.suggest_float("dropout", DROPOUT[0], DROPOUT[1], step=DROPOUT[2])
        trial.suggest_categorical("model_size", SIZES)
        steps = args.tokens // (batch * SEQ_LEN)
        return {
            "learning_rate": lr,
            "per_device_train_batch_size": batch,
            "max_steps": steps,
            "eval_steps": max(1, steps // args.milestones),
        }

    return space


def run_hf(args: argparse.Namespace, workdir: Path) -> tuple[RouteResult, dict[str, float]]:
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from tuner.config import ModelConfig, RunConfig, from_dict
    from tuner.data import load_token_data
    from tuner.evaluate import evaluate
    from tuner.models import build_model

    config = from_dict(RunConfig, base_config(args))
    data = load_token_data(config.data, config.tokenizer)
    prep_start = time.perf_counter()
    train_ds = chunk_dataset(data.train, SEQ_LEN)
    eval_ds = chunk_dataset(data.val, SEQ_LEN, limit=args.eval_tokens)
    extra = {"prep_seconds": time.perf_counter() - prep_start, "rescore_seconds": 0.0}
    result = RouteResult("hf", 0.0, 0, 0.0, 0.0)

    hp_space = hf_hp_space(args)

    def model_init(trial: Any = None) -> torch.nn.Module:
        # transformers 5.x calls model_init(trial) *before* hp_space(trial) in Trainer.train,
        # so trial.params is still empty here and the 4.x pattern of reading it would train
        # the default model in every trial. Suggesting the whole space here first (same
        # order; Optuna returns the same value when hp_space suggests it again) fixes that.
        params = {}
        if trial is not None:
            hp_space(trial)
            params = trial.params
        cfg = ModelConfig(
            arch="gpt2", size=params.get("model_size", "micro"), dropout=params.get("dropout", 0.0)
        )
        return build_model(cfg, data.vocab_size, SEQ_LEN)

    class Timing(TrainerCallback):
        """Training time (train minus evaluations), the Trainer's own last eval_loss, and a
        re-score of the final model with tuner's evaluator (left out of the wall time)."""

        def on_train_begin(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            self.begin, self.evals, self.eval_loss = time.perf_counter(), 0.0, float("nan")

        def on_evaluate(
            self, a: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
        ) -> None:
            self.evals += float((metrics or {}).get("eval_runtime", 0.0))
            self.eval_loss = float((metrics or {}).get("eval_loss", float("nan")))

        def on_train_end(
            self, a: Any, state: Any, control: Any, model: Any = None, **kw: Any
        ) -> None:
            now = time.perf_counter()
            seconds = now - self.begin - self.evals
            tokens = state.global_step * a.per_device_train_batch_size * SEQ_LEN
            result.train_seconds += seconds
            result.eval_seconds += self.evals
            result.train_tokens += tokens
            pruned = state.global_step < state.max_steps  # it calls on_train_end, then prunes
            loss = float("inf")
            if not pruned:
                scored = evaluate(
                    model,
                    data.val,
                    data.token_bytes,
                    SEQ_LEN,
                    args.eval_tokens,
                    16,
                    torch.device("cpu"),
                )
                loss = scored["val_loss"]
            result.trials.append(
                {
                    "number": len(result.trials),
                    "params": dict(state.trial_params or {}),
                    "n_params": sum(p.numel() for p in model.parameters()),
                    "val_loss": loss,
                    "objective": self.eval_loss,
                    "state": "PRUNED" if pruned else "COMPLETE",
                    "seconds": now - started - extra["rescore_seconds"],
                    "tokens_per_second": tokens / seconds,
                }
            )
            extra["rescore_seconds"] += time.perf_counter() - now

    targs = TrainingArguments(
        output_dir=str(workdir / "hf"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        max_steps=1,
        learning_rate=1e-3,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=0.05,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
        seed=args.seed,
    )
    started = time.perf_counter()
    trainer = Trainer(
        model_init=model_init,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=causal_collate,
        callbacks=[Timing()],
    )
    trainer.remove_callback(PrinterCallback)
    sampler, pruner = search_objects(args)
    trainer.hyperparameter_search(
        hp_space=hp_space,
        n_trials=args.trials,
        direction="minimize",
        backend="optuna",
        sampler=sampler,
        pruner=pruner,
    )
    result.wall_seconds = time.perf_counter() - started - extra["rescore_seconds"]
    return result, extra


# ---------------------------------------------------------------- report


def route_figures(r: RouteResult) -> dict[str, Any]:
    best = r.best
    return {
        "wall_seconds": r.wall_seconds,
        "best_val_loss": best["val_loss"],
        "best_objective": best["objective"],
        "best_params": best["params"],
        "pruned": sum(t["state"] == "PRUNED" for t in r.trials),
        "train_tokens": r.train_tokens,
        "train_tokens_per_second": ratio(r.train_tokens, r.train_seconds),
        "end_to_end_tokens_per_second": ratio(r.train_tokens, r.wall_seconds),
        "eval_seconds": r.eval_seconds,
        "create_seconds": r.create_seconds,
        "seconds_to_own_best": r.seconds_to(best["val_loss"]),
        "trials": r.trials,
    }


def report(
    runs: list[tuple[RouteResult, RouteResult, dict[str, float]]], say: Report
) -> dict[str, Any]:
    """Per repeat (run in alternating order): tuner's wall time to the Trainer's final best,
    over the Trainer's wall time; medians over repeats."""
    per_run = []
    for t, h, e in runs:
        target = h.best["val_loss"]
        per_run.append(
            {
                "tuner": route_figures(t),
                "hf": route_figures(h),
                "extra": e,
                "target": target,
                "tuner_seconds_to_target": t.seconds_to(target),
                "time_to_target_ratio": t.seconds_to(target) / h.wall_seconds,
            }
        )
    rows = []
    for i, r in enumerate(per_run):
        for route in ("tuner", "hf"):
            f = r[route]
            rows.append(
                [
                    i + 1,
                    route,
                    f"{f['wall_seconds']:.0f}",
                    f"{f['best_val_loss']:.4f}",
                    f"{f['seconds_to_own_best']:.0f}",
                    f"{len(f['trials'])} ({f['pruned']} pruned)",
                    f"{f['train_tokens'] / 1e6:.2f} M",
                    f"{f['train_tokens_per_second']:,.0f}",
                    f"{f['eval_seconds']:.0f}",
                    _params(f["best_params"]),
                ]
            )
    say(
        markdown_table(
            [
                "repeat",
                "route",
                "wall s",
                "best val_loss (tuner's evaluator)",
                "s to its best",
                "trials",
                "tokens trained",
                "training tokens/s",
                "eval s",
                "best params",
            ],
            rows,
        )
    )
    say()
    ratios = [r["time_to_target_ratio"] for r in per_run]
    wall = [ratio(r["tuner"]["wall_seconds"], r["hf"]["wall_seconds"]) for r in per_run]
    train = [
        ratio(r["tuner"]["train_tokens_per_second"], r["hf"]["train_tokens_per_second"])
        for r in per_run
    ]
    for i, r in enumerate(per_run):
        say(
            f"repeat {i + 1}: Trainer's best {r['target']:.4f} after "
            f"{r['hf']['wall_seconds']:.0f} s; tuner reached it after "
            f"{r['tuner_seconds_to_target']:.0f} s = {r['time_to_target_ratio']:.3f} x "
            f"(tuner's own best {r['tuner']['best_val_loss']:.4f})"
        )
    figure = median(ratios)
    say(
        f"ratios tuner / Trainer, median of {len(runs)} repeats: wall time to the Trainer's "
        f"best loss {figure:.3f} ({', '.join(f'{x:.3f}' for x in ratios)}); whole searches' wall "
        f"time {median(wall):.3f}; training tokens/s {median(train):.3f}"
    )
    met = figure <= 0.5
    say(
        f"goal tuner reaches an equal or better best loss in <= 0.5 x the Trainer's wall time: "
        f"{figure:.3f} ({'met' if met else 'NOT met'})"
    )
    tuner, hf, extra = runs[0]
    say(
        f"in tuner's wall time: create_study {tuner.create_seconds:.1f} s, evaluation "
        f"{tuner.eval_seconds:.1f} s, MLflow tracking of every trial; in the Trainer's: "
        f"evaluation {hf.eval_seconds:.1f} s; not in the Trainer's: building its chunked "
        f"datasets {extra['prep_seconds']:.1f} s, re-scoring its models with tuner's "
        f"evaluator {extra['rescore_seconds']:.1f} s (first repeat)"
    )
    say()
    say("trials side by side, first repeat (the startup trials draw the same points):")
    side = []
    for a, b in zip(tuner.trials, hf.trials, strict=False):
        side.append(
            [
                a["number"],
                _params(a["params"]),
                _loss(a),
                f"{a['tokens_per_second']:,.0f}",
                _params(b["params"]),
                _loss(b),
                f"{b['tokens_per_second']:,.0f}",
            ]
        )
    say(
        markdown_table(
            [
                "trial",
                "tuner params (lr, batch, dropout, size)",
                "tuner val_loss",
                "tuner training tokens/s",
                "Trainer params",
                "Trainer val_loss",
                "Trainer training tokens/s",
            ],
            side,
        )
    )
    return {
        "runs": per_run,
        "time_to_target_ratio": figure,
        "wall_ratio": median(wall),
        "train_rate_ratio": median(train),
    }


def _loss(trial: dict[str, Any]) -> str:
    return "pruned" if trial["state"] == "PRUNED" else f"{trial['val_loss']:.4f}"


def _params(params: dict[str, Any]) -> str:
    parts = []
    for key in ("learning_rate", "batch_size", "dropout", "model_size"):
        if key in params:
            value = params[key]
            parts.append(f"{value:.2g}" if isinstance(value, float) else str(value))
    return " ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="6 trials a route, 16k tokens a trial")
    p.add_argument("--trials", type=int, default=None, help="trials per route (quick 6, full 16)")
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="training tokens per trial; a multiple of 32 x 128 x milestones",
    )
    p.add_argument("--milestones", type=int, default=None, help="evaluations (quick 4, full 8)")
    p.add_argument("--eval-tokens", type=int, default=None, help="quick 1024, full 2048")
    p.add_argument("--pruner", default="hyperband", help="tuner's pruner (its defaults)")
    p.add_argument(
        "--hf-pruner",
        choices=["hyperband", "median", "none"],
        default="hyperband",
        help="the Trainer route's Optuna pruner (reports at its global steps)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the results files")
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    p.add_argument(
        "--order",
        choices=["tuner-first", "hf-first"],
        default="tuner-first",
        help="which route runs first in the first repeat (they alternate)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="tuner's route runs this many workers (`--workers`: this process and K-1 "
        "beside it), a CPU share each",
    )
    p.add_argument(
        "--hf-threads",
        type=int,
        default=None,
        help="torch threads of the Trainer route (default: --threads, or every core with "
        "--workers > 1, so both routes have the whole machine)",
    )
    p.add_argument(
        "--same-seed",
        action="store_true",
        help="every repeat with --seed (default: repeat r with seed + r, so repeats are "
        "independent searches rather than reruns of one)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="searches per route, in alternating order (AB, BA, ...)",
    )
    args = p.parse_args(argv)
    args.trials = args.trials or (6 if args.quick else 16)
    args.milestones = args.milestones or (4 if args.quick else 8)
    args.eval_tokens = args.eval_tokens or (1024 if args.quick else 2048)
    args.tokens = args.tokens or (16384 if args.quick else 65536)
    if args.hf_threads is None:
        args.hf_threads = (os.cpu_count() or 1) if args.workers > 1 else (args.threads or 1)
    unit = max(BATCH_SIZES) * SEQ_LEN * args.milestones
    if args.tokens % unit:
        p.error(
            f"--tokens must be a multiple of {unit} so every batch size gets whole steps "
            "and evenly spaced evaluations"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    set_threads(args.threads)
    workdir = use_temp_stores("vs-hf")
    say = Report()
    info = machine()
    say(f"# tuner vs Trainer.hyperparameter_search ({'quick' if args.quick else 'full'})")
    say(f"machine: {machine_line(info)}")
    say(f"command: python bench/vs_hf_hpsearch.py {' '.join(sys.argv[1:])}")
    from tuner.samplers import describe
    from tuner.space import parse_space

    search = describe(parse_space(tuner_space(args)))
    say(
        f"space: learning_rate log [{LR[0]:g}, {LR[1]:g}], batch_size {BATCH_SIZES}, dropout "
        f"[{DROPOUT[0]}, {DROPOUT[1]}] step {DROPOUT[2]}, model_size {SIZES}; gpt2, seq_len "
        f"{SEQ_LEN}, {args.tokens:,} training tokens per trial, {args.milestones} evaluations x "
        f"{args.eval_tokens:,} tokens; sampler (both routes) {search['sampler']}, seed "
        f"{args.seed}; tuner's pruner {search['pruner']} (milestones), the Trainer's Optuna "
        f"{args.hf_pruner} pruner (global steps); {args.trials} trials per route; "
        f"{args.repeats} repeats in alternating order"
        + ("" if args.same_seed else f" with seeds {args.seed}..{args.seed + args.repeats - 1}")
        + f"; tuner: {args.workers} worker(s) (this process and the rest beside it), "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')} torch thread(s) each; the Trainer: "
        f"{args.hf_threads} torch thread(s)"
    )
    warm_up(args, workdir)
    runs = []
    for repeat in range(args.repeats):
        tuner_first = (args.order == "tuner-first") == (repeat % 2 == 0)  # AB, BA, AB, ...
        order = ("tuner", "hf") if tuner_first else ("hf", "tuner")
        seed = args.seed if args.same_seed else args.seed + repeat
        rargs = argparse.Namespace(**{**vars(args), "seed": seed})
        done: dict[str, Any] = {}
        for route in order:
            if route == "tuner":
                done["tuner"] = run_tuner(rargs)
            else:
                threads = torch.get_num_threads()
                torch.set_num_threads(args.hf_threads)
                done["hf"], done["extra"] = run_hf(rargs, workdir)
                torch.set_num_threads(threads)
            print(
                f"  repeat {repeat + 1}/{args.repeats} {route}: {done[route].wall_seconds:.0f} s",
                flush=True,
            )
        runs.append((done["tuner"], done["hf"], done["extra"]))
    say()
    figures = report(runs, say)
    name = "vs_hf_hpsearch" + ("-quick" if args.quick else "") + args.tag
    path = save_results(name, {"args": vars(args), "machine": info, "figures": figures}, say.text)
    print(f"\nwrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
