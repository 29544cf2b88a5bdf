"""Loaded by bench/overhead.py's `tuner study create` subprocess (through PYTHONPATH) to stamp
the wall-clock time of a few moments on the way to the first training step, without editing
tuner: the interpreter coming up, modules imported, and the first calls of chosen functions.

Each mark is one line "label unix_time cpu_seconds" appended to the file named by
$TUNER_BENCH_MARKS (cpu_seconds: this process's CPU time so far, which a busy machine
inflates far less than wall time).
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import sys
import time

MARKS = os.environ.get("TUNER_BENCH_MARKS", "")
# module -> functions ("Class.method" for methods) whose first calls are stamped
TARGETS = {
    "typer": (),
    "optuna": (),
    "torch": (),
    "mlflow": (),
    "transformers.models.gpt2.modeling_gpt2": (),
    "tuner.cli": (),
    "tuner.study": ("create_study", "run_study"),
    "tuner.tracking": ("Tracker.start_trial",),
    "tuner.train": ("train_run",),
    "tuner.pipeline": ("BatchStream.next",),
}


def mark(label: str) -> None:
    with open(MARKS, "a", encoding="utf-8") as out:
        out.write(f"{label} {time.time():.6f} {time.process_time():.6f}\n")


def stamped(fn, name: str, first_calls: int):
    """`fn` that stamps its first `first_calls` calls (start) and the end of the first one."""
    calls = [0]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        number = calls[0]
        if number <= first_calls:
            mark(f"{name}:call{number}")
        try:
            return fn(*args, **kwargs)
        finally:
            if number == 1:
                mark(f"{name}:end1")

    return wrapper


def patch(module, dotted: str) -> None:
    owner = module
    *path, attr = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    first_calls = 2 if dotted == "BatchStream.next" else 1  # 2nd batch drawn = first step done
    setattr(owner, attr, stamped(getattr(owner, attr), dotted, first_calls))


class StampingFinder(importlib.abc.MetaPathFinder):
    """Finds target modules through the other finders (tuner may be an editable install with
    its own finder) and patches them right after they execute, before any importer binds
    their names."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            for dotted in TARGETS[fullname]:
                patch(module, dotted)
            mark(f"import:{fullname}")

        spec.loader.exec_module = exec_module
        return spec


if MARKS:
    mark("interpreter")
    sys.meta_path.insert(0, StampingFinder())
