"""`tuner optuna-dashboard NAME` serves Optuna's dashboard on a tuner study wherever it lives:
the default SQLite database, a journal file, PostgreSQL; on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request

import pytest

from tests.helpers import cli, write_space
from tests.test_workers import postgres_url  # noqa: F401 - the fixture
from tuner.optuna_dash import EXTRA_HINT, dashboard_server


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.load(reply)


def serve_and_read(name: str, storage: str | None) -> tuple[str, dict, dict]:
    """Start the dashboard on a free port, read the study list and the study, stop it."""
    server, page = dashboard_server(name, storage, port=0)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    worker.start()
    try:
        host, port = server.server_address[:2]
        api = f"http://{host}:{port}/api/studies"
        studies = get(api)
        (study_id,) = [s["study_id"] for s in studies["study_summaries"] if s["study_name"] == name]
        return page, studies, get(f"{api}/{study_id}")
    finally:
        server.shutdown()
        server.server_close()
        worker.join(timeout=10)


def create(tmp_path, name: str, *storage: str) -> None:
    space = write_space(tmp_path / "space.yaml", n_trials=3)
    result = cli("study", "create", name, "--space", str(space), "--no-run", *storage)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("where", ["sqlite", "journal"])
def test_the_dashboard_reads_a_study(tmp_path, where):
    storage = ["--storage", str(tmp_path / "studies.log")] if where == "journal" else []
    create(tmp_path, "dash", *storage)
    page, studies, study = serve_and_read("dash", storage[1] if storage else None)
    assert page.startswith("http://127.0.0.1:") and "/dashboard/studies/" in page
    assert [s["study_name"] for s in studies["study_summaries"]] == ["dash"]
    assert len(study["trials"]) == 3  # the queued trials tuner wrote
    assert {t["state"] for t in study["trials"]} == {"Waiting"}


def test_the_dashboard_reads_a_study_in_postgresql(tmp_path, postgres_url):  # noqa: F811
    create(tmp_path, "pg", "--storage", postgres_url)
    _, studies, study = serve_and_read("pg", postgres_url)
    assert [s["study_name"] for s in studies["study_summaries"]] == ["pg"]
    assert len(study["trials"]) == 3


def test_bad_input_and_a_missing_extra_are_one_line(tmp_path, monkeypatch):
    create(tmp_path, "dash")
    result = cli("optuna-dashboard", "nope")
    assert result.exit_code == 2 and "no study named 'nope'" in result.output
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # not installed
    result = cli("optuna-dashboard", "dash")
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: optuna-dashboard is not installed; install the extra: {EXTRA_HINT}"
    )
