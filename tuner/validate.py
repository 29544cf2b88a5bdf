"""Pre-flight checks: everything that can be told from a space, the flags and the data's size,
checked before any store is touched.

A space is a box of points; the checks look at its extremes (the largest model, the longest
sequence, the biggest batch for the smallest budget), found coordinate by coordinate over each
param's candidate values (choices, grid values, or low and high). A point that can never run
(fewer steps than milestones, a sequence longer than the training split) is bad input; a
largest point that may not fit in this machine's memory is a warning, and its trials fail
with that reason before allocating (tuner.memory).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tuner import memory, stores
from tuner.config import RunConfig
from tuner.errors import ConfigError
from tuner.space import SearchSpace
from tuner.units import si

EVERY_TRIAL = "every trial"
SHAPE_PREFIXES = ("train.", "model.", "tokenizer.vocab_size", "optim.name")
"""Params that change a run's memory, budget or sequence length."""


# ---------------------------------------------------------------- flags


def check_run_flags(n_trials: int | None, timeout: float | None) -> None:
    """`--n-trials` and `--timeout` of resume and worker (create checks them in the space)."""
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--n-trials {n_trials}: must be >= 1")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout {timeout}: must be a positive number of seconds")


def check_store_urls(storage: str | None, tracking_uri: str | None) -> None:
    """Store URLs tuner cannot use, told before any data is read: not a URL, an unknown
    database or missing driver, an in-memory SQLite database (lost when tuner exits)."""
    if storage:
        stores.check_persistent(storage, "--storage")
        if not stores.is_journal(storage):
            _check_database_url(storage)
    if tracking_uri:
        from tuner.tracking import check_tracking_uri

        stores.check_persistent(check_tracking_uri(tracking_uri), "--tracking-uri")


def _check_database_url(url: str) -> None:
    """A SQLAlchemy URL whose dialect and driver load (no connection is made)."""
    from sqlalchemy.engine import make_url

    try:
        if "://" not in url:
            raise ValueError("not a URL, nor a journal file ending in .log")
        make_url(url).get_dialect()
    except Exception as err:  # noqa: BLE001 - parse errors, unknown dialects, missing drivers
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"--storage {stores.display(url)}: cannot open storage ({first})"
        ) from None


# ---------------------------------------------------------------- the extremes of a space


def candidates(space: SearchSpace) -> dict[str, list[Any]]:
    """For each shape param, the values that can be its extreme."""
    out = {}
    for p in space.params:
        if not p.path.startswith(SHAPE_PREFIXES):
            continue
        if p.kind == "categorical" or (space.sampler == "grid" and p.grid):
            values = list(p.grid or p.choices)
        else:
            values = [p.low, p.high]
        out[p.name] = values
    return out


def extreme(
    space: SearchSpace, score: Callable[[RunConfig], float], largest: bool = True
) -> tuple[RunConfig, dict[str, Any]]:
    """The point of the space that (coordinate by coordinate) maximises `score`, or minimises
    it; returns its config and the param values that make it."""
    options = candidates(space)
    chosen: dict[str, Any] = {}
    sign = 1 if largest else -1
    for _ in range(2):  # a second pass settles params that interact (batch and seq_len)
        for name, values in options.items():
            best, best_score = None, -math.inf
            for value in values:
                try:
                    value_score = sign * score(space.apply({**chosen, name: value}))
                except ConfigError:  # an invalid combination is no extreme
                    continue
                if value_score > best_score:
                    best, best_score = value, value_score
            if best is not None:
                chosen[name] = best
    return space.apply(chosen), chosen


def _where(point: dict[str, Any], fallback: str) -> str:
    if not point:
        return fallback
    return "params at " + ", ".join(f"{k}={v}" for k, v in point.items())


# ---------------------------------------------------------------- checks


