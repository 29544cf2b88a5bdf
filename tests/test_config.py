"""RunConfig: YAML in/out, type checks, dotted-path overrides."""

from __future__ import annotations

import pytest

from tuner.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    from_dict,
    load_run_config,
    parse_overrides,
)


def test_round_trip_through_yaml(tmp_path):
    config = from_dict(
        RunConfig,
        {
            "model": {"arch": "llama", "size": "micro", "dropout": 0.1},
            "data": {"paths": ["a.txt"], "source": "files"},
            "seed": 7,
        },
    )
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml() + "provenance: {study: s}\n")
    assert load_run_config(path) == config
    assert config.flat()["model.dropout"] == 0.1
    assert config.flat()["cost.price_per_hour"]["cpu"] == 0.10


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"nope": 1}}, "model.nope: unknown key"),
        ({"train": {"batch_size": "big"}}, "train.batch_size: expected an integer"),
        ({"train": {"batch_size": 0}}, "train.batch_size: must be > 0"),
        ({"model": {"arch": "rnn"}}, "model.arch: 'rnn' is not one of"),
        ({"model": {"size": "huge"}}, "model.size: unknown preset 'huge'"),
        ({"optim": {"lr": -1}}, "optim.lr: must be > 0"),
        ({"data": {"source": "files"}}, "data.paths: required"),
    ],
)
def test_bad_values_name_their_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        from_dict(RunConfig, data)


def test_overrides_are_type_checked():
    config = apply_overrides(
        RunConfig(), parse_overrides(["train.tokens=5000", "model.dropout=0.2", "model.arch=lstm"])
    )
    assert (config.train.tokens, config.model.dropout, config.model.arch) == (5000, 0.2, "lstm")
    with pytest.raises(ConfigError, match="--set train.nope=1: train.nope: unknown config key"):
        apply_overrides(RunConfig(), parse_overrides(["train.nope=1"]))
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(RunConfig(), parse_overrides(["train.tokens=lots"]))
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["train.tokens"])


def test_int_accepted_for_float_but_not_bool():
    assert from_dict(RunConfig, {"optim": {"lr": 1}}).optim.lr == 1.0
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(RunConfig, {"optim": {"lr": True}})


def test_overrides_that_belong_together_work_in_any_order():
    items = ["data.source=files", "data.paths=[notes.txt]"]
    for order in (items, items[::-1]):
        config = apply_overrides(RunConfig(), parse_overrides(order))
        assert config.data.source == "files" and config.data.paths == ("notes.txt",)
    with pytest.raises(ConfigError, match="--set data.source=files: data.paths: required"):
        apply_overrides(RunConfig(), parse_overrides(["data.source=files"]))
