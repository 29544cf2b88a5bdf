"""Search efficiency: how much training compute each strategy spends to reach a target loss.

Two search spaces, each searched through tuner's own API (tuner.space.parse_space,
tuner.study.create_study / run_study, real training and MLflow tracking in temp stores):

  lm      the space a user would write: learning rate (log, continuous), dropout
          (continuous), five GPT-2 sizes (nano .. small, 0.1M to 10.6M parameters), batch size
          and sequence length; 16k training tokens a trial, 8 milestones
  grid48  the earlier benchmark's 48-point space (4 learning rates x 3 sizes x 2 batch sizes
          x 2 dropouts), 64k tokens a trial, 6 milestones

and these strategies (sampler, pruner as a space names them):

  random     random sampler, no pruning (the baseline)
  tpe+hb     TPE + Hyperband as tuner ships them (`sampler: tpe`, `pruner: hyperband`, bare)
  tpe+hb-v0  the settings tuner shipped before (independent-startup TPE with n/3 startup
             trials, Hyperband from milestone 1 with reduction factor 3)
  tpe+sh     TPE + successive halving (`pruner: successive-halving`, bare)
  tpe        TPE alone, no pruning
  grid       every grid point once (grid48 only, seed-independent)
  warm       tpe+hb warm-started (`--warm-start`) from a tpe+hb study of the same space at
             half the tokens a trial; its own compute only (the source's is printed beside)

The figure: training FLOPs (pruned trials count for the tokens they trained; deterministic
for a seed, so a busy machine cannot bend it) until a completed trial first reaches the
target loss, which is random search's final best loss, median over seeds; the ratio is the
strategy's median over seeds divided by random's. A strategy that never reaches it on its
median seed is "not reached"; where random's median seed never does, the ratio is an upper
bound ("< x", against all random spent).

With --match-compute, every other strategy gets random search's compute instead of its trial
count: a study keeps adding trials until it reaches the target or has spent what random
search spent on the same seed (at most 4x the trial count). Pruning strategies finish a trial
count on a fraction of that compute; this asks what they reach with the same compute.

Every finished study is cached under $TMPDIR/tuner-bench-search/ keyed by a hash of its
space, strategy (with the sampler and pruner settings tuner resolves them to) and seed, so an
interrupted run resumes and a new default reruns only the studies it changes. FLOPs do not
depend on the machine's speed; wall times from cached studies are as noisy as ever.

  python bench/search_efficiency.py --quick     # 2 small spaces, 8 trials, 2 seeds
  python bench/search_efficiency.py             # 24 trials a study, 3 seeds, both spaces
  python bench/search_efficiency.py --only random --space lm   # fill the cache piecewise
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    THREADS_HELP,
    Report,
    machine,
    machine_line,
    median,
    quiet,
    save_results,
    set_threads,
    si,
    use_temp_stores,
)
from _search_analysis import (  # noqa: E402
    Curve,
    TrialPoint,
    plot,
    pruner_replays,
    rank_correlations,
    report_reruns,
    report_space,
    rerun_picks,
    terminator_replay,
)

STRATEGIES: dict[str, dict[str, Any]] = {
    "random": {"sampler": "random", "pruner": "none"},
    "tpe+hb": {"sampler": "tpe", "pruner": "hyperband"},
    "tpe+hb-v0": {
        "sampler": {"name": "tpe", "startup": "random", "n_startup_trials": "n/3"},
        "pruner": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
    },
    "tpe+sh": {"sampler": "tpe", "pruner": "successive-halving"},
    "tpe": {"sampler": "tpe", "pruner": "none"},
    "grid": {"sampler": "grid", "pruner": "none"},
    "warm": {"sampler": "tpe", "pruner": "hyperband", "warm": True},
}
DEFAULT_ONLY = "random,tpe+hb,tpe+hb-v0,warm"
CACHE = Path(
    os.environ.get("TUNER_BENCH_SEARCH_CACHE", Path(tempfile.gettempdir()) / "tuner-bench-search")
)


def space_dict(space: str, args: argparse.Namespace, tokens: int | None = None) -> dict[str, Any]:
    """The space every strategy searches (sampler, pruner, seed and n_trials set per study)."""
    quick = args.quick
    if space == "lm":
        params: dict[str, Any] = {
            "learning_rate": {"low": 1e-4, "high": 3e-2, "log": True},
            "dropout": {"low": 0.0, "high": 0.3},
            "model_size": {
                "choices": ["nano", "micro", "tiny"]
                if quick
                else ["nano", "micro", "tiny", "mini", "small"]
            },
            "batch_size": {"choices": [4, 8, 16]},
            "seq_len": {"choices": [32, 64, 128]},
        }
        train = {"tokens": 8192 if quick else 16384, "milestones": 4 if quick else 8}
        train |= {"batch_size": 8, "seq_len": 64, "eval_tokens": 1024}
    elif space == "grid48":
        params = {
            "learning_rate": {
                "low": 3e-4,
                "high": 3e-2,
                "log": True,
                "grid": [1e-3, 3e-3, 1e-2] if quick else [3e-4, 1e-3, 3e-3, 1e-2],
            },
            "model_size": {"choices": ["nano", "micro"] if quick else ["nano", "micro", "tiny"]},
            "batch_size": {"choices": [8, 16]},
        }
        if not quick:
            params["dropout"] = {"choices": [0.0, 0.1]}
        train = {"tokens": 16384 if quick else 65536, "milestones": 4 if quick else 6}
        train |= {"batch_size": 16, "seq_len": 64, "eval_tokens": 1024 if quick else 2048}
    else:
        raise SystemExit(f"unknown space {space!r} (lm, grid48)")
    if tokens:
        train["tokens"] = tokens
    return {
        "name": f"bench-{space}",
        "base": {
            "data": {"source": "shakespeare"},
            "tokenizer": {"kind": "bpe", "vocab_size": 2048},
            "model": {"arch": "gpt2", "size": "micro"},
            "train": train,
        },
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "n_trials": args.trials,
        "params": params,
    }


def study_raw(space: str, strategy: str, seed: int, args: argparse.Namespace, half=False) -> dict:
    spec = STRATEGIES[strategy]
    raw = space_dict(space, args)
    if half:
        raw = space_dict(space, args, tokens=raw["base"]["train"]["tokens"] // 2)
    return raw | {"sampler": spec["sampler"], "pruner": spec["pruner"], "seed": seed}


def cache_key(raw: dict[str, Any], extra: dict[str, Any]) -> str:
    """A study's identity: its space and the settings tuner resolves its sampler and pruner
    to (so changing a default invalidates exactly the studies that use it)."""
    from tuner.samplers import describe
    from tuner.space import parse_space

    resolved = describe(parse_space(raw))
    text = json.dumps({"raw": raw, "resolved": resolved, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_one(
    space: str, strategy: str, seed: int, args: argparse.Namespace, until: Until | None = None
) -> Curve:
    """One study of `strategy` on `space` with `seed`, from the cache or run now."""
    raw = study_raw(space, strategy, seed, args)
    warm = STRATEGIES[strategy].get("warm", False)
    source_raw = study_raw(space, "tpe+hb", seed, args, half=True) if warm else None
    extra = {"warm_from": cache_key(source_raw, {})} if source_raw else {}
    if until is not None:
        extra["until"] = until.__dict__
    key = cache_key(raw, extra)

    def run() -> Curve:
        source = _source_study(space, seed, source_raw, args) if source_raw else None
        curve = _run_study(space, strategy, seed, raw, warm_from=source, until=until)
        if source is not None:
            curve.source_flops = source.total_flops
        return curve

    return _cached(CACHE / f"{space}-{strategy}-seed{seed}-{key}.json", args, run)


def _cached(path: Path, args: argparse.Namespace, run: Callable[[], Curve]) -> Curve:
    """The study cached at `path`, else `run()` now and cached there."""
    if path.is_file() and not args.no_cache:
        return Curve.from_json(json.loads(path.read_text()))
    curve = run()
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curve.to_json()))
    return curve


def _source_study(space: str, seed: int, raw: dict[str, Any], args: argparse.Namespace) -> Curve:
    """The half-budget tpe+hb study a warm start reads (cached like any other study)."""
    path = CACHE / f"{space}-half-seed{seed}-{cache_key(raw, {})}.json"
    return _cached(path, args, lambda: _run_study(space, "half", seed, raw))


@dataclass
class Until:
    """--match-compute: add trials until the target loss or random search's compute."""

    target: float
    flops: float
    max_trials: int


