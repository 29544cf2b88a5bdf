"""What the GPU path does, checked on a CPU: the FLOP conventions and MFU by hand, the data-sheet
peaks, the micro-batch search against a fake memory probe, gradient accumulation, losses read
without waiting, milestone callbacks overlapped with the next step, the compile fallback,
worker placement over GPUs, and out-of-memory trials failing alone."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch

import tuner.train
from tests.helpers import cli, write_space
from tuner import cost, microbatch, stores
from tuner.capacity import GiB, check_fit, largest_trial, param_count, trial_bytes
from tuner.config import ConfigError, RunConfig, from_dict
from tuner.device import MEMORY_FRACTION_ENV, apply_memory_fraction, is_compile_error
from tuner.models import build_model, count_params, flops_per_token
from tuner.pipeline import LossBook
from tuner.records import TrialRecord
from tuner.space import load_space
from tuner.spawn import check_placement, parse_gpus, worker_envs
from tuner.train import train_run, train_step

# ---------------------------------------------------------------- FLOPs, MFU, peaks


def test_flop_conventions_by_hand():
    # N = 1000 matmul weights, L = 2 layers, d = 4, T = 8
    assert cost.flops_per_token(1000, 2, 4, 8, "kaplan") == 6000 + 6 * 2 * 8 * 4 == 6384
    assert cost.flops_per_token(1000, 2, 4, 8, "palm") == 6000 + 12 * 2 * 8 * 4 == 6768
    assert cost.flops_per_token(1000, 0, 4, 8, "palm") == 6000  # no attention (lstm, gru)
    assert cost.mfu(1000.0, 6e6, 1.2e10) == pytest.approx(0.5)
    assert cost.mfu(1000.0, 6e6, 0.0) == 0.0


def test_gpt2_124m_matches_nanogpts_palm_count():
    """GPT-2 small as in nanoGPT (V 50257, T 1024): 124,439,808 weights, of which N =
    123,653,376 take part in matmuls (the tied embedding is the output projection; the 786,432
    position embeddings are excluded); PaLM's count is 6N + 12·12·1024·768 = 855,166,464."""
    config = from_dict(
        RunConfig, {"model": {"arch": "gpt2", "size": "base"}, "train": {"seq_len": 1024}}
    )
    model = build_model(config.model, 50257, 1024)
    total, non_embedding = count_params(model)
    assert total == 124_439_808
    flops = cost.conventions(non_embedding, 50257, config)
    assert flops["palm"] == 6 * 123_653_376 + 12 * 12 * 1024 * 768 == 855_166_464
    assert flops["kaplan"] == 6 * 123_653_376 + 6 * 12 * 1024 * 768
    assert flops["kaplan"] == flops_per_token(non_embedding, 50257, config.model, 1024)
    assert param_count(config, 50257) == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA GH200 480GB", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA A10", 125e12),
        ("NVIDIA A10G", 0.0),  # not in the table; must not read as A10
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362.05e12),
        ("NVIDIA GeForce RTX 4090", 165.2e12),
        ("Tesla T4", 0.0),
        ("cpu", 0.0),
    ],
)
def test_datasheet_peak_by_device_name(name, peak):
    assert cost.datasheet_peak(name) == peak


def test_run_cost_has_both_conventions(tiny_config, tiny_data):
    result = train_run(tiny_config.replace("cost.peak_flops", 1e9), tiny_data)
    c = result.cost
    layers, d, t = 2, 64, 32  # nano, seq_len 32
    assert c["flops_per_token_palm"] - c["flops_per_token"] == 6 * layers * t * d
    assert c["mfu"] == pytest.approx(c["tokens_per_second"] * c["flops_per_token"] / 1e9)
    assert c["mfu_palm"] / c["mfu"] == pytest.approx(
        c["flops_per_token_palm"] / c["flops_per_token"]
    )
    assert "mfu_palm_datasheet" not in c  # no data sheet for a CPU
    assert c["micro_batch_size"] == 8 and c["grad_accumulation_steps"] == 1
    assert c["compiled"] is False


# ---------------------------------------------------------------- micro-batch search


