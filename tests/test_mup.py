"""μP: coordinate check, learning-rate groups, attention scale, width transfer, validation, and
SP unchanged. Tiny models on CPU."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml

from tests.conftest import TINY_BASE
from tuner import train as train_module
from tuner.config import ConfigError, ModelConfig, RunConfig, from_dict
from tuner.coord_check import CoordCheck, coord_check, figure, parse_widths, table
from tuner.models import build_model, logits
from tuner.mup import SharedReadout, hidden_matrices, to_standard
from tuner.train import get_lr, make_optimizer, train_run
from tuner.width import at_width, non_embedding_params

ARCHS = ("gpt2", "llama")


def mup_config(arch: str = "gpt2", **model) -> RunConfig:
    """TINY_BASE (nano: d_model 64, 2 heads of 32) under μP."""
    data = copy.deepcopy(TINY_BASE)
    data["model"].update({"arch": arch, "parametrization": "mup", **model})
    return from_dict(RunConfig, data)


def attention_of(model, arch: str):
    return model.transformer.h[0].attn if arch == "gpt2" else model.model.layers[0].self_attn


# ------------------------------------------------------------------ coordinate check


@pytest.mark.parametrize("arch", ARCHS)
def test_coord_check_logits_flat_under_mup_and_growing_under_sp(arch, tiny_data):
    config = mup_config(arch)
    check = coord_check(
        config, widths=(64, 128, 256, 512), steps=3, seeds=(0,), lr=3e-3, data=tiny_data
    )
    growth = check.growth("logits")
    assert 0.5 <= growth["mup"] <= 2.0, growth
    assert growth["sp"] > 2.0, growth
    # the hidden layers tell the same story, more strongly
    blocks = check.growth("block 1")
    assert 0.5 <= blocks["mup"] <= 2.0 and blocks["sp"] > 4.0, blocks
    text = table(check)
    assert "logits" in text and "512/64" in text
    fig = figure(check)
    assert len(fig.data) == 2 * (check.steps + 1) * len(check.layers)
    assert check.layers[0] == "embedding" and check.layers[-1] == "logits"
    assert CoordCheck.from_dict(json.loads(json.dumps(check.to_dict()))) == check


def test_parse_widths():
    assert parse_widths("256,64, 128") == (64, 128, 256)
    for bad in ("64", "64,x", "0,64", ""):
        with pytest.raises(ConfigError, match="--widths"):
            parse_widths(bad)


def test_coord_check_rejects_recurrent_models(tiny_config):
    with pytest.raises(ConfigError, match="model.arch"):
        coord_check(tiny_config.replace("model.arch", "lstm"), widths=(64,), steps=1)


# ------------------------------------------------------------------ rules


def test_param_groups_carry_scaled_learning_rates(monkeypatch, tiny_data):
    config = at_width(mup_config(), width=256).config  # base 64: width_mult 4
    assert config.model.base_width == 64
    torch.manual_seed(0)
    model = build_model(config.model, tiny_data.vocab_size, config.train.seq_len)
    optimizer = make_optimizer(model, config)
    hidden, other = optimizer.param_groups
    lr, wd = config.optim.lr, config.optim.weight_decay
    assert hidden["lr_scale"] == 0.25 and hidden["lr"] == pytest.approx(lr / 4)
    assert hidden["weight_decay"] == pytest.approx(wd * 4)
    assert other["lr_scale"] == 1.0 and other["weight_decay"] == 0.0
    # hidden = the four Conv1D weights of each block; the tied embedding is not among them
    assert len(hidden["params"]) == 4 * config.model.n_layer
    assert {id(p) for p in hidden["params"]} == {id(m.weight) for m in hidden_matrices(model)}
    assert any(p is model.get_input_embeddings().weight for p in other["params"])

    # the training loop multiplies the scale into the scheduled lr at every step
    seen = []
    monkeypatch.setattr(
        train_module, "make_optimizer", lambda m, c: seen.append(make_optimizer(m, c)) or seen[0]
    )
    result = train_run(config, tiny_data)
    steps = result.cost["steps"]
    last = get_lr(steps - 1, steps, lr, config.schedule)
    assert [g["lr"] for g in seen[0].param_groups] == [last * 0.25, last]


def test_init_std_scales_as_one_over_sqrt_fan_in_and_embeddings_stay(tiny_data):
    """Hidden weights: std 0.02 (c_proj 0.02/sqrt(2·n_layer)) at the base width, x 1/sqrt(4) at
    4x the width, i.e. variance ∝ 1/fan_in; embeddings keep 0.02 at every width."""
    sp = at_width(mup_config().replace("model.parametrization", "sp"), width=256).config
    mu = at_width(mup_config(), width=256).config
    torch.manual_seed(0)
    sp_model = build_model(sp.model, tiny_data.vocab_size, 32)
    torch.manual_seed(0)
    mu_model = build_model(mu.model, tiny_data.vocab_size, 32)
    block = mu_model.transformer.h[0]
    assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(0.01 / 2, rel=0.02)
    assert torch.equal(block.attn.c_attn.weight, sp_model.transformer.h[0].attn.c_attn.weight / 2)
    assert torch.equal(mu_model.transformer.wte.weight, sp_model.transformer.wte.weight)
    readout = mu_model.get_output_embeddings()
    assert isinstance(readout, SharedReadout) and readout.mult == 0.25
    assert readout.weight is mu_model.transformer.wte.weight  # still tied, embedding unscaled


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_attention_scale_is_one_over_head_dim(arch, implementation):
    config = mup_config(arch, size="custom", n_layer=1, d_model=128, n_head=4, base_width=32)
    torch.manual_seed(0)
    model = build_model(config.model, 50, 16).eval()
    model.set_attn_implementation(implementation)
    attention = attention_of(model, arch)
    assert attention.scaling == 1 / 32
    x = torch.randn(2, 16, 128)
    causal = torch.full((16, 16), float("-inf")).triu(1)[None, None]  # (1, 1, T, T)
    with torch.no_grad():
        if arch == "gpt2":
            out, _ = attention(x, attention_mask=causal)
            q, k, v = attention.c_attn(x).split(128, dim=2)
        else:
            positions = torch.arange(16)[None]
            cos_sin = model.model.rotary_emb(x, positions)
            out, _ = attention(x, position_embeddings=cos_sin, attention_mask=causal)
            q, k, v = attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
        q, k, v = (t.view(2, 16, 4, 32).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        if arch == "llama":
            from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

            q, k = apply_rotary_pos_emb(q, k, *cos_sin)
        weights = torch.softmax(q @ k.transpose(-1, -2) / 32 + causal, dim=-1)
        manual = (weights @ v).transpose(1, 2).reshape(2, 16, 128)
        manual = attention.c_proj(manual) if arch == "gpt2" else attention.o_proj(manual)
    torch.testing.assert_close(out, manual, atol=1e-5, rtol=1e-5)
    extra = {} if arch == "gpt2" else {"position_embeddings": cos_sin}
    attention.scaling = 32**-0.5  # and SP's 1/sqrt(d_head) gives something else
    with torch.no_grad():
        standard, _ = attention(x, attention_mask=causal, **extra)
    assert (standard - out).abs().max() > 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_mup_at_its_base_width_is_sp_but_for_the_attention_scale(arch):
    """At width == base width every multiplier is 1 and the init is SP's; what remains is the
    attention temperature (1/d_head instead of 1/sqrt(d_head)), documented in tuner/mup.py."""
    ids = torch.randint(512, (2, 32))
    models = {}
    for parametrization in ("sp", "mup"):
        config = mup_config(arch, parametrization=parametrization, base_width=64)
        torch.manual_seed(0)
        models[parametrization] = build_model(config.model, 512, 32).eval()
    sp, mu = models["sp"], models["mup"]
    for (name, a), b in zip(sp.state_dict().items(), mu.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert not torch.equal(logits(sp, ids), logits(mu, ids))
        for layer in sp.transformer.h if arch == "gpt2" else sp.model.layers:
            (layer.attn if arch == "gpt2" else layer.self_attn).scaling = 1 / 32
        assert torch.equal(logits(sp, ids), logits(mu, ids))


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_mup_model_is_plain_transformers_with_the_same_outputs(arch, tiny_data, tmp_path):
    from tuner.saved import load_saved, save_model_dir

    config = at_width(mup_config(arch), width=128).config
    torch.manual_seed(0)
    model = build_model(config.model, tiny_data.vocab_size, config.train.seq_len).eval()
    ids = torch.randint(tiny_data.vocab_size, (2, 32))
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(50)  # logits big enough to compare
        expected = logits(model, ids)
        folded = logits(to_standard(copy.deepcopy(model)), ids)
    torch.testing.assert_close(folded, expected, atol=1e-5, rtol=1e-5)
    save_model_dir(tmp_path / "m", model, tiny_data.tokenizer_path, config, {}, {})
    loaded = load_saved(tmp_path / "m").model
    assert type(loaded.get_output_embeddings()) is torch.nn.Linear
    assert isinstance(model.get_output_embeddings(), SharedReadout)  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(logits(loaded, ids), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ config and transfer


@pytest.mark.parametrize(
    ("model", "extra", "key"),
    [
        ({"arch": "lstm", "parametrization": "mup"}, {}, "model.parametrization"),
        ({"arch": "gru", "parametrization": "mup"}, {}, "model.parametrization"),
        ({"parametrization": "mu"}, {}, "model.parametrization"),
        ({"parametrization": "mup", "base_width": 48}, {}, "model.base_width"),
        ({"base_width": -64}, {}, "model.base_width"),
        ({"parametrization": "mup"}, {"optim": {"name": "sgd"}}, "optim.name"),
    ],
)
def test_bad_parametrization_names_its_key(model, extra, key):
    data = copy.deepcopy(TINY_BASE)
    data["model"].update(model)
    data.update(extra)
    with pytest.raises(ConfigError) as err:
        from_dict(RunConfig, data)
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


def test_at_width_rejects_bad_widths():
    config = mup_config()
    for kwargs in ({"width": 80}, {"width": 0}, {}, {"width": 128, "params": 10**6}):
        with pytest.raises(ConfigError, match="width"):
            at_width(config, **kwargs)
    with pytest.raises(ConfigError, match="params"):
        at_width(config, params=-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_at_width_round_trips_through_yaml_and_training(arch, tiny_data):
    config = mup_config(arch)
    moved = at_width(config, width=256)
    assert moved.warning == ""
    mc = moved.config.model
    assert (mc.d_model, mc.n_head, mc.d_ff, mc.n_layer) == (256, 8, 1024, 2)  # head dim 32
    assert (mc.parametrization, mc.base_width) == ("mup", 64)
    reloaded = from_dict(RunConfig, yaml.safe_load(moved.config.to_yaml()))
    assert reloaded == moved.config
    assert at_width(reloaded, width=64).config.model.base_width == 64  # kept, not reset
    model = build_model(reloaded.model, tiny_data.vocab_size, 32)
    assert model.get_output_embeddings().mult == 0.25  # the rules follow the config
    assert make_optimizer(model, reloaded).param_groups[0]["lr_scale"] == 0.25


def test_at_width_by_params_and_sp_warning():
    sp = mup_config().replace("model.parametrization", "sp")
    moved = at_width(sp, params=1_500_000)
    assert "will not transfer" in moved.warning and moved.config.model.base_width == 0
    width = moved.config.model.d_model
    count = non_embedding_params(moved.config)
    assert width % 32 == 0 and 1_000_000 < count < 2_200_000
    for neighbour in (width - 32, width + 32):  # no multiple of the head dim is closer
        other = non_embedding_params(at_width(sp, width=neighbour).config)
        assert abs(torch.tensor(other / 1.5e6).log()) >= abs(torch.tensor(count / 1.5e6).log())


# ------------------------------------------------------------------ SP unchanged

# val_loss of TINY_BASE (seed 0) computed on the code without μP (torch 2.13 CPU, transformers
# 5.24; before μP was written and again on main when it was merged in): the default
# parametrization must reproduce it exactly. REFERENCE_BASE is a frozen copy of TINY_BASE as it
# was then, on purpose: a later change to TINY_BASE must not move the reference.
SP_REFERENCE = {"gpt2": 5.598862171173096, "llama": 5.656877040863037}
REFERENCE_BASE = {
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
        "tokens": 8192,
        "milestones": 2,
        "eval_tokens": 1024,
        "eval_batch_size": 32,
    },
}


@pytest.mark.parametrize("arch", ARCHS)
def test_sp_default_is_unchanged_bit_for_bit(arch):
    config = from_dict(RunConfig, REFERENCE_BASE).replace("model.arch", arch)
    assert config.model.parametrization == "sp" and config.model.base_width == 0
    result = train_run(config)
    assert result.metrics["val_loss"] == SP_REFERENCE[arch]
    assert not isinstance(result.model.get_output_embeddings(), SharedReadout)


def test_model_config_defaults():
    assert ModelConfig().parametrization == "sp" and ModelConfig().base_width == 0
