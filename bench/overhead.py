"""What tuner costs on top of training: per-trial overhead and time to the first step.

Part 1 runs a real study in-process (tuner.study.create_study / run_study, SQLite Optuna
storage, SQLite MLflow store, the token cache warm) with trials sized to about --trial-seconds
each, and splits every trial's wall time into training, evaluation and the rest. The rest is
attributed by wrapping tuner's functions from outside (no tuner code is edited): MLflow
tracking (child run start, milestone batches, finish, best-so-far), model and optimizer build,
data loading (once per study, shared by its trials), and study bookkeeping (everything else:
Optuna ask/tell/sampling and storage writes, config building, cost figures).

With the built-in downstream tasks on (the default; `--no-tasks` leaves them out), every trial
also scores `genre` and `continuation` at its last milestone; their wall time is recorded
apart (`task_seconds`) and compared with a one-minute trial, never counted as overhead.

Part 2 times `tuner study create` as a subprocess, from spawn to the first training step,
with warm caches, through a sitecustomize hook that stamps the moments on the way.

  python bench/overhead.py --quick   # ~2 minutes: 3 trials of ~10 s, 1 timed CLI start
  python bench/overhead.py           # 3 trials of ~60 s (the goal's one-minute trial), 4 starts
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    sqlite_wal_everywhere,
    tuner_command,
    use_temp_stores,
)

HOOK_DIR = Path(__file__).resolve().parent / "_first_step_hook"
BASE = {
    "data": {"source": "shakespeare"},
    "tokenizer": {"kind": "bpe", "vocab_size": 2048},
    "model": {"arch": "gpt2", "size": "micro"},
    "train": {
        "batch_size": 16,
        "seq_len": 128,
        "tokens": 65536,
        "milestones": 4,
        "eval_tokens": 4096,
    },
}
# tuner function -> category; wrapped in-process for part 1
WRAPPED = {
    ("tuner.tracking", "Tracker.start_trial"): "tracking",
    ("tuner.tracking", "TrialRun.log_milestone"): "tracking",
    ("tuner.tracking", "TrialRun.finish"): "tracking",
    ("tuner.tracking", "Tracker.update_best"): "tracking",
    ("tuner.train", "build_model"): "model build",
    ("tuner.train", "make_optimizer"): "model build",
    ("tuner.objective", "load_token_data"): "data loading",
    ("tuner.tracking", "Tracker.reopen"): "study setup",
    ("tuner.tracking", "Tracker.end"): "study teardown",
    ("tuner.tasks", "run_tasks"): "tasks",
}


@dataclass
class Events:
    """(category, start, end) in unix seconds, comparable with Optuna's trial datetimes."""

    spans: list[tuple[str, float, float]] = field(default_factory=list)
    cpu: list[tuple[str, float, float]] = field(default_factory=list)
    """(category, start, CPU seconds of the process): robust to other jobs on the machine."""

    def wrap(self, module_name: str, dotted: str, category: str) -> None:
        module = (
            sys.modules[module_name]
            if module_name in sys.modules
            else __import__(module_name, fromlist=["_"])
        )
        owner: Any = module
        *path, attr = dotted.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, attr)
        spans, cpu = self.spans, self.cpu

        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu_start = time.time(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                spans.append((category, start, time.time()))
                cpu.append((category, start, time.process_time() - cpu_start))

        setattr(owner, attr, timed)

    def total(self, category: str, start: float = -1e18, end: float = 1e18) -> float:
        return sum(b - a for c, a, b in self.spans if c == category and start <= a < end)

    def cpu_total(self, category: str, start: float = -1e18, end: float = 1e18) -> float:
        return sum(t for c, a, t in self.cpu if c == category and start <= a < end)


# ---------------------------------------------------------------- part 1: per-trial overhead


BUILT_IN_TASKS = [{"name": "genre", "kind": "genre"}, {"name": "lines", "kind": "continuation"}]
TASK_GOAL = 0.10
"""The built-in tasks' share of a one-minute trial at most."""


def space_dict(tokens: int, n_trials: int, sampler: str, tasks: bool) -> dict[str, Any]:
    base = {**BASE, "train": {**BASE["train"], "tokens": tokens}}
    if tasks:
        base["eval"] = {"tasks": BUILT_IN_TASKS}
    return {
        "name": "bench-overhead",
        "base": base,
        "sampler": sampler,
        "pruner": "none",
        "n_trials": n_trials,
        "seed": 0,
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "params": {
            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
            "dropout": {"choices": [0.0, 0.1]},
        },
    }


def calibrate(trial_seconds: float) -> tuple[int, float]:
    """Token budget for a trial of about `trial_seconds` at this machine's current speed,
    from a short warm run (which also pays the one-off imports outside the measurement)."""
    from tuner.config import RunConfig, from_dict
    from tuner.train import train_run

    config = from_dict(
        RunConfig, {**BASE, "train": {**BASE["train"], "tokens": 16 * 2048, "milestones": 1}}
    )
    result = train_run(config)
    rate = result.cost["tokens_per_second"]
    step = BASE["train"]["batch_size"] * BASE["train"]["seq_len"] * BASE["train"]["milestones"]
    # training plus its 4 evaluations should fill the trial; evaluation runs ~3x faster
    eval_as_train_tokens = BASE["train"]["milestones"] * BASE["train"]["eval_tokens"] / 3
    tokens = max(step, int((trial_seconds * rate - eval_as_train_tokens) // step) * step)
    return tokens, rate


def run_part1(tokens: int, n_trials: int, sampler: str, tasks: bool) -> dict[str, Any]:
    from tuner.space import parse_space
    from tuner.study import create_study, run_study

    events = Events()
    for (module, dotted), category in WRAPPED.items():
        events.wrap(module, dotted, category)
    space = parse_space(space_dict(tokens, n_trials, sampler, tasks))
    t0 = time.time()
    handle = create_study(f"overhead-{int(t0)}", space)
    t1 = time.time()
    run_study(handle)
    t2 = time.time()
    trials = handle.study.get_trials(deepcopy=False)
    return {
        "events": events,
        "trials": trials,
        "create_seconds": t1 - t0,
        "run_start": t1,
        "run_end": t2,
    }


def split_trials(part1: dict[str, Any]) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Each trial's window runs from its start to the next trial's start (the last one to the
    study's teardown), so the callbacks between trials are charged to the trial before."""
    events: Events = part1["events"]
    trials = sorted((t for t in part1["trials"] if t.datetime_start), key=lambda t: t.number)
    starts = [t.datetime_start.timestamp() for t in trials]
    # run_study's last Tracker.end (create_study ends the parent run once before it)
    teardown_at = max(
        [a for c, a, _ in events.spans if c == "study teardown" and a >= part1["run_start"]]
        or [part1["run_end"]]
    )
    ends = starts[1:] + [teardown_at]
    rows = []
    for trial, start, end in zip(trials, starts, ends, strict=True):
        cost = trial.user_attrs.get("cost", {})
        row = {
            "trial": trial.number,
            "state": trial.state.name,
            "window": end - start,
            "optuna_duration": (trial.datetime_complete.timestamp() - start)
            if trial.datetime_complete
            else float("nan"),
            "train_run_wall": cost.get("wall_seconds", 0.0),
            "train": cost.get("train_seconds", 0.0),
            "eval": cost.get("eval_seconds", 0.0),
            "tasks": cost.get("task_seconds", 0.0),
            "tasks cpu": events.cpu_total("tasks", start, end),
            "tracking": events.total("tracking", start, end),
            "model build": events.total("model build", start, end),
        }
        row["overhead"] = row["window"] - row["train"] - row["eval"] - row["tasks"]
        row["study bookkeeping"] = row["overhead"] - row["tracking"] - row["model build"]
        rows.append(row)
    study = {
        "create_study": part1["create_seconds"],
        "run_setup": starts[0] - part1["run_start"] if starts else 0.0,
        "data loading": events.total("data loading"),
        "run_teardown": part1["run_end"] - teardown_at,
        "run_study_wall": part1["run_end"] - part1["run_start"],
    }
    return rows, study


def report_part1(
    rows: list[dict[str, float]], study: dict[str, float], trial_seconds: float, say: Report
) -> dict[str, Any]:
    n = len(rows)
    per_study = study["run_setup"] + study["run_teardown"]
    table = []
    for r in rows:
        table.append(
            [
                r["trial"],
                r["state"],
                f"{r['window']:.2f}",
                f"{r['train']:.2f}",
                f"{r['eval']:.2f}",
                f"{r['tasks']:.2f}",
                f"{r['overhead']:.3f}",
                f"{r['overhead'] / r['window']:.2%}",
                f"{r['eval'] / r['window']:.1%}",
                f"{r['tracking']:.3f}",
                f"{r['model build']:.3f}",
                f"{r['study bookkeeping']:.3f}",
            ]
        )
    say(
        markdown_table(
            [
                "trial",
                "state",
                "wall s",
                "train s",
                "eval s",
                "tasks s",
                "overhead s",
                "overhead %",
                "eval %",
                "tracking s",
                "model build s",
                "bookkeeping s",
            ],
            table,
        )
    )
    overhead = median([r["overhead"] for r in rows])
    window = median([r["window"] for r in rows])
    amortized = overhead + per_study / max(n, 1)
    share = overhead / window
    share_amortized = amortized / (window + per_study / max(n, 1))
    eval_share = median([r["eval"] / r["window"] for r in rows])
    say()
    say(
        f"per study (once, shared by its {n} trials): create_study {study['create_study']:.2f} s; "
        f"run_study setup {study['run_setup']:.2f} s (of which data loading from the warm cache "
        f"{study['data loading']:.3f} s), teardown {study['run_teardown']:.3f} s"
    )
    say(
        f"median trial: {window:.1f} s wall, overhead {overhead:.3f} s = {share:.2%} "
        f"({amortized:.3f} s = {share_amortized:.2%} with the study's setup and teardown shared "
        f"out); evaluation {eval_share:.1%} of the trial"
    )
    for category in ("tracking", "model build", "study bookkeeping"):
        say(f"  {category}: {median([r[category] for r in rows]):.3f} s per trial")
    projected = amortized / 60.0
    verdict = "met" if projected < 0.03 else "NOT met"
    say(
        f"goal overhead < 3% of a one-minute trial: {amortized:.3f} s / 60 s = {projected:.2%} "
        f"({verdict}; measured on {window:.0f} s trials, overhead is per trial, not per token)"
    )
    tasks = median([r["tasks"] for r in rows])
    tasks_cpu = median([r["tasks cpu"] for r in rows])
    if tasks > 0:  # the first trial also pays the tasks' one-off imports; the median does not
        # CPU seconds: on one thread a quiet machine's one-minute trial is 60 CPU seconds,
        # and other jobs on the machine stretch wall time, not CPU time
        task_share = tasks_cpu / 60.0
        verdict = "met" if task_share <= TASK_GOAL else "NOT met"
        say(
            f"built-in tasks per trial: {tasks:.2f} s wall, {tasks_cpu:.2f} CPU s (median; the "
            f"first trial {rows[0]['tasks cpu']:.2f} CPU s with the tasks' imports)"
        )
        say(
            f"goal built-in tasks (genre, continuation) <= {TASK_GOAL:.0%} of a one-minute "
            f"trial: {tasks_cpu:.2f} CPU s / 60 s = {task_share:.1%} ({verdict})"
        )
    return {
        "rows": rows,
        "study": study,
        "median_task_seconds": tasks,
        "median_task_cpu_seconds": tasks_cpu,
        "median_overhead_seconds": overhead,
        "amortized_overhead_seconds": amortized,
        "median_trial_seconds": window,
        "overhead_share": share,
        "overhead_share_amortized": share_amortized,
        "eval_share": eval_share,
        "projected_share_one_minute": projected,
        "target_trial_seconds": trial_seconds,
    }


# ---------------------------------------------------------------- part 2: CLI to first step


def write_cli_space(folder: Path) -> Path:
    """A one-trial space whose trial is a few steps: only the way to the first step matters."""
    space = space_dict(16 * 128 * 4, 1, "random", tasks=False)
    space["base"] = {**space["base"], "train": {**space["base"]["train"], "eval_tokens": 1024}}
    path = folder / "first-step.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def time_cli_start(
    space: Path, name: str, home: Path, marks: Path, extra_env: dict[str, str] | None = None
) -> dict[str, float]:
    """Spawn `tuner study create`, wait for it, and read the stamps back (seconds from spawn;
    `cpu:LABEL` = the process's CPU seconds at that moment)."""
    marks.unlink(missing_ok=True)
    env = {
        **os.environ,
        **(extra_env or {}),
        "TUNER_HOME": str(home),
        "TUNER_BENCH_MARKS": str(marks),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOK_DIR), os.environ.get("PYTHONPATH")])),
    }
    spawned = time.time()
    proc = subprocess.run(
        [*tuner_command(), "study", "create", name, "--space", str(space)],
        cwd=home.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    finished = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"tuner study create failed ({proc.returncode}): {proc.stderr[-2000:]}")
    stamps = {"exit": finished - spawned, "load_average_1m": os.getloadavg()[0]}
    for line in marks.read_text().splitlines():
        label, when, cpu = line.rsplit(" ", 2)
        stamps.setdefault(label, float(when) - spawned)
        stamps.setdefault(f"cpu:{label}", float(cpu))
    return stamps


