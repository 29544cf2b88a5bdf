"""Trial throughput with 1 vs 2 local workers on one study (a benchmark, not a test).

Runs the same small random-search study through the real CLI (`tuner study create`, with
`--workers 1` and `--workers 2`) on a token cache built beforehand, and prints trials per minute
over the whole command (process start-up included) and over the trial window (first trial
start to last trial end), and the 2-vs-1 ratios. Each of 2 workers gets half the CPU threads;
a third arm runs 1 worker on 1 thread, to separate parallelism from threading (torch's
2 threads per process fare badly on a machine that other work also keeps busy).

    python bench/workers.py [--trials 8] [--tokens 16384] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BASE = {
    "data": {
        "source": "shakespeare",
        "max_chars": 300_000,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
    },
    "tokenizer": {"kind": "bpe", "vocab_size": 512},
    "model": {"arch": "gpt2", "size": "nano"},
    "train": {
        "batch_size": 8,
        "seq_len": 32,
        "tokens": 16384,
        "milestones": 2,
        "eval_tokens": 1024,
        "eval_batch_size": 32,
    },
}


def write_space(path: Path, trials: int, tokens: int) -> Path:
    base = {**BASE, "train": {**BASE["train"], "tokens": tokens}}
    space = {
        "name": "bench-workers",
        "base": base,
        "sampler": "random",
        "pruner": "none",
        "n_trials": trials,
        "seed": 0,
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "params": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
    }
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def build_cache(space: Path) -> None:
    """Tokenize once, so neither arm pays for it."""
    from tuner.data import load_token_data
    from tuner.space import load_space

    spec = load_space(space)
    load_token_data(spec.base.data, spec.base.tokenizer)


ARMS = (  # (label, workers, OMP_NUM_THREADS for each process or None for torch's default)
    ("1 worker, torch default threads", 1, None),
    ("1 worker, 1 thread", 1, "1"),
    ("2 workers, 1 thread each", 2, None),  # `--workers` gives each worker cpus // workers
)


def run_arm(
    home: Path, space: Path, workers: int, threads: str | None, trials: int
) -> tuple[float, float]:
    """(wall seconds of the command, seconds from first trial start to last trial end)."""
    env = {**os.environ, "TUNER_HOME": str(home)}
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = threads
    cmd = [
        sys.executable,
        "-m",
        "tuner",
        "study",
        "create",
        "bench",
        "--space",
        str(space),
        "--n-trials",
        str(trials),
        "--workers",
        str(workers),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    os.environ["TUNER_HOME"] = str(home)
    from tuner.study import load_study

    done = [t for t in load_study("bench").study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == trials, f"{len(done)} of {trials} trials complete"
    window = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    return wall, window.total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each arm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as tmp:
        root = Path(tmp)
        os.environ["TUNER_CACHE_DIR"] = str(root / "cache")
        space = write_space(root / "space.yaml", args.trials, args.tokens)
        build_cache(space)
        print(f"{args.trials} trials of {args.tokens} tokens (nano GPT-2), {os.cpu_count()} CPUs")
        rates: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in ARMS}
        for repeat in range(args.repeats):  # interleaved, so a change in load hits every arm
            for n, (label, workers, threads) in enumerate(ARMS):
                load = os.getloadavg()[0]
                wall, window = run_arm(
                    root / f"r{repeat}a{n}", space, workers, threads, args.trials
                )
                rates[label].append((args.trials / wall * 60, args.trials / window * 60))
                print(
                    f"{label:32s} {rates[label][-1][0]:6.2f} trials/min end to end "
                    f"({wall:.1f} s), {rates[label][-1][1]:6.2f} in the trial window "
                    f"({window:.1f} s); load average {load:.1f} before"
                )
        median = {
            label: [statistics.median(r[i] for r in runs) for i in (0, 1)]
            for label, runs in rates.items()
        }
        two = median[ARMS[2][0]]
        for label, _, _ in ARMS[:2]:
            print(
                f"2 workers vs {label}: {two[0] / median[label][0]:.2f}x end to end, "
                f"{two[1] / median[label][1]:.2f}x in the trial window (medians)"
            )


if __name__ == "__main__":
    main()
