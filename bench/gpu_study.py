"""Trials per minute with K workers on one device against one worker: the `lm_small` study.

The same trials in every arm: `search_spaces/lm_small.yaml`'s base config (GPT-2, 4,096-token
BPE, batch 32 x 256, 1M tokens a trial, 6 milestones) on a grid of learning rate x model size
with no pruning, so the sampler's order and the pruner's decisions cannot make the arms train
different trials. Each arm is one `tuner study create ... --workers K` command (a subprocess,
start-up included) in its own store, on a token cache built beforehand.

  python bench/gpu_study.py                       # K = 1 and K = 4 on the default device
  python bench/gpu_study.py --workers 1,2,4,8     # more arms
  python bench/gpu_study.py --tiny --workers 1,2  # plumbing smoke on a CPU: nano models, ~1 min
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Report,
    machine,
    machine_line,
    markdown_table,
    quiet,
    save_results,
    use_temp_stores,
)

ROOT = Path(__file__).resolve().parent.parent
GOAL = 2.5
"""K = 4 finishes trials at >= 2.5 x the rate of K = 1 (on one H100/H200)."""
TINY_BASE = {  # --tiny: the test suite's corpus slice and a nano model, seconds a trial on a CPU
    "data": {"source": "shakespeare", "max_chars": 300_000, "val_fraction": 0.1},
    "tokenizer": {"kind": "bpe", "vocab_size": 512},
    "train": {
        "batch_size": 8,
        "seq_len": 64,
        "micro_batch_size": 0,
        "tokens": 16384,
        "milestones": 2,
        "eval_tokens": 1024,
    },
}


def write_space(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """lm_small's base (or the tiny one) on a learning rate x model size grid."""
    space = yaml.safe_load((ROOT / "search_spaces" / "lm_small.yaml").read_text())
    if args.tiny:
        space["base"] = {**space["base"], **TINY_BASE}
    if args.tokens:
        space["base"]["train"]["tokens"] = args.tokens
    if args.micro_batch is not None:
        space["base"]["train"]["micro_batch_size"] = args.micro_batch
    lrs = [float(v) for v in args.lrs.split(",")]
    sizes = args.sizes.split(",")
    space.update(
        name="gpu_study",
        sampler="grid",
        pruner="none",
        n_trials=len(lrs) * len(sizes),
        params={
            "learning_rate": {"low": min(lrs), "high": max(lrs), "log": True, "grid": lrs},
            "model_size": {"choices": sizes},
        },
    )
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return space


