"""K workers on one study from one command (`--workers K`): on a CPU this process, its imports
already paid, is one of them and K-1 start beside it (tuner.spawn), a K-th of the cores each;
on GPUs every worker is a process of its own, placed on its device. A worker says a line per
trial and runs queued trials until none is left."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from tuner.device import resolve_device
from tuner.progress import LineReporter
from tuner.spawn import cpu_share, start_workers, stop_workers, wait_workers
from tuner.startup import warm_up
from tuner.study import run_study

if TYPE_CHECKING:
    from tuner.study import StudyHandle


def run_workers(
    handle: StudyHandle, workers: int, timeout: float | None, gpus: list[int] | None = None
) -> list[int]:
    """Run `workers` workers on the study and wait for them; the failed ones' exit codes."""
    here = not gpus and resolve_device(handle.space.base.train.device).type == "cpu"
    threads = cpu_share(workers)
    procs = start_workers(
        handle.name,
        handle.storage_url,
        handle.tracking_uri,
        workers - here,
        timeout,
        gpus,
        threads=threads,
    )
    if here:
        try:
            work(handle, timeout, threads)
        except KeyboardInterrupt:
            stop_workers(procs)
            raise
        except BaseException:
            wait_workers(procs)
            raise
    return [code for code in wait_workers(procs) if code != 0]


def work(handle: StudyHandle, timeout: float | None, threads: int | None = None) -> None:
    """Work on the study as one worker until its queue is empty; with `threads`, on that many
    cores (unless OMP_NUM_THREADS says otherwise), given back afterwards."""
    before = torch.get_num_threads()
    if threads and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)
    reporter = LineReporter()
    where = f"{handle.storage_url}, MLflow {handle.tracking_uri}"
    reporter.note(f"joined study {handle.name} ({where})")
    try:
        warm_up(handle.space, reporter.stage)
        run_study(handle, timeout=timeout, reporter=reporter, fill=False)
    finally:
        torch.set_num_threads(before)
    reporter.note(f"done: {handle.finished_count()}/{handle.space.n_trials} trials finished")
