"""Faults, reproduced: broken stores (corrupt, locked, unreachable, full, read-only), a moved
home, a delete or SIGTERM while a study runs, a process killed between MLflow and Optuna,
concurrent creators, and trials too large for the memory there is.

Every case asserts what a user sees (one line, the exit code) and what is left (nothing
RUNNING, nothing lost, no phantom trial counted). Kill points are deterministic: a start-up
hook (tests/fault_hooks/sitecustomize.py) fires at a named point of a real process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

import tuner.objective
import tuner.tracking
from tests.conftest import TINY_BASE
from tests.helpers import cli, write_space
from tuner import memory, stores
from tuner.config import RunConfig, from_dict
from tuner.data import load_token_data
from tuner.records import REASON, STORE_FAILED, counted
from tuner.study import load_study

HOOKS = Path(__file__).parent / "fault_hooks"
ROOT = Path(__file__).parent.parent
QUICK = {**TINY_BASE, "train": {**TINY_BASE["train"], "tokens": 4096}}
GRACE = 6  # seconds without a heartbeat before a trial is lost (beats every second)
LR = {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}


def quick_space(path: Path, n_trials: int = 2, **top) -> Path:
    top.setdefault("params", LR)
    return write_space(path, top.pop("params"), base=QUICK, n_trials=n_trials, **top)


def study(name: str = "s", home: Path | None = None) -> optuna.Study:
    url = f"sqlite:///{(home or stores.home()) / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=url)


def runs(home: Path | None = None, name: str = "s") -> list:
    client = MlflowClient(f"sqlite:///{(home or stores.home()) / 'mlflow.db'}")
    exps = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return [
        r
        for r in client.search_runs(exps, run_view_type=ViewType.ALL, max_results=1000)
        if r.data.tags.get("optuna.study") == name
    ]


def running(home: Path | None = None, name: str = "s") -> list:
    return [r for r in runs(home, name) if r.info.status == "RUNNING"]


def error_lines(output: str) -> list[str]:
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if line.startswith("error:")]


def one_line(result, code: int, *words: str) -> str:
    lines = error_lines(result.output)
    assert result.exit_code == code, result.output
    assert len(lines) == 1, result.output
    for word in words:
        assert word in lines[0], result.output
    return lines[0]


def tuner_process(args: list[str], env: dict[str, str] | None = None, **kwargs):
    """`python -m tuner ARGS` as its own process (with the fault hooks on its path)."""
    full = {**os.environ, "PYTHONPATH": f"{HOOKS}{os.pathsep}{ROOT}", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "tuner", *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def finish(proc, timeout: float = 600) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"process still running after {timeout} s:\n{out[-3000:]}") from None
    return proc.returncode, out


def wait_for(check, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fast_heartbeat(monkeypatch):
    monkeypatch.setenv("TUNER_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("TUNER_GRACE_PERIOD", str(GRACE))


# ---------------------------------------------------------------- memory


@pytest.mark.parametrize("arch", ["gpt2", "llama", "lstm", "gru"])
@pytest.mark.parametrize("size", ["nano", "tiny"])
def test_the_estimate_counts_the_parameters_of_the_built_model(tiny_config, arch, size):
    from tuner.models import build_model, count_params

    config = tiny_config.replace("model.arch", arch).replace("model.size", size)
    model = build_model(config.model, 512, config.train.seq_len)
    assert memory.param_count(config, 512) == count_params(model)[0]


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def test_a_run_that_cannot_fit_fails_before_allocating(tiny_config, tiny_data, monkeypatch):
    from tuner.train import train_run

    # GPT-2 base with 10 M positions: a 7.7 GB position table alone
    config = tiny_config.replace("model.size", "base").replace("train.seq_len", 10_000_000)
    assert memory.estimate(config, tiny_data.vocab_size).weights > 7e9
    with pytest.raises(Exception, match="longer than the training split"):
        train_run(config, tiny_data)  # the data check comes first, before any model
    config = tiny_config.replace("model.size", "base")  # 85 M params: 1.4 GB with AdamW
    monkeypatch.setenv("TUNER_MEMORY_LIMIT", "500M")
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS:")
    with pytest.raises(memory.WontFit, match="out of memory .estimated before allocating"):
        train_run(config, tiny_data)
    assert _status("VmHWM:") - before < 100e6  # the 340 MB of weights were never allocated


def test_trials_that_cannot_fit_fail_with_the_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_MEMORY_LIMIT", "600M")  # nano fits, base (1.4 GB) does not
    space = quick_space(
        tmp_path / "space.yaml",
        sampler="grid",
        params={"model_size": {"choices": ["nano", "base"]}},
    )
    shown = cli("space", "validate", str(space))
    assert shown.exit_code == 0 and "warning:" in shown.output and "model_size=base" in shown.output
    result = cli("study", "create", "s", "--space", str(space))
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "the trials near it" in result.output
    trials = {t.params["model_size"]: t for t in study().trials}
    assert trials["nano"].state == optuna.trial.TrialState.COMPLETE
    assert trials["base"].state == optuna.trial.TrialState.FAIL
    assert trials["base"].user_attrs[REASON].startswith("out of memory (estimated")
    assert not running() and {r.info.status for r in runs()} >= {"FINISHED", "FAILED"}


def test_space_validate_warns_for_a_huge_sequence_length(tmp_path):
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "tokens": 10**12}}
    space = write_space(tmp_path / "s.yaml", {"seq_len": {"choices": [32, 10_000_000]}}, base=base)
    result = cli("space", "validate", str(space))
    assert result.exit_code == 0, result.output
    assert "warning: the largest point (params at seq_len=10000000)" in result.output
    assert "ok (1 param," in result.output


# ---------------------------------------------------------------- broken stores


def test_a_corrupt_store_is_one_line_and_nothing_is_written(tmp_path):
    space = quick_space(tmp_path / "space.yaml")
    home = stores.home()
    home.mkdir(parents=True)
    (home / "optuna.db").write_bytes(b"this is not a database" * 100)
    one_line(cli("study", "list"), 1, "corrupt")
    one_line(cli("study", "create", "s", "--space", str(space)), 1, "corrupt")
    assert not (home / "mlflow.db").exists()
    (home / "optuna.db").unlink()
    (home / "mlflow.db").write_bytes(b"garbage" * 1000)
    one_line(cli("study", "create", "s", "--space", str(space)), 1, "MLflow store", "corrupt")
    assert sorted(p.name for p in home.iterdir()) == ["mlflow.db"]  # no optuna.db left behind
    # fixed, the same command works: nothing was written that says "already exists"
    (home / "mlflow.db").unlink()
    assert cli("study", "create", "s", "--space", str(space), "--no-run").exit_code == 0


def test_a_locked_store_is_one_line_after_a_bounded_wait(tmp_path, monkeypatch):
    space = quick_space(tmp_path / "space.yaml")
    assert cli("study", "create", "s", "--space", str(space), "--no-run").exit_code == 0
    monkeypatch.setenv("TUNER_STORE_TIMEOUT", "0.5")
    holder = sqlite3.connect(stores.home() / "optuna.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        one_line(cli("study", "resume", "s"), 1, "locked")
    finally:
        holder.rollback()
        holder.close()
    assert not running()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_is_one_line_in_seconds(tmp_path, monkeypatch):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNER_STORE_TIMEOUT", "2")
    space = quick_space(tmp_path / "space.yaml")
    uri = f"http://127.0.0.1:{_closed_port()}"
    result = cli("study", "create", "s", "--space", str(space), "--tracking-uri", uri)
    one_line(result, 1, f"MLflow store {uri}", "connection refused")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"
    assert not stores.home().exists()  # nothing written: no optuna.db left behind


@pytest.fixture
def tiny_disk(tmp_path):
    """A 24 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24M", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_disk_full_mid_trial_stops_the_study_and_loses_nothing(
    tmp_path, tiny_disk, monkeypatch, fast_heartbeat
):
    """The disk fills at trial 1's first milestone: one line, exit 1, trial 2 not burnt;
    after space is freed, resume reruns trial 1's work and counts exactly n_trials."""
    home = tiny_disk / "home"
    monkeypatch.setenv("TUNER_HOME", str(home))
    real = tuner.objective.train_run
    calls = {"n": 0, "filler": None}

    def fill_at_second_trial(config, data, on_milestone=None, **kwargs):
        calls["n"] += 1

        def hooked(m):
            if calls["n"] == 2 and calls["filler"] is None:
                calls["filler"] = _fill(tiny_disk)
            return on_milestone(m)

        return real(config, data, on_milestone=hooked, **kwargs)

    monkeypatch.setattr(tuner.objective, "train_run", fill_at_second_trial)
    space = quick_space(tmp_path / "space.yaml", n_trials=3)
    result = cli("study", "create", "s", "--space", str(space))
    line = one_line(result, 1, "disk is full")
    assert "Optuna storage" in line or "MLflow store" in line
    states = [t.state.name for t in study().trials]
    assert states == ["COMPLETE", "RUNNING", "WAITING"]  # stopped; trial 2 was not burnt
    assert len(counted(study().trials)) == 1  # no phantom

    calls["filler"].unlink()
    monkeypatch.setattr(tuner.objective, "train_run", real)
    time.sleep(GRACE + 0.5)  # trial 1's worker is gone: its heartbeat goes stale
    resumed = cli("study", "resume", "s")
    assert resumed.exit_code == 0, resumed.output
    trials = study().trials
    assert len(counted(trials)) == 3
    assert [t.state.name for t in counted(trials)] == ["COMPLETE"] * 3
    assert trials[1].state.name == "FAIL" and trials[0].values  # lost, retried; nothing lost
    assert not running(home)