def fake_memory(limit: int, calls: list[int] | None = None):
    """A probe that 'runs out of memory' above `limit` sequences, recording what it tried."""

    def fits(size: int) -> bool:
        if calls is not None:
            calls.append(size)
        return size <= limit

    return fits


def test_largest_fit_is_the_largest_divisor_that_fits():
    for batch in range(1, 97):
        for limit in range(0, 100, 3):
            calls: list[int] = []
            micro, fit, fail = microbatch.largest_fit(batch, fake_memory(limit, calls))
            expected = max([d for d in microbatch.divisors(batch) if d <= limit], default=1)
            assert micro == expected, (batch, limit)
            assert batch % micro == 0
            n_div = len(microbatch.divisors(batch))
            assert len(calls) <= 2 + math.ceil(math.log2(n_div)), (batch, limit, calls)
            assert fit == (expected if limit >= 1 else 0)
            assert fail == 0 or fail > limit


def test_largest_fit_tries_the_whole_batch_first_and_uses_known_bounds():
    calls: list[int] = []
    assert microbatch.largest_fit(64, fake_memory(100, calls))[0] == 64 and calls == [64]
    calls = []
    micro, fit, fail = microbatch.largest_fit(64, fake_memory(12, calls))
    assert (micro, fit, fail) == (8, 8, 16) and calls[0] == 64
    calls = []  # bounds known: only the sizes between them are probed
    assert microbatch.largest_fit(48, fake_memory(12, calls), known_fit=8, known_fail=16)[0] == 12
    assert calls == [12]
    calls = []
    assert microbatch.largest_fit(64, fake_memory(12, calls), known_fit=8, known_fail=16)[0] == 8
    assert calls == []


def test_auto_micro_batch_is_found_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[int] = []
    fits = fake_memory(20, calls)
    assert microbatch.cached_largest_fit("shape-a", 64, fits) == 16
    first = len(calls)
    assert microbatch.cached_largest_fit("shape-a", 64, fits) == 16
    assert len(calls) == first  # cached: no probe
    assert microbatch.cached_largest_fit("shape-a", 48, fits) == 16  # 16 fits, 32 does not:
    assert calls[first:] == [24]  # only 24 lies between
    assert microbatch.cached_largest_fit("shape-a", 40, fits) == 20  # 16 fits, 24 does not:
    assert calls[first:] == [24, 20]  # only 20 lies between
    assert microbatch.cached_largest_fit("shape-b", 64, fake_memory(64)) == 64  # its own key
    assert (stores.cache_dir() / "micro_batch.json").is_file()


def test_cache_key_names_what_a_fit_depends_on(tiny_config):
    cpu = torch.device("cpu")
    key = microbatch.cache_key(tiny_config, 512, cpu, 8 * GiB)
    assert key == "gpt2|L2|d64|h2|ff256|V512|T32|dropout=False|auto|adamw|cpu|8192MiB"
    changed = [
        microbatch.cache_key(tiny_config.replace("train.seq_len", 64), 512, cpu, 8 * GiB),
        microbatch.cache_key(tiny_config.replace("model.dropout", 0.1), 512, cpu, 8 * GiB),
        microbatch.cache_key(tiny_config.replace("optim.name", "sgd"), 512, cpu, 8 * GiB),
        microbatch.cache_key(tiny_config, 512, cpu, 2 * GiB),  # a quarter of the GPU
    ]
    assert len({key, *changed}) == 5
    assert (
        microbatch.cache_key(tiny_config.replace("train.batch_size", 64), 512, cpu, 8 * GiB) == key
    )


def test_auto_on_cpu_means_no_cap(tiny_config, tiny_data):
    result = train_run(tiny_config.replace("train.micro_batch_size", "auto"), tiny_data)
    assert result.status == "complete" and result.cost["micro_batch_size"] == 8


