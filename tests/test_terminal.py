"""What tuner prints while it works: study progress (a timer that resets per trial, ETA,
tokens/s, start-up stages), `tuner train`'s header and milestone lines, a quiet cold start,
`dashboard --open` without a browser, and the exported YAML's explained zeros."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
import warnings
import webbrowser
from pathlib import Path

import optuna
import pytest
import yaml
from rich.console import Console

from tests.conftest import TINY_BASE
from tests.helpers import cli, write_space
from tuner.bars import CountColumn, EtaColumn, RateColumn, TrainReporter, clock
from tuner.config import RunConfig, from_dict, load_run_config
from tuner.progress import LineReporter, RichReporter
from tuner.train import Milestone


def frozen(number: int, state: str, loss: float, reason: str = "") -> optuna.trial.FrozenTrial:
    attrs = {"metrics": {"val_loss": loss, "val_perplexity": 2.0, "val_bpb": 1.5}}
    if reason:
        attrs["reason"] = reason
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState[state],
        value=loss if state == "COMPLETE" else None,
        params={"learning_rate": 0.001},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1)},
        user_attrs=attrs,
    )
    trial.number = number
    return trial


def quiet_console(width: int = 80) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=False), buffer


# ---------------------------------------------------------------- study progress


def test_trial_timer_resets_and_eta_rate_show():
    console, buffer = quiet_console()
    study = optuna.create_study()
    reporter = RichReporter(3, 0, "val_loss", console)
    with reporter:
        reporter.stage("loading data: shakespeare corpus")
        task = reporter.bars.tasks[reporter.tokens]
        assert task.visible and task.description == "loading data: shakespeare corpus"
        reporter.trial_started(0, {"learning_rate": 0.001, "batch_size": 8}, 1000)
        first_start = reporter.bars.tasks[reporter.tokens].start_time
        reporter.progress(500, 1000)
        time.sleep(0.2)
        reporter.progress(1000, 1000)
        done = frozen(0, "COMPLETE", 6.5)
        study.add_trial(done)
        reporter.trial_finished(done, study)
        time.sleep(0.2)
        reporter.trial_started(1, {"learning_rate": 0.002, "batch_size": 8}, 2000)
        task = reporter.bars.tasks[reporter.tokens]
        assert task.completed == 0 and task.total == 2000 and task.description == "trial 1"
        assert task.start_time >= first_start + 0.35  # a new timer, not trial 0's
        assert task.elapsed < 0.35
        reporter.progress(400, 2000)
        time.sleep(0.1)
        reporter.progress(800, 2000)
        table = reporter.bars.make_tasks_table(reporter.bars.tasks)
    shown = Console(width=80, record=True, file=io.StringIO())
    shown.print(table)
    lines = shown.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    trials_line, tokens_line = lines
    assert "1/3" in trials_line and "ETA 0:00:0" in trials_line and "best 6.5 (#0)" in trials_line
    assert "800/2k" in tokens_line and "tok/s" in tokens_line and "ETA 0:00:0" in tokens_line
    out = buffer.getvalue()
    assert "trial 0 lr=0.001 batch=8" in out
    assert "trial 0 COMPLETE  val_loss 6.5000  ppl 2.00  bpb 1.5000" in out


def test_study_eta_from_finished_trials_or_the_current_pace():
    console, _ = quiet_console()
    reporter = RichReporter(5, 2, "val_loss", console)
    reporter.durations = [10.0, 20.0]
    assert reporter.study_eta(0.0) == pytest.approx(3 * 15.0)  # between trials
    # the current trial's own time left, then two more trials at the mean
    assert reporter.study_eta(0.5, current_left=4.0) == pytest.approx(4.0 + 2 * 15.0)
    assert reporter.study_eta(0.5) == pytest.approx(0.5 * 15.0 + 2 * 15.0)  # no pace yet
    fresh = RichReporter(5, 0, "val_loss", console, best="best 6.1 (#2)")
    assert fresh.bars.tasks[fresh.trials].fields["best"] == "best 6.1 (#2)"  # a resumed study
    assert fresh.study_eta(0.0) is None  # nothing to go on yet
    fresh.started = time.monotonic() - 10.0
    assert fresh.study_eta(0.25, current_left=30.0) == pytest.approx(30 + 4 * 40.0, rel=0.05)


def test_finished_lines_use_short_states_and_full_reasons():
    console, buffer = quiet_console(width=200)
    study = optuna.create_study()
    reporter = RichReporter(2, 0, "val_loss", console)
    for trial in (
        frozen(0, "PRUNED", 7.0, "pruned at milestone 1"),
        frozen(1, "PRUNED", 9.0, "diverged: train loss nan at step 3"),
    ):
        reporter.trial_finished(trial, study)
    out = buffer.getvalue()
    assert "trial 0 PRUNED@1  val_loss 7.0000" in out and "pruned at" not in out
    assert (
        "trial 1 PRUNED  val_loss 9.0000" in out and "(diverged: train loss nan at step 3)" in out
    )
    stream = io.StringIO()
    lines = LineReporter("w1", stream)
    lines.stage("loading data: shakespeare corpus")
    lines.trial_finished(frozen(0, "PRUNED", 7.0, "pruned at milestone 2"), study)
    assert "[w1 " in stream.getvalue() and "loading data" in stream.getvalue()
    assert "trial 0 PRUNED@2 val_loss 7.0000" in stream.getvalue()


def test_bar_columns():
    from rich.progress import Progress

    progress = Progress()
    tokens = progress.add_task("t", total=40_000, completed=20_000, unit="tokens")
    trials = progress.add_task("trials", total=8, completed=3, eta=3725.0, best="best 6.1 (#2)")
    task = {t.id: t for t in progress.tasks}
    assert CountColumn().render(task[tokens]).plain == "20k/40k"
    assert CountColumn().render(task[trials]).plain == "3/8"
    assert EtaColumn().render(task[trials]).plain == "ETA 1:02:05"
    assert EtaColumn().render(task[tokens]).plain == "ETA -:--:--"  # no speed measured yet
    assert RateColumn().render(task[trials]).plain == "best 6.1 (#2)"
    assert clock(59.9) == "0:00:59" and clock(None) == "-:--:--"


# ---------------------------------------------------------------- tuner train


def test_describe_run_counts_the_parameters_it_will_train(tiny_config, tiny_data):
    from tuner.models import build_model, count_params
    from tuner.startup import describe_run
    from tuner.train import plan_budget

    line = describe_run(tiny_config, tiny_data.vocab_size)
    built = build_model(tiny_config.model, tiny_data.vocab_size, tiny_config.train.seq_len)
    n_params, n_non_embedding = count_params(built)
    from tuner.models import flops_per_token
    from tuner.units import si

    fpt = flops_per_token(n_non_embedding, tiny_data.vocab_size, tiny_config.model, 32)
    plan = plan_budget(tiny_config, fpt)
    model, budget = line.splitlines()
    assert model == f"training gpt2 nano (2 layers × 64, {si(n_params)} params) on cpu, fp32"
    assert budget == f"{si(plan.tokens)} tokens = {plan.steps} steps of 8×32; " + (
        "lr 0.001, cosine schedule"
    )
    lstm = tiny_config.replace("model.arch", "lstm")
    assert describe_run(lstm, tiny_data.vocab_size).startswith("training lstm nano (2 layers × 64")
    flops = describe_run(tiny_config.replace("train.flops", 1e12), tiny_data.vocab_size)
    assert flops.splitlines()[1].startswith("1T FLOPs = ")


def test_warm_up_says_each_step(tiny_config):
    from tuner.space import parse_space
    from tuner.startup import warm_up

    said: list[str] = []
    space = parse_space({"name": "w", "base": TINY_BASE, "params": {"dropout": {"choices": [0.0]}}})
    warm_up(space, said.append)
    assert said == ["loading data: shakespeare, bpe 512", "loading model code: transformers"]
    rnn = {**TINY_BASE, "model": {"arch": "gru", "size": "nano"}}
    said.clear()
    warm_up(
        parse_space({"name": "r", "base": rnn, "params": {"dropout": {"choices": [0.0]}}}),
        said.append,
    )
    assert len(said) == 1  # no transformers code for a GRU


def test_train_says_what_it_trains_and_each_milestone(tmp_path):
    config = {**TINY_BASE, "train": {**TINY_BASE["train"], "tokens": 4096, "threads": 1}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("train", str(path), "--out", "model")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("training gpt2 nano"))
    assert lines[head + 1] == "4.1k tokens = 16 steps of 8×32; lr 0.001, cosine schedule"
    milestones = [line for line in lines if line.startswith("milestone ")]
    assert [m.split(":")[0] for m in milestones] == ["milestone 0", "milestone 1"]
    assert lines.index(milestones[0]) > head
    import json

    final = json.loads((tmp_path / "model" / "metrics.json").read_text())["val"]
    assert f"val_loss {final['val_loss']:.4f}" in milestones[-1]


def test_train_milestone_line():
    console, buffer = quiet_console()
    shown = TrainReporter(console)
    shown.stage("starting")  # not a terminal: no spinner, no output
    shown.note("gpt2 nano")
    shown.milestone(
        Milestone(1, 8192, 32, {"val_loss": 5.25, "train_loss": 5.5, "learning_rate": 3e-4})
    )
    shown.progress(8192, 16384)
    shown.close()
    assert buffer.getvalue().splitlines()[:2] == [
        "gpt2 nano",
        "milestone 1: 8.19k tokens  val_loss 5.2500  train_loss 5.5000  lr 0.0003",
    ]


# ---------------------------------------------------------------- a quiet cold start


def test_cold_start_prints_no_mlflow_info_and_no_experimental_warning(tmp_path):
    """A first `study create` on empty stores, as a new user runs it, under -W default."""
    space = write_space(tmp_path / "space.yaml", sampler="qmc", n_trials=1)
    env = {
        "TUNER_HOME": str(tmp_path / "cold"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }
    done = subprocess.run(
        [sys.executable, "-W", "default", "-m", "tuner", "study", "create", "cold"]
        + ["--space", str(space), "--no-run"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "INFO" not in done.stderr and "Creating initial MLflow" not in done.stderr
    assert "ExperimentalWarning" not in done.stderr, done.stderr
    assert (tmp_path / "cold" / "mlflow.db").is_file()  # the store was created all the same


def test_tuner_chooses_experimental_features_silently(tmp_path):
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from tuner.heartbeat import StaleTrialCallback
    from tuner.samplers import make_sampler
    from tuner.space import parse_space
    from tuner.study import open_storage

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        RetryHeartbeatStaleTrialCallback()  # Optuna warns when chosen outside tuner
        assert any(issubclass(w.category, ExperimentalWarning) for w in seen)
        seen.clear()
        StaleTrialCallback()
        open_storage(f"sqlite:///{tmp_path}/o.db")
        space = parse_space({"name": "q", "base": TINY_BASE, "sampler": "qmc", "params": {}})
        make_sampler(space, 0)
    assert [str(w.message) for w in seen if issubclass(w.category, ExperimentalWarning)] == []


def test_quiet_logs_keeps_warnings():
    from tuner.quiet import CHATTY_LOGGERS, quiet_logs

    quiet_logs()
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)


# ---------------------------------------------------------------- dashboard --open


@pytest.mark.parametrize("outcome", [False, webbrowser.Error("no runnable browser")])
def test_dashboard_open_without_a_browser_says_where_the_page_is(
    isolated_stores, monkeypatch, outcome
):
    import tuner.page
    import tuner.study

    page = isolated_stores / "dashboards" / "x.html"

    def write(handle, output=None):
        page.parent.mkdir(exist_ok=True)
        page.write_text("<html></html>")
        return page

    def browser(url):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(tuner.study, "load_study", lambda *args: None)
    monkeypatch.setattr(tuner.page, "write_dashboard", write)
    monkeypatch.setattr(webbrowser, "open", browser)
    result = cli("dashboard", "x", "--open", "--no-mlflow")
    assert result.exit_code == 0, result.output
    assert f"no browser could be opened here; the page is {page.resolve()}" in result.output


# ---------------------------------------------------------------- exported YAML


def test_exported_yaml_explains_its_zeros_and_round_trips(tmp_path):
    from tuner.export import render
    from tuner.final import final_config

    config = from_dict(RunConfig, TINY_BASE).replace("model.n_head", 4)
    prov = {"trial": 3, "study": "s", "metric": "val_loss", "value": 5.0}
    path = tmp_path / "best.yaml"
    path.write_text(render(config, prov))
    text = path.read_text()
    assert "  n_layer: 0  # 0 = from the size preset (nano: 2)\n" in text
    assert "  n_head: 4\n" in text  # set: no comment
    assert "  flops: 0.0  # 0 = no FLOP budget: train.tokens is the budget\n" in text
    assert "  threads: 0  # 0 = torch's default\n" in text
    assert "  max_chars: 300000\n" in text
    assert load_run_config(path) == config  # comments change nothing
    assert final_config(path) == config  # what `tuner train` reads
    assert yaml.safe_load(text)["provenance"]["trial"] == 3