def test_mlflow_failing_as_a_trial_ends_keeps_its_result(tmp_path, monkeypatch):
    real = tuner.tracking.TrialRun.finish
    calls = {"n": 0}

    def full_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tuner.tracking.TrialRun, "finish", full_once)
    space = quick_space(tmp_path / "space.yaml", n_trials=2)
    one_line(cli("study", "create", "s", "--space", str(space)), 1, "disk is full")
    trials = study().trials
    assert [t.state.name for t in trials] == ["COMPLETE", "WAITING"]  # result kept, stopped
    assert len(running()) == 1  # its run could not be ended; the next start fixes that
    monkeypatch.setattr(tuner.tracking.TrialRun, "finish", real)
    assert cli("study", "resume", "s").exit_code == 0
    assert len(counted(study().trials)) == 2 and not running()
    first = next(r for r in runs() if r.data.tags.get("optuna.trial_number") == "0")
    assert first.info.status == "FINISHED" and first.data.tags["tuner.state"] == "COMPLETE"


def test_a_store_failure_reason_does_not_count():
    class Frozen:
        def __init__(self, reason):
            self.state = optuna.trial.TrialState.FAIL
            self.number = 0
            self.system_attrs = {}
            self.user_attrs = {REASON: reason}

    assert counted([Frozen("RuntimeError: boom")])
    assert not counted([Frozen(f"{STORE_FAILED}: MLflow store x: the disk is full")])
    assert not counted([Frozen("interrupted")])