def test_auto_with_a_fake_memory_limit_trains_like_the_explicit_micro_batch(
    tiny_config, tiny_data, tmp_path, monkeypatch
):
    """The whole auto path on a CPU that 'runs out of memory' above 3 sequences: the probe
    picks 2 (largest divisor of 8 that fits), and since probing restores the random state and
    the gradients, training is bit-for-bit the run with micro_batch_size 2."""
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))
    config = tiny_config.replace("model.dropout", 0.1)
    explicit = train_run(config.replace("train.micro_batch_size", 2), tiny_data)
    real_logits = tuner.train.logits

    def limited(model, ids):
        if len(ids) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_logits(model, ids)

    monkeypatch.setattr(microbatch, "PROBED", ("cuda", "cpu"))
    monkeypatch.setattr(microbatch, "memory_budget", lambda device: 2**20)
    monkeypatch.setattr(tuner.train, "logits", limited)
    auto = train_run(config.replace("train.micro_batch_size", "auto"), tiny_data)
    assert auto.status == "complete"
    assert auto.cost["micro_batch_size"] == 2 and auto.cost["grad_accumulation_steps"] == 4
    assert [m.metrics["val_loss"] for m in auto.history] == [
        m.metrics["val_loss"] for m in explicit.history
    ]


@pytest.mark.parametrize(("batch", "micro"), [(8, 4), (8, 3), (8, 1)])
def test_accumulated_micro_batches_give_the_big_batchs_loss_and_gradient(
    tiny_config, tiny_data, batch, micro
):
    torch.manual_seed(0)
    model = build_model(tiny_config.model, tiny_data.vocab_size, 32)
    ids = torch.randint(tiny_data.vocab_size, (batch, 33))
    x, y = ids[:, :-1], ids[:, 1:]

    class Keep:
        """An optimizer that keeps the gradients it is asked to apply."""

        param_groups: list = []

        def step(self):
            self.grads = [p.grad.clone() for p in model.parameters()]

        def zero_grad(self, set_to_none=True):
            model.zero_grad(set_to_none=set_to_none)

    params = list(model.parameters())
    loss_fn = tuner.train.loss_function(model, lambda: torch.autocast("cpu", enabled=False), False)
    whole, split = Keep(), Keep()
    loss_whole = train_step(loss_fn, params, whole, x, y, batch, 0.0)
    loss_split = train_step(loss_fn, params, split, x, y, micro, 0.0)
    assert float(loss_split) == pytest.approx(float(loss_whole), rel=1e-6)
    for a, b in zip(whole.grads, split.grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- no host sync in the loop


class FakeEvent:
    """A CUDA event stand-in: fired once the fake device reaches it."""

    def __init__(self, device: dict):
        self.device, self.index = device, device["queued"]
        device["queued"] += 1

    def query(self) -> bool:
        return self.index < self.device["done"]

    def synchronize(self) -> None:
        self.device["done"] = max(self.device["done"], self.index + 1)


class LazyBook(LossBook):
    """LossBook's CUDA path (copy, event, read later) with a fake device."""

    def __init__(self, device, factor, lazy=None):
        super().__init__(device, factor, lazy=True)
        self.fake = {"queued": 0, "done": 0}

    def _enqueue(self, loss):
        return loss.detach().clone(), FakeEvent(self.fake)


def test_losses_are_read_as_they_arrive_with_the_same_verdict():
    losses = [5.0, 5.5, 4.0, 30.0, 3.0]
    eager = LossBook(torch.device("cpu"), 4.0)
    lazy = LazyBook(torch.device("cpu"), 4.0)
    for step, value in enumerate(losses, start=1):
        eager.add(step, torch.tensor(value))
        lazy.add(step, torch.tensor(value))
    assert eager.reason.startswith("diverged: train loss 30 at step 4 (first 5")
    assert lazy.update() == ""  # the device has finished nothing: nothing read, nobody waits
    lazy.fake["done"] = 2
    assert lazy.update() == "" and lazy.window == [5.0, 5.5]
    assert lazy.update(wait=True) == eager.reason  # waited for: the same step named
    assert lazy.window == eager.window == [5.0, 5.5, 4.0]
    assert lazy.take_window() == pytest.approx(14.5 / 3) and lazy.window == []


def test_nan_loss_diverges():
    book = LossBook(torch.device("cpu"), 4.0)
    book.add(1, torch.tensor(5.0))
    book.add(2, torch.tensor(float("nan")))
    assert book.update().startswith("diverged: train loss nan at step 2")


def test_lazy_losses_in_the_loop_give_the_same_run(tiny_config, tiny_data, monkeypatch):
    config = tiny_config.replace("model.dropout", 0.1)
    plain = train_run(config, tiny_data)
    monkeypatch.setattr(tuner.train, "LossBook", LazyBook)
    lazy = train_run(config, tiny_data)

    def curve(result):  # every metric but the timing
        return [
            {k: v for k, v in m.metrics.items() if k != "tokens_per_second"} for m in result.history
        ]

    assert curve(lazy) == curve(plain) and len(curve(plain)) == 2


def test_lazy_divergence_names_the_same_step(tiny_config, tiny_data, monkeypatch):
    config = (
        tiny_config.replace("optim.lr", 50.0)
        .replace("optim.grad_clip", 0.0)
        .replace("schedule.warmup_fraction", 0.0)
        .replace("optim.name", "sgd")
    )
    plain = train_run(config, tiny_data)
    monkeypatch.setattr(tuner.train, "LossBook", LazyBook)  # reads only at milestones here
    lazy = train_run(config, tiny_data)
    assert plain.status == lazy.status == "diverged" and lazy.reason == plain.reason
    assert lazy.cost["steps"] >= plain.cost["steps"]  # steps queued before it was noticed count


def test_milestone_callback_overlapping_the_next_step(tiny_config, tiny_data, monkeypatch):
    """On CUDA a milestone's callback runs once the next step is queued: the curve is the same,
    and a trial pruned at milestone 0 has trained exactly one step more."""
    seen: list[int] = []

    def record(m):
        seen.append(m.index)
        return False

    plain = train_run(tiny_config, tiny_data, on_milestone=record)
    monkeypatch.setattr(tuner.train, "is_async", lambda device: True)
    overlapped = train_run(tiny_config, tiny_data, on_milestone=record)
    assert seen == [0, 1, 0, 1]
    assert [m.metrics["val_loss"] for m in overlapped.history] == [
        m.metrics["val_loss"] for m in plain.history
    ]
    pruned = train_run(tiny_config, tiny_data, on_milestone=lambda m: True)
    assert pruned.status == "pruned" and pruned.cost["steps"] == plain.history[0].step + 1
    assert len(pruned.history) == 1


# ---------------------------------------------------------------- torch.compile fallback


class FakeInductorError(RuntimeError):
    """Stands in for torch._inductor.exc.InductorError (importing inductor takes seconds)."""


FakeInductorError.__module__ = "torch._inductor.exc"


def test_compile_errors_are_recognised():
    assert is_compile_error(FakeInductorError("InvalidCxxCompiler: No working C++ compiler"))
    assert not is_compile_error(RuntimeError("shape mismatch"))
    assert not is_compile_error(torch.OutOfMemoryError("CUDA out of memory"))


def test_no_compiler_warns_once_and_trains_eager(tiny_config, tiny_data, monkeypatch, capsys):
    eager = train_run(tiny_config, tiny_data)
    reason = "InductorError: InvalidCxxCompiler: No working C++ compiler found"
    monkeypatch.setattr(tuner.train, "compile_problem", lambda device_type: reason)
    result = train_run(tiny_config.replace("train.compile", True), tiny_data)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"warning: train.compile: running eager ({reason})"]
    assert result.status == "complete" and result.cost["compiled"] is False
    assert result.cost["compile_fallback"] == reason
    assert result.metrics["val_loss"] == eager.metrics["val_loss"]


