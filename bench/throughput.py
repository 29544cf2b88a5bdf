"""Training throughput: tuner's trainer against a bare PyTorch loop and the Hugging Face Trainer.

One invocation, one model, one batch geometry, one token count, the same batches:

  tuner  tuner.train.train_run with the milestone callback and MLflow tracking on, exactly as a
         trial runs it (a child run opened and finished, one metric batch per milestone, the
         Optuna report/should_prune calls); evaluation time is measured and excluded.
  bare   model(x) -> cross-entropy -> backward -> AdamW step, nothing else.
  hf     transformers.Trainer on a dataset of the same windows, sequential order, no eval.

Runs are rotated (ABC, BCA, CAB, ...) and the ratio is the median of per-round ratios, so a
noisy neighbour on a shared machine moves numerator and denominator together.

  python bench/throughput.py --quick                 # CPU, 5 rounds of ~8 s runs: ~3 min
  python bench/throughput.py                         # CPU, 7 rounds of ~30 s runs: ~12 min
  python bench/throughput.py --device cuda --quick   # GPU: >=50M params, seq 1024, bf16,
                                                     # with and without torch.compile
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

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
    si,
    use_temp_stores,
)

CONVENTIONS = {"palm": "PaLM 6N+12LTd", "kaplan": "6N+6LTd"}
"""FLOPs per token: PaLM's count (the goal's) and the one tuner's budgets use (see tuner.cost)."""
MFU_GOAL = 0.40
"""Of the data-sheet dense bf16 peak, PaLM's count, GPT-2 base at seq_len 1024, tuner+compile."""


@dataclass
class Setup:
    """Everything the three contenders share, built once."""

    config: Any
    """tuner.config.RunConfig: model, batch, budget, device."""
    data: Any
    """tuner.data.TokenData"""
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    """The windows train_run will draw, in order, on the CPU: (B, T) inputs and targets."""
    device: torch.device
    bf16: bool
    flops_per_token: float
    """6N + 6·L·T·d, as tuner's budgets count."""
    n_params: int
    n_non_embedding: int
    skip_steps: int
    """Steps left out of the timing (torch.compile's first steps on a GPU); 0 on CPU."""
    steps_per_milestone: int
    """Milestone density of tuner's runs; 16 as in search_spaces/quick.yaml (64 steps, 4)."""
    workdir: Path
    flops: dict[str, float] = field(default_factory=dict)
    """FLOPs per token by convention: palm, kaplan."""
    tracking: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_step(self) -> int:
        return self.config.train.batch_size * self.config.train.seq_len

    def autocast(self) -> Any:
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


@dataclass
class Sample:
    """One timed run of one contender."""

    name: str
    tokens: int
    seconds: float
    """Wall seconds of the timed region, evaluation excluded."""
    eval_seconds: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time of this process over the same region: what the run itself burned, whatever
    other processes did to the wall clock (exact with one thread, no waiting on I/O)."""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    @property
    def tokens_per_cpu_second(self) -> float:
        return self.tokens / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


class Clock:
    """Marks the end of each step so that the first `skip` steps (compilation) and evaluation
    can be cut out of a run's wall time the same way for every contender."""

    def __init__(self, skip: int, device: torch.device):
        self.skip = skip
        self.device = device
        self.steps = 0
        self.start = self.last = (time.perf_counter(), time.process_time())
        self.excluded = [0.0, 0.0]  # wall, cpu

    def step_done(self) -> None:
        self.steps += 1
        if self.steps == self.skip:
            _sync(self.device)
            self.start = _now()
            self.excluded = [0.0, 0.0]
        self.last = _now()

    def exclude_since_last_step(self, wall: float | None = None) -> float:
        """Time since the last step ended (an evaluation) is not training time. `wall`: the
        evaluation's own wall time where the trainer measured it (on CUDA the next step is
        queued before a milestone's callback runs, and that is training time)."""
        now = _now()
        spent = [now[0] - self.last[0] if wall is None else wall, now[1] - self.last[1]]
        if self.steps >= self.skip:
            self.excluded = [self.excluded[0] + spent[0], self.excluded[1] + spent[1]]
        return spent[0]

    def resume(self) -> None:
        self.last = _now()

    def sample(self, name: str, tokens_per_step: int, **extra: float) -> Sample:
        _sync(self.device)
        now = _now()
        wall = now[0] - self.start[0] - self.excluded[0]
        cpu = now[1] - self.start[1] - self.excluded[1]
        timed_steps = self.steps - self.skip
        return Sample(name, timed_steps * tokens_per_step, wall, self.excluded[0], cpu, dict(extra))


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- setup