def _run_study(
    space: str,
    strategy: str,
    seed: int,
    raw: dict[str, Any],
    warm_from: Curve | None = None,
    until: Until | None = None,
) -> Curve:
    from tuner.space import parse_space
    from tuner.study import create_study, run_study

    name = f"{space}-{strategy.replace('+', '-')}-seed{seed}"
    kwargs: dict[str, Any] = {}
    if warm_from is not None:
        kwargs["warm_start"] = _rebuild(warm_from, name + "-source")
    handle = create_study(name, parse_space(raw), **kwargs)
    started = time.perf_counter()
    if until is None:
        run_study(handle)
    else:
        for n in range(1, until.max_trials + 1):
            run_study(handle, n_trials=n)
            done = Curve.of_trials(space, strategy, seed, handle.study.get_trials(deepcopy=False))
            if done.final_best <= until.target or done.total_flops >= until.flops:
                break
    curve = Curve.of_trials(space, strategy, seed, handle.study.get_trials(deepcopy=False))
    curve.raw = handle.space.raw
    curve.seconds = time.perf_counter() - started
    return curve


def _rebuild(curve: Curve, name: str) -> str:
    """Recreate a cached study in this run's store (its finished trials with their params,
    values, curves and configs) so that a warm start reads it as it would read the study."""
    import optuna

    from tuner import stores
    from tuner.records import CONFIG, METRICS, StudyRecord
    from tuner.space import parse_space
    from tuner.study import open_storage

    space = parse_space(curve.raw)
    study = optuna.create_study(storage=open_storage(stores.default_storage()), study_name=name)
    StudyRecord(space.raw, stores.default_tracking_uri(), "", "").write(study)
    dists = space.distributions()
    for p in curve.trials:
        state = optuna.trial.TrialState[p.state]
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=p.value if state == optuna.trial.TrialState.COMPLETE else None,
                params=p.params,
                distributions={k: dists[k] for k in p.params},
                user_attrs={CONFIG: p.config, METRICS: {"val_loss": p.value}},
                intermediate_values={i: v for i, (_, v) in enumerate(p.curve)},
            )
        )
    return name


