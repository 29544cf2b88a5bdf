"""The training loop: fair token budgets, the learning-rate schedule, the optimizer and one
loop that evaluates at fixed token milestones (tuner.evaluate). Imports neither optuna nor
mlflow: callers observe a run through `on_milestone` (return True to stop early) and
`on_progress`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuner.config import RunConfig, ScheduleConfig
from tuner.cost import peak_flops, peak_memory_bytes, price_usd, reset_peak_memory
from tuner.data import TokenData, load_token_data
from tuner.device import autocast_for, device_name, resolve_device
from tuner.errors import ConfigError
from tuner.evaluate import evaluate
from tuner.memory import require_fit
from tuner.models import build_model, count_params, flops_per_token, logits, max_positions


@dataclass
class Milestone:
    """An evaluation point; `index` is numbered the same way in every trial."""

    index: int
    tokens_seen: int
    step: int
    metrics: dict[str, float]


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
    """Weight decay on weight matrices only: never on norms, biases or embeddings."""
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
    if oc.name == "sgd":
        return torch.optim.SGD(groups, lr=oc.lr, momentum=oc.momentum)
    device_type = next(model.parameters()).device.type
    fused = True if device_type in ("cuda", "cpu") else None  # one kernel, not a loop over params
    return torch.optim.AdamW(groups, lr=oc.lr, betas=(oc.beta1, oc.beta2), fused=fused)


def sample_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of seq_len+1 tokens -> inputs and next-token targets, (B, T) each."""
    starts = torch.randint(len(tokens) - seq_len - 1, (batch_size,), generator=gen).numpy()
    window = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)
    batch = torch.from_numpy(window).to(device, non_blocking=True)
    return batch[:, :-1], batch[:, 1:]


def train_step(
    step_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    micro: int,
    grad_clip: float,
    autocast: Callable[[], AbstractContextManager],
) -> torch.Tensor:
    """One optimizer step over the batch (x, y), in micro-batches of `micro` sequences whose
    gradients accumulate; returns the batch's mean loss, still on the device."""
    batch = len(x)
    loss_sum = torch.zeros((), device=x.device)
    for start in range(0, batch, micro):
        xb, yb = x[start : start + micro], y[start : start + micro]  # (b, T)
        with autocast():
            out = logits(step_model, xb)  # (b, T, V)
        loss = F.cross_entropy(out.float().reshape(-1, out.size(-1)), yb.reshape(-1))
        loss = loss * (len(xb) / batch)
        loss.backward()
        loss_sum += loss.detach()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(step_model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def divergence(loss: float, first: float, factor: float, step: int) -> str:
    """Why a run has diverged at this step, or '' while it has not."""
    if math.isfinite(loss) and loss <= factor * first:
        return ""
    return f"diverged: train loss {loss:.4g} at step {step} (first {first:.4g}, limit x{factor:g})"


def train_run(
    config: RunConfig,
    data: TokenData | None = None,
    on_milestone: Callable[[Milestone], bool | None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    init_model: nn.Module | None = None,
    extra_eval: Callable[[nn.Module, bool], dict[str, float]] | None = None,
) -> TrainResult:
    """Train `config` from scratch (or from `init_model`) and evaluate at every milestone.

    `extra_eval(model, is_last_milestone)` adds metrics to a milestone (downstream tasks);
    its time is kept apart as `task_seconds`, out of training and evaluation time.
    """
    wall_start = time.perf_counter()
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    data = data or load_token_data(config.data, config.tokenizer)
    device = resolve_device(tc.device)
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
    step_model = torch.compile(model) if tc.compile else model
    optimizer = make_optimizer(model, config)
    gen = torch.Generator().manual_seed(config.seed + 1)
    micro = tc.micro_batch_size or tc.batch_size
    reset_peak_memory(device)

    def milestone(index: int, step: int, lr: float, train_losses: list[float]) -> Milestone:
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
        metrics["train_loss"] = sum(train_losses) / max(len(train_losses), 1)
        metrics["train_val_gap"] = metrics["val_loss"] - metrics["train_loss"]
        metrics["learning_rate"] = lr
        metrics["tokens_per_second"] = step * plan.tokens_per_step / max(train_seconds, 1e-9)
        if extra_eval is not None:
            nonlocal task_seconds
            t2 = time.perf_counter()
            metrics |= extra_eval(model, index == len(plan.milestone_steps) - 1)
            task_seconds += time.perf_counter() - t2
        return Milestone(index, step * plan.tokens_per_step, step, metrics)

    history: list[Milestone] = []
    status, reason = "complete", ""
    train_seconds = eval_seconds = task_seconds = 0.0
    first_loss: float | None = None
    window: list[float] = []  # train losses since the last milestone
    step = 0
    try:
        while step < plan.steps and status == "complete":
            t0 = time.perf_counter()
            lr = get_lr(step, plan.steps, config.optim.lr, config.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = sample_batch(data.train, tc.batch_size, tc.seq_len, gen, device)
            step_loss = train_step(
                step_model, optimizer, x, y, micro, config.optim.grad_clip, autocast
            ).item()  # one device sync per step
            step += 1
            train_seconds += time.perf_counter() - t0
            first_loss = step_loss if first_loss is None else first_loss
            reason = divergence(step_loss, first_loss, tc.diverge_factor, step)
            if reason:
                status = "diverged"
                break
            window.append(step_loss)
            if on_progress:
                on_progress(step * plan.tokens_per_step, plan.tokens)
            while (
                len(history) < len(plan.milestone_steps)
                and step >= plan.milestone_steps[len(history)]
            ):
                t1 = time.perf_counter()
                history.append(milestone(len(history), step, lr, window))
                eval_seconds += time.perf_counter() - t1
                window = []
                if on_milestone and on_milestone(history[-1]):
                    status, reason = "pruned", f"pruned at milestone {history[-1].index}"
                    break
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
    figures = run_cost(model, fpt, plan, step, timing, device, config)
    final = dict(history[-1].metrics) if history else {}
    return TrainResult(status, reason, final, figures, history, model)


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


def run_cost(
    model: nn.Module,
    fpt: float,
    plan: Plan,
    steps: int,
    timing: dict[str, float],
    device: torch.device,
    config: RunConfig,
) -> dict[str, Any]:
    """What a run cost: parameters, FLOPs, tokens, time, MFU, memory, device and price."""
    n_params, n_non_embedding = count_params(model)
    tokens_seen = steps * plan.tokens_per_step
    train_flops = fpt * tokens_seen
    train_seconds = max(timing["train_seconds"], 1e-9)
    peak = peak_flops(device, config.cost)
    return {
        "n_params": n_params,
        "n_params_non_embedding": n_non_embedding,
        "flops_per_token": fpt,
        "train_flops": train_flops,
        "tokens_seen": tokens_seen,
        "budget_tokens": plan.tokens,
        "steps": steps,
        **timing,
        "tokens_per_second": tokens_seen / train_seconds,
        "mfu": train_flops / train_seconds / peak if peak else 0.0,
        "peak_flops": peak,
        "peak_memory_bytes": peak_memory_bytes(device),
        "device": device_name(device),
        "price_usd": price_usd(timing["wall_seconds"], device, config.cost),
    }