def build_setup(args: argparse.Namespace, workdir: Path) -> Setup:
    from tuner.config import RunConfig, from_dict
    from tuner.cost import conventions
    from tuner.data import load_token_data
    from tuner.models import build_model, count_params, flops_per_token

    device = torch.device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    config = from_dict(
        RunConfig,
        {
            "tokenizer": {"kind": "bpe", "vocab_size": args.vocab},
            "model": {"arch": "gpt2", "size": args.size, "dropout": args.dropout},
            "optim": {"lr": 1e-3},
            "train": {
                "batch_size": args.batch,
                "seq_len": args.seq_len,
                "tokens": 1_000_000,
                "milestones": 1,
                "eval_tokens": args.eval_tokens,
                "device": args.device,
                "precision": precision,
                "micro_batch_size": args.micro_batch,
            },
            "seed": 0,
        },
    )
    data = load_token_data(config.data, config.tokenizer)
    model = build_model(config.model, data.vocab_size, args.seq_len)
    n_params, n_non_embedding = count_params(model)
    fpt = flops_per_token(n_non_embedding, data.vocab_size, config.model, args.seq_len)
    skip = args.skip_steps if args.skip_steps is not None else (5 if device.type == "cuda" else 0)
    setup = Setup(
        config,
        data,
        [],
        device,
        precision == "bf16",
        fpt,
        n_params,
        n_non_embedding,
        skip,
        args.steps_per_milestone,
        workdir,
    )
    setup.flops = conventions(n_non_embedding, data.vocab_size, config)
    setup.batches = draw_batches(setup, args.steps or 16)
    return setup