def schedule(
    spaces: list[str], strategies: list[str], seeds: list[int]
) -> list[tuple[str, str, int]]:
    """Seeds outer, strategies rotated within each seed, grid once (it ignores the seed)."""
    order = []
    for space in spaces:
        for seed in seeds:
            shift = seed % len(strategies)
            for strategy in strategies[shift:] + strategies[:shift]:
                if strategy == "grid" and (seed > 0 or space != "grid48"):
                    continue
                order.append((space, strategy, seed))
    return order


def warm_up() -> None:
    """One tiny run so imports and first-call costs land on no strategy."""
    from tuner.config import RunConfig, from_dict
    from tuner.train import train_run

    train_run(
        from_dict(
            RunConfig,
            {
                "tokenizer": {"kind": "bpe", "vocab_size": 2048},
                "model": {"size": "nano"},
                "train": {"batch_size": 8, "seq_len": 64, "tokens": 2048, "milestones": 1},
            },
        )
    )


def _until(randoms: list[Curve], space: str, seed: int, args: argparse.Namespace) -> Until:
    random = [c for c in randoms if c.space == space]
    paired = [c for c in random if c.seed == seed]
    target = median([c.final_best for c in random])
    return Until(target, paired[0].total_flops, 4 * args.trials)


RERUN_SEED = 7919
"""The study seed of the reruns: trial seeds none of the searched studies used."""


def rerun(space: str, trial: TrialPoint, args: argparse.Namespace) -> Curve:
    """`trial`'s configuration trained again, `args.reruns` times with other trial seeds."""
    raw = space_dict(space, args) | {"sampler": "random", "pruner": "none", "seed": RERUN_SEED}
    pinned = {k: {"choices": [v]} for k, v in trial.params.items()}
    raw |= {"n_trials": args.reruns, "params": pinned}
    key = cache_key(raw, {})
    path = CACHE / f"{space}-rerun-{key}.json"
    return _cached(path, args, lambda: _run_study(space, f"rerun-{key[:8]}", RERUN_SEED, raw))


