"""Downstream tasks on the default corpus: how a small trained model does against the
baselines, and what the built-in tasks cost a trial.

One invocation trains a GPT-2 (search_spaces/quick.yaml's base: BPE 2,048, batch 16 x 128,
196,608 tokens) with `tuner.train.train_run`, then runs the built-in tasks at their default
sizes (`genre`: 192 passages, 64 per genre, linear probe, 3 play folds; `continuation`: 192
prompts of 64 tokens, up to 24 new tokens) on the validation split with `run_tasks`, and
prints:

- genre accuracy and macro-F1 of the trained model, of the same model untrained (random
  init: what the probe gets from token identity alone), and of the majority class of each
  fold's training side (scikit-learn's definitions, the same passages; chance is 1/3);
- continuation BLEU and chrF (sacrebleu, 0-100), exact match and teacher-forced next-token
  accuracy of the trained model and of greedy token n-gram models counted on the same train
  split (`tuner.ngram`), on the same prompts;
- the tasks' time per trial (warm: the median of --repeats calls in a process that has run
  them before) and once per process (the first call: imports, reading the plays), as wall and
  CPU seconds, and as the number of training tokens of this model that cost as much. Goal:
  per-trial overhead <= 10 % of a one-minute trial, judged on CPU seconds (one torch thread:
  a one-minute trial is 60 CPU seconds; wall time on a shared machine counts other processes).

  python bench/tasks.py --quick   # 65k training tokens, 2 timing repeats (~2 min)
  python bench/tasks.py           # 196k training tokens, 3 timing repeats (~4 min)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    THREADS_HELP,
    Report,
    machine,
    machine_line,
    markdown_table,
    median,
    quiet,
    save_results,
    set_threads,
    use_temp_stores,
)

GOAL_SHARE = 0.10
TRIAL_SECONDS = 60.0
BASE = {
    "data": {"source": "shakespeare"},
    "tokenizer": {"kind": "bpe", "vocab_size": 2048},
    "model": {"arch": "gpt2", "size": "micro"},
    "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.1, "grad_clip": 1.0},
    "schedule": {"kind": "cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.1},
    "train": {"batch_size": 16, "seq_len": 128, "milestones": 4, "eval_tokens": 8192},
    "eval": {
        "tasks": [
            {"name": "genre", "kind": "genre"},
            {"name": "continuation", "kind": "continuation"},
        ]
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="65,536 tokens, 2 repeats")
    parser.add_argument("--size", default="micro", help="model.size preset (default micro)")
    parser.add_argument("--arch", default="gpt2", help="model.arch (default gpt2)")
    parser.add_argument("--tokens", type=int, default=0, help="training tokens (196,608)")
    parser.add_argument("--lr", type=float, default=0.003, help="peak learning rate")
    parser.add_argument("--repeats", type=int, default=0, help="warm timing calls (3)")
    parser.add_argument("--orders", default="2,3,4", help="n-gram orders for the baseline")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    args = parser.parse_args(argv)
    args.tokens = args.tokens or (65_536 if args.quick else 196_608)
    args.repeats = args.repeats or (2 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    threads = set_threads(args.threads)
    use_temp_stores("tasks")
    import torch

    from tuner.config import RunConfig, from_dict
    from tuner.data import load_token_data
    from tuner.models import build_model
    from tuner.ngram import ngram_continuation_baseline
    from tuner.tasks import run_tasks
    from tuner.train import train_run

    say = Report()
    info = machine()
    base = BASE | {"model": {"arch": args.arch, "size": args.size}}
    config = from_dict(RunConfig, base).replace("train.tokens", args.tokens)
    config = config.replace("optim.lr", args.lr)
    say(f"# tasks ({'quick' if args.quick else 'full'})")
    say(f"machine: {machine_line(info)}")
    data = load_token_data(config.data, config.tokenizer)
    device = torch.device("cpu")

    def timed(model: Any) -> tuple[Any, float, float]:
        """run_tasks on the validation split, with its wall and CPU seconds."""
        wall, cpu = time.perf_counter(), time.process_time()
        results = run_tasks(config, model, data, device, "val")
        return results, time.perf_counter() - wall, time.process_time() - cpu

    torch.manual_seed(config.seed)
    untrained = build_model(config.model, data.vocab_size, config.train.seq_len).eval()
    cold, cold_seconds, cold_cpu = timed(untrained)

    cpu = time.process_time()
    result = train_run(config, data)
    train_cpu = time.process_time() - cpu
    model = result.model.eval()
    runs = [timed(model) for _ in range(args.repeats)]
    warm = [r[0] for r in runs]
    trained = warm[0]
    untrained_again = run_tasks(config, untrained, data, device, "val")
    assert untrained_again.metrics == cold.metrics  # deterministic: same passages, same probe

    task = config.eval.tasks[1]
    orders = [int(o) for o in args.orders.split(",") if o.strip()]
    ngram = {n: ngram_continuation_baseline(config, data, task, "val", n) for n in orders}

    cost = result.cost
    say(
        f"model: {args.arch} {args.size}, {cost['n_params'] / 1e6:.2f}M params, vocab "
        f"{data.vocab_size}, batch {config.train.batch_size} x {config.train.seq_len}, "
        f"{cost['tokens_seen']:,} training tokens in {cost['wall_seconds']:.1f} s "
        f"({cost['tokens_per_second']:,.0f} tokens/s), val_loss {result.metrics['val_loss']:.4f}, "
        f"{threads} torch thread(s)"
    )
    say()
    say("## genre (validation scenes, 3 play folds, linear probe)")
    m, u = trained.metrics, cold.metrics
    rows = [
        ["trained model", m["task.genre.accuracy"], m["task.genre.f1"]],
        ["same model untrained", u["task.genre.accuracy"], u["task.genre.f1"]],
        ["majority class", m["task.genre.majority_accuracy"], m["task.genre.majority_f1"]],
    ]
    say(markdown_table(["classifier", "accuracy", "macro-F1"], rows))
    say(f"passages: {trained.examples['genre']}")
    say()
    say("## continuation (validation speeches, greedy, 24 new tokens, cut at the newline)")
    keys = ("bleu", "chrf", "exact_match", "token_accuracy")
    rows = [["trained model", *(m[f"task.continuation.{k}"] for k in keys)]]
    rows += [["same model untrained", *(u[f"task.continuation.{k}"] for k in keys)]]
    rows += [[f"token {n}-gram (train split)", *(s[k] for k in keys)] for n, s in ngram.items()]
    say(markdown_table(["generator", "BLEU", "chrF", "exact match", "token accuracy"], rows))
    say(f"prompts: {trained.examples['continuation']}")
    say()
    say("## cost")
    names = list(trained.seconds)
    per_task = {n: median([w.seconds[n] for w in warm]) for n in names}
    per_trial = median([r[1] for r in runs])
    per_trial_cpu = median([r[2] for r in runs])
    rows = [[n, per_task[n], cold.seconds[n]] for n in names]
    rows.append(["all (run_tasks), wall", per_trial, cold_seconds])
    rows.append(["all (run_tasks), CPU", per_trial_cpu, cold_cpu])
    say(markdown_table(["task", "s per trial (warm median)", "s first call in a process"], rows))
    say(
        f"this trial: {cost['wall_seconds']:.1f} s wall, {train_cpu:.1f} s CPU; the tasks add "
        f"{per_trial / cost['wall_seconds']:.1%} of its wall time and "
        f"{per_trial_cpu / train_cpu:.1%} of its CPU time; once per process (imports, reading "
        f"the plays): {cold_seconds - per_trial:.1f} s wall"
    )
    say(
        f"the tasks cost as much CPU time as training "
        f"{per_trial_cpu / train_cpu * cost['tokens_seen']:,.0f} tokens of this model"
    )
    say(
        f"wall-clock share of a one-minute trial: {per_trial:.2f} s / {TRIAL_SECONDS:.0f} s = "
        f"{per_trial / TRIAL_SECONDS:.1%} (inflated by other processes at load "
        f"{info['load_average_1m']})"
    )
    share = per_trial_cpu / TRIAL_SECONDS  # 1 torch thread: a one-minute trial is 60 CPU s
    verdict = "met" if share <= GOAL_SHARE else "NOT met"
    say(
        f"goal per-trial task overhead <= {GOAL_SHARE:.0%} of a one-minute trial: "
        f"{per_trial_cpu:.2f} CPU s / {TRIAL_SECONDS:.0f} s = {share:.1%} ({verdict})"
    )
    name = "tasks" + ("-quick" if args.quick else "")
    name += "" if (args.arch, args.size) == ("gpt2", "micro") else f"-{args.arch}-{args.size}"
    name += "" if args.tokens in (65_536, 196_608) else f"-{args.tokens // 1024}k"
    payload: dict[str, Any] = {
        "command": "python bench/tasks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "args": vars(args),
        "machine": info,
        "config": config.to_dict(),
        "train": {"metrics": result.metrics, "cost": cost},
        "trained": trained.__dict__,
        "untrained": cold.__dict__,
        "warm_seconds": [w.seconds for w in warm],
        "warm_wall_cpu": [r[1:] for r in runs],
        "cold_seconds": cold_seconds,
        "cold_cpu_seconds": cold_cpu,
        "train_cpu_seconds": train_cpu,
        "ngram": ngram,
        "per_trial_seconds": per_trial,
        "per_trial_cpu_seconds": per_trial_cpu,
        "training_tokens_equivalent": per_trial_cpu / train_cpu * cost["tokens_seen"],
        "share_of_one_minute": share,
        "goal_met": share <= GOAL_SHARE,
    }
    say()
    say(f"command: {payload['command']}")
    path = save_results(name, payload, say.text)
    print(f"\nwrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
