"""The training loop: fair token budgets, the learning-rate schedule, the optimizer and one
loop that evaluates at fixed token milestones (tuner.evaluate). Imports neither optuna nor
mlflow: callers observe a run through `on_milestone` (return True to stop early) and
`on_progress`."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuner import cost, microbatch, mup
from tuner.config import RunConfig, ScheduleConfig
from tuner.cost import reset_peak_memory
from tuner.data import TokenData, load_token_data
from tuner.device import (
    apply_memory_fraction,
    autocast_for,
    compile_problem,
    is_compile_error,
    one_line,
    resolve_device,
    warn_eager,
)
from tuner.errors import ConfigError
from tuner.evaluate import evaluate
from tuner.memory import require_fit
from tuner.models import build_model, count_params, flops_per_token, logits, max_positions
from tuner.pipeline import BatchStream, LossBook, is_async
from tuner.pipeline import sample_batch as sample_batch  # where callers have always found it


@dataclass
class Milestone:
    """An evaluation point; `index` is numbered the same way in every trial."""

    index: int
    tokens_seen: int
    step: int
    metrics: dict[str, float]
    eval_seconds: float = 0.0
    """Time its evaluation (and extra_eval) took; the loop's time excludes it."""


@dataclass
class TrainResult:
    status: str
    """complete | diverged | pruned | oom"""
    reason: str
    metrics: dict[str, float]
    """The last evaluation's metrics (empty if none ran)."""
    cost: dict[str, Any]
    history: list[Milestone] = field(default_factory=list)
    model: nn.Module | None = None


@dataclass(frozen=True)
class Plan:
    """Fair budget: steps and milestones derived from tokens (or FLOPs), never from steps."""

    tokens_per_step: int
    steps: int
    milestone_steps: tuple[int, ...]
    """Step (1-based count) after which milestone k is evaluated."""

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step


