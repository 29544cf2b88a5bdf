"""Local worker processes: `tuner study worker` started K times with this interpreter, each with
its share of the CPU threads and, on a GPU host, its device (CUDA_VISIBLE_DEVICES, round robin
over `--gpus`) and its share of that device's memory (TUNER_GPU_MEMORY_FRACTION)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tuner.device import MEMORY_FRACTION_ENV
from tuner.errors import SPAWNED_WORKER_ENV, ConfigError

if TYPE_CHECKING:
    from tuner.space import SearchSpace


def worker_command(
    name: str, storage_url: str, tracking_uri: str, timeout: float | None = None
) -> list[str]:
    """`tuner study worker ...` as `python -m tuner` (works without the console script)."""
    cmd = [sys.executable, "-m", "tuner", "study", "worker", name]
    cmd += ["--storage", storage_url, "--tracking-uri", tracking_uri]
    return cmd + (["--timeout", str(timeout)] if timeout else [])


def cpu_share(n_workers: int) -> int:
    """Torch threads of each of `n_workers` workers on one machine: an equal share of its
    cores."""
    return max(1, (os.cpu_count() or 1) // n_workers)


def worker_envs(
    n_workers: int,
    gpus: list[int] | None = None,
    environ: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> list[dict[str, str]]:
    """The environment of each of `n_workers` workers: `threads` CPU threads (default an
    equal share of the cores); with `gpus`, device gpus[i % len(gpus)] as the only visible one
    (numbered as this process sees them: an inherited CUDA_VISIBLE_DEVICES is honoured); and,
    where several workers share a device, each its 1/k of its memory (a worker that shares
    none gets no cap). Without `gpus` every worker uses the default device, so K > 1 of them
    split it. Every worker is marked spawned (`SPAWNED_WORKER_ENV`): the command speaks for
    it."""
    base = dict(os.environ if environ is None else environ) | {SPAWNED_WORKER_ENV: "1"}
    share = str(threads or cpu_share(n_workers))
    base.setdefault("OMP_NUM_THREADS", share)
    base.setdefault("MKL_NUM_THREADS", share)
    visible = [v.strip() for v in base.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    placement = [gpus[i % len(gpus)] for i in range(n_workers)] if gpus else [None] * n_workers
    sharing = Counter(placement)
    envs = []
    for gpu in placement:
        env = dict(base)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible[gpu] if gpu < len(visible) else str(gpu)
        if sharing[gpu] > 1:
            env[MEMORY_FRACTION_ENV] = f"{1 / sharing[gpu]:.6g}"
        else:
            env.pop(MEMORY_FRACTION_ENV, None)
        envs.append(env)
    return envs


def start_workers(
    name: str,
    storage_url: str,
    tracking_uri: str,
    n_workers: int,
    timeout: float | None = None,
    gpus: list[int] | None = None,
    threads: int | None = None,
) -> list[subprocess.Popen]:
    """Start `n_workers` worker processes, placed by `worker_envs`."""
    cmd = worker_command(name, storage_url, tracking_uri, timeout)
    envs = worker_envs(n_workers, gpus, threads=threads)
    return [subprocess.Popen(cmd, env=env) for env in envs]


def wait_workers(procs: list[subprocess.Popen], grace_s: float = 30.0) -> list[int]:
    """Wait for every worker; on Ctrl-C interrupt them (their trials end KILLED in MLflow),
    then kill any still alive after `grace_s`. Returns the exit codes."""
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        stop_workers(procs, grace_s)
        raise


def stop_workers(procs: list[subprocess.Popen], grace_s: float = 30.0) -> None:
    """Interrupt every worker still alive (its trial ends KILLED in MLflow); kill any still
    alive after `grace_s`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- placement checks


def visible_gpus() -> list[tuple[str, int]]:
    """(name, total memory in bytes) of each CUDA device this process can see, [] without
    CUDA. Asked of a short-lived child process, so that this one (which waits for the workers)
    never holds a CUDA context and its memory on their device."""
    import torch

    if not torch.cuda.is_available():
        return []
    code = (
        "import json, torch; print(json.dumps([(torch.cuda.get_device_name(i), "
        "torch.cuda.get_device_properties(i).total_memory) "
        "for i in range(torch.cuda.device_count())]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return []
    return [(str(name), int(total)) for name, total in json.loads(lines[-1])]


def parse_gpus(spec: str | None, inventory: list[tuple[str, int]]) -> list[int]:
    """`--gpus 0,1,...` -> device numbers, each checked against the devices at hand."""
    if spec is None:
        return []
    if not inventory:
        raise ConfigError(f"--gpus {spec}: no CUDA device on this machine")
    try:
        gpus = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--gpus {spec}: expected device numbers such as 0,1") from None
    if not gpus:
        raise ConfigError(f"--gpus {spec}: expected device numbers such as 0,1")
    for gpu in gpus:
        if not 0 <= gpu < len(inventory):
            have = ", ".join(f"{i} ({name})" for i, (name, _) in enumerate(inventory))
            raise ConfigError(f"--gpus {spec}: no device {gpu}; this machine has {have}")
    repeated = sorted({g for g in gpus if gpus.count(g) > 1})
    if repeated:
        raise ConfigError(
            f"--gpus {spec}: device {repeated[0]} named twice (--workers K puts K workers on it)"
        )
    return gpus


def check_placement(space: SearchSpace, workers: int, gpus_spec: str | None) -> list[int]:
    """Validate `--workers K [--gpus ...]` before anything is written: the devices exist and
    K trials of the space's largest model fit in memory. Returns the device numbers."""
    from tuner.capacity import check_fit

    inventory = visible_gpus() if gpus_spec is not None or workers > 1 else []
    gpus = parse_gpus(gpus_spec, inventory)
    if workers > 1 or gpus:
        check_fit(space, workers, gpus, inventory)
    return gpus
