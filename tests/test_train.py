"""The trainer: real learning for every architecture, exact metrics, fair budgets, and
failure as data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from tuner.config import ConfigError
from tuner.evaluate import evaluate
from tuner.models import build_model, count_params, flops_per_token
from tuner.train import get_lr, plan_budget, train_run


@pytest.mark.parametrize("arch", ["gpt2", "llama", "lstm", "gru"])
def test_loss_falls_for_every_architecture(tiny_config, tiny_data, arch):
    config = (
        tiny_config.replace("model.arch", arch)
        .replace("train.tokens", 160 * 256)
        .replace("train.milestones", 4)
        .replace("optim.lr", 0.01)
    )
    result = train_run(config, tiny_data)
    assert result.status == "complete" and result.cost["steps"] == 160
    losses = [m.metrics["val_loss"] for m in result.history]
    assert len(losses) == 4
    assert losses[-1] < losses[0] - 0.1, losses
    assert losses[-1] < math.log(tiny_data.vocab_size) - 0.8  # far better than uniform
    m = result.metrics
    assert m["val_perplexity"] == pytest.approx(math.exp(m["val_loss"]))
    assert 0 < m["val_accuracy"] < 1 and m["train_loss"] > 0


def test_bits_per_byte_by_hand(tiny_data):
    """A model with uniform predictions scores ln(V) nats per token; bpb divides by real bytes."""

    class Uniform(torch.nn.Module):
        def forward(self, input_ids):
            return torch.zeros(*input_ids.shape, tiny_data.vocab_size)

    n = 500
    metrics = evaluate(
        Uniform(), tiny_data.val, tiny_data.token_bytes, 64, n, 4, torch.device("cpu")
    )
    text = Tokenizer.from_file(str(tiny_data.tokenizer_path)).decode(
        tiny_data.val[1 : n + 1].tolist()
    )
    n_bytes = len(text.encode("utf-8"))
    assert metrics["val_loss"] == pytest.approx(math.log(tiny_data.vocab_size))
    assert metrics["val_bpb"] == pytest.approx(n * math.log2(tiny_data.vocab_size) / n_bytes)
    assert metrics["val_perplexity"] == pytest.approx(tiny_data.vocab_size)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_validation_loss_equals_the_transformers_loss(tiny_config, tiny_data, arch):
    torch.manual_seed(0)
    model = build_model(
        tiny_config.replace("model.arch", arch).model, tiny_data.vocab_size, 32
    ).eval()
    ids = torch.from_numpy(np.asarray(tiny_data.val[:32]).astype(np.int64))[None]
    with torch.no_grad():
        hf_loss = model(input_ids=ids, labels=ids).loss.item()  # 31 shifted targets
    ours = evaluate(model, tiny_data.val, tiny_data.token_bytes, 31, 31, 8, torch.device("cpu"))
    assert ours["val_loss"] == pytest.approx(hf_loss, rel=1e-5)


def test_equal_token_budgets_and_aligned_milestones(tiny_config):
    plans = []
    for batch, seq in ((8, 32), (4, 64), (16, 16), (2, 128)):
        config = (
            tiny_config.replace("train.batch_size", batch)
            .replace("train.seq_len", seq)
            .replace("train.tokens", 65536)
            .replace("train.milestones", 4)
        )
        plans.append(plan_budget(config, 1.0))
    assert {p.tokens for p in plans} == {65536}
    assert {len(p.milestone_steps) for p in plans} == {4}
    for p in plans:  # milestone k lands at k+1 quarters of the budget, in every trial
        assert [s * p.tokens_per_step for s in p.milestone_steps] == [16384, 32768, 49152, 65536]


def test_flops_budget_converts_to_tokens(tiny_config, tiny_data):
    model = build_model(tiny_config.model, tiny_data.vocab_size, 32)
    fpt = flops_per_token(count_params(model)[1], tiny_data.vocab_size, tiny_config.model, 32)
    config = tiny_config.replace("train.flops", fpt * 4096)
    assert plan_budget(config, fpt).tokens == 4096


def test_schedule_warms_up_then_decays_to_floor(tiny_config):
    sched = tiny_config.schedule.__class__(kind="cosine", warmup_fraction=0.1, min_lr_ratio=0.1)
    lrs = [get_lr(s, 100, 1.0, sched) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_huge_learning_rate_ends_as_diverged(tiny_config, tiny_data):
    config = (
        tiny_config.replace("optim.lr", 50.0)
        .replace("optim.grad_clip", 0.0)
        .replace("schedule.warmup_fraction", 0.0)
        .replace("optim.name", "sgd")
    )
    result = train_run(config, tiny_data)
    assert result.status == "diverged" and result.reason.startswith("diverged")
    assert result.cost["tokens_seen"] < result.cost["budget_tokens"]


def test_same_seed_same_validation_loss(tiny_config, tiny_data):
    config = tiny_config.replace("model.dropout", 0.1)
    a, b = train_run(config, tiny_data), train_run(config, tiny_data)
    c = train_run(config.replace("seed", 1), tiny_data)
    assert a.metrics["val_loss"] == b.metrics["val_loss"]
    assert c.metrics["val_loss"] != a.metrics["val_loss"]


def test_micro_batches_accumulate_to_the_same_step(tiny_config, tiny_data):
    whole = train_run(tiny_config, tiny_data)
    split = train_run(tiny_config.replace("train.micro_batch_size", 2), tiny_data)
    assert split.metrics["val_loss"] == pytest.approx(whole.metrics["val_loss"], rel=1e-3)


def test_cost_figures(tiny_config, tiny_data):
    result = train_run(tiny_config, tiny_data)
    cost = result.cost
    assert cost["n_params"] > cost["n_params_non_embedding"] > 0
    assert cost["train_flops"] == pytest.approx(cost["flops_per_token"] * cost["tokens_seen"])
    assert cost["tokens_seen"] == 8192 and cost["device"] == "cpu"
    assert cost["wall_seconds"] >= cost["train_seconds"] + cost["eval_seconds"] > 0
    assert cost["price_usd"] == pytest.approx(cost["wall_seconds"] / 3600 * 0.10)
    assert 0 < cost["mfu"] < 1 and cost["peak_memory_bytes"] > 0


def test_seq_len_beyond_the_model_range(tiny_config, tiny_data):
    model = build_model(tiny_config.model, tiny_data.vocab_size, 32)
    with pytest.raises(ConfigError, match="train.seq_len: 64 is beyond the model's range of 32"):
        train_run(tiny_config.replace("train.seq_len", 64), tiny_data, init_model=model)


def test_budget_smaller_than_milestones(tiny_config, tiny_data):
    with pytest.raises(ConfigError, match="fewer than train.milestones"):
        train_run(tiny_config.replace("train.tokens", 300), tiny_data)


def test_out_of_memory_is_reported_not_raised(tiny_config, tiny_data, monkeypatch):
    import tuner.train

    def no_memory(model, ids):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(tuner.train, "logits", no_memory)
    result = train_run(tiny_config, tiny_data)
    assert result.status == "oom" and "out of memory" in result.reason
    assert result.cost["tokens_seen"] == 0