def _without_configs(curve: dict[str, Any]) -> dict[str, Any]:
    """A study for the results file: each trial's full config (the cache keeps it) left out."""
    return curve | {
        "trials": [{k: v for k, v in t.items() if k != "config"} for t in curve["trials"]]
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small spaces, 8 trials, 2 seeds")
    p.add_argument("--space", default="lm,grid48", help="comma-separated: lm, grid48")
    p.add_argument("--trials", type=int, default=None, help="trials per study (quick 8, full 24)")
    p.add_argument("--seeds", type=int, default=None, help="quick 2, full 3")
    p.add_argument("--seed-list", default="", help="run only these seeds, e.g. 1,2 (to split)")
    p.add_argument("--only", default=DEFAULT_ONLY, help="comma-separated strategies")
    p.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='an extra strategy, e.g. \'sh={"sampler": "tpe", "pruner": '
        '{"name": "successive-halving"}}\' (add NAME to --only)',
    )
    p.add_argument(
        "--match-compute",
        action="store_true",
        help="give every strategy random search's compute (per seed) instead of its trial count",
    )
    p.add_argument(
        "--cached-as",
        action="append",
        default=[],
        metavar="NAME=FILE,FILE,...",
        help="also report these cached studies (file names in the cache) as strategy NAME: "
        "studies run under earlier defaults, whose cache keys no longer match",
    )
    p.add_argument(
        "--reruns",
        type=int,
        default=0,
        metavar="N",
        help="train random search's best trial and its cheapest trial to reach the target "
        "again with N other seeds: how much of a best loss is the seed",
    )
    p.add_argument("--no-cache", action="store_true", help="rerun studies found in the cache")
    p.add_argument("--no-terminator", action="store_true", help="skip the terminator replay")
    p.add_argument("--no-replay", action="store_true", help="skip the pruner replays")
    p.add_argument("--tag", default="", help="suffix of the results files")
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    args = p.parse_args(argv)
    args.trials = args.trials or (8 if args.quick else 24)
    args.seeds = args.seeds or (2 if args.quick else 3)
    for item in args.strategy:
        name, _, spec = item.partition("=")
        STRATEGIES[name] = json.loads(spec)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    set_threads(args.threads)
    use_temp_stores("search")
    say = Report()
    info = machine()
    spaces = [s.strip() for s in args.space.split(",") if s.strip()]
    strategies = [s.strip() for s in args.only.split(",") if s.strip()]
    say(f"# search efficiency ({'quick' if args.quick else 'full'})")
    say(f"machine: {machine_line(info)}")
    say(f"command: python bench/search_efficiency.py {' '.join(sys.argv[1:])}")
    warm_up()
    curves: list[Curve] = []
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else range(args.seeds)
    randoms: list[Curve] = []
    if args.match_compute:  # random search of every seed sets the target and the compute
        randoms = [run_one(sp, "random", s, args) for sp in spaces for s in range(args.seeds)]
    for space, strategy, seed in schedule(spaces, strategies, list(seeds)):
        started = time.perf_counter()
        until = None
        if args.match_compute and strategy != "random":
            until = _until(randoms, space, seed, args)
        curve = run_one(space, strategy, seed, args, until)
        curves.append(curve)
        print(
            f"  {space} {strategy:9s} seed {seed}: {len(curve.points)} trials "
            f"({curve.pruned} pruned), best {curve.final_best:.4f}, "
            f"{si(curve.total_flops, 'FLOP')}, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    for item in args.cached_as:
        name, _, files = item.partition("=")
        for file in files.split(","):
            curve = Curve.from_json(json.loads((CACHE / file).read_text()))
            curve.strategy = name
            curves.append(curve)
    analyses = {}
    for space in spaces:
        mine = [c for c in curves if c.space == space]
        say()
        raw = space_dict(space, args)
        train = raw["base"]["train"]
        say(f"## space {space}")
        say(
            f"params: {json.dumps(raw['params'])}; gpt2, {train['tokens']:,} training tokens a "
            f"trial, {train['milestones']} milestones x {train['eval_tokens']:,} eval tokens; "
            f"{args.trials} trials a study, seeds 0..{args.seeds - 1}"
        )
        analyses[space] = report_space(mine, say)
        if analyses[space] and not args.no_replay:
            say()
            analyses[space]["rank_correlation"] = rank_correlations(mine, say)
            analyses[space]["pruner_replays"] = pruner_replays(mine, analyses[space]["target"], say)
        if analyses[space] and args.reruns:
            random = [c for c in mine if c.strategy == "random"]
            picks = rerun_picks(random, analyses[space]["target"])
            runs = {label: (t, rerun(space, t, args)) for label, t in picks.items()}
            analyses[space]["reruns"] = report_reruns(runs, analyses[space]["target"], say)
        if not args.no_terminator:
            analyses[space]["terminator"] = terminator_replay(mine, say)
    html = plot(curves)
    if html:
        say(f"\nplot: bench/results/{html.name}")
    name = "search_efficiency" + ("-quick" if args.quick else "") + args.tag
    payload = {
        "args": vars(args),
        "machine": info,
        "strategies": {s: STRATEGIES[s] for s in strategies},
        "analyses": analyses,
        "curves": [_without_configs(c.to_json()) for c in curves],
    }
    path = save_results(name, payload, say.text)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
