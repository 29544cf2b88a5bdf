"""What system metrics cost a trial: the sampler thread's start and stop, one sample, and the
training throughput with the thread sampling 10x more often than the default.

Part 1 times, on a SQLite MLflow store through the Tracker (so through its lock, as a trial
does), `Tracker.system_metrics(run)` + `stop()` (samplers built, first reading primed, the
thread started and joined, the closing sample taken and written), one sample (CPU, memory,
disk and network counters read) and one write of a minute's samples (one `log_batch`). A
one-minute trial at the default interval (10 s) costs start/stop + 6 samples + 1 write.

Part 2 trains the same small GPT-2 run (same seed, same batches) with and without a sampler
thread at a 1 s interval, in rotated rounds, and reports the paired tokens/s ratio by wall
and by CPU time of the process (the sampler's own CPU time included).

  python bench/system_metrics.py --quick   # ~2 min: 20 start/stops, 3 rounds of ~8 s runs
  python bench/system_metrics.py           # 50 start/stops, 5 rounds of ~20 s runs
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    THREADS_HELP,
    Report,
    machine,
    machine_line,
    markdown_table,
    median,
    quiet,
    rotations,
    save_results,
    set_threads,
    use_temp_stores,
)

BASE = {
    "data": {"source": "shakespeare", "max_chars": 400_000},
    "tokenizer": {"kind": "bpe", "vocab_size": 1024},
    "model": {"arch": "gpt2", "size": "micro"},
    "train": {"batch_size": 16, "seq_len": 64, "tokens": 32768, "milestones": 1},
}


def time_parts(tracker, run_id: str, repeats: int) -> dict[str, list[float]]:
    """Seconds of start+stop (closing sample and its write included), of one sample (the
    counters read), and of one write of a minute's 6 samples, each `repeats` times."""
    os.environ["TUNER_SYSTEM_METRICS"] = "3600"  # the thread never samples on its own here
    times: dict[str, list[float]] = {"start_stop": [], "sample": [], "write_6": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        tracker.system_metrics(run_id).stop()
        times["start_stop"].append(time.perf_counter() - t0)
        monitor = tracker.system_metrics(run_id)
        for _ in range(6):
            t0 = time.perf_counter()
            monitor.sample()
            times["sample"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        monitor.flush()
        times["write_6"].append(time.perf_counter() - t0)
        monitor._stop.set()
        monitor._thread.join()
    return times


def throughput(config, data, tracker, run_id: str, sampled: bool) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) of one training run."""
    from tuner.train import train_run

    monitor = None
    if sampled:
        os.environ["TUNER_SYSTEM_METRICS"] = "1"
        monitor = tracker.system_metrics(run_id)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train_run(config, data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if monitor is not None:
        monitor.stop()
    tokens = result.cost["tokens_seen"]
    return tokens / wall, tokens / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    args = parser.parse_args()
    quiet()
    use_temp_stores("sysmetrics")
    threads = set_threads(args.threads)
    repeats, rounds, tokens = (20, 3, 32768) if args.quick else (50, 5, 98304)

    from tuner import stores
    from tuner.config import RunConfig, from_dict
    from tuner.data import load_token_data
    from tuner.tracking import Tracker

    report = Report()
    report(f"machine: {machine_line()}")
    tracker = Tracker(stores.default_tracking_uri())
    experiment = tracker.experiment_for("bench")
    run_id = tracker.client.create_run(experiment).info.run_id

    times = time_parts(tracker, run_id, repeats)
    parts = {k: median(v) for k, v in times.items()}
    per_trial = parts["start_stop"] + 6 * parts["sample"] + parts["write_6"]
    share = per_trial / 60.0
    report("")
    report(
        markdown_table(
            ["what", "median ms", "min ms", "max ms", "n"],
            [
                ["start + stop (closing sample and its write)", *_ms(times["start_stop"]), repeats],
                [
                    "one sample (CPU, memory, disk, network read)",
                    *_ms(times["sample"]),
                    6 * repeats,
                ],
                ["one write of 6 samples (log_batch, SQLite)", *_ms(times["write_6"]), repeats],
            ],
        )
    )
    report(
        f"one-minute trial at the default 10 s interval (start/stop + 6 samples + 1 write): "
        f"{per_trial * 1e3:.1f} ms = {share * 100:.3f} % of the trial"
    )

    raw = {**BASE, "train": {**BASE["train"], "tokens": tokens, "threads": threads}}
    config = from_dict(RunConfig, raw)
    data = load_token_data(config.data, config.tokenizer)
    throughput(config, data, tracker, run_id, False)  # warm-up: allocator, kernels
    wall_ratios, cpu_ratios = [], []
    for order in rotations(["off", "on"], rounds):
        speeds = {name: throughput(config, data, tracker, run_id, name == "on") for name in order}
        wall_ratios.append(speeds["on"][0] / speeds["off"][0])
        cpu_ratios.append(speeds["on"][1] / speeds["off"][1])
    tracker.end(run_id, "FINISHED")
    report("")
    report(
        f"training with a sampler every 1 s (10x the default) vs none, {rounds} rounds of "
        f"{tokens} tokens: tokens/s x{median(wall_ratios):.3f} by wall "
        f"(range {min(wall_ratios):.3f}-{max(wall_ratios):.3f}), x{median(cpu_ratios):.3f} "
        f"by CPU time"
    )
    met = share < 0.01
    report(
        f"goal system metrics < 1 % of a one-minute trial: {share * 100:.3f} % "
        f"({'met' if met else 'NOT met'})"
    )
    name = "system_metrics-quick" if args.quick else "system_metrics"
    command = "python bench/system_metrics.py" + (" --quick" if args.quick else "")
    payload = {
        "command": command,
        "machine": machine(),
        "seconds": times,
        "per_trial_s": per_trial,
        "share_of_minute": share,
        "wall_ratios": wall_ratios,
        "cpu_ratios": cpu_ratios,
    }
    path = save_results(name, payload, f"`{command}`\n\n" + report.text)
    print(f"wrote {path}")


def _ms(values: list[float]) -> list[float]:
    return [median(values) * 1e3, min(values) * 1e3, max(values) * 1e3]


if __name__ == "__main__":
    main()