def test_backend_failing_on_the_first_step_falls_back_to_eager(
    tiny_config, tiny_data, monkeypatch, capsys
):
    eager = train_run(tiny_config, tiny_data)

    def broken_compile(fn, *args, **kwargs):
        def call(*a, **k):
            raise FakeInductorError("CppCompileError: C++ compile error")

        return call

    monkeypatch.setattr(tuner.train, "compile_problem", lambda device_type: "")
    monkeypatch.setattr(torch, "compile", broken_compile)
    result = train_run(tiny_config.replace("train.compile", True), tiny_data)
    assert result.status == "complete" and result.cost["compiled"] is False
    assert "CppCompileError" in result.cost["compile_fallback"]
    assert "running eager" in capsys.readouterr().err
    assert result.metrics["val_loss"] == eager.metrics["val_loss"]


# ---------------------------------------------------------------- workers and GPUs


def test_memory_fraction_is_a_cuda_matter(monkeypatch):
    monkeypatch.setenv(MEMORY_FRACTION_ENV, "0.25")
    assert apply_memory_fraction(torch.device("cpu")) == 0.0


def test_workers_share_one_gpu_by_memory_fraction():
    envs = worker_envs(4, None, {"PATH": "/bin"})
    assert [e[MEMORY_FRACTION_ENV] for e in envs] == ["0.25"] * 4
    assert all("CUDA_VISIBLE_DEVICES" not in e and e["PATH"] == "/bin" for e in envs)
    assert MEMORY_FRACTION_ENV not in worker_envs(1, None, {})[0]