def check_space(space: SearchSpace, vocab_size: int | None = None) -> list[str]:
    """Budget and memory at the space's extremes. Raises ConfigError for a point that can
    never run; returns warnings (the largest point may not fit in memory here)."""
    from tuner.train import plan_budget  # torch, but no model code

    vocab = vocab_size or memory.vocab_guess(space.base)

    def steps(config: RunConfig) -> float:
        return _steps(config, vocab)

    config, point = extreme(space, steps, largest=False)
    try:
        plan_budget(config, _flops_per_token(config, vocab))
    except ConfigError as err:
        raise ConfigError(f"{_where(point, 'base')}: {err}") from None
    return memory_warnings(space, vocab)


def memory_warnings(space: SearchSpace, vocab: int) -> list[str]:
    """A line when the largest point of the space may not fit in this machine's memory."""
    device = _device_type(space.base)
    have = memory.available(device)
    if have is None:
        return []

    def total(config: RunConfig) -> float:
        return memory.estimate(config, vocab, device).total

    config, point = extreme(space, total)
    need = memory.estimate(config, vocab, device)
    if need.total <= memory.SAFETY * have:
        return []
    smallest, small_point = extreme(space, total, largest=False)
    small = memory.estimate(smallest, vocab, device).total
    share = EVERY_TRIAL if small > memory.SAFETY * have else "the trials near it"
    return [
        f"the largest point ({_where(point, 'base config')}) needs an estimated "
        f"{need.describe()}; {si(have)}B available on {device} here: {share} would fail "
        "with 'out of memory' before allocating"
    ]


def check_data(space: SearchSpace, train_tokens: int, val_tokens: int) -> None:
    """The longest sequence of the space must fit the training split, and validation must
    hold at least one target."""
    config, point = extreme(space, lambda c: c.train.seq_len)
    seq_len = config.train.seq_len
    if train_tokens <= seq_len + 1:
        where = f"params.{_seq_name(space)}" if point else "train.seq_len"
        raise ConfigError(
            f"{where}: {seq_len} is longer than the training split ({train_tokens} tokens); "
            "use a shorter seq_len or more data"
        )
    if val_tokens < 2:
        raise ConfigError(
            f"data: the validation split has {val_tokens} tokens; "
            "use more data (data.max_chars) or a larger data.val_fraction"
        )


def _seq_name(space: SearchSpace) -> str:
    return next((p.name for p in space.params if p.path == "train.seq_len"), "seq_len")


def preflight(space: SearchSpace, run_here: bool = True) -> list[str]:
    """Every check before `create` writes anything: the space's extremes, then the data
    (loaded, or built into the token cache, now: it is needed anyway). Raises ConfigError;
    returns warnings. With `run_here`, a space whose smallest point cannot fit in this
    machine's memory is an error, not a warning."""
    from tuner.data import load_token_data

    data = load_token_data(space.base.data, space.base.tokenizer)
    check_data(space, len(data.train), len(data.val))
    warnings = check_space(space, data.vocab_size)
    if run_here and any(EVERY_TRIAL in line for line in warnings):
        raise ConfigError(f"memory: {warnings[0]}")
    return warnings


# ---------------------------------------------------------------- arithmetic


def _steps(config: RunConfig, vocab: int) -> float:
    tc = config.train
    budget = tc.flops / _flops_per_token(config, vocab) if tc.flops > 0 else tc.tokens
    return budget / (tc.batch_size * tc.seq_len)


def _flops_per_token(config: RunConfig, vocab: int) -> float:
    from tuner.models import flops_per_token

    shape = memory.shape_of(config)
    embedding = vocab * shape.d_model
    if config.model.arch == "gpt2":
        embedding += config.train.seq_len * shape.d_model
    non_embedding = memory.param_count(config, vocab) - embedding
    return flops_per_token(non_embedding, vocab, config.model, config.train.seq_len)


def _device_type(config: RunConfig) -> str:
    from tuner.device import resolve_device

    try:
        return resolve_device(config.train.device).type
    except RuntimeError:
        return "cpu"
