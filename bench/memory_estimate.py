"""The memory guard's estimate against the peak memory training really takes, on CPU.

`tuner.memory.estimate` decides, before a model is built, whether a trial can fit. Here each
configuration trains two steps (and one evaluation) in a fresh process; the figure compared is
that process's peak resident memory during the run less its resident memory just before
(after imports, the token data and a warm-up run of a tiny model, with the high-water mark
reset), so the interpreter and libraries are not counted on either side.

    python bench/memory_estimate.py --quick    # the three GPT-2 sizes (~3 min on 2 cores)
    python bench/memory_estimate.py            # also llama, lstm, gru, micro-batches, eval

Goal: the estimate within 25 % of the measured peak for the three GPT-2 sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    Report,
    machine,
    machine_line,
    markdown_table,
    quiet,
    save_results,
    use_temp_stores,
)

DATA = {"data": {"max_chars": 2_000_000}, "tokenizer": {"vocab_size": 2048}}
TWO_STEPS = {"milestones": 1, "eval_batch_size": 1}
SIZES = [  # (label, model, train): GPT-2 at three sizes, activations- then weight-dominated
    (
        "gpt2 mini, batch 4x1024",
        {"size": "mini"},
        {"batch_size": 4, "seq_len": 1024, "tokens": 8192, "eval_tokens": 1024},
    ),
    (
        "gpt2 small, batch 8x256",
        {"size": "small"},
        {"batch_size": 8, "seq_len": 256, "tokens": 4096, "eval_tokens": 512},
    ),
    (
        "gpt2 base, batch 2x128",
        {"size": "base"},
        {"batch_size": 2, "seq_len": 128, "tokens": 512, "eval_tokens": 256},
    ),
]
MORE = [  # the other terms of the estimate
    (
        "gpt2 mini, dropout 0.1 (T x T scores kept)",
        {"size": "mini", "dropout": 0.1},
        {"batch_size": 4, "seq_len": 1024, "tokens": 8192, "eval_tokens": 1024},
    ),
    (
        "gpt2 mini, batch 16 in micro-batches of 4",
        {"size": "mini"},
        {
            "batch_size": 16,
            "micro_batch_size": 4,
            "seq_len": 512,
            "tokens": 16384,
            "eval_tokens": 512,
        },
    ),
    (
        "gpt2 micro, evaluation 32x512",
        {"size": "micro"},
        {
            "batch_size": 2,
            "seq_len": 512,
            "tokens": 2048,
            "eval_tokens": 16384,
            "eval_batch_size": 32,
        },
    ),
    (
        "llama mini, batch 4x512",
        {"arch": "llama", "size": "mini"},
        {"batch_size": 4, "seq_len": 512, "tokens": 4096, "eval_tokens": 512},
    ),
    (
        "lstm mini, batch 8x256",
        {"arch": "lstm", "size": "mini"},
        {"batch_size": 8, "seq_len": 256, "tokens": 4096, "eval_tokens": 512},
    ),
    (
        "gru mini, batch 8x256",
        {"arch": "gru", "size": "mini"},
        {"batch_size": 8, "seq_len": 256, "tokens": 4096, "eval_tokens": 512},
    ),
]
GOAL = 0.25


def spec_of(model: dict, train: dict) -> dict:
    return {**DATA, "model": model, "train": {**TWO_STEPS, **train}}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(spec: dict) -> dict:
    """In a fresh process: warm up, reset the high-water mark, train, report bytes."""
    import torch

    torch.set_num_threads(1)
    from tuner.config import RunConfig, from_dict
    from tuner.data import load_token_data
    from tuner.memory import estimate
    from tuner.train import train_run

    config = from_dict(RunConfig, spec)
    data = load_token_data(config.data, config.tokenizer)
    tiny = from_dict(
        RunConfig,
        {
            **DATA,
            "model": {"arch": config.model.arch, "size": "nano"},
            "train": {"batch_size": 1, "seq_len": 16, "tokens": 64, "milestones": 1},
        },
    )
    train_run(tiny, data)  # imports, allocator and kernels warmed up, not counted
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status("VmRSS:")
    result = train_run(config, data)
    peak = _status("VmHWM:")
    est = estimate(config, data.vocab_size, "cpu")
    return {
        "measured": peak - before,
        "estimate": est.total,
        "params": est.params,
        "status": result.status,
    }


def measure(label: str, spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{label}: child failed\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["label"] = label
    row["ratio"] = row["estimate"] / row["measured"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the three GPT-2 sizes only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    quiet()
    use_temp_stores("memory")
    say = Report()
    info = machine()
    say(f"machine: {machine_line(info)}")
    rows = []
    for label, model, train in SIZES + ([] if args.quick else MORE):
        row = measure(label, spec_of(model, train))
        rows.append(row)
        say(
            f"{label}: estimate {row['estimate'] / 1e6:.0f} MB, measured "
            f"{row['measured'] / 1e6:.0f} MB, ratio {row['ratio']:.2f}"
        )
    table = markdown_table(
        ["run", "params", "estimate MB", "measured MB", "estimate / measured"],
        [
            [
                r["label"],
                f"{r['params'] / 1e6:.1f}M",
                round(r["estimate"] / 1e6),
                round(r["measured"] / 1e6),
                f"{r['ratio']:.2f}",
            ]
            for r in rows
        ],
    )
    say()
    say(table)
    worst = max(abs(r["ratio"] - 1) for r in rows[: len(SIZES)])
    met = "met" if worst <= GOAL else "NOT met"
    say()
    say(
        f"goal estimate within 25 % of measured peak RSS for 3 GPT-2 sizes: "
        f"worst {worst:.0%} ({met})"
    )
    if not args.quick:
        worst_all = max(abs(r["ratio"] - 1) for r in rows)
        say(f"every configuration: worst {worst_all:.0%}")
    command = "python bench/memory_estimate.py" + (" --quick" if args.quick else "")
    name = "memory_estimate" + ("-quick" if args.quick else "")
    payload = {"command": command, "machine": info, "rows": rows, "worst_gpt2": worst}
    save_results(name, payload, f"`{command}`\n\n" + say.text)


if __name__ == "__main__":
    main()
