"""`tuner study show` and `study list`: a table that fits 80 columns without cutting a state or
a value, footnoted reasons told in full, `--columns`, and csv / json / markdown / plain output;
on a synthetic study and through the CLI on a real micro study."""

from __future__ import annotations

import csv
import io
import json
import re

import optuna
import pytest

from tests.conftest import TINY_BASE
from tests.helpers import cli, write_space
from tuner.errors import ConfigError
from tuner.records import RETRIES, short_state
from tuner.space import parse_space
from tuner.study import StudyHandle
from tuner.tableformat import cells, fit, plain, render_text, terminal
from tuner.tables import study_table, trial_table

SPACE = {
    "name": "synthetic",
    "base": TINY_BASE,
    "sampler": "tpe",
    "pruner": "median",
    "n_trials": 8,
    "params": {
        "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
        "batch_size": {"choices": [8, 16, 32]},
        "seq_len": {"choices": [32, 64]},
        "dropout": {"choices": [0.0, 0.1]},
        "model_size": {"choices": ["nano", "micro", "tiny"]},
    },
}
STATES = optuna.trial.TrialState
LOST = "worker lost; retried as trial 5"
DIVERGED = "diverged: train loss nan at step 3 (first 6.21, limit x4)"


def _trial(number: int, state: STATES, loss: float | None, reason: str = "", **system):
    space = parse_space(SPACE)
    params = {
        "learning_rate": 0.001 * (number + 1),
        "batch_size": 16,
        "seq_len": 64,
        "dropout": 0.1,
        "model_size": "micro",
    }
    attrs = {"mlflow_run_id": f"run{number:028d}"}
    if loss is not None:
        attrs["metrics"] = {"val_loss": loss, "val_perplexity": 2.718281828**loss, "val_bpb": 2.5}
        attrs["cost"] = {"n_params": 667_136, "train_flops": 1.6e11, "wall_seconds": 12.5}
    if reason:
        attrs["reason"] = reason
    trial = optuna.trial.create_trial(
        state=state,
        value=loss if state == STATES.COMPLETE else None,
        params=params,
        distributions=space.distributions(),
        user_attrs=attrs,
        system_attrs=system,
    )
    return trial


def synthetic_handle() -> StudyHandle:
    """Every kind of row: complete, pruned at a milestone, diverged, lost and retried,
    interrupted, running."""
    study = optuna.create_study(study_name="synthetic", direction="minimize")
    study.add_trials(
        [
            _trial(0, STATES.COMPLETE, 6.1234),
            _trial(1, STATES.PRUNED, 6.9876, "pruned at milestone 1"),
            _trial(2, STATES.PRUNED, 9.4321, DIVERGED),
            _trial(3, STATES.FAIL, None),  # lost: its worker died
            _trial(4, STATES.FAIL, None, "interrupted"),
            _trial(5, STATES.COMPLETE, 5.4321, **{RETRIES: [3]}),
        ]
    )
    study.ask()  # trial 6, running
    return StudyHandle(study, parse_space(SPACE), "memory", "sqlite:///unused.db", "1", "p")


def test_short_states():
    assert short_state("PRUNED", "pruned at milestone 12") == ("PRUNED@12", "")
    assert short_state("PRUNED", DIVERGED) == ("PRUNED", DIVERGED)
    assert short_state("COMPLETE", "") == ("COMPLETE", "")
    assert short_state("FAIL", LOST) == ("FAIL", LOST)


def test_terminal_table_fits_80_columns_and_keeps_every_state_and_value():
    table = trial_table(synthetic_handle())
    text = terminal(table, 80).plain
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    rows = {int(m.group(1)): line for line in lines if (m := re.match(r"^\*?\s+(\d+)  ", line))}
    assert sorted(rows) == list(range(7))
    expected = {
        0: ("COMPLETE", "6.123"),
        1: ("PRUNED@1", "6.988"),
        2: ("PRUNED[1]", "9.432"),
        3: ("FAIL[2]", None),
        4: ("FAIL[3]", None),
        5: ("COMPLETE", "5.432"),
        6: ("RUNNING", None),
    }
    for number, (state, value) in expected.items():
        assert f" {state} " in rows[number] + " ", rows[number]
        if value:
            assert value in rows[number]
    assert rows[5].startswith("*") and not rows[0].startswith("*")  # the best trial
    # reasons are footnotes, told in full, the retry's number included
    assert f"[1] {DIVERGED}" in text and f"[2] {LOST}" in text and "[3] interrupted" in text
    # the objective and the hyperparameters come first; what did not fit is named
    header = lines[1].split()
    assert header[:4] == ["trial", "state", "val", "loss"] and "lr" in header
    assert "not shown in 80 columns:" in text and "duration" in text


def test_terminal_table_drops_columns_from_the_end_only():
    assert fit([1, 5, 8, 40, 3], 30) == [0, 1, 2]  # stops at the first misfit
    assert fit([90], 80) == [0]  # the first column always shows
    table = trial_table(synthetic_handle())
    narrow = terminal(table, 40).plain.splitlines()
    assert max(len(line) for line in narrow) <= 40
    assert any("PRUNED@1" in line for line in narrow)