def draw_batches(setup: Setup, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `steps` batches train_run draws for this config (same generator, same seed)."""
    from tuner.train import sample_batch

    tc = setup.config.train
    gen = torch.Generator().manual_seed(setup.config.seed + 1)
    return [
        sample_batch(setup.data.train, tc.batch_size, tc.seq_len, gen, torch.device("cpu"))
        for _ in range(steps)
    ]


def open_tracking(setup: Setup) -> None:
    """An MLflow SQLite store in the temp dir with a parent run, as `tuner study create` makes."""
    from tuner.tracking import Tracker

    tracker = Tracker(f"sqlite:///{setup.workdir / 'mlflow.db'}")
    experiment_id = tracker.experiment_for("bench-throughput")
    parent = tracker.start_parent(
        experiment_id, "bench-throughput", {"bench": "throughput"}, "{}\n"
    )
    setup.tracking = {"tracker": tracker, "experiment_id": experiment_id, "parent": parent, "n": 0}


# ---------------------------------------------------------------- contenders


def run_tuner(setup: Setup, steps: int, compile_model: bool = False) -> Sample:
    """A trial as objective.py runs it: child run, train_run with milestone logging and the
    Optuna report / should_prune round trip, run finished with the cost figures."""
    import optuna

    from tuner.train import train_run

    config = setup.config.replace("train.tokens", steps * setup.tokens_per_step)
    config = config.replace("train.compile", compile_model)
    config = config.replace("train.milestones", max(1, steps // setup.steps_per_milestone))
    track = setup.tracking
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    spent = {"tracking": 0.0, "eval": 0.0, "callback": 0.0}
    t0 = time.perf_counter()
    run = track["tracker"].start_trial(
        track["experiment_id"], track["parent"], "bench-throughput", track["n"], "none", config, {}
    )
    track["n"] += 1

    def on_progress(tokens: int, total: int) -> None:
        clock.step_done()

    def on_milestone(milestone: Any) -> bool:
        on_cpu = setup.device.type == "cpu"  # cpu: the callback follows the evaluation at once
        spent["eval"] += clock.exclude_since_last_step(None if on_cpu else milestone.eval_seconds)
        t = time.perf_counter()
        run.log_milestone(milestone)
        trial.report(milestone.metrics["val_loss"], step=milestone.index)
        prune = trial.should_prune()
        spent["callback"] += time.perf_counter() - t
        clock.resume()
        return prune

    t1 = time.perf_counter()
    clock = Clock(setup.skip_steps, setup.device)  # child-run start/finish timed on their own
    result = train_run(config, setup.data, on_milestone=on_milestone, on_progress=on_progress)
    name = "tuner+compile" if compile_model else "tuner"
    sample = clock.sample(name, setup.tokens_per_step)
    t2 = time.perf_counter()
    run.finish("FINISHED", "COMPLETE", result)
    study.tell(trial, result.metrics["val_loss"])
    spent["tracking"] = (t1 - t0) + (time.perf_counter() - t2)
    sample.extra = {
        "tracking_seconds": spent["tracking"],
        "callback_seconds": spent["callback"],
        "milestones": config.train.milestones,
        "eval_seconds_tuner": result.cost["eval_seconds"],
        "internal_tokens_per_second": result.cost["tokens_per_second"],
        "wall_seconds": time.perf_counter() - t0,
        "final_train_loss": result.history[-1].metrics["train_loss"],
    }
    return sample


def run_bare(setup: Setup, steps: int, compile_model: bool = False) -> Sample:
    """The simplest loop that trains the same model on the same batches."""
    from tuner.models import build_model

    clock = Clock(setup.skip_steps, setup.device)
    torch.manual_seed(setup.config.seed)
    model = build_model(setup.config.model, setup.data.vocab_size, setup.config.train.seq_len)
    model.to(setup.device).train()
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=setup.config.optim.lr)
    batches = [(x.to(setup.device), y.to(setup.device)) for x, y in setup.batches[:steps]]
    for x, y in batches:
        with setup.autocast():
            out = step_model(input_ids=x).logits  # (B, T, V)
        loss = F.cross_entropy(out.float().view(-1, out.size(-1)), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.step_done()
    name = "bare+compile" if compile_model else "bare"
    return clock.sample(name, setup.tokens_per_step, final_train_loss=float(loss))


def run_hf(setup: Setup, steps: int, compile_model: bool = False) -> Sample:
    """transformers.Trainer with its defaults for a causal LM, no evaluation, no checkpoints."""
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from tuner.models import build_model

    clock = Clock(setup.skip_steps, setup.device)

    class StepClock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.step_done()

    torch.manual_seed(setup.config.seed)
    model = build_model(setup.config.model, setup.data.vocab_size, setup.config.train.seq_len)
    rows = torch.cat([x for x, _ in setup.batches[:steps]])  # (steps*B, T), in train_run's order
    tc, oc = setup.config.train, setup.config.optim
    args = TrainingArguments(
        output_dir=str(setup.workdir / "hf"),
        per_device_train_batch_size=tc.batch_size,
        max_steps=steps,
        learning_rate=oc.lr,
        weight_decay=oc.weight_decay,
        adam_beta2=oc.beta2,
        max_grad_norm=oc.grad_clip,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        train_sampling_strategy="sequential",
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=setup.device.type == "cpu",
        bf16=setup.bf16,
        torch_compile=compile_model,
        dataloader_num_workers=0,
        seed=setup.config.seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=WindowDataset(rows),
        data_collator=causal_collate,
        callbacks=[StepClock()],
    )
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
    output = trainer.train()
    name = "hf+compile" if compile_model else "hf"
    return clock.sample(name, setup.tokens_per_step, final_train_loss=output.training_loss)


class WindowDataset(torch.utils.data.Dataset):
    """Fixed-length token windows; the Trainer's collator makes labels from them."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[index]}


def causal_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The usual causal-LM batch: labels are the inputs; the model shifts them by one."""
    ids = torch.stack([item["input_ids"] for item in items])
    return {"input_ids": ids, "labels": ids}


CONTENDERS: dict[str, Callable[..., Sample]] = {"tuner": run_tuner, "bare": run_bare, "hf": run_hf}


# ---------------------------------------------------------------- measurement and report


def measure(
    setup: Setup,
    names: list[str],
    steps: int | None,
    seconds: float,
    repeats: int,
    threads: int,
    compile_flags: list[bool],
    compiled: list[str] | None = None,
) -> tuple[int, dict[str, list[Sample]]]:
    """Warm every contender up once, pick the step count (unless given) so that one run takes
    about `seconds` at the warm-up speed, then time `repeats` rotated rounds of all of them."""
    jobs = {
        _label(n, c): (CONTENDERS[n], c)
        for c in compile_flags
        for n in names
        if not c or compiled is None or n in compiled
    }
    warm_steps = max(setup.skip_steps + 3, 4)
    warm: dict[str, Sample] = {}
    for label in sorted(jobs, key=lambda lbl: not lbl.startswith("bare")):  # bare first
        fn, flag = jobs[label]
        warm[label] = fn(setup, warm_steps, flag)
        torch.set_num_threads(threads)
        rate = warm[label].tokens_per_second
        print(f"  warm-up {label}: {warm_steps} steps, {rate:.0f} tokens/s", flush=True)
    if steps is None:
        rate = median([s.tokens_per_second for s in warm.values()])
        steps = round(seconds * rate / setup.tokens_per_step) + setup.skip_steps
        steps = max(steps, 2 * warm_steps)
    if steps > len(setup.batches):
        setup.batches = draw_batches(setup, steps)
    print(f"  timing {steps} steps per run ({steps * setup.tokens_per_step:,} tokens)", flush=True)
    samples: dict[str, list[Sample]] = {label: [] for label in jobs}
    for round_index, order in enumerate(rotations(list(jobs), repeats)):
        for label in order:
            fn, flag = jobs[label]
            sample = fn(setup, steps, flag)
            if torch.get_num_threads() != threads:  # a library changed it: put it back
                torch.set_num_threads(threads)
            samples[label].append(sample)
            print(
                f"  round {round_index + 1}/{repeats} {label:14s} "
                f"{sample.tokens_per_second:9.0f} tokens/s ({sample.seconds:.1f} s timed, "
                f"{sample.eval_seconds:.1f} s eval excluded)",
                flush=True,
            )
    return steps, samples


def _label(name: str, compile_model: bool) -> str:
    return f"{name}+compile" if compile_model else name


def paired_ratios(
    samples: dict[str, list[Sample]], num: str, den: str, cpu: bool = False
) -> list[float]:
    """num/den within each round (robust to machine-wide drift); `cpu` compares tokens per
    CPU-second instead of per wall-second."""
    pairs = zip(samples.get(num, []), samples.get(den, []), strict=False)
    if cpu:
        return [a.tokens_per_cpu_second / b.tokens_per_cpu_second for a, b in pairs]
    return [a.tokens_per_second / b.tokens_per_second for a, b in pairs]


def paired_ratio(samples: dict[str, list[Sample]], num: str, den: str, cpu: bool = False) -> float:
    """Median over rounds of the per-round ratio."""
    return median(paired_ratios(samples, num, den, cpu))


def peak_figures(device: torch.device) -> dict[str, float]:
    """The data-sheet dense bf16 peak for known GPUs (tuner.cost's table), and the measured
    matmul peak (bf16 on CUDA, fp32 elsewhere), best of three."""
    from tuner import cost

    out = {}
    if device.type == "cuda":
        sheet = cost.datasheet_peak(torch.cuda.get_device_name(device))
        if sheet:
            out["datasheet"] = sheet
    out["measured"] = max(cost.measure_matmul_flops(device) for _ in range(3))
    return out


def mfu_figures(setup: Setup, tokens_per_second: float, peaks: dict[str, float]) -> dict:
    """MFU by FLOP convention and peak: {"palm/datasheet": ..., "kaplan/measured": ...}."""
    return {
        f"{conv}/{peak}": tokens_per_second * setup.flops[conv] / value
        for conv in CONVENTIONS
        for peak, value in peaks.items()
    }


def report(
    setup: Setup, samples: dict[str, list[Sample]], peaks: dict[str, float], say: Report
) -> dict[str, Any]:
    tc = setup.config.train
    rows, figures = [], {}
    for label, runs in samples.items():
        rates = [s.tokens_per_second for s in runs]
        base = "bare+compile" if label.endswith("+compile") else "bare"
        mfu = mfu_figures(setup, median(rates), peaks)
        has_base = base in samples
        ratio = paired_ratio(samples, label, base) if has_base else float("nan")
        cpu_ratio = paired_ratio(samples, label, base, cpu=True) if has_base else float("nan")
        cpu_rate = median([s.tokens_per_cpu_second for s in runs])
        figures[label] = {
            "tokens_per_second": rates,
            "median": median(rates),
            "best": max(rates),
            "tokens_per_cpu_second": cpu_rate,
            "ratio_to_bare": ratio,
            "ratio_to_bare_cpu": cpu_ratio,
            "mfu": mfu,
            "final_train_loss": [s.extra.get("final_train_loss") for s in runs],
        }
        spread = paired_ratios(samples, label, base) if has_base else []
        figures[label]["ratio_to_bare_rounds"] = spread
        rows.append(
            [
                label,
                f"{median(rates):,.0f}",
                f"{max(rates):,.0f}",
                len(runs),
                *(
                    " / ".join(f"{mfu[f'{conv}/{peak}']:.1%}" for peak in peaks)
                    for conv in CONVENTIONS
                ),
                f"{ratio:.3f}",
                f"{min(spread):.2f}-{max(spread):.2f}" if spread else "-",
                f"{cpu_rate:,.0f}",
                f"{cpu_ratio:.3f}",
            ]
        )
    peak_names = " / ".join(f"{k} {si(v, 'FLOP/s')}" for k, v in peaks.items())
    mfu_headers = [f"MFU {label} ({peak_names})" for label in CONVENTIONS.values()]
    say(
        markdown_table(
            [
                "contender",
                "tokens/s (median)",
                "best",
                "runs",
                *mfu_headers,
                "x bare (paired median)",
                "rounds' range",
                "tokens/CPU-s",
                "x bare by CPU time",
            ],
            rows,
        )
    )
    say()
    for label in [lbl for lbl in samples if lbl.startswith("tuner")]:
        runs = samples[label]
        base = "bare+compile" if label.endswith("+compile") else "bare"
        ev = median([s.eval_seconds for s in runs])
        track = median([s.extra["tracking_seconds"] for s in runs])
        internal = median([s.extra["internal_tokens_per_second"] for s in runs])
        callback = median([s.extra["callback_seconds"] / s.seconds for s in runs])
        milestones = int(median([s.extra["milestones"] for s in runs]))
        with_eval = median([s.tokens / (s.seconds + s.eval_seconds) for s in runs])
        with_run = median(
            [
                s.tokens / (s.seconds + s.extra["tracking_seconds"]) / b.tokens_per_second
                for s, b in zip(runs, samples.get(base, []), strict=False)
            ]
        )
        figures[label] |= {
            "eval_seconds": ev,
            "run_tracking_seconds": track,
            "ratio_to_bare_with_run_tracking": with_run,
            "tokens_per_second_with_eval": with_eval,
        }
        say(
            f"{label} evaluation (excluded above): {ev:.2f} s per run for {milestones} "
            f"milestone(s) x {tc.eval_tokens:,} tokens ({ev / milestones:.2f} s each); "
            f"tokens/s with evaluation included: {with_eval:,.0f}"
        )
        say(
            f"{label} milestone callbacks (MLflow metric batch + Optuna report/should_prune, "
            f"included above): {callback:.2%} of the timed run"
        )
        say(
            f"{label} MLflow child run start + finish (outside the loop, excluded above): "
            f"{track:.3f} s per run; with it included: {with_run:.3f} x {base}"
        )
        say(
            f"{label} trainer's own figure (train_seconds, callbacks excluded): "
            f"{internal:,.0f} tokens/s"
        )
    for label in ("tuner", "tuner+compile"):
        ratio = figures.get(label, {}).get("ratio_to_bare", float("nan"))
        if math.isnan(ratio):
            continue
        verdict = "met" if ratio >= 0.97 else "NOT met"
        cpu_ratio = figures[label]["ratio_to_bare_cpu"]
        base = "bare+compile" if label.endswith("+compile") else "bare"
        say(
            f"goal {label} >= 0.97 x {base} (milestone callback + MLflow metric logging on, "
            f"evaluation excluded): {ratio:.3f} by wall time ({verdict}), {cpu_ratio:.3f} by "
            f"CPU time"
        )
    for suffix in ("", "+compile"):
        if f"hf{suffix}" in figures and f"bare{suffix}" in figures:
            say(
                f"hf Trainer{suffix} / bare{suffix}: "
                f"{figures[f'hf{suffix}']['ratio_to_bare']:.3f}; tuner{suffix} / hf "
                f"Trainer{suffix}: {paired_ratio(samples, f'tuner{suffix}', f'hf{suffix}'):.3f}"
            )
    say(mfu_goal_line(setup, figures, peaks))
    return figures


def mfu_goal_line(setup: Setup, figures: dict[str, Any], peaks: dict[str, float]) -> str:
    """The MFU goal: PaLM's count against the data-sheet bf16 peak, for tuner with compile
    (else eager) on GPT-2 base at seq_len 1024; said as not judged where it does not apply."""
    label = "tuner+compile" if "tuner+compile" in figures else "tuner"
    what = f"goal MFU >= {MFU_GOAL:.0%} of the data-sheet bf16 peak (PaLM count), {label}"
    if label not in figures:
        return f"{what}: not judged (tuner did not run)"
    if "datasheet" not in peaks:
        return f"{what}: not judged (no data-sheet bf16 peak for this device)"
    value = figures[label]["mfu"]["palm/datasheet"]
    tc = setup.config.train
    shape_ok = setup.config.model.size == "base" and tc.seq_len == 1024
    verdict = ("met" if value >= MFU_GOAL else "NOT met") if shape_ok else "not judged"
    note = "" if shape_ok else " (the goal is for gpt2 base at seq_len 1024)"
    return f"{what}: {value:.1%} ({verdict}){note}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="shorter runs (~3 min on CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--size", default=None, help="model preset (cpu: tiny ~1.3M params; cuda: base ~88M)"
    )
    p.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary size")
    p.add_argument("--dropout", type=float, default=0.0, help="at every dropout site")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument(
        "--micro-batch",
        default="0",
        help="tuner's train.micro_batch_size: 0 (none), N, or auto (largest that fits)",
    )
    p.add_argument("--seq-len", type=int, default=None, help="cpu: 128; cuda: 1024")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps per timed run (default: about --seconds per run)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="target seconds per timed run when --steps is not given (quick 8, full 30)",
    )
    p.add_argument("--repeats", type=int, default=None, help="rotated rounds (quick 5, full 7)")
    p.add_argument(
        "--steps-per-milestone",
        type=int,
        default=16,
        help="tuner's evaluation + MLflow logging interval (quick.yaml: 16 steps)",
    )
    p.add_argument("--eval-tokens", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    p.add_argument(
        "--skip-steps",
        type=int,
        default=None,
        help="leading steps left out of the timing (default: cpu 0, cuda 5)",
    )
    p.add_argument(
        "--compile",
        choices=["off", "on", "both"],
        default=None,
        help="torch.compile (default: cpu off, cuda both)",
    )
    p.add_argument("--only", default="tuner,bare,hf", help="comma-separated contenders")
    p.add_argument(
        "--compiled",
        default=None,
        help="contenders that also run compiled when --compile is on/both (default: all)",
    )
    p.add_argument("--name", default=None, help="results file name (default throughput-DEVICE)")
    args = p.parse_args(argv)
    args.micro_batch = args.micro_batch if args.micro_batch == "auto" else int(args.micro_batch)
    gpu = args.device.startswith("cuda")
    args.size = args.size or ("base" if gpu else "tiny")
    args.seq_len = args.seq_len or (1024 if gpu else 128)
    args.seconds = args.seconds or (8.0 if args.quick else 30.0)
    args.repeats = args.repeats or (5 if args.quick else 7)
    args.compile = args.compile or ("both" if gpu else "off")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    workdir = use_temp_stores("throughput")
    threads = set_threads(args.threads)
    say = Report()
    setup = build_setup(args, workdir)
    open_tracking(setup)
    from tuner import cost

    cost.peak_flops(setup.device, setup.config.cost)  # cached once, outside every timed run
    peaks = peak_figures(setup.device)
    info = machine()
    tc = setup.config.train
    say(f"# throughput ({'quick' if args.quick else 'full'}, {args.device})")
    say(f"machine: {machine_line(info)}")
    flags = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    compiled = [n.strip() for n in args.compiled.split(",")] if args.compiled else None
    steps, samples = measure(
        setup, names, args.steps, args.seconds, args.repeats, threads, flags, compiled
    )
    say(
        f"model: gpt2 {args.size}, dropout {args.dropout:g}, {setup.n_params / 1e6:.2f}M params "
        f"({setup.n_non_embedding / 1e6:.2f}M non-embedding), vocab {setup.data.vocab_size}, "
        f"batch {tc.batch_size} x {tc.seq_len} tokens, {'bf16' if setup.bf16 else 'fp32'}, "
        f"{steps} steps = {steps * setup.tokens_per_step:,} tokens per run "
        f"({setup.skip_steps} leading steps untimed), {args.repeats} rotated rounds, "
        f"{threads} torch threads for all; tuner evaluates and logs a milestone every "
        f"{setup.steps_per_milestone} steps (at least once a run)"
    )
    say(
        "training FLOPs per token: "
        + ", ".join(f"{CONVENTIONS[k]} {si(v)}" for k, v in setup.flops.items())
        + "; peak: "
        + ", ".join(f"{k} {si(v, 'FLOP/s')}" for k, v in peaks.items())
    )
    say()
    figures = report(setup, samples, peaks, say)
    name = args.name or f"throughput-{setup.device.type}" + ("-quick" if args.quick else "")
    payload = {
        "args": vars(args),
        "steps": steps,
        "machine": info,
        "peaks": peaks,
        "flops_per_token": setup.flops_per_token,
        "flops_per_token_by_convention": setup.flops,
        "n_params": setup.n_params,
        "figures": figures,
        "samples": {k: [s.__dict__ for s in v] for k, v in samples.items()},
    }
    path = save_results(name, payload, say.text)
    print(f"\nwrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
