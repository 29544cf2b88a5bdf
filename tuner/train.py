"""The training loop and evaluation. Imports neither optuna nor mlflow: callers observe a run
through `on_milestone` (evaluation results; return True to stop early) and `on_progress`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuner import cost, mup
from tuner.config import ConfigError, RunConfig, ScheduleConfig
from tuner.data import TokenData, load_token_data
from tuner.models import build_model, count_params, flops_per_token, logits, max_positions

METRIC_NAMES = ("train_loss", "val_loss", "val_perplexity", "val_bpb", "val_accuracy")


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


def sample_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of seq_len+1 tokens -> inputs and next-token targets, (B, T) each."""
    starts = torch.randint(len(tokens) - seq_len - 1, (batch_size,), generator=gen).numpy()
    window = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)
    batch = torch.from_numpy(window).to(device, non_blocking=True)
    return batch[:, :-1], batch[:, 1:]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tokens: np.ndarray,
    token_bytes: np.ndarray,
    seq_len: int,
    n_tokens: int,
    batch_size: int,
    device: torch.device,
    autocast: Any = nullcontext,
) -> dict[str, float]:
    """Loss, perplexity, bits per byte and accuracy on the first `n_tokens` targets of `tokens`.

    Every trial scores exactly the same targets whatever its seq_len: windows of seq_len tile
    the range and the last one is cut short.
    """
    n_tokens = min(n_tokens, len(tokens) - 1)
    if n_tokens < 1:
        raise ConfigError("data: the evaluation split has fewer than 2 tokens")
    was_training = model.training
    model.eval()
    ids = torch.from_numpy(np.asarray(tokens[: n_tokens + 1]).astype(np.int64))
    byte_len = torch.from_numpy(token_bytes)
    nats = correct = 0.0
    full = n_tokens // seq_len
    chunks = [(ids[: full * seq_len + 1], seq_len)] if full else []
    if n_tokens % seq_len:
        chunks.append((ids[full * seq_len :], n_tokens % seq_len))
    for chunk, length in chunks:
        n_windows = (len(chunk) - 1) // length
        x = chunk[: n_windows * length].view(n_windows, length)
        y = chunk[1 : n_windows * length + 1].view(n_windows, length)
        for start in range(0, n_windows, batch_size):
            xb, yb = (
                x[start : start + batch_size].to(device),
                y[start : start + batch_size].to(device),
            )
            with autocast():
                out = logits(model, xb)
            out = out.float()
            nats += F.cross_entropy(
                out.reshape(-1, out.size(-1)), yb.reshape(-1), reduction="sum"
            ).item()
            correct += (out.argmax(-1) == yb).sum().item()
    n_bytes = int(byte_len[ids[1:]].sum())
    model.train(was_training)
    loss = nats / n_tokens
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 700.0)),
        "val_bpb": nats / math.log(2) / max(n_bytes, 1),
        "val_accuracy": correct / n_tokens,
    }