def test_plain_layout_has_every_column_and_no_box():
    table = trial_table(synthetic_handle())
    text = plain(table)
    assert not set("│┃━─╭╮") & set(text)
    header = text.splitlines()[2]
    for word in ("trial", "state", "lr", "batch", "size", "params", "ppl", "bpb", "FLOPs", "secs"):
        assert word in header.split()
    assert "not shown" not in text and f"[2] {LOST}" in text
    assert render_text(table, "table") == text


def test_csv_and_json_hold_raw_values_and_full_reasons():
    handle = synthetic_handle()
    table = trial_table(handle, every=True)
    rows = list(csv.DictReader(io.StringIO(render_text(table, "csv"))))
    assert [r["state"] for r in rows] == [
        "COMPLETE", "PRUNED", "PRUNED", "FAIL", "FAIL", "COMPLETE", "RUNNING"
    ]  # fmt: skip
    assert float(rows[0]["val_loss"]) == 6.1234 and rows[0]["learning_rate"] == "0.001"
    assert rows[3]["reason"] == LOST and rows[2]["reason"] == DIVERGED
    assert rows[5]["best"] == "true" and rows[6]["val_loss"] == ""
    data = json.loads(render_text(table, "json"))
    assert data[1]["reason"] == "pruned at milestone 1" and data[1]["val_loss"] == 6.9876
    assert data[6]["state"] == "RUNNING" and data[6]["val_loss"] is None
    assert data[0]["mlflow_run_id"] == f"run{0:028d}"


def test_markdown_table_and_footnotes():
    text = render_text(trial_table(synthetic_handle()), "markdown")
    lines = text.splitlines()
    assert lines[2].startswith("|   | trial | state | val loss |")
    assert lines[3].startswith("|---|---:|---|---:|")
    assert "| PRUNED@1 |" in text and f"[2] {LOST}" in text


def test_columns_pick_and_order():
    handle = synthetic_handle()
    table = trial_table(handle, "trial,val_loss,learning_rate,mfu,reason")
    assert [c.key for c in table.columns] == [
        "trial",
        "val_loss",
        "param.learning_rate",
        "mfu",
        "reason",
    ]
    grid, notes = cells(trial_table(handle, "state,reason"))
    assert notes == [] and grid[3] == ["FAIL", LOST]  # a reason column: no footnotes
    with pytest.raises(ConfigError, match="--columns wings: unknown column"):
        trial_table(handle, "trial,wings")
    with pytest.raises(ConfigError, match="--columns: name at least one column"):
        trial_table(handle, " , ")


def test_study_list_table():
    rows = [
        {
            "name": "quick",
            "space": "quick",
            "sampler": "tpe",
            "trials": 1,
            "complete": 1,
            "target": 8,
            "best": 6.1,
            "created": None,
        }
    ]
    table = study_table(rows)
    assert table.title == "1 study"
    assert "1/8" in plain(table)
    data = json.loads(render_text(study_table(rows, every=True), "json"))
    assert data[0]["trials"] == 1 and data[0]["target"] == 8


def test_study_show_and_list_through_the_cli(tmp_path, monkeypatch):
    """A real two-trial study: the terminal table at COLUMNS=80, the plain layout when piped,
    every format, and bad flags as one line."""
    space = write_space(tmp_path / "space.yaml", n_trials=2)
    assert cli("study", "create", "s", "--space", str(space)).exit_code == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db")
    values = [f"{t.value:.4g}" for t in study.trials]

    piped = cli("study", "show", "s")  # CliRunner's stdout is not a terminal
    assert piped.exit_code == 0 and "\x1b[" not in piped.output and "│" not in piped.output
    assert piped.output.count("COMPLETE") == 2 and all(v in piped.output for v in values)

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stdout counts as a terminal
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("study", "show", "s")
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.output)
    assert shown.exit_code == 0 and max(len(line) for line in text.splitlines()) <= 80
    assert text.count("COMPLETE") == 2 and all(v in text for v in values)
    monkeypatch.setenv("COLUMNS", "40")
    narrow = cli("study", "show", "s").output
    assert "not shown in 40 columns" in narrow and narrow.count("COMPLETE") == 2
    monkeypatch.delenv("TTY_COMPATIBLE")

    as_json = json.loads(cli("study", "show", "s", "--format", "json").output)
    assert [r["val_loss"] for r in as_json] == [t.value for t in study.trials]
    as_csv = cli("study", "show", "s", "--format", "csv", "--columns", "trial,state").output
    assert as_csv.splitlines() == ["trial,state", "0,COMPLETE", "1,COMPLETE"]
    assert "|---:|" in cli("study", "show", "s", "--format", "markdown").output
    listed = json.loads(cli("study", "list", "--format", "json").output)
    assert listed[0]["name"] == "s" and listed[0]["trials"] == 2 and listed[0]["target"] == 2

    for args, message in [
        (["--format", "xml"], "--format xml: one of table, csv, json, markdown"),
        (["--columns", "wings"], "--columns wings: unknown column"),
    ]:
        bad = cli("study", "show", "s", *args)
        assert bad.exit_code == 2 and message in bad.output
        assert len(bad.output.strip().splitlines()) == 1