def run_arm(home: Path, space: Path, workers: int, extra: list[str]) -> dict[str, Any]:
    """One `tuner study create` with `--workers K`: wall time, trial window, per-trial results."""
    env = {**os.environ, "TUNER_HOME": str(home)}
    cmd = [sys.executable, "-m", "tuner", "study", "create", "arm", "--space", str(space)]
    cmd += ["--workers", str(workers), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise SystemExit(f"`{' '.join(cmd)}` failed ({done.returncode}):\n" + "\n".join(tail))
    os.environ["TUNER_HOME"] = str(home)
    from tuner.records import TrialRecord
    from tuner.study import load_study

    frozen = load_study("arm").study.get_trials()
    trials = [TrialRecord.of(t) for t in frozen]
    starts = [t.datetime_start for t in frozen if t.datetime_start]
    ends = [t.datetime_complete for t in frozen if t.datetime_complete]
    complete = [t for t in trials if t.state == "COMPLETE"]
    return {
        "workers": workers,
        "wall_seconds": wall,
        "window_seconds": (max(ends) - min(starts)).total_seconds() if ends else float("nan"),
        "trials": len(trials),
        "complete": len(complete),
        "states": sorted({t.state for t in trials}),
        "results": {
            f"{t.params['learning_rate']:g}/{t.params['model_size']}": t.metrics.get("val_loss")
            for t in trials
        },
        "mfu_palm": {
            f"{t.params['learning_rate']:g}/{t.params['model_size']}": t.cost.get("mfu_palm")
            for t in trials
        },
        "device": next((t.cost.get("device") for t in trials if t.cost.get("device")), "?"),
        "train_seconds": sum(t.cost.get("train_seconds", 0.0) for t in trials),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workers", default="1,4", help="comma-separated K values (first = baseline)")
    p.add_argument("--lrs", default="0.001,0.003", help="grid of learning rates")
    p.add_argument("--sizes", default="nano,micro,tiny,mini", help="grid of model sizes")
    p.add_argument("--tokens", type=int, default=0, help="tokens a trial (default: the space's)")
    p.add_argument("--micro-batch", default=None, help="train.micro_batch_size (e.g. auto)")
    p.add_argument("--tiny", action="store_true", help="nano-scale CPU smoke of the plumbing")
    p.add_argument("--gpus", default=None, help="passed to every arm as --gpus")
    p.add_argument("--name", default=None, help="results file name (default gpu_study[-tiny])")
    args = p.parse_args(argv)
    if args.micro_batch not in (None, "auto"):
        args.micro_batch = int(args.micro_batch)
    quiet()
    workdir = use_temp_stores("gpu-study")
    say = Report()
    space_path = workdir / "space.yaml"
    space = write_space(space_path, args)
    from tuner.data import load_token_data
    from tuner.space import load_space

    spec = load_space(space_path)
    load_token_data(spec.base.data, spec.base.tokenizer)  # every arm starts on a warm cache
    counts = [int(k) for k in args.workers.split(",")]
    extra = ["--gpus", args.gpus] if args.gpus else []
    tc = spec.base.train
    say(f"# gpu_study ({'tiny' if args.tiny else 'lm_small'})")
    say(f"machine: {machine_line(machine())}")
    say(
        f"space: lm_small base{' (tiny)' if args.tiny else ''}, grid lr {args.lrs} x size "
        f"{args.sizes} = {spec.n_trials} trials, batch {tc.batch_size} x {tc.seq_len}, "
        f"micro-batch {tc.micro_batch_size or 'none'}, {tc.tokens:,} tokens and "
        f"{tc.milestones} milestones a trial, no pruning; one `tuner study create --workers K` "
        f"per arm (start-up included)"
    )
    arms = []
    for k in counts:
        arm = run_arm(workdir / f"arm-{k}", space_path, k, extra)
        arms.append(arm)
        print(
            f"  K={k}: {arm['complete']}/{arm['trials']} complete in {arm['wall_seconds']:.1f} s "
            f"(trial window {arm['window_seconds']:.1f} s) on {arm['device']}",
            flush=True,
        )
    base = arms[0]
    rows = []
    for arm in arms:
        rate = arm["complete"] / arm["wall_seconds"] * 60
        window_rate = arm["complete"] / arm["window_seconds"] * 60
        arm["trials_per_minute"], arm["trials_per_minute_window"] = rate, window_rate
        diffs = [
            abs(arm["results"][key] - value)
            for key, value in base["results"].items()
            if value is not None and arm["results"].get(key) is not None
        ]
        arm["max_val_loss_difference"] = max(diffs) if diffs else float("nan")
        rows.append(
            [
                arm["workers"],
                f"{arm['complete']}/{arm['trials']}",
                f"{arm['wall_seconds']:.1f}",
                f"{rate:.2f}",
                f"{rate / (base['complete'] / base['wall_seconds'] * 60):.2f}",
                f"{window_rate:.2f}",
                f"{arm['max_val_loss_difference']:.4f}",
            ]
        )
    say()
    say(
        markdown_table(
            [
                "K",
                "complete",
                "wall s",
                "trials/min",
                f"x K={base['workers']}",
                "trials/min (trial window)",
                f"max |val_loss - K={base['workers']}'s| (same trial)",
            ],
            rows,
        )
    )
    say()
    for key, loss in base["results"].items():
        others = ", ".join(f"K={a['workers']} {a['results'].get(key)}" for a in arms[1:])
        say(f"  {key}: K={base['workers']} {loss}; {others}")
    four = next((a for a in arms if a["workers"] == 4), None)
    if four is not None and base["workers"] == 1:
        ratio = four["trials_per_minute"] / base["trials_per_minute"]
        on_gpu = base["device"] not in ("cpu", "mps", "?")  # a CUDA device reads as its name
        judged = on_gpu and not args.tiny
        verdict = ("met" if ratio >= GOAL else "NOT met") if judged else "not judged"
        if not judged:
            verdict += ": the goal is for lm_small on one H100/H200"
        say(f"goal K=4 >= {GOAL} x K=1 trials/minute: {ratio:.2f} ({verdict})")
    name = args.name or ("gpu_study-tiny" if args.tiny else "gpu_study")
    path = save_results(name, {"args": vars(args), "space": space, "arms": arms}, say.text)
    print(f"\nwrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
