"""Bad input, as a hostile user types it: every case is one line, exit code 2, no traceback,
and nothing written (the stores under TUNER_HOME do not appear, or do not change).

The table runs through the real CLI in-process. Most cases fail while parsing or in the
pre-flight checks, before any model or store is touched; the rest run against one small
study made once per module (`existing`), whose home is compared file by file before and after.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TINY_BASE
from tests.helpers import cli
from tuner import stores

GOOD: dict[str, Any] = {
    "name": "bad",
    "description": "a space to break",
    "base": TINY_BASE,
    "sampler": "random",
    "pruner": "none",
    "n_trials": 2,
    "seed": 0,
    "params": {
        "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
        "batch_size": {"choices": [4, 8]},
    },
}


def space(**changes: Any) -> dict:
    """GOOD with top-level keys replaced (None deletes one)."""
    out = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def params(**specs: Any) -> dict:
    return space(params=specs)


def base(section: str, **values: Any) -> dict:
    """GOOD with base-config values changed (and only the learning rate searched)."""
    out = copy.deepcopy(GOOD)
    out["base"][section] = {**out["base"].get(section, {}), **values}
    out["params"] = {"learning_rate": GOOD["params"]["learning_rate"]}
    return out


def lr(**spec: Any) -> dict:
    return params(learning_rate=spec)


CREATE = ("study", "create", "b", "--space", "{space}")
VALIDATE = ("space", "validate", "{space}")

# (id, argv, space file content (dict, str, bytes or None), words the one line must hold)
SPACE_CASES: list[tuple[str, Any, str]] = [
    ("invalid-yaml", "name: [unclosed\n", "invalid YAML"),
    ("not-utf8", b"name: caf\xe9\n", "not UTF-8"),
    ("top-list", "- 1\n- 2\n", "mapping at the top level"),
    ("top-scalar", "42\n", "mapping at the top level"),
    ("empty-file", "", "mapping at the top level"),
    ("unknown-top-key", space(colour="red"), "colour: unknown key"),
    ("name-not-str", space(name=3), "name: expected str"),
    ("sampler-unknown", space(sampler="magic"), "unknown sampler"),
    ("pruner-unknown", space(pruner="magic"), "unknown pruner"),
    ("n-trials-0", space(n_trials=0), "n_trials"),
    ("n-trials-neg", space(n_trials=-1), "n_trials"),
    ("n-trials-str", space(n_trials="ten"), "n_trials: expected int"),
    ("n-trials-bool", space(n_trials=True), "n_trials: expected int"),
    ("n-trials-float", space(n_trials=1e12), "n_trials: expected int"),
    ("n-trials-huge", space(n_trials=10_000_000), "n_trials: must be between"),
    ("seed-neg", space(seed=-1), "seed: must be between 0 and"),
    ("seed-2-40", space(seed=2**40), "seed: must be between 0 and"),
    ("seed-str", space(seed="x"), "seed: expected int"),
    ("timeout-nan", "timeout: .nan\n" + yaml.safe_dump(space()), "timeout: must be a positive"),
    ("timeout-inf", "timeout: .inf\n" + yaml.safe_dump(space()), "timeout: must be a positive"),
    ("timeout-neg", space(timeout=-5), "timeout: must be a positive"),
    ("timeout-zero", space(timeout=0), "timeout: must be a positive"),
    ("timeout-str", space(timeout="soon"), "timeout: must be a positive"),
    ("objective-metric", space(objective={"metric": "wings"}), "unknown metric"),
    ("objective-direction", space(objective={"direction": "up"}), "minimize or maximize"),
    ("objective-empty-list", space(objective=[]), "at least one objective"),
    ("objective-key", space(objective={"metric": "val_loss", "goal": 1}), "unknown key"),
    ("objective-scalar", space(objective=5), "expected a mapping"),
    (
        "multi-with-pruner",
        space(objective=[{"metric": "val_loss"}, {"metric": "n_params"}], pruner="median"),
        "pruning needs a single objective",
    ),
    (
        "cmaes-multi",
        space(objective=[{"metric": "val_loss"}, {"metric": "n_params"}], sampler="cmaes"),
        "cmaes handles a single objective",
    ),
    ("params-list", space(params=[1, 2]), "params: expected a mapping"),
    ("grid-no-params", space(sampler="grid", params={}), "needs at least one param"),
    (
        "grid-float-no-values",
        space(sampler="grid", params={"dropout": {"low": 0.0, "high": 0.2}}),
        "needs explicit `grid` values",
    ),
    (
        "grid-too-large",
        space(
            sampler="grid",
            params={
                "learning_rate": {
                    "low": 1e-4,
                    "high": 1.0,
                    "grid": [1e-4 * 1.5**i for i in range(22)],
                },
                "weight_decay": {"low": 0.0, "high": 1.0, "grid": [i / 100 for i in range(100)]},
                "dropout": {"low": 0.0, "high": 0.5, "grid": [i / 100 for i in range(50)]},
            },
        ),
        "the grid has 110000 points",
    ),
    ("param-unknown", params(**{"model.wings": {"low": 1, "high": 2}}), "unknown param"),
    ("param-section", params(model={"low": 1, "high": 2}), "params.model"),
    ("param-not-mapping", params(learning_rate=0.01), "expected a mapping"),
    ("param-key", lr(low=1e-3, high=1e-2, colour=1), "colour: unknown key"),
    ("param-type", lr(type="complex", low=1e-3, high=1e-2), "must be float, int or categorical"),
    ("choices-empty", params(batch_size={"choices": []}), "must be a non-empty list"),
    ("choices-not-list", params(batch_size={"choices": 8}), "must be a non-empty list"),
    ("choices-invalid", params(batch_size={"choices": [8, 0]}), "value 0 is invalid"),
    ("choices-negative", params(batch_size={"choices": [8, -1]}), "value -1 is invalid"),
    ("choices-size", params(model_size={"choices": ["nano", "huge"]}), "value 'huge' is invalid"),
    ("choices-arch", params(arch={"choices": ["gpt2", "xl"]}), "value 'xl' is invalid"),
    (
        "choices-grid-missing",
        params(batch_size={"choices": [4, 8], "grid": [16]}),
        "value 16 is not one of the choices",
    ),
    ("choices-on-float", lr(type="float", choices=[1e-3]), "only for type categorical"),
    ("missing-high", lr(low=1e-3), "needs low and high"),
    ("low-above-high", lr(low=0.1, high=0.01), "low (0.1) > high (0.01)"),
    ("low-string", lr(low="small", high=0.01), "low: expected a number"),
    ("low-bool", lr(low=True, high=0.01), "low: expected a number"),
    ("low-inf", "params:\n  dropout: {low: -.inf, high: 0.2}\n", "low: expected a finite"),
    ("high-inf", "params:\n  learning_rate: {low: 0.001, high: .inf}\n", "high: expected a finite"),
    ("high-nan", "params:\n  dropout: {low: 0.0, high: .nan}\n", "high: expected a finite"),
    ("int-low-fraction", params(batch_size={"low": 1.5, "high": 8}), "expected an integer"),
    ("log-low-zero", lr(low=0, high=0.01, log=True), "needs low > 0"),
    ("log-not-bool", lr(low=1e-3, high=0.01, log="yes"), "log: expected true/false"),
    ("step-zero", params(dropout={"low": 0.0, "high": 0.2, "step": 0}), "step: must be"),
    ("step-negative", params(dropout={"low": 0.0, "high": 0.2, "step": -0.1}), "step: must be"),
    ("step-inf", "params:\n  dropout: {low: 0.0, high: 0.2, step: .inf}\n", "step: must be"),
    ("step-with-log", lr(low=1e-3, high=0.01, log=True, step=0.001), "cannot be combined"),
    (
        "int-step-fraction",
        params(batch_size={"low": 4, "high": 8, "step": 0.5}),
        "an int param needs a whole step",
    ),
    ("grid-not-list", lr(low=1e-3, high=0.01, grid=0.005), "grid: expected a list"),
    ("grid-outside", lr(low=1e-3, high=0.01, grid=[0.5]), "is outside"),
    ("grid-string", lr(low=1e-3, high=0.01, grid=["fast"]), "invalid"),
    (
        "grid-off-step",
        params(dropout={"low": 0.0, "high": 0.2, "step": 0.1, "grid": [0.05]}),
        "not low + a multiple",
    ),
    ("grid-inf", "params:\n  learning_rate: {low: 0.001, high: 0.01, grid: [.inf]}\n", "invalid"),
    (
        "duplicate-field",
        params(
            learning_rate={"low": 1e-3, "high": 1e-2}, **{"optim.lr": {"low": 1e-3, "high": 1e-2}}
        ),
        "keep one",
    ),
    ("dropout-high", params(dropout={"low": 0.0, "high": 1.5}), "must be in [0, 1)"),
    ("param-int-key", "params:\n  1: {low: 1, high: 2}\n", "param names must be strings"),
    ("base-not-mapping", space(base=[1]), "base"),
    ("base-section", space(base={"wings": {}}), "wings: unknown key"),
    ("train-key", base("train", wings=2), "train.wings: unknown key"),
    ("batch-zero", base("train", batch_size=0), "train.batch_size"),
    ("seq-len-neg", base("train", seq_len=-1), "train.seq_len"),
    ("no-budget", base("train", tokens=0, flops=0.0), "a budget must be > 0"),
    ("flops-inf", "base:\n  train: {flops: .inf}\n", "expected a finite number"),
    ("lr-inf", "base:\n  optim: {lr: .inf}\n", "expected a finite number"),
    ("lr-nan", "base:\n  optim: {lr: .nan}\n", "expected a finite number"),
    ("lr-neg", base("optim", lr=-1.0), "optim.lr: must be > 0"),
    ("lr-str", base("optim", lr="fast"), "optim.lr: expected a number"),
    ("dropout-one", base("model", dropout=1.0), "model.dropout"),
    ("size-unknown", base("model", size="giant"), "unknown preset"),
    ("arch-unknown", base("model", arch="rnn"), "model.arch"),
    ("custom-no-shape", base("model", size="custom"), "'custom' needs n_layer"),
    ("n-layer-neg", base("model", n_layer=-1), "model.n_layer"),
    ("vocab-small", base("tokenizer", vocab_size=100), "tokenizer.vocab_size"),
    ("pretrained-no-name", base("tokenizer", kind="pretrained"), "tokenizer.name"),
    ("hub-no-name", base("data", source="hub"), "data.name"),
    ("files-no-paths", base("data", source="files"), "data.paths"),
    ("val-fraction", base("data", val_fraction=0.7), "data.val_fraction"),
    ("max-chars-neg", base("data", max_chars=-1), "data.max_chars"),
    ("normalize", base("data", preprocess={"normalize": "NFD"}), "normalize"),
    ("precision", base("train", precision="fp8"), "train.precision"),
    ("schedule-kind", base("schedule", kind="step"), "schedule.kind"),
    ("warmup-one", base("schedule", warmup_fraction=1.0), "warmup_fraction"),
    ("beta-one", base("optim", beta1=1.0), "beta1"),
    ("diverge-one", base("train", diverge_factor=1.0), "diverge_factor"),
    ("micro-neg", base("train", micro_batch_size=-1), "micro_batch_size"),
    ("compile-str", base("train", compile="yes"), "train.compile"),
    ("price-not-map", base("cost", price_per_hour=3), "price_per_hour"),
    ("base-seed-neg", space(base={**TINY_BASE, "seed": -1}), "seed: must be between"),
    ("base-seed-huge", space(base={**TINY_BASE, "seed": 2**40}), "seed: must be between"),
    ("batch-1e7", base("train", batch_size=10_000_000), "gives 0 steps"),
    ("batch-choice-1e7", params(batch_size={"choices": [8, 10_000_000]}), "batch_size=10000000"),
    ("milestones-many", base("train", milestones=1000), "fewer than train.milestones"),
    ("flops-tiny", base("train", flops=1.0), "gives 0 steps"),
    ("d-model-heads", base("model", size="custom", n_layer=1, d_model=30, n_head=4), "divisible"),
]
# checks that need the data (train/val split sizes) or the memory estimate: `create` only
CREATE_ONLY: list[tuple[str, Any, str]] = [
    (
        "seq-len-1e7",
        base("train", seq_len=10_000_000, tokens=10**12),
        "longer than the training split",
    ),
    (
        "seq-len-choice-1e7",
        space(
            base={**TINY_BASE, "train": {**TINY_BASE["train"], "tokens": 10**12}},
            params={"seq_len": {"choices": [32, 10_000_000]}},
        ),
        "params.seq_len: 10000000 is longer than the training split",
    ),
    ("empty-val-split", base("data", max_chars=2000), "split is empty"),
    ("files-missing", base("data", source="files", paths=["nowhere.txt"]), "file not found"),
    ("files-type", base("data", source="files", paths=["{space}"]), "unsupported file type"),
    (
        "model-cannot-fit",
        base("model", size="custom", n_layer=200, d_model=16384, n_head=16),
        "memory: the largest point",
    ),
]

NAMES = ["../escape", "a/b", "bad name", ".hidden", "a.", "x" * 101, "a..b", "-lead", "ünï", "a\\b"]

FLAG_CASES: list[tuple[str, tuple[str, ...], str]] = [
    ("sampler-flag", ("--sampler", "magic"), "unknown sampler"),
    ("pruner-flag", ("--pruner", "magic"), "unknown pruner"),
    ("n-trials-flag-0", ("--n-trials", "0"), "n_trials"),
    ("n-trials-flag-neg", ("--n-trials", "-1"), "n_trials"),
    ("n-trials-flag-str", ("--n-trials", "abc"), "--n-trials"),
    ("n-trials-flag-float", ("--n-trials", "1e12"), "--n-trials"),
    ("timeout-flag-neg", ("--timeout", "-5"), "timeout"),
    ("timeout-flag-nan", ("--timeout", "nan"), "timeout"),
    ("timeout-flag-inf", ("--timeout", "inf"), "timeout"),
    ("timeout-flag-str", ("--timeout", "soon"), "--timeout"),
    ("seed-flag-neg", ("--seed", "-1"), "seed: must be between"),
    ("seed-flag-huge", ("--seed", "4294967296"), "seed: must be between"),
    ("seed-flag-str", ("--seed", "x"), "--seed"),
    ("workers-zero", ("--workers", "0"), "--workers"),
    ("set-unknown", ("--set", "train.wings=2"), "unknown config key"),
    ("set-type", ("--set", "train.tokens=many"), "expected an integer"),
    ("set-no-equals", ("--set", "noequals"), "expected key=value"),
    ("set-no-key", ("--set", "=5"), "expected key=value"),
    ("set-inf", ("--set", "optim.lr=.inf"), "finite"),
    ("set-nan", ("--set", "optim.lr=.nan"), "finite"),
    ("set-size", ("--set", "model.size=huge"), "unknown preset"),
    ("set-batch", ("--set", "train.batch_size=0"), "train.batch_size"),
    ("set-seed", ("--set", "seed=-1"), "seed"),
    ("set-section", ("--set", "train=5"), "section"),
    ("set-tokens-tiny", ("--set", "train.tokens=10"), "gives 0 steps"),
    ("storage-dialect", ("--storage", "nosuchdb://x/y"), "cannot open storage"),
    ("storage-memory-1", ("--storage", "sqlite:///"), "in-memory"),
    ("storage-memory-2", ("--storage", "sqlite://"), "in-memory"),
    ("storage-memory-3", ("--storage", "sqlite:///:memory:"), "in-memory"),
    ("storage-not-url", ("--storage", "notaurl"), "cannot open storage"),
    ("storage-driver", ("--storage", "postgresql+nodriver://u@h/db"), "cannot open storage"),
    ("tracking-scheme", ("--tracking-uri", "ftp://x"), "--tracking-uri"),
    ("tracking-memory", ("--tracking-uri", "sqlite:///"), "in-memory"),
    ("tracking-nonsense", ("--tracking-uri", "nonsense"), "--tracking-uri"),
    ("unknown-option", ("--wings",), "No such option"),
]

# commands on the study `s` of the `existing` home (one complete trial)
EXISTING_CASES: list[tuple[str, tuple[str, ...], str]] = [
    ("resume-n-neg", ("study", "resume", "s", "--n-trials", "-1"), "--n-trials -1"),
    ("resume-n-zero", ("study", "resume", "s", "--n-trials", "0"), "--n-trials 0"),
    ("resume-n-str", ("study", "resume", "s", "--n-trials", "x"), "--n-trials"),
    ("resume-timeout-neg", ("study", "resume", "s", "--timeout", "-5"), "--timeout"),
    ("resume-timeout-nan", ("study", "resume", "s", "--timeout", "nan"), "--timeout"),
    ("resume-timeout-inf", ("study", "resume", "s", "--timeout", "inf"), "--timeout"),
    ("resume-ghost", ("study", "resume", "ghost"), "no study named 'ghost'"),
    ("resume-bad-name", ("study", "resume", "a."), "study name"),
    ("resume-storage-memory", ("study", "resume", "s", "--storage", "sqlite:///"), "in-memory"),
    (
        "resume-tracking-memory",
        ("study", "resume", "s", "--tracking-uri", "sqlite://"),
        "in-memory",
    ),
    ("resume-tracking-scheme", ("study", "resume", "s", "--tracking-uri", "ftp://x"), "ftp"),
    ("resume-storage-missing", ("study", "resume", "s", "--storage", "sqlite:///no.db"), "no such"),
    ("worker-timeout-neg", ("study", "worker", "s", "--timeout", "-5"), "--timeout"),
    ("worker-timeout-nan", ("study", "worker", "s", "--timeout", "nan"), "--timeout"),
    ("worker-ghost", ("study", "worker", "ghost"), "no study named 'ghost'"),
    ("show-ghost", ("study", "show", "ghost"), "ghost"),
    ("show-bad-name", ("study", "show", "a/b"), "study name"),
    ("delete-ghost", ("study", "delete", "ghost"), "ghost"),
    ("delete-bad-name", ("study", "delete", "../x"), "study name"),
    ("list-memory", ("study", "list", "--storage", "sqlite:///"), "in-memory"),
    ("list-dialect", ("study", "list", "--storage", "nosuchdb://x"), "cannot open storage"),
    ("export-ghost", ("export", "ghost", "-o", "e.yaml"), "ghost"),
    ("export-metric", ("export", "s", "-o", "e.yaml", "--metric", "wings"), "--metric"),
    ("export-max-params", ("export", "s", "-o", "e.yaml", "--max-params", "abc"), "--max-params"),
    ("export-max-params-neg", ("export", "s", "-o", "e.yaml", "--max-params", "-5"), "positive"),
    ("export-max-flops-nan", ("export", "s", "-o", "e.yaml", "--max-flops", "nan"), "positive"),
    ("export-too-strict", ("export", "s", "-o", "e.yaml", "--max-params", "1"), "no complete"),
    ("export-trial", ("export", "s", "-o", "e.yaml", "--trial", "99"), "--trial 99"),
    ("export-trial-str", ("export", "s", "--trial", "x"), "--trial"),
    ("export-dir", ("export", "s", "-o", "."), "is a directory"),
    ("export-suffix", ("export", "s", "-o", "out.txt"), ".yaml"),
    ("export-proc", ("export", "s", "-o", "/proc/nope/best.yaml"), "cannot create folder"),
    ("export-not-dir", ("export", "s", "-o", "/dev/null/best.yaml"), "-o"),
    ("dashboard-ghost", ("dashboard", "ghost"), "ghost"),
    ("dashboard-bad-name", ("dashboard", "a."), "study name"),
    ("dashboard-proc", ("dashboard", "s", "-o", "/proc/nope/d.html"), "cannot create folder"),
    ("dashboard-not-dir", ("dashboard", "s", "-o", "/dev/null/d.html"), "-o"),
]

# `tuner train`, `generate`, `space show`: files and flags
FILE_CASES: list[tuple[str, tuple[str, ...], Any, str]] = [
    ("train-missing", ("train", "missing.yaml"), None, "file not found"),
    ("train-bad-yaml", ("train", "{file}"), "a: [b\n", "invalid YAML"),
    ("train-not-utf8", ("train", "{file}"), b"seed: \xff\n", "not UTF-8"),
    ("train-top-list", ("train", "{file}"), "- 1\n", "mapping at the top level"),
    ("train-unknown-key", ("train", "{file}"), "wings: 2\n", "wings: unknown key"),
    ("train-seed", ("train", "{file}"), "seed: -1\n", "seed: must be between"),
    ("train-lr-inf", ("train", "{file}"), "optim: {lr: .inf}\n", "finite"),
    ("train-tokens-str", ("train", "{file}", "--tokens", "abc"), {}, "--tokens"),
    ("train-tokens-neg", ("train", "{file}", "--tokens", "-5"), {}, "--tokens"),
    ("train-flops-nan", ("train", "{file}", "--flops", "nan"), {}, "--flops"),
    ("train-both", ("train", "{file}", "--tokens", "1k", "--flops", "1e9"), {}, "one budget"),
    ("train-set", ("train", "{file}", "--set", "x=1"), {}, "unknown config key"),
    ("train-init-missing", ("train", "{file}", "--init-from", "nowhere"), {}, "nowhere"),
    ("train-out-file", ("train", "{file}", "--out", "{file}"), {}, "--out"),
    ("train-experiment", ("train", "{file}", "--experiment", "x" * 201), {}, "--experiment"),
    ("generate-missing", ("generate", "nowhere", "--prompt", "x"), None, "nowhere"),
    ("generate-file", ("generate", "{file}", "--prompt", "x"), "a: 1\n", "{file}"),
    ("space-show-missing", ("space", "show", "missing.yaml"), None, "file not found"),
    ("space-show-bad", ("space", "show", "{file}"), "seed: -1\n", "seed"),
    ("ui-port", ("ui", "--port", "abc"), None, "--port"),
]


def home_state() -> dict[str, str]:
    """Every file under TUNER_HOME with a hash of its content (empty if there is no home).

    A SQLite database in WAL mode is hashed by its rows (a reader may checkpoint the log
    into the file, or touch its -shm index, without changing any data)."""
    root = stores.home()
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(_content(p)).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def _content(path: Path) -> bytes:
    if path.suffix != ".db":
        return path.read_bytes()
    with contextlib.closing(sqlite3.connect(path)) as con:
        return "\n".join(con.iterdump()).encode()


def write(path: Path, content: Any) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        text = yaml.safe_dump(content, sort_keys=False).replace("'{space}'", str(path))
        path.write_text(text)
    return str(path)


def assert_one_line_exit_2(result, words: str) -> None:
    output = result.output.strip()
    lines = output.splitlines()
    assert result.exit_code == 2, output
    assert len(lines) == 1, output
    assert "Traceback" not in output and lines[0].startswith("error:"), output
    assert words in lines[0], output


def run_fresh(argv: tuple[str, ...], cwd: Path) -> Any:
    result = cli(*argv)
    assert home_state() == {} and not stores.home().exists()
    assert not (cwd / "dashboards").exists() and not (cwd / "best.yaml").exists()
    return result


@pytest.mark.parametrize("case", SPACE_CASES, ids=[c[0] for c in SPACE_CASES])
@pytest.mark.parametrize("command", ["create", "validate"])
def test_bad_space(tmp_path, case, command):
    _, content, words = case
    path = write(tmp_path / "space.yaml", content)
    argv = CREATE if command == "create" else VALIDATE
    result = run_fresh(tuple(a.replace("{space}", path) for a in argv), tmp_path)
    assert_one_line_exit_2(result, words)


@pytest.mark.parametrize("case", CREATE_ONLY, ids=[c[0] for c in CREATE_ONLY])
def test_bad_space_found_from_the_data(tmp_path, case):
    _, content, words = case
    path = write(tmp_path / "space.yaml", content)
    result = run_fresh(tuple(a.replace("{space}", path) for a in CREATE), tmp_path)
    assert_one_line_exit_2(result, words)


@pytest.mark.parametrize("name", NAMES)
def test_bad_study_name(tmp_path, name):
    path = write(tmp_path / "space.yaml", GOOD)
    result = run_fresh(("study", "create", "--space", path, "--", name), tmp_path)
    assert_one_line_exit_2(result, "study name")


@pytest.mark.parametrize("case", FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_bad_create_flag(tmp_path, case):
    _, flags, words = case
    path = write(tmp_path / "space.yaml", GOOD)
    result = run_fresh(("study", "create", "b", "--space", path, *flags), tmp_path)
    assert_one_line_exit_2(result, words)


@pytest.mark.parametrize("case", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file_or_flag(tmp_path, case):
    _, argv, content, words = case
    file = tmp_path / "config.yaml"
    if content is not None:
        write(file, content)
    argv = tuple(a.replace("{file}", str(file)) for a in argv)
    result = run_fresh(argv, tmp_path)
    assert_one_line_exit_2(result, words.replace("{file}", str(file)))
    assert not (tmp_path / "runs").exists()


_EXISTING: dict[str, Path] = {}


@pytest.fixture
def existing(tmp_path_factory, monkeypatch):
    """A home holding study `s` with one complete trial, made once for the module."""
    if "home" not in _EXISTING:
        root = tmp_path_factory.mktemp("existing")
        monkeypatch.setenv("TUNER_HOME", str(root / "home"))
        monkeypatch.chdir(root)
        path = write(root / "space.yaml", space(n_trials=1))
        made = cli("study", "create", "s", "--space", path)
        assert made.exit_code == 0, made.output
        _EXISTING["home"] = root / "home"
    monkeypatch.setenv("TUNER_HOME", str(_EXISTING["home"]))
    return _EXISTING["home"]


@pytest.mark.parametrize("case", EXISTING_CASES, ids=[c[0] for c in EXISTING_CASES])
def test_bad_input_on_an_existing_study(existing, tmp_path, case):
    _, argv, words = case
    before = home_state()
    assert before  # the study is there
    result = cli(*argv)
    assert home_state() == before
    assert not (tmp_path / "e.yaml").exists() and not (tmp_path / "dashboards").exists()
    assert_one_line_exit_2(result, words)


def test_the_table_holds_at_least_150_cases():
    total = (
        2 * len(SPACE_CASES)
        + len(CREATE_ONLY)
        + len(NAMES)
        + len(FLAG_CASES)
        + len(FILE_CASES)
        + len(EXISTING_CASES)
    )
    assert total >= 150, total
