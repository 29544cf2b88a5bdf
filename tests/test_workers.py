"""Many workers on one study: PostgreSQL + an MLflow server, local workers on the journal,
a worker killed mid-trial, the whole study killed and resumed.

Faults are real: workers are separate processes killed with SIGKILL. Heartbeats beat every
second with a 5 s grace period so lost trials are noticed in seconds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from tests.conftest import TINY_BASE, free_port, mlflow_healthy, mlflow_server_command
from tests.helpers import cli, write_space
from tuner import heartbeat
from tuner.optuna_compat import QueuedStudy
from tuner.queue import drain
from tuner.quiet import experimental_ok
from tuner.records import counted
from tuner.spawn import worker_command
from tuner.storage import open_storage
from tuner.stores import default_journal
from tuner.study import load_study

INTERVAL = 1  # heartbeat, seconds
GRACE = 5  # seconds without a beat before a trial counts as lost
WAIT = 420  # upper bound on any wait for workers: generous for a loaded 2-core machine
TUNER = [sys.executable, "-m", "tuner"]  # `tuner`, without relying on the console script
LOCK_WORDS = ("database is locked", "locked", "traceback", "error")
CI = os.environ.get("CI", "").lower() == "true"


# Orchestration is under test, not training: one param, half the micro space's tokens.
QUICK_TRAIN = {**TINY_BASE["train"], "tokens": 4096}
LR = {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}
GRID = {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True, "grid": [1e-3, 2e-3, 5e-3, 1e-2]}}


def quick_space(path: Path, params: dict = LR, **top) -> Path:
    return write_space(path, params, base={**TINY_BASE, "train": QUICK_TRAIN}, **top)


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch):
    monkeypatch.setenv("TUNER_HEARTBEAT_INTERVAL", str(INTERVAL))
    monkeypatch.setenv("TUNER_GRACE_PERIOD", str(GRACE))


# ---------------------------------------------------------------- processes and servers


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Procs:
    """Processes a test starts, each in its own session with its output in a file; every one
    still alive at the end is killed with its children."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, cmd: list[str], name: str) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append((proc, log))
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        log = next(path for p, path in self.procs if p is proc)
        return log.read_text(errors="replace")

    def wait_all(self, procs: list[subprocess.Popen], timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.stop()
                outputs = "\n".join(self.output(p)[-1500:] for p in procs)
                message = f"workers still running after {timeout} s:\n{outputs}"
                raise AssertionError(message) from None
        return codes

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the process and everything it started (its session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                self.kill(proc)
            else:  # the leader exited; make sure nothing it started lives on
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    started.stop()


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing(reason: str) -> None:
    """Skip on a developer machine; in CI a missing server is a failure, not a skip."""
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port; yields a database URL."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        missing("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401 - SQLAlchemy's default PostgreSQL driver
    except ImportError:
        missing("psycopg is not installed (pip install -e '.[dev]')")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        missing("running as root without runuser: cannot start PostgreSQL as another user")
    root = Path(tempfile.mkdtemp(prefix="tuner-pg-"))  # not under tmp_path: postgres must enter
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = free_port()
    ctl = str(bin_dir / "pg_ctl")
    try:
        subprocess.run(
            as_postgres(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "tuner",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off"
        subprocess.run(
            as_postgres(
                [
                    ctl,
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(root / "server.log"),
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
        subprocess.run(
            as_postgres(
                [
                    str(bin_dir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "tuner",
                    "optuna",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql://tuner@127.0.0.1:{port}/optuna"
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                as_postgres([ctl, "stop", "-m", "immediate", "-w", "-t", "30", "-D", str(data)]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on a free loopback port with a SQLite backend, started at once and
    waited for later, so it boots while PostgreSQL is being set up."""

    def __init__(self, root: Path, procs: Procs, template: Path):
        self.procs = procs
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = procs.start(mlflow_server_command(port, root, template), "mlflow-server")

    def wait(self) -> str:
        output = functools.partial(self.procs.output, self.proc)
        wait_for(lambda: mlflow_healthy(self.url, self.proc, output), 120, "the MLflow server")
        return self.url


@pytest.fixture
def mlflow_server(tmp_path, procs, mlflow_template) -> MlflowServer:
    root = tmp_path / "mlflow-server"
    root.mkdir()
    return MlflowServer(root, procs, mlflow_template)  # stopped with the other processes


# ---------------------------------------------------------------- checks


def trials_of(name: str, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    return load_study(name, storage).study.get_trials(deepcopy=True)


def assert_clean(output: str) -> None:
    lowered = output.lower()
    found = [w for w in LOCK_WORDS if w in lowered]
    assert not found, f"{found} in worker output:\n{output[-4000:]}"


def trial_runs(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(name)
    return [
        r
        for r in client.search_runs([exp.experiment_id], max_results=1000)
        if r.data.tags.get("tuner.kind") == "trial"
    ]


def params_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


# ---------------------------------------------------------------- tests


def test_lost_trial_is_failed_and_retried_once_only(tmp_path, monkeypatch):
    """Journal heartbeats without processes: a trial that stops beating is failed after the
    grace period and retried with the same params; the retry, lost too, is not retried."""
    from optuna.storages import fail_stale_trials

    grace = 2
    monkeypatch.setenv("TUNER_GRACE_PERIOD", str(grace))
    space = quick_space(tmp_path / "micro.yaml", n_trials=1)
    assert (
        cli("study", "create", "one", "--space", str(space), "--no-run", "--workers", "2").exit_code
        == 0
    )
    study = load_study("one").study
    first = study.ask()  # pops the queued slot, as a worker would; it never beats
    first.suggest_float("learning_rate", 1e-3, 1e-2, log=True)
    time.sleep(grace + 0.5)
    with experimental_ok():
        fail_stale_trials(study)
    retry = study.ask()
    assert retry.params == first.params and retry.number == first.number + 1
    time.sleep(grace + 0.5)
    with experimental_ok():
        fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]  # no third trial queued
    assert trials[1].system_attrs["retry_history"] == [first.number]
    assert [t.number for t in counted(trials)] == [retry.number]  # the lost one counts once


def test_three_workers_postgres_and_mlflow_server_cover_grid_once(
    tmp_path, procs, mlflow_server, postgres_url
):
    tracking = mlflow_server.wait()
    space = quick_space(tmp_path / "grid.yaml", GRID, sampler="grid")  # 4 points
    result = cli(
        "study",
        "create",
        "grid3",
        "--space",
        str(space),
        "--storage",
        postgres_url,
        "--tracking-uri",
        tracking,
        "--no-run",
    )
    assert result.exit_code == 0, result.output
    # one `study worker --workers 3` as a joining machine runs it: itself and 2 beside it
    joining = procs.start([*worker_command("grid3", postgres_url, tracking), "--workers", "3"], "w")
    assert procs.wait_all([joining], timeout=WAIT) == [0], procs.output(joining)
    output = procs.output(joining)
    assert_clean(output)
    assert output.count("joined study grid3") == 3

    trials = trials_of("grid3", postgres_url)
    states = [t.state.name for t in trials]
    reasons = [(t.state.name, t.user_attrs.get("reason"), t.system_attrs) for t in trials]
    assert states == ["COMPLETE"] * 4, f"{reasons}\n" + output[-3000:]
    points = [params_key(t.params) for t in trials]
    expected = {(("learning_rate", lr),) for lr in GRID["learning_rate"]["grid"]}
    assert len(points) == 4 and set(points) == expected  # every point, exactly once
    runs = {r.info.run_id: r for r in trial_runs(MlflowClient(tracking), "grid3")}
    assert len(runs) == 4
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.trial_number"] == str(t.number)
        assert run.data.metrics["val_loss"] == pytest.approx(t.value)


def test_three_local_workers_default_storage_no_lock_errors(tmp_path, procs, monkeypatch):
    cache = tmp_path / "fresh-cache"  # three workers find no token cache: one builds, all reuse
    monkeypatch.setenv("TUNER_CACHE_DIR", str(cache))
    space = quick_space(tmp_path / "micro.yaml")
    parent = procs.start(
        [
            *TUNER,
            "study",
            "create",
            "three",
            "--space",
            str(space),
            "--workers",
            "3",
            "--n-trials",
            "5",
        ],
        "create",
    )
    assert procs.wait_all([parent], timeout=WAIT) == [0], procs.output(parent)
    output = procs.output(parent)
    assert_clean(output)
    assert output.count("joined study three") == 3
    here = [line for line in output.splitlines() if f":{parent.pid} " in line]
    assert any("joined study three" in line for line in here), output  # create is a worker
    assert any(" started: " in line for line in here), output  # and trains trials itself

    assert Path(default_journal()).is_file()  # several local workers: the journal storage
    trials = trials_of("three")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    assert len({params_key(t.params) for t in trials}) == 5  # workers drew different params
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert sorted(r.info.status for r in trial_runs(client, "three")) == ["FINISHED"] * 5
    built = [p.name for p in cache.iterdir() if p.is_dir()]
    assert len(built) == 1 and not built[0].startswith("."), built  # one build, no leftovers
    # the dashboard is redrawn after a --workers run too, and attached to the study's run
    assert (tmp_path / "dashboards" / "three.html").is_file()
    assert "dashboard: dashboards/three.html" in output


def test_worker_killed_mid_trial_is_failed_and_retried(tmp_path, procs):
    space = quick_space(tmp_path / "micro.yaml", n_trials=3)
    assert (
        cli(
            "study", "create", "kill1", "--space", str(space), "--no-run", "--workers", "2"
        ).exit_code
        == 0
    )
    journal = default_journal()
    victim, survivor = (
        procs.start(worker_command("kill1", journal, _tracking(tmp_path)), n)
        for n in ("victim", "survivor")
    )
    wait_for(lambda: " started: " in procs.output(victim), WAIT, "the victim to start a trial")
    lost_number = int(procs.output(victim).split(" started: ")[0].rsplit("trial ", 1)[1])
    procs.kill(victim)
    killed_at = time.time()

    def lost_failed() -> bool:
        return trials_of("kill1", journal)[lost_number].state.name == "FAIL"

    wait_for(lost_failed, GRACE + 60, "the lost trial to be failed")
    failed_at = trials_of("kill1", journal)[lost_number].datetime_complete.timestamp()
    failed_after = failed_at - killed_at
    assert failed_after <= GRACE + INTERVAL + 10  # grace period + one reaper beat (+ load)
    assert procs.wait_all([survivor], timeout=WAIT) == [0], procs.output(survivor)
    assert_clean(procs.output(survivor))

    trials = trials_of("kill1", journal)
    lost = trials[lost_number]
    retries = [t for t in trials if t.system_attrs.get("retry_history") == [lost_number]]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == lost.params
    assert retries[0].user_attrs["origin_trial"] == lost_number  # same seed as the lost trial
    assert len(trials) == 4 and len(counted(trials)) == 3
    assert [t.state.name for t in counted(trials)] == ["COMPLETE"] * 3
    client = MlflowClient(_tracking(tmp_path))
    runs = trial_runs(client, "kill1")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    lost_runs = [r for r in runs if r.data.tags["optuna.trial_number"] == str(lost_number)]
    assert [r.info.status for r in lost_runs] == ["FAILED"]
    assert "worker lost" in lost_runs[0].data.tags["tuner.reason"]


def test_whole_study_killed_then_resumed_loses_nothing(tmp_path, procs):
    space = quick_space(tmp_path / "micro.yaml")
    study = procs.start(
        [
            *TUNER,
            "study",
            "create",
            "crash",
            "--space",
            str(space),
            "--workers",
            "2",
            "--n-trials",
            "4",
        ],
        "create",
    )
    journal = default_journal()

    def one_done_one_training() -> bool:
        if not Path(journal).is_file():
            return False
        with contextlib.suppress(Exception):  # the study may not exist yet
            trials = trials_of("crash", journal)
            return any(t.state.name == "COMPLETE" for t in trials) and any(
                t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs for t in trials
            )
        return False

    wait_for(one_done_one_training, WAIT, "a complete trial and one training")
    procs.kill(study)  # the create command and both workers, mid-trial
    before = {t.number: t for t in trials_of("crash", journal)}
    done_before = {n: t for n, t in before.items() if t.state.name == "COMPLETE"}
    lost = sorted(n for n, t in before.items() if t.state.name == "RUNNING")
    assert lost

    result = cli("study", "resume", "crash")
    assert result.exit_code == 0, result.output
    trials = trials_of("crash", journal)
    for n, t in done_before.items():  # no complete trial lost or run again
        assert trials[n].state.name == "COMPLETE" and trials[n].values == t.values
        assert trials[n].datetime_complete == t.datetime_complete
    for n in lost:  # each lost trial failed and retried exactly once, with its params
        assert trials[n].state.name == "FAIL"
        retries = [t for t in trials if t.system_attrs.get("retry_history") == [n]]
        assert len(retries) == 1
        if trials[n].params:  # a worker killed between popping and sampling left none to keep
            assert retries[0].params == trials[n].params
    finished = counted(trials)
    states = [(t.number, t.state.name, t.user_attrs.get("reason"), t.system_attrs) for t in trials]
    assert len(finished) == 4 and all(t.state.name == "COMPLETE" for t in finished), (
        f"lost {lost}, before {[(n, t.state.name) for n, t in before.items()]}, after {states}"
    )
    origins = [t.user_attrs["origin_trial"] for t in finished]
    assert len(set(origins)) == 4  # nothing ran twice
    assert len(trials) == 4 + len(lost)
    client = MlflowClient(_tracking(tmp_path))
    runs = trial_runs(client, "crash")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [r.info.status for r in runs].count("FINISHED") == 4
    lost_runs = [
        before[n].user_attrs["mlflow_run_id"]
        for n in lost  # a trial killed before
        if "mlflow_run_id" in before[n].user_attrs
    ]  # its run opened has none
    assert lost_runs and all(client.get_run(r).info.status == "FAILED" for r in lost_runs)
    parent = client.get_run(load_study("crash").parent_run_id)
    assert parent.info.status == "FINISHED"


def test_a_retry_queued_while_the_last_trial_trains_still_runs(tmp_path, monkeypatch):
    """The reaper fails a lost trial while the last queued one trains, and closing the lost
    trial's MLflow run is slow: the worker must run the retry, not leave on an empty queue."""
    monkeypatch.setenv("TUNER_GRACE_PERIOD", "2")
    monkeypatch.setattr(heartbeat, "close_lost_runs", lambda *args: time.sleep(4))
    study = optuna.create_study(storage=open_storage(str(tmp_path / "s.log")), study_name="s")
    study.enqueue_trial({})
    study.enqueue_trial({})
    queued = QueuedStudy.of(study)
    lost = queued.ask()  # popped by a worker that died at once: it never beats
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        time.sleep(4 if len(ran) == 1 else 0)  # the reaper finds the lost trial meanwhile
        return 1.0

    drain(queued, objective, [], None, done=lambda: len(counted(study.get_trials())) >= 2)
    assert study.get_trials()[lost.number].state == optuna.trial.TrialState.FAIL
    assert ran == [1, 2]  # the queued trial, then the lost one's retry
    assert study.get_trials()[2].system_attrs["retry_history"] == [lost.number]


def _tracking(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
