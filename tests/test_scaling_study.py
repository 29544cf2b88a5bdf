"""`tuner scaling`: a tiny IsoFLOP study end to end through the CLI (the ordinary study
commands included), its fit, recommendation, recipe and dashboard; bad input as one line,
exit 2, nothing written; spaces of fixed points."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import TINY_BASE
from tests.helpers import cli
from tuner import stores
from tuner.config import RunConfig, from_dict
from tuner.errors import ConfigError
from tuner.space import parse_space
from tuner.train import plan_budget

# Micro budgets: char tokenizer (vocabulary ~70, so the embedding does not swamp N), heads of
# 8, aspect ratio 16: one- and two-layer models of 3k to 40k parameters, ~200k tokens in all.
BASE = TINY_BASE | {
    "tokenizer": {"kind": "char"},
    "model": {"arch": "gpt2", "size": "custom", "n_layer": 1, "d_model": 32, "n_head": 4},
    "optim": {"lr": 0.003},
    "train": TINY_BASE["train"] | {"milestones": 1, "eval_tokens": 2048},
}
CREATE = ("--budgets", "1e9,3e9", "--sizes", "3", "--spread", "3", "--aspect-ratio", "16")
CENTRE = ("--tokens-per-param", "2")


def write_space(path: Path) -> Path:
    params = {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}  # ignored: fixed points
    path.write_text(yaml.safe_dump({"name": "micro", "base": BASE, "params": params}))
    return path


def studies() -> list[str]:
    db = stores.home() / "optuna.db"
    if not db.exists():
        return []
    return [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")]


def load(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=stores.default_storage())


def parent_run(name: str):
    from mlflow import MlflowClient

    from tuner.records import StudyRecord

    record = StudyRecord.of(load(name))
    client = MlflowClient(stores.default_tracking_uri())
    return client, client.get_run(record.parent_run_id)


def test_isoflop_study_end_to_end(tmp_path):
    space = write_space(tmp_path / "space.yaml")
    dry = cli("scaling", "create", "iso", "--space", str(space), *CREATE, *CENTRE, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "IsoFLOP plan (6 trials)" in dry.output and studies() == []

    made = cli("scaling", "create", "iso", "--space", str(space), *CREATE, *CENTRE, "--no-run")
    assert made.exit_code == 0, made.output
    study = load("iso")
    assert [t.state.name for t in study.get_trials()] == ["WAITING"] * 6

    # five trials through the ordinary resume: approach 2 then lacks one size at 3e9
    assert cli("study", "resume", "iso", "--n-trials", "5").exit_code == 0
    short = cli("scaling", "fit", "iso", "-o", "short.json")
    assert short.exit_code == 2 and not Path("short.json").exists()
    line = short.stderr.strip()
    assert "\n" not in line and "5 of 6 trials complete" in line
    assert "3e+09 FLOPs has 2 (1 more needed)" in line

    # a worker drains the last queued point; the study is an ordinary one underneath
    assert cli("study", "worker", "iso").exit_code == 0
    shown = cli("study", "show", "iso")
    assert shown.exit_code == 0 and "point" in shown.output and shown.output.count("COMPLETE") == 6
    trials = load("iso").get_trials()
    plan = load("iso").user_attrs["scaling"]["points"]
    for trial in trials:
        config = from_dict(RunConfig, trial.user_attrs["config"])
        planned = plan[trial.params["point"]]
        cost = trial.user_attrs["cost"]
        # the config carries its nominal budget; the schedule ends at the planned tokens
        assert config.train.flops == planned["budget"]
        assert cost["tokens_seen"] == cost["budget_tokens"] == planned["tokens"]
        assert cost["n_params_non_embedding"] == planned["params"]
        assert cost["train_flops"] <= planned["budget"]
        assert plan_budget(config, cost["flops_per_token"]).tokens == planned["tokens"]
    best = {b: min(t.value for t in trials if t.user_attrs["config"]["train"]["flops"] == b)
            for b in (1e9, 3e9)}  # fmt: skip
    assert best[3e9] < best[1e9]  # three times the compute buys a lower loss

    fitted = cli("scaling", "fit", "iso", "--bootstrap", "30", "--json", "-o", "fit.json")
    assert fitted.exit_code == 0, fitted.output
    document = json.loads(fitted.stdout)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert isinstance(document[name], float) and math.isfinite(document[name])
    assert document["n_points"] == 6 and document["approach2"] is not None
    assert document["compute"]["convention"] == "tuner"
    assert document["source"]["study"] == "iso" and document["source"]["learning_rate"] == 0.003
    assert json.loads(Path("fit.json").read_text())["alpha"] == document["alpha"]
    assert document["residuals"]["log_rmse"] < 0.1  # the law fits the six runs within 10 %
    client, run = parent_run("iso")
    assert run.data.metrics["scaling.alpha"] == pytest.approx(document["alpha"])
    assert run.data.params["scaling.budgets"] == "1e+09,3e+09"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "scaling")}
    assert {"scaling/fit.json", "scaling/plan.json"} <= artifacts
    dashboards = {a.path for a in client.list_artifacts(run.info.run_id, "dashboards")}
    assert "dashboards/iso-scaling.html" in dashboards
    page = Path("dashboards/iso-scaling.html").read_text()
    for section in ("isoflop", "optimal", "frontier", "residuals"):
        assert f'id="fig-{section}"' in page
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js inlined

    # beyond the fitted compute: an answer, and one warning line naming the range
    rec = cli("scaling", "recommend", "iso", "--flops", "4e9", "--bootstrap", "30", "--json",
              "-o", "recipe.yaml")  # fmt: skip
    assert rec.exit_code == 0, rec.output
    answer = json.loads(rec.stdout)
    assert answer["params"] > 0 and answer["tokens"] > 0 and 0 < answer["loss"] < 10
    warning = [line for line in rec.stderr.splitlines() if line.startswith("warning")]
    assert len(warning) == 1 and "outside the fitted range 1e+09 to 3e+09" in warning[0]
    from_file = cli("scaling", "recommend", "--fit", "fit.json", "--flops", "4e9", "--json")
    assert json.loads(from_file.stdout)["params"] == pytest.approx(answer["params"], rel=0.05)

    recipe = yaml.safe_load(Path("recipe.yaml").read_text())
    predicted = recipe["provenance"]["prediction"]
    assert recipe["train"]["flops"] == 4e9 and recipe["model"]["size"] == "custom"
    trained = cli("train", "recipe.yaml", "--out", "final")
    assert trained.exit_code == 0, trained.output
    metrics = json.loads(Path("final/metrics.json").read_text())
    assert metrics["cost"]["tokens_seen"] == predicted["tokens"]
    assert metrics["cost"]["n_params_non_embedding"] == predicted["params"]
    achieved = metrics["val"]["val_loss"]
    error = 100 * (achieved / predicted["val_loss"] - 1)
    assert f"{achieved:.4f} achieved ({error:+.2f} %)" in trained.output
    assert f"val loss {predicted['val_loss']:.4f}" in trained.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--budgets", "1e9"), r"approach 2 needs 2 distinct budgets, got 1 (1 more needed)"),
        (("--budgets", "1e9,3e9", "--sizes", "2"), "needs 3 sizes, got 2 (1 more needed)"),
        (("--budgets", "1e5,3e9"), "1e+05 FLOPs leaves 0 trainable sizes"),
        (("--budgets", "1e9,x"), "--budgets 'x': expected a positive number"),
        (("--budgets", "1e9,3e9", "--lr-sweep", "0"), "--lr-sweep: must be >= 1"),
        (("--budgets", "1e9,3e9", "--prior", "missing.json"), "--prior missing.json: file not"),
        (("--budgets", "1e9,3e9", "--set", "model.arch=lstm"), "IsoFLOP studies need gpt2"),
    ],
)
def test_create_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    space = write_space(tmp_path / "space.yaml")
    result = cli("scaling", "create", "bad", "--space", str(space), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert studies() == [] and not (stores.home() / "mlflow.db").exists()


def csv_rows() -> str:
    """Two IsoFLOP budgets of five sizes around the optimum of a Chinchilla-like law."""
    import numpy as np

    from tuner.scaling import chinchilla_optimum
    from tuner.scaling.law import predict

    law = np.array([1.7, 400.0, 410.0, 0.34, 0.28])
    lines = ["n,flops,loss"]
    for c in (1e18, 1e19):
        for n in chinchilla_optimum(law, c)[0][0] * np.array([0.25, 0.5, 1, 2, 4]):
            lines.append(f"{n:.6g},{c:g},{float(predict(law, n, c / (6 * n))):.5f}")
    return "\n".join(lines) + "\n"


CSV_OK = csv_rows()
FIRST_N = CSV_OK.splitlines()[1].split(",")[0]


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        (CSV_OK, ("--loss-column", "val"), "--loss-column 'val' is not a column"),
        (CSV_OK.replace(FIRST_N, "abc", 1), (), "line 2, column 'n': 'abc' is not a number"),
        (CSV_OK.replace(",1e+18,", ",-1e+18,", 1), (), "'-1e+18' must be a finite number > 0"),
        ("n,flops,loss\n1e5,1e15,3\n1e6,1e15,2.5\n", (), "2 data rows; the fit needs at least 5"),
    ],
)
def test_csv_fit_bad_input(tmp_path, text, flags, message):
    path = tmp_path / "runs.csv"
    path.write_text(text)
    args = ["scaling", "fit", "--csv", str(path), "--params-column", "n"]
    args += ["--flops-column", "flops", "--loss-column", "loss", *flags, "-o", "fit.json"]
    result = cli(*args)
    assert result.exit_code == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1 and not Path("fit.json").exists()


def test_csv_fit_and_recommend(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(CSV_OK)
    base = ["--csv", str(path), "--params-column", "n", "--flops-column", "flops"]
    base += ["--loss-column", "loss", "--bootstrap", "20"]
    fitted = cli("scaling", "fit", *base, "--json")
    assert fitted.exit_code == 0, fitted.output
    document = json.loads(fitted.stdout)
    assert document["n_points"] == 10 and document["compute"]["convention"] == "6N"
    assert abs(document["alpha"] - 0.34) < 0.01 and abs(document["beta"] - 0.28) < 0.01
    assert abs(document["approach2"]["a"] - 0.28 / 0.62) < 0.02  # two budgets of five sizes
    rec = cli("scaling", "recommend", *base, "--flops", "3e18", "--json")
    assert rec.exit_code == 0 and json.loads(rec.stdout)["tokens"] > 0
    no_recipe = cli("scaling", "recommend", *base, "--flops", "3e18", "-o", "r.yaml")
    assert no_recipe.exit_code == 2 and "a recipe needs a study" in no_recipe.stderr
    assert not Path("r.yaml").exists()
    two = cli("scaling", "recommend", "iso", *base, "--flops", "3e18")
    assert two.exit_code == 2 and "give one source of runs" in two.stderr
    stray = cli("scaling", "fit", "iso", "--params-column", "n")
    assert stray.exit_code == 2 and "--params-column: only with --csv" in stray.stderr


def test_fit_of_an_ordinary_or_unrun_study(tmp_path):
    space = write_space(tmp_path / "space.yaml")
    assert cli("scaling", "create", "iso", "--space", str(space), *CREATE, *CENTRE,
               "--no-run").exit_code == 0  # fmt: skip
    empty = cli("scaling", "fit", "iso")
    assert empty.exit_code == 2 and "0 of 6 trials complete" in empty.stderr
    assert "tuner study resume iso" in empty.stderr
    ordinary = tmp_path / "ordinary.yaml"
    ordinary.write_text(yaml.safe_dump({"name": "o", "base": TINY_BASE, "n_trials": 1}))
    assert cli("study", "create", "plain", "--space", str(ordinary), "--no-run").exit_code == 0
    result = cli("scaling", "fit", "plain")
    assert result.exit_code == 2 and "is not a scaling study" in result.stderr


def test_space_of_fixed_points():
    base = {"model": {"arch": "gpt2", "size": "nano"}}
    points = [{"model.size": "micro", "optim.lr": 0.01}, {"train.tokens": 4096}]
    space = parse_space({"name": "p", "base": base, "points": points})
    assert space.sampler == "grid" and space.n_trials == 2 and space.pruner == "none"
    assert [p.name for p in space.params] == ["point"]
    first = space.apply({"point": 0})
    assert first.model.size == "micro" and first.optim.lr == 0.01
    assert space.apply({"point": 1}).train.tokens == 4096
    again = parse_space(space.raw)  # the stored space reloads with its points
    assert again.points == space.points
    custom = [{"model.size": "custom", "model.n_layer": 1, "model.d_model": 32}]
    assert parse_space({"base": base, "points": custom}).apply({"point": 0}).model.n_layer == 1
    with pytest.raises(ConfigError, match=r"points\[1\] model.dropout=2: "):
        parse_space({"base": base, "points": [{"optim.lr": 0.1}, {"model.dropout": 2}]})
    with pytest.raises(ConfigError, match="takes no params"):
        parse_space({"base": base, "points": points, "params": {"lr": {"low": 0.1, "high": 1}}})
    with pytest.raises(ConfigError, match="takes no params and runs on grid"):
        parse_space({"base": base, "points": points, "sampler": "tpe"})
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_space({"base": base, "points": []})