def train_run(
    config: RunConfig,
    data: TokenData | None = None,
    on_milestone: Callable[[Milestone], bool | None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    init_model: nn.Module | None = None,
) -> TrainResult:
    """Train `config` from scratch (or from `init_model`) and evaluate at every milestone."""
    wall_start = time.perf_counter()
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    data = data or load_token_data(config.data, config.tokenizer)
    device = cost.resolve_device(tc.device)
    use_bf16 = tc.precision == "bf16" or (tc.precision == "auto" and device.type == "cuda")

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    torch.manual_seed(config.seed)
    model = (
        init_model
        if init_model is not None
        else build_model(config.model, data.vocab_size, tc.seq_len)
    )
    positions = max_positions(model)
    if positions is not None and tc.seq_len > positions:
        raise ConfigError(f"train.seq_len: {tc.seq_len} is beyond the model's range of {positions}")
    if len(data.train) <= tc.seq_len + 1:
        raise ConfigError(f"train.seq_len: {tc.seq_len} is longer than the training split")
    model.to(device).train()
    n_params, n_non_embedding = count_params(model)
    fpt = flops_per_token(n_non_embedding, data.vocab_size, config.model, tc.seq_len)
    plan = plan_budget(config, fpt)
    step_model = torch.compile(model) if tc.compile else model
    optimizer = make_optimizer(model, config)
    gen = torch.Generator().manual_seed(config.seed + 1)
    micro = tc.micro_batch_size or tc.batch_size
    cost.reset_peak_memory(device)

    history: list[Milestone] = []
    status, reason = "complete", ""
    train_seconds = eval_seconds = 0.0
    first_loss: float | None = None
    window_loss = window_steps = 0.0
    next_mark = 0
    step = 0
    try:
        while step < plan.steps:
            t0 = time.perf_counter()
            lr = get_lr(step, plan.steps, config.optim.lr, config.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            x, y = sample_batch(data.train, tc.batch_size, tc.seq_len, gen, device)
            step_loss_sum = torch.zeros((), device=device)
            for start in range(0, tc.batch_size, micro):
                xb, yb = x[start : start + micro], y[start : start + micro]
                with autocast():
                    out = logits(step_model, xb)  # (b, T, V)
                loss = F.cross_entropy(out.float().reshape(-1, out.size(-1)), yb.reshape(-1))
                loss = loss * (len(xb) / tc.batch_size)
                loss.backward()
                step_loss_sum += loss.detach()
            if config.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss = step_loss_sum.item()  # one device sync per step
            step += 1
            train_seconds += time.perf_counter() - t0
            first_loss = step_loss if first_loss is None else first_loss
            if not math.isfinite(step_loss) or step_loss > tc.diverge_factor * first_loss:
                status = "diverged"
                reason = (
                    f"diverged: train loss {step_loss:.4g} at step {step} "
                    f"(first {first_loss:.4g}, limit x{tc.diverge_factor:g})"
                )
                break
            window_loss += step_loss
            window_steps += 1
            if on_progress:
                on_progress(step * plan.tokens_per_step, plan.tokens)
            while next_mark < len(plan.milestone_steps) and step >= plan.milestone_steps[next_mark]:
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
                eval_seconds += time.perf_counter() - t1
                metrics["train_loss"] = window_loss / max(window_steps, 1)
                metrics["train_val_gap"] = metrics["val_loss"] - metrics["train_loss"]
                metrics["learning_rate"] = lr
                metrics["tokens_per_second"] = (
                    step * plan.tokens_per_step / max(train_seconds, 1e-9)
                )
                window_loss = window_steps = 0.0
                milestone = Milestone(next_mark, step * plan.tokens_per_step, step, metrics)
                history.append(milestone)
                next_mark += 1
                if on_milestone and on_milestone(milestone):
                    status, reason = "pruned", f"pruned at milestone {milestone.index}"
                    break
            if status == "pruned":
                break
    except torch.OutOfMemoryError as err:
        status, reason = "oom", f"out of memory: {str(err).splitlines()[0][:300]}"
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    tokens_seen = step * plan.tokens_per_step
    wall = time.perf_counter() - wall_start
    train_flops = fpt * tokens_seen
    peak = cost.peak_flops(device, config.cost)
    cost_figures = {
        "n_params": n_params,
        "n_params_non_embedding": n_non_embedding,
        "flops_per_token": fpt,
        "train_flops": train_flops,
        "tokens_seen": tokens_seen,
        "budget_tokens": plan.tokens,
        "steps": step,
        "wall_seconds": wall,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "tokens_per_second": tokens_seen / max(train_seconds, 1e-9),
        "mfu": train_flops / max(train_seconds, 1e-9) / peak if peak else 0.0,
        "peak_flops": peak,
        "peak_memory_bytes": cost.peak_memory_bytes(device),
        "device": cost.device_name(device),
        "price_usd": cost.price_usd(wall, device, config.cost),
    }
    final = dict(history[-1].metrics) if history else {}
    return TrainResult(status, reason, final, cost_figures, history, model)