def test_workers_spread_round_robin_over_gpus():
    envs = worker_envs(5, [0, 1], {MEMORY_FRACTION_ENV: "0.9"})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1", "0"]
    assert [e[MEMORY_FRACTION_ENV] for e in envs] == ["0.333333", "0.5"] * 2 + ["0.333333"]
    alone = worker_envs(2, [0, 1], {MEMORY_FRACTION_ENV: "0.9"})
    assert all(MEMORY_FRACTION_ENV not in e for e in alone)  # a GPU each: no cap
    inherited = worker_envs(2, [0, 2], {"CUDA_VISIBLE_DEVICES": "4,5,6"})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in inherited] == ["4", "6"]


H100 = ("NVIDIA H100 80GB HBM3", 80 * GiB)


@pytest.mark.parametrize(
    ("spec", "inventory", "message"),
    [
        ("0", [], "--gpus 0: no CUDA device on this machine"),
        ("0,3", [H100, H100], "--gpus 0,3: no device 3; this machine has 0 (NVIDIA H100"),
        ("a,b", [H100], "--gpus a,b: expected device numbers"),
        ("1,1", [H100, H100], "--gpus 1,1: device 1 named twice"),
    ],
)
def test_bad_gpus(spec, inventory, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_gpus(spec, inventory)


def test_gpus_parse():
    assert parse_gpus("0, 2", [H100] * 3) == [0, 2] and parse_gpus(None, []) == []


def test_workers_beyond_memory_are_refused():
    space = load_space(Path(__file__).parent.parent / "search_spaces" / "lm_small.yaml")
    need, config = largest_trial(space)
    assert config.model.size == "small" and config.train.seq_len == 512
    assert need == trial_bytes(config) > trial_bytes(space.base)
    check_fit(space, 4, [], [H100])  # 4 lm_small trials fit on one H100 easily
    with pytest.raises(ConfigError, match=r"--workers 64: 64 workers on GPU 0 .* at most \d+"):
        check_fit(space, 64, [], [H100])
    check_fit(space, 40, [0, 1], [H100, H100])  # 20 a GPU
    with pytest.raises(ConfigError, match="--workers 4: 4 workers need about"):
        check_fit(space, 4, [], [], host_bytes=2 * GiB)


def test_cli_gpus_without_cuda_is_one_line_exit_2(tmp_path):
    space = write_space(tmp_path / "space.yaml")
    with pytest.raises(ConfigError, match="no CUDA device"):
        check_placement(load_space(space), 1, "0")
    for args in (["--gpus", "0"], ["--workers", "100000"]):
        result = cli("study", "create", "g", "--space", str(space), *args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output
        assert ("no CUDA device" if args[0] == "--gpus" else "at most") in lines[0]
    assert not (stores.home() / "optuna.db").exists()
    assert not (stores.home() / "mlflow.db").exists()
    assert cli("study", "create", "w", "--space", str(space), "--no-run").exit_code == 0
    result = cli("study", "worker", "w", "--gpus", "0")
    assert result.exit_code == 2 and "--gpus 0: no CUDA device" in result.output


def test_out_of_memory_trial_fails_alone_and_the_study_goes_on(tmp_path, monkeypatch):
    real_logits = tuner.train.logits

    def small_memory(model, ids):
        if len(ids) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_logits(model, ids)

    monkeypatch.setattr(tuner.train, "logits", small_memory)
    params = {"batch_size": {"choices": [4, 8]}}
    space = write_space(tmp_path / "space.yaml", params, sampler="grid", n_trials=2)
    result = cli("study", "create", "oom", "--space", str(space))
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="oom", storage=stores.default_storage())
    records = {r.params["batch_size"]: r for r in map(TrialRecord.of, study.get_trials())}
    assert records[4].state == "COMPLETE" and 0 < records[4].values[0] < 7
    assert records[8].state == "FAIL" and records[8].reason.startswith("out of memory: CUDA")


def test_study_worker_on_a_cpu_is_one_of_its_k_workers(tmp_path, monkeypatch):
    """`study worker --workers 3` on a CPU starts 2 processes, each a third of the cores, and
    works the queue itself (its imports are paid already)."""
    import torch

    import tuner.spawn
    import tuner.workers

    space = write_space(tmp_path / "space.yaml")
    assert cli("study", "create", "k", "--space", str(space), "--no-run").exit_code == 0
    started = {}

    def start(name, storage_url, tracking_uri, n_workers, timeout=None, gpus=None, threads=None):
        started.update(name=name, storage=storage_url, n=n_workers, gpus=gpus, threads=threads)
        return []

    monkeypatch.setattr(tuner.workers, "start_workers", start)
    threads = torch.get_num_threads()
    result = cli("study", "worker", "k", "--workers", "3")
    assert result.exit_code == 0, result.output
    storage = stores.default_storage()
    share = tuner.spawn.cpu_share(3)
    assert started == {"name": "k", "storage": storage, "n": 2, "gpus": [], "threads": share}
    assert "joined study k" in result.output and "done: 3/3 trials finished" in result.output
    study = optuna.load_study(study_name="k", storage=storage)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    assert torch.get_num_threads() == threads  # this process's share was given back


def test_a_worker_beside_the_command_that_fails_makes_it_exit_1(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import tuner.workers

    space = write_space(tmp_path / "space.yaml", n_trials=1)
    assert cli("study", "create", "f", "--space", str(space), "--no-run").exit_code == 0
    monkeypatch.setattr(
        tuner.workers, "start_workers", lambda *a, **k: [SimpleNamespace(wait=lambda: 3)]
    )
    result = cli("study", "worker", "f", "--workers", "2")
    assert result.exit_code == 1
    assert "1 of 2 workers exited abnormally (codes [3])" in result.output
    assert "done: 1/1 trials finished" in result.output  # this process still did its part


def test_gpu_workers_are_all_processes_placed_on_their_devices(monkeypatch):
    """With devices, every one of the K workers is a process of its own (the command never
    trains, so it holds no CUDA context); a worker that fails is reported by its code."""
    from types import SimpleNamespace

    import tuner.workers

    started = {}

    def start(name, storage_url, tracking_uri, n_workers, timeout=None, gpus=None, threads=None):
        started.update(n=n_workers, gpus=gpus)
        return [SimpleNamespace(wait=lambda: 0), SimpleNamespace(wait=lambda: 3)]

    def work(*args, **kwargs):
        raise AssertionError("the command itself must not train on GPUs")

    monkeypatch.setattr(tuner.workers, "start_workers", start)
    monkeypatch.setattr(tuner.workers, "work", work)
    handle = SimpleNamespace(name="g", storage_url="journal.log", tracking_uri="sqlite:///m.db")
    assert tuner.workers.run_workers(handle, 2, None, [0, 1]) == [3]
    assert started == {"n": 2, "gpus": [0, 1]}


def test_memory_estimate_with_auto_micro_batches(tiny_config):
    """On a GPU `auto` splits the batch until it fits, so one sequence must fit; on a CPU it
    is no cap, the whole batch."""
    from tuner.memory import estimate

    auto = tiny_config.replace("train.micro_batch_size", "auto")
    whole = tiny_config.replace("train.micro_batch_size", 0)
    one = tiny_config.replace("train.micro_batch_size", 1)
    assert estimate(auto, 512, "cpu").activations == estimate(whole, 512, "cpu").activations
    assert estimate(auto, 512, "cuda").activations == estimate(one, 512, "cuda").activations
    assert estimate(auto, 512, "cuda").activations < estimate(whole, 512, "cuda").activations
