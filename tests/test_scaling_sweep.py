"""`tuner scaling create --from best.yaml --lr-sweep K`: the base comes from an exported config,
every (budget, size) is tried at K learning rates, and the fit keeps each size's best run."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
import yaml

from tests.helpers import cli
from tests.test_scaling_study import BASE, CENTRE, CREATE, write_space
from tuner.config import RunConfig, from_dict
from tuner.scaling.study import prepare_scaling_study, recipe_learning_rate, study_runs


def exported(tmp_path):
    """A config as `tuner export` writes it: another learning rate and weight decay than the
    space's base, and a provenance block."""
    config = from_dict(RunConfig, BASE).to_dict()
    config["optim"] |= {"lr": 0.01, "weight_decay": 0.05}
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(config | {"provenance": {"study": "earlier", "trial": 3}}))
    return path


def test_from_an_exported_config_with_a_learning_rate_sweep(tmp_path):
    space = write_space(tmp_path / "space.yaml")
    prepared = prepare_scaling_study(
        space, [1e9, 3e9], sizes=3, spread=3, aspect_ratio=16, tokens_per_param=2,
        from_config=exported(tmp_path), lr_sweep=3, lr_factor=2,
    )  # fmt: skip
    assert prepared.learning_rates == pytest.approx((0.005, 0.01, 0.02))
    assert prepared.space.n_trials == 18 and prepared.space.base.optim.weight_decay == 0.05
    rows = prepared.rows()
    assert [r["lr"] for r in rows[:3]] == pytest.approx([0.005, 0.01, 0.02])
    assert len({(r["budget"], r["params"]) for r in rows}) == 6  # 2 budgets x 3 sizes
    for i, row in enumerate(rows):  # each point's config: its size, budget and rate
        config = prepared.space.apply({"point": i})
        assert config.optim.lr == pytest.approx(row["lr"]) and config.train.flops == row["budget"]
        assert (config.model.n_layer, config.model.d_model) == (row["n_layer"], row["d_model"])
        assert config.optim.weight_decay == 0.05

    best = str(tmp_path / "best.yaml")
    sweep = ("--from", best, "--lr-sweep", "3", "--lr-factor", "2", "--dry-run")
    dry = cli("scaling", "create", "s", "--space", str(space), *CREATE, *CENTRE, *sweep)
    assert dry.exit_code == 0, dry.output
    assert "IsoFLOP plan (18 trials)" in dry.output and "0.005" in dry.output
    missing = cli("scaling", "create", "s", "--space", str(space), *CREATE, "--from", "no.yaml")
    assert missing.exit_code == 2 and "no.yaml" in missing.stderr
    assert missing.stderr.count("\n") == 1


def finished(number: int, budget: float, params: int, tokens: int, lr: float, loss: float):
    """A complete trial as the objective records it."""
    return optuna.trial.create_trial(
        value=loss,
        params={"point": number},
        distributions={"point": optuna.distributions.IntDistribution(0, 100)},
        user_attrs={
            "config": {"train": {"flops": budget}, "optim": {"lr": lr}},
            "metrics": {"val_loss": loss},
            "cost": {"n_params_non_embedding": params, "tokens_seen": tokens,
                     "budget_tokens": tokens},
        },
    )  # fmt: skip


def test_the_fit_keeps_each_sizes_best_learning_rate():
    study = optuna.create_study()
    study.set_user_attr("scaling", {"points": [], "learning_rates": [0.005, 0.01, 0.02]})
    runs = [  # (budget, params, tokens, lr, loss)
        (1e9, 1000, 5000, 0.005, 3.1), (1e9, 1000, 5000, 0.01, 2.9), (1e9, 1000, 5000, 0.02, 3.0),
        (3e9, 1000, 15000, 0.005, 2.8), (3e9, 1000, 15000, 0.01, 2.7),
        (3e9, 2000, 7500, 0.02, 2.6), (3e9, 2000, 7500, 0.01, 2.65),
    ]  # fmt: skip
    for i, run in enumerate(runs):
        study.add_trial(finished(i, *run))
    cut = finished(9, 3e9, 4000, 3000, 0.01, 1.0)  # a schedule that did not run to its end
    cut.user_attrs["cost"]["tokens_seen"] = 1500
    study.add_trial(cut)
    handle = SimpleNamespace(study=study, name="s")
    kept = study_runs(handle)
    assert [(r.budget, r.params, r.lr, r.loss, r.tried) for r in kept] == [
        (1e9, 1000, 0.01, 2.9, 3),
        (3e9, 1000, 0.01, 2.7, 2),
        (3e9, 2000, 0.02, 2.6, 2),
    ]
    plan = study.user_attrs["scaling"]
    lr, source = recipe_learning_rate(plan, kept)
    assert lr == 0.02 and "trial 5" in source and "3e+09" in source