def plan_budget(config: RunConfig, flops_per_tok: float) -> Plan:
    tc = config.train
    tokens_per_step = tc.batch_size * tc.seq_len
    budget = tc.flops / flops_per_tok if tc.flops > 0 else tc.tokens
    steps = int(budget // tokens_per_step)
    if steps < tc.milestones:
        raise ConfigError(
            f"train.tokens: a budget of {int(budget)} tokens gives {steps} steps of "
            f"{tokens_per_step} tokens, fewer than train.milestones={tc.milestones}"
        )
    # milestone k at the first step where tokens_seen >= budget * (k+1) / M
    marks = tuple(
        min(steps, math.ceil(budget * (k + 1) / tc.milestones / tokens_per_step))
        for k in range(tc.milestones)
    )
    return Plan(tokens_per_step, steps, marks)


def get_lr(step: int, total: int, peak: float, cfg: ScheduleConfig) -> float:
    """Linear warmup over `warmup_fraction` of the steps, then decay to `min_lr_ratio * peak`."""
    warmup = int(cfg.warmup_fraction * total)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = cfg.min_lr_ratio
    if cfg.kind == "cosine":
        scale = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    elif cfg.kind == "linear":
        scale = 1 - (1 - floor) * progress
    else:
        scale = 1.0
    return peak * scale


def make_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices only: never on norms, biases or embeddings. Under μP the
    groups carry an `lr_scale` that the loop multiplies into the scheduled learning rate."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for param in model.parameters():
        if id(param) in seen or not param.requires_grad:
            continue
        seen.add(id(param))
        (decay if param.ndim >= 2 and id(param) not in embedding_ids else no_decay).append(param)
    oc = config.optim
    groups = [
        {"params": decay, "weight_decay": oc.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.model.parametrization == "mup":  # per-group lr_scale, see tuner/mup.py
        groups = mup.param_groups(model, config.model.base_width, oc.lr, oc.weight_decay)
    if oc.name == "sgd":
        return torch.optim.SGD(groups, lr=oc.lr, momentum=oc.momentum)
    device_type = next(model.parameters()).device.type
    fused = True if device_type in ("cuda", "cpu") else None  # one kernel, not a loop over params
    return torch.optim.AdamW(groups, lr=oc.lr, betas=(oc.beta1, oc.beta2), fused=fused)


def forward_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: Callable[[], AbstractContextManager],
) -> torch.Tensor:
    """Mean next-token cross-entropy of (x, y), (b, T) each; logits in fp32 for the loss."""
    with autocast():
        out = logits(model, x)  # (b, T, V)
    return F.cross_entropy(out.float().reshape(-1, out.size(-1)), y.reshape(-1))


def train_step(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    micro: int,
    grad_clip: float,
) -> torch.Tensor:
    """One optimizer step over the batch (x, y), in micro-batches of `micro` sequences whose
    gradients accumulate (each loss weighted by its share of the batch, so the gradient is the
    whole batch's mean); returns the batch's mean loss, still on the device (no host sync)."""
    batch = len(x)
    if micro >= batch:
        loss = loss_fn(x, y)
        loss.backward()
        total = loss.detach()
    else:
        total = torch.zeros((), device=x.device)
        for start in range(0, batch, micro):
            xb, yb = x[start : start + micro], y[start : start + micro]  # (b, T)
            loss = loss_fn(xb, yb) * (len(xb) / batch)
            loss.backward()
            total += loss.detach()
    if grad_clip > 0:  # foreach: one kernel per step on CUDA, no host sync
        torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=x.is_cuda or None)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def train_run(
    config: RunConfig,
    data: TokenData | None = None,
    on_milestone: Callable[[Milestone], bool | None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    init_model: nn.Module | None = None,
    extra_eval: Callable[[nn.Module, bool], dict[str, float]] | None = None,
) -> TrainResult:
    """Train `config` from scratch (or from `init_model`) and evaluate at every milestone.

    The host never waits for the device inside a step: losses are read as they arrive
    (tuner.pipeline.LossBook) and everything waits only at milestones. On CUDA a milestone's
    callback runs while the next step computes, so a trial pruned there has run one step more
    than before (counted in its cost); elsewhere the order is the plain one.
    `extra_eval(model, is_last_milestone)` adds metrics to a milestone (downstream tasks);
    its time is kept apart as `task_seconds`, out of training and evaluation time.
    """
    wall_start = time.perf_counter()
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    data = data or load_token_data(config.data, config.tokenizer)
    device = resolve_device(tc.device)
    apply_memory_fraction(device)
    autocast = autocast_for(tc.precision, device)
    torch.manual_seed(config.seed)
    if init_model is None:  # fail before allocating anything large (tuner.memory)
        check_split(data, tc.seq_len)
        require_fit(config, data.vocab_size, device.type)
    model = (
        init_model
        if init_model is not None
        else build_model(config.model, data.vocab_size, tc.seq_len)
    )
    check_fits(model, data, tc.seq_len)
    model.to(device).train()
    fpt = flops_per_token(count_params(model)[1], data.vocab_size, config.model, tc.seq_len)
    plan = plan_budget(config, fpt)
    optimizer = make_optimizer(model, config)
    params = list(model.parameters())
    micro = micro_batch_for(config, model, data.vocab_size, device, autocast)
    eager_reason = compile_problem(device.type) if tc.compile else ""
    if eager_reason:
        warn_eager(eager_reason)
    loss_fn = loss_function(model, autocast, tc.compile and not eager_reason)
    gen = torch.Generator().manual_seed(config.seed + 1)
    batches = BatchStream(data.train, tc.batch_size, tc.seq_len, gen, device)
    losses = LossBook(device, tc.diverge_factor)
    defer = is_async(device)  # run a milestone's callback while the next step computes
    reset_peak_memory(device)

    def milestone(index: int, step: int, lr: float) -> Milestone:
        t1 = time.perf_counter()
        metrics = evaluate(
            model,
            data.val,
            data.token_bytes,
            tc.seq_len,
            tc.eval_tokens,
            tc.eval_batch_size,
            device,
            autocast,
        )
        metrics["train_loss"] = losses.take_window()
        metrics["train_val_gap"] = metrics["val_loss"] - metrics["train_loss"]
        metrics["learning_rate"] = lr
        metrics["tokens_per_second"] = step * plan.tokens_per_step / max(train_seconds, 1e-9)
        if extra_eval is not None:
            nonlocal task_seconds
            t2 = time.perf_counter()
            metrics |= extra_eval(model, index == len(plan.milestone_steps) - 1)
            task_seconds += time.perf_counter() - t2
        seconds = time.perf_counter() - t1  # evaluation and extra_eval; tasks split off below
        return Milestone(index, step * plan.tokens_per_step, step, metrics, seconds)

    def report(m: Milestone) -> None:
        nonlocal status, reason
        if on_milestone and on_milestone(m):
            status, reason = "pruned", f"pruned at milestone {m.index}"

    history: list[Milestone] = []
    pending: list[Milestone] = []  # evaluated; callback deferred to the next step (CUDA)
    status, reason = "complete", ""
    train_seconds = eval_seconds = task_seconds = 0.0
    step = 0
    try:
        while step < plan.steps and status == "complete":
            t0 = time.perf_counter()
            lr = get_lr(step, plan.steps, config.optim.lr, config.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            x, y = batches.next()
            try:
                loss = train_step(loss_fn, params, optimizer, x, y, micro, config.optim.grad_clip)
            except Exception as err:
                if step or not tc.compile or eager_reason or not is_compile_error(err):
                    raise
                eager_reason = one_line(err)  # the backend failed on the model: go eager
                warn_eager(eager_reason)
                optimizer.zero_grad(set_to_none=True)
                loss_fn = loss_function(model, autocast, compiled=False)
                loss = train_step(loss_fn, params, optimizer, x, y, micro, config.optim.grad_clip)
            step += 1
            losses.add(step, loss)
            while pending and status == "complete":
                report(pending.pop(0))
            due = len(history) < len(plan.milestone_steps) and (
                step >= plan.milestone_steps[len(history)]
            )
            diverged = losses.update(wait=due or step == plan.steps)
            train_seconds += time.perf_counter() - t0
            if diverged and status == "complete":
                status, reason = "diverged", diverged
            if status != "complete":
                break
            if on_progress:
                on_progress(step * plan.tokens_per_step, plan.tokens)
            while (
                status == "complete"
                and len(history) < len(plan.milestone_steps)
                and step >= plan.milestone_steps[len(history)]
            ):
                history.append(milestone(len(history), step, lr))
                eval_seconds += history[-1].eval_seconds
                if defer and step < plan.steps:
                    pending.append(history[-1])
                else:
                    report(history[-1])
    except torch.OutOfMemoryError as err:
        status, reason = "oom", f"out of memory: {str(err).splitlines()[0][:300]}"
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    timing = {
        "wall_seconds": time.perf_counter() - wall_start,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds - task_seconds,
        "task_seconds": task_seconds,
    }
    tokens = step * plan.tokens_per_step
    figures = cost.run_figures(model, config, data.vocab_size, tokens, plan.tokens, timing, device)
    figures |= {
        "steps": step,
        "micro_batch_size": micro,
        "grad_accumulation_steps": math.ceil(tc.batch_size / micro),
        "compiled": bool(tc.compile and not eager_reason),
        **({"compile_fallback": eager_reason} if tc.compile and eager_reason else {}),
    }
    final = dict(history[-1].metrics) if history else {}
    return TrainResult(status, reason, final, figures, history, model)


def loss_function(
    model: nn.Module, autocast: Callable[[], AbstractContextManager], compiled: bool
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(x, y) -> mean loss; with `compiled`, torch.compile covers the loss too (the fp32 cast
    of the logits fuses into the cross-entropy)."""

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return forward_loss(model, x, y, autocast)

    if not compiled:
        return loss_fn
    # a fresh start per run: trials differ in shape, and past dynamo's per-function recompile
    # limit later trials of a worker would silently run eager
    if "torch._dynamo" in sys.modules:  # nothing compiled before it was imported
        torch.compiler.reset()
    return torch.compile(loss_fn)


def micro_batch_for(
    config: RunConfig,
    model: nn.Module,
    vocab_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
) -> int:
    """Sequences per forward pass: the configured cap (0 = none), or with `auto` the largest
    divisor of the batch that fits this process's share of a CUDA device (no cap elsewhere)."""
    tc = config.train
    if tc.micro_batch_size != "auto":
        return min(tc.micro_batch_size or tc.batch_size, tc.batch_size)
    if device.type not in microbatch.PROBED:
        return tc.batch_size

    def attempt(size: int) -> None:
        ids = torch.randint(vocab_size, (size, tc.seq_len + 1), device=device)  # (b, T+1)
        forward_loss(model, ids[:, :-1], ids[:, 1:], autocast).backward()

    moments = 2 if config.optim.name == "adamw" else 1  # optimizer state per parameter
    state = moments * sum(p.numel() * p.element_size() for p in model.parameters())
    budget = microbatch.memory_budget(device)
    fits = microbatch.probe(
        attempt,
        lambda: model.zero_grad(set_to_none=True),
        device,
        state + int(microbatch.HEADROOM * budget),
    )
    key = microbatch.cache_key(config, vocab_size, device, budget)
    return microbatch.cached_largest_fit(key, tc.batch_size, fits)


def check_fits(model: nn.Module, data: TokenData, seq_len: int) -> None:
    """The model's positional range and the training split must hold one sequence."""
    positions = max_positions(model)
    if positions is not None and seq_len > positions:
        raise ConfigError(f"train.seq_len: {seq_len} is beyond the model's range of {positions}")
    check_split(data, seq_len)


def check_split(data: TokenData, seq_len: int) -> None:
    """The training split must hold one sequence (checked before a model is built)."""
    if len(data.train) <= seq_len + 1:
        raise ConfigError(f"train.seq_len: {seq_len} is longer than the training split")