# the moments the hook stamps, in the order they happen, with what fills the gap before each
MOMENTS = (
    ("interpreter", "interpreter up (sitecustomize runs)"),
    ("import:typer", "typer imported"),
    ("import:tuner.cli", "tuner.cli imported"),
    ("import:optuna", "optuna imported (by tuner.space)"),
    ("import:torch", "torch imported (by tuner.study -> tuner.objective -> tuner.train)"),
    ("import:tuner.study", "tuner.study imported"),
    ("create_study:call1", "create_study called"),
    ("import:mlflow", "mlflow imported (by the Tracker)"),
    ("create_study:end1", "create_study done (Optuna study, MLflow experiment and parent run)"),
    ("run_study:call1", "run_study called"),
    ("Tracker.start_trial:call1", "first trial asked, its MLflow run starting"),
    ("Tracker.start_trial:end1", "MLflow child run started (params, config.yaml)"),
    ("train_run:call1", "train_run called"),
    ("import:transformers.models.gpt2.modeling_gpt2", "GPT-2 model code imported (build_model)"),
    ("BatchStream.next:call1", "first training step starts"),
    ("BatchStream.next:call2", "first training step done"),
    ("exit", "process exits (4-step trial, 4 evaluations)"),
)


def run_part2(
    workdir: Path,
    repeats: int,
    warm: bool,
    fresh_too: bool,
    say: Report,
    wal_compare: bool = False,
) -> dict[str, Any]:
    """`warm`: part 1 already made the stores under TUNER_HOME and filled the token cache;
    otherwise one untimed run does. `wal_compare`: every timed start is paired with one under
    TUNER_SQLITE_WAL=0 (SQLite's default journal), alternating which goes first."""
    space = write_cli_space(workdir)
    home = Path(os.environ["TUNER_HOME"])
    marks = workdir / "marks.txt"
    if not warm:
        say("warm-up: one untimed `tuner study create` (stores and caches warm after it)")
        time_cli_start(space, "warmup", home, marks)
    runs, plain = [], []
    for i in range(repeats):
        pair = [("wal", {}), ("plain", {"TUNER_SQLITE_WAL": "0"})] if wal_compare else [("wal", {})]
        for kind, env in pair if i % 2 == 0 else pair[::-1]:
            stamps = time_cli_start(space, f"first-step-{kind}-{i}", home, marks, env)
            (runs if kind == "wal" else plain).append(stamps)
    fresh = time_cli_start(space, "fresh", workdir / "fresh-home", marks) if fresh_too else {}
    rows, previous, previous_cpu = [], 0.0, 0.0
    for label, meaning in MOMENTS:
        seen = [r[label] for r in runs if label in r]
        if not seen:
            continue
        at = median(seen)
        cpu = median([r.get(f"cpu:{label}", float("nan")) for r in runs if label in r])
        rows.append(
            [
                meaning,
                f"{at:.2f}",
                f"+{at - previous:.2f}",
                f"{cpu:.2f}",
                f"+{cpu - previous_cpu:.2f}",
            ]
        )
        previous, previous_cpu = at, (cpu if cpu == cpu else previous_cpu)
    first = median([r["BatchStream.next:call1"] for r in runs])
    first_cpu = median([r["cpu:BatchStream.next:call1"] for r in runs])
    done = median([r["BatchStream.next:call2"] for r in runs])
    load = median([r["load_average_1m"] for r in runs])
    say(
        markdown_table(
            [
                f"moment (median of {repeats} warm runs)",
                "s from spawn",
                "s since previous",
                "CPU s",
                "CPU s since previous",
            ],
            rows,
        )
    )
    verdict = "met" if first < 10 else "NOT met"
    say()
    say(
        f"goal first step < 10 s with warm caches: {first:.2f} s ({verdict}) at load average "
        f"{load:.1f} on {os.cpu_count()} cores; CPU time to the first step {first_cpu:.2f} s"
    )
    if plain:
        plain_first = median([r["BatchStream.next:call1"] for r in plain])
        plain_cpu = median([r["cpu:BatchStream.next:call1"] for r in plain])
        say(
            f"SQLite default journal (TUNER_SQLITE_WAL=0), paired: first step "
            f"{plain_first:.2f} s, CPU {plain_cpu:.2f} s (WAL: {first:.2f} s, "
            f"CPU {first_cpu:.2f} s)"
        )
    if fresh:
        say(
            f"in a new project folder (Optuna and MLflow stores created, token cache warm): "
            f"first step at {fresh.get('BatchStream.next:call1', float('nan')):.2f} s"
        )
    return {
        "runs": runs,
        "plain_journal_runs": plain,
        "fresh": fresh,
        "first_step_cpu_seconds": first_cpu,
        "first_step_seconds": first,
        "first_step_done_seconds": done,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="3 trials of ~10 s, 1 timed CLI start")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--trial-seconds", type=float, default=None, help="quick 10, full 60")
    p.add_argument("--tokens", type=int, default=0, help="token budget per trial (0 = calibrate)")
    p.add_argument("--sampler", default="tpe", help="the study's sampler (bookkeeping differs)")
    p.add_argument(
        "--cli-repeats",
        type=int,
        default=None,
        help="timed CLI starts (quick 1, full 3; full also times a new folder)",
    )
    p.add_argument("--skip-cli", action="store_true", help="part 1 only")
    p.add_argument(
        "--no-tasks", action="store_true", help="part 1 without the built-in downstream tasks"
    )
    p.add_argument("--skip-trials", action="store_true", help="part 2 only")
    p.add_argument(
        "--wal-compare",
        action="store_true",
        help="part 2: pair every timed start with one under SQLite's default journal",
    )
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    p.add_argument(
        "--sqlite-wal",
        action="store_true",
        help="experiment: SQLite stores in WAL mode, synchronous=NORMAL (part 1)",
    )
    args = p.parse_args(argv)
    args.trial_seconds = args.trial_seconds or (10.0 if args.quick else 60.0)
    args.cli_repeats = args.cli_repeats or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    set_threads(args.threads)
    workdir = use_temp_stores("overhead")
    if args.sqlite_wal:
        sqlite_wal_everywhere()
    say = Report()
    info = machine()
    say(f"# overhead ({'quick' if args.quick else 'full'})")
    say(f"machine: {machine_line(info)}")
    say(f"command: python bench/overhead.py {' '.join(sys.argv[1:])}")
    wal = os.environ.get("TUNER_SQLITE_WAL", "1") != "0"
    say(f"SQLite journal mode: {'WAL, synchronous=NORMAL (tuner default)' if wal else 'default'}")
    part1: dict[str, Any] = {}
    tokens = 0
    if not args.skip_trials:
        tokens, rate = (args.tokens, float("nan")) if args.tokens else calibrate(args.trial_seconds)
        say(
            f"study: {args.trials} trials, {args.sampler} sampler, gpt2 micro, batch 16 x 128, "
            f"{tokens:,} tokens per trial (calibrated at {rate:,.0f} tokens/s for ~"
            f"{args.trial_seconds:.0f} s trials), 4 milestones x 4,096 eval tokens, SQLite stores"
            + ("" if args.no_tasks else ", built-in tasks genre and continuation")
        )
        say()
        say("## per-trial overhead")
        rows, study = split_trials(
            run_part1(tokens, args.trials, args.sampler, tasks=not args.no_tasks)
        )
        part1 = report_part1(rows, study, args.trial_seconds, say)
    part2: dict[str, Any] = {}
    if not args.skip_cli:
        say()
        say("## `tuner study create` to the first training step")
        part2 = run_part2(
            workdir,
            args.cli_repeats,
            warm=not args.skip_trials,
            fresh_too=not args.quick,
            say=say,
            wal_compare=args.wal_compare,
        )
    name = (
        "overhead"
        + ("-quick" if args.quick else "")
        + ("-wal" if args.sqlite_wal else "")
        + ("-part1" if args.skip_cli else "")
        + ("-part2" if args.skip_trials else "")
    )
    path = save_results(
        name,
        {"args": vars(args), "machine": info, "tokens": tokens, "part1": part1, "part2": part2},
        say.text,
    )
    print(f"\nwrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