# ---------------------------------------------------------------- permissions (no root powers)


def _unprivileged() -> list[str]:
    """Run as root without the capabilities that let root ignore file permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv not found: cannot drop root's file-permission override")
    probe = subprocess.run(
        [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("setpriv cannot drop capabilities here")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def _run_unprivileged(*commands: list[str]) -> list[tuple[int, str]]:
    """Each tuner command without root's file-permission override, all at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    prefix = [*_unprivileged(), sys.executable, "-m", "tuner"]
    procs = [
        subprocess.Popen(
            [*prefix, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in commands
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    return [(p.returncode, out) for p, out in zip(procs, outputs, strict=True)]


def _read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def test_read_only_home_cache_and_outputs_are_one_line(tmp_path):
    prefix = _unprivileged()  # skips before any work where it cannot run
    assert prefix or os.geteuid() != 0
    space = quick_space(tmp_path / "space.yaml", n_trials=1)
    assert cli("study", "create", "s", "--space", str(space)).exit_code == 0
    home = stores.home()
    before = {p: digest(p) for p in home.rglob("*") if p.is_file()}
    _read_only(home)
    outputs = tmp_path / "outputs"
    outputs.mkdir(mode=0o555)
    try:
        resumed, created, shown, exported, drawn = _run_unprivileged(
            ["study", "resume", "s", "--n-trials", "2"],
            ["study", "create", "t", "--space", str(space)],
            ["study", "show", "s"],
            ["export", "s", "-o", str(outputs / "best.yaml")],
            ["dashboard", "s", "-o", str(outputs / "d.html")],
        )
        code, out = resumed
        assert code == 1 and len(error_lines(out)) == 1, out
        assert "read-only" in out or "permission denied" in out, out
        code, out = created
        assert code == 1 and len(error_lines(out)) == 1, out
        code, out = shown  # reading is fine
        assert code == 0 and "COMPLETE" in out, out
        for code, out in (exported, drawn):
            assert code == 2 and len(error_lines(out)) == 1 and "not writable" in out, out
    finally:
        for p in [home, *home.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert {p: digest(p) for p in home.rglob("*") if p.is_file()} == before


def test_a_read_only_cache_is_one_line(tmp_path, monkeypatch):
    _unprivileged()
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o555)
    monkeypatch.setenv("TUNER_CACHE_DIR", str(cache))
    space = quick_space(tmp_path / "space.yaml", n_trials=1)
    ((code, out),) = _run_unprivileged(["study", "create", "s", "--space", str(space)])
    assert code == 1 and len(error_lines(out)) == 1 and "permission denied" in out, out
    assert not stores.home().exists()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _shorter(path: Path) -> None:
    np.save(path, np.load(path)[:-7])  # a valid array that disagrees with meta.json


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00" * 64)


DAMAGES = {
    "meta.json garbage": ("meta.json", _garbage),
    "meta.json empty": ("meta.json", _empty),
    "train.npy empty": ("train.npy", _empty),
    "val.npy truncated": ("val.npy", _truncate),
    "test.npy shorter": ("test.npy", _shorter),
    "token_bytes.npy garbage": ("token_bytes.npy", _garbage),
    "token_bytes.npy gone": ("token_bytes.npy", Path.unlink),
    "tokenizer.json gone": ("tokenizer.json", Path.unlink),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    cfg = from_dict(RunConfig, TINY_BASE)
    good = load_token_data(cfg.data, cfg.tokenizer)
    arrays = {n: np.array(getattr(good, n)) for n in ("train", "val", "test", "token_bytes")}
    name, damage_it = DAMAGES[damage]
    damage_it(good.root / name)
    again = load_token_data(cfg.data, cfg.tokenizer)
    assert again.root == good.root and again.vocab_size == good.vocab_size
    for n, values in arrays.items():
        np.testing.assert_array_equal(getattr(again, n), values)
    assert again.tokenizer_path.stat().st_size > 0


def test_a_study_runs_through_an_emptied_cache_file(tmp_path, monkeypatch):
    """An emptied .npy made `np.load` raise EOFError, which the CLI reported as a bare
    "Aborted."; the entry is now rebuilt and the study runs."""
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    cfg = from_dict(RunConfig, QUICK)
    _empty(load_token_data(cfg.data, cfg.tokenizer).root / "train.npy")
    space = quick_space(tmp_path / "space.yaml", n_trials=1)
    result = cli("study", "create", "s", "--space", str(space))
    assert result.exit_code == 0, result.output
    assert "Aborted" not in result.output
    assert [t.state.name for t in study().trials] == ["COMPLETE"]


# ---------------------------------------------------------------- a moved home


def _new_process() -> None:
    """What a fresh `tuner` process starts with: MLflow caches each run's artifact place
    in-process (private, test-only use), which a later CLI call here would otherwise reuse."""
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache.clear()


def test_a_moved_or_copied_home_resumes_exports_and_draws(tmp_path, monkeypatch):
    space = quick_space(tmp_path / "space.yaml", n_trials=1)
    assert cli("study", "create", "s", "--space", str(space)).exit_code == 0
    old = stores.home()
    moved = tmp_path / "moved" / "home"
    moved.parent.mkdir()
    shutil.move(str(old), str(moved))
    monkeypatch.setenv("TUNER_HOME", str(moved))
    _new_process()
    result = cli("study", "resume", "s", "--n-trials", "2")
    assert result.exit_code == 0, result.output
    assert not old.exists(), sorted(map(str, old.rglob("*")))  # nothing recreated there
    assert len(counted(study().trials)) == 2
    for run in runs(moved):
        assert run.info.artifact_uri.startswith(moved.as_uri()), run.info.artifact_uri
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    second = next(r for r in runs(moved) if r.data.tags.get("optuna.trial_number") == "1")
    assert client.list_artifacts(second.info.run_id)  # config.yaml landed in the moved home
    assert cli("export", "s", "-o", "best.yaml").exit_code == 0
    drawn = cli("dashboard", "s", "-o", "d.html")
    assert drawn.exit_code == 0 and "attached to MLflow" in drawn.output, drawn.output

    copy = tmp_path / "copy" / "home"
    shutil.copytree(moved, copy)
    original = digest(moved / "mlflow.db")
    monkeypatch.setenv("TUNER_HOME", str(copy))
    _new_process()
    assert cli("study", "resume", "s", "--n-trials", "3").exit_code == 0
    assert len(counted(study(home=copy).trials)) == 3
    assert len(counted(study(home=moved).trials)) == 2  # the original is untouched
    assert digest(moved / "mlflow.db") == original
    assert all(r.info.artifact_uri.startswith(copy.as_uri()) for r in runs(copy))


def test_moved_explicit_stores_resume_with_their_artifacts(tmp_path):
    """Stores named by --storage / --tracking-uri outside the home, moved together and named
    again at their new place: artifacts follow them, nothing is recreated at the old one."""
    space = quick_space(tmp_path / "space.yaml", n_trials=1)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()

    def flags(where: Path) -> list[str]:
        db = where / "mlflow.db"
        return [
            "--storage",
            f"sqlite:///{where / 'optuna.db'}",
            "--tracking-uri",
            f"sqlite:///{db}",
        ]

    assert cli("study", "create", "s", "--space", str(space), *flags(old)).exit_code == 0
    shutil.move(str(old), str(new))
    _new_process()
    code, out = finish(tuner_process(["study", "resume", "s", "--n-trials", "2", *flags(new)[:2]]))
    assert code == 1 and len(error_lines(out)) == 1, out
    assert "not found" in out and "--tracking-uri" in out, out
    assert not old.exists()  # the old MLflow store is not recreated empty
    result = cli("study", "resume", "s", "--n-trials", "2", *flags(new))
    assert result.exit_code == 0, result.output
    assert not old.exists(), sorted(map(str, old.rglob("*")))
    assert len(counted(study(home=new).trials)) == 2
    assert all(r.info.artifact_uri.startswith(new.as_uri()) for r in runs(new))
    client = MlflowClient(f"sqlite:///{new / 'mlflow.db'}")
    assert all(
        client.list_artifacts(r.info.run_id)
        for r in runs(new)
        if r.data.tags.get("optuna.trial_number")
    )


# ---------------------------------------------------------------- creation and deletion


def test_two_creators_of_one_name_one_wins_and_the_other_writes_nothing(tmp_path):
    """Three first-ever creates in a fresh home at once: `other` and one `dup` win."""
    space = quick_space(tmp_path / "space.yaml")
    create = ["study", "create", "{}", "--space", str(space), "--no-run"]
    names = {"dup": "dup", "dup2": "dup", "other": "other"}
    procs = {
        key: tuner_process([a.replace("{}", name) for a in create]) for key, name in names.items()
    }
    results = {name: finish(p) for name, p in procs.items()}
    assert results["other"][0] == 0, results["other"][1]
    codes = sorted([results["dup"][0], results["dup2"][0]])
    assert codes == [0, 2], results
    loser = results["dup"][1] if results["dup"][0] == 2 else results["dup2"][1]
    assert len(error_lines(loser)) == 1 and "study 'dup' already exists" in loser, loser
    parents = [r for r in runs(name="dup") if r.data.tags.get("tuner.kind") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # no stray FAILED run


def test_a_lost_creation_race_writes_nothing(tmp_path, monkeypatch):
    """Deterministic: the name check passes, then the storage refuses the duplicate."""
    import tuner.study

    space = quick_space(tmp_path / "space.yaml")
    assert cli("study", "create", "s", "--space", str(space), "--no-run").exit_code == 0
    before = len(runs())
    monkeypatch.setattr(tuner.study, "study_names", lambda storage: [])
    monkeypatch.setattr(tuner.study, "_check_new_name", lambda name: None)
    one_line(cli("study", "create", "s", "--space", str(space), "--no-run"), 2, "already exists")
    assert len(runs()) == before


def test_delete_refuses_a_running_study_and_force_stops_it(tmp_path):
    space = quick_space(tmp_path / "space.yaml", n_trials=2)
    assert cli("study", "create", "s", "--space", str(space), "--no-run").exit_code == 0
    gate = tmp_path / "gate"
    proc = tuner_process(
        ["study", "resume", "s"],
        {"TUNER_FAULT": "wait-at-milestone", "TUNER_FAULT_FILE": str(gate)},
    )
    try:
        wait_for(lambda: Path(str(gate) + ".reached").exists(), what="trial 0 at a milestone")
        one_line(cli("study", "delete", "s"), 2, "running trial", "--force")
        assert study().trials[0].state.name == "RUNNING"
        forced = cli("study", "delete", "s", "--force")
        assert forced.exit_code == 0 and "stopped running trials 0" in forced.output
    finally:
        gate.touch()
    code, out = finish(proc)
    assert code == 1 and len(error_lines(out)) == 1, out
    assert "was deleted while it ran" in out, out
    assert not running()
    assert "s" not in [
        s.study_name for s in optuna.get_all_study_summaries(stores.default_storage())
    ]
    assert cli("study", "create", "s", "--space", str(space), "--no-run").exit_code == 0


# ---------------------------------------------------------------- signals and crash points


def test_sigterm_is_ctrl_c(tmp_path):
    space = quick_space(tmp_path / "space.yaml", n_trials=2)
    proc = tuner_process(
        ["study", "create", "s", "--space", str(space)], {"TUNER_FAULT": "sigterm-at-milestone"}
    )
    code, out = finish(proc)
    assert code == 143, out
    assert "terminated; continue with `tuner study resume s`" in out and "Traceback" not in out
    first = study().trials[0]
    assert first.state.name == "FAIL" and first.user_attrs[REASON] == "interrupted"
    assert not running()
    assert cli("study", "resume", "s").exit_code == 0
    assert len(counted(study().trials)) == 2 and not running()


def test_ctrl_c_under_workers_is_one_line_and_the_study_resumes(tmp_path):
    """Ctrl-C reaches the command and the worker it started beside itself (one process group),
    and the command forwards it: each trial ends FAIL "interrupted" with its MLflow run
    KILLED, the command alone says so, and `study resume` finishes the study."""
    space = quick_space(tmp_path / "space.yaml", n_trials=3)
    gate = tmp_path / "gate"
    proc = tuner_process(
        ["study", "create", "s", "--space", str(space), "--workers", "2"],
        {"TUNER_FAULT": "wait-at-milestone", "TUNER_FAULT_FILE": str(gate)},
        # as from a terminal, even where the suite runs as a background job (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: len(list(tmp_path.glob("gate.reached.*"))) == 2, what="two trials running")
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    code, out = finish(proc)
    assert code == 130, out
    assert out.count("interrupted; continue with `tuner study resume s`") == 1, out
    assert "Traceback" not in out, out
    trials = load_study("s").study.trials  # several local workers: the journal storage
    ended = [(t.state.name, t.user_attrs.get(REASON)) for t in trials if t.state.name != "WAITING"]
    assert ended == [("FAIL", "interrupted")] * 2, ended  # the queued third waits, untouched
    assert not running()
    gate.touch()
    assert cli("study", "resume", "s").exit_code == 0
    assert len(counted(load_study("s").study.trials)) == 3 and not running()


def test_killed_between_mlflow_and_optuna_is_reconciled(tmp_path, monkeypatch, fast_heartbeat):
    """Killed after trial 0's run is ended FINISHED, before Optuna hears: resume fails it as
    lost, retries it once, and its MLflow run is marked FAILED to match."""
    space = quick_space(tmp_path / "space.yaml", n_trials=1)
    env = {"TUNER_FAULT": "exit-after-finish"}
    code, out = finish(tuner_process(["study", "create", "s", "--space", str(space)], env))
    assert code == 137, out
    assert study().trials[0].state.name == "RUNNING"
    (first,) = [r for r in runs() if r.data.tags.get("tuner.kind") == "trial"]
    assert first.info.status == "FINISHED"  # MLflow says done, Optuna does not know
    time.sleep(GRACE + 0.5)
    assert cli("study", "resume", "s").exit_code == 0
    trials = study().trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert len(counted(trials)) == 1  # the retry stands for the lost trial
    by_number = {r.data.tags.get("optuna.trial_number"): r for r in runs()}
    assert (
        by_number["0"].info.status == "FAILED" and by_number["0"].data.tags["tuner.state"] == "FAIL"
    )
    assert by_number["1"].info.status == "FINISHED"
    assert not running()
