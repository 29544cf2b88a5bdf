"""Search efficiency: how much training compute each strategy spends to reach a target loss.

One search space, one per-trial token budget, four strategies run through tuner's own API
(tuner.space.parse_space, tuner.study.create_study / run_study, real training and MLflow
tracking in temp stores):

  random     random sampler, no pruning (the baseline)
  grid       every grid point once, no pruning (seed-independent, run once)
  tpe        TPE, no pruning
  tpe+hb     TPE with Hyperband pruning at the token milestones

over several seeds. For every study it records the best validation loss of completed trials
against cumulative training FLOPs (pruned trials count for the tokens they trained) and wall
time, then prints, for a target loss, the compute and time each strategy needed and their
ratios to random search. The default targets are read off random search itself: the worst of
its seeds' final bests ("match random search") and the best of them ("beat random search");
where random search's median run never reaches a target, a ratio is an upper bound ("< x").

  python bench/search_efficiency.py --quick    # 60 small trials: a few minutes on 2 cores
  python bench/search_efficiency.py            # 264 trials, 48-point space: ~30 minutes
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    THREADS_HELP,
    Report,
    machine,
    machine_line,
    markdown_table,
    median,
    quiet,
    save_results,
    set_threads,
    si,
    use_temp_stores,
    write_html,
)

STRATEGIES = {  # name -> (sampler, pruner)
    "random": ("random", "none"),
    "grid": ("grid", "none"),
    "tpe": ("tpe", "none"),
    "tpe+hb": ("tpe", "hyperband"),
}


@dataclass
class Point:
    """The state of a study after one more finished trial."""

    trial: int
    state: str
    flops: float
    """Cumulative training FLOPs so far."""
    wall: float
    """Seconds since the study's first trial started."""
    best: float
    """Best val_loss of completed trials so far (inf before the first)."""


@dataclass
class Curve:
    strategy: str
    seed: int
    points: list[Point] = field(default_factory=list)

    @property
    def final_best(self) -> float:
        return self.points[-1].best if self.points else math.inf

    @property
    def total_flops(self) -> float:
        return self.points[-1].flops if self.points else 0.0

    def to_target(self, target: float) -> tuple[float, float]:
        """(FLOPs, seconds) at the first trial whose completion brought best <= target;
        (inf, inf) if it never did."""
        for p in self.points:
            if p.best <= target:
                return p.flops, p.wall
        return math.inf, math.inf


def space_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The one space every strategy searches; grid values make grid search possible."""
    params: dict[str, Any] = {
        "learning_rate": {
            "low": 3e-4,
            "high": 3e-2,
            "log": True,
            "grid": [1e-3, 3e-3, 1e-2] if args.quick else [3e-4, 1e-3, 3e-3, 1e-2],
        },
        "model_size": {"choices": ["nano", "micro"] if args.quick else ["nano", "micro", "tiny"]},
        "batch_size": {"choices": [8, 16]},
    }
    if not args.quick:
        params["dropout"] = {"choices": [0.0, 0.1]}
    return {
        "name": "bench-search",
        "base": {
            "data": {"source": "shakespeare"},
            "tokenizer": {"kind": "bpe", "vocab_size": 2048},
            "model": {"arch": "gpt2", "size": "micro"},
            "train": {
                "batch_size": 16,
                "seq_len": 64,
                "tokens": args.tokens,
                "milestones": args.milestones,
                "eval_tokens": args.eval_tokens,
            },
        },
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "sampler": "random",
        "pruner": "none",
        "n_trials": args.trials,
        "seed": 0,
        "params": params,
    }


def run_strategy(strategy: str, seed: int, args: argparse.Namespace) -> Curve:
    from tuner.space import parse_space
    from tuner.study import create_study, run_study

    sampler, pruner = STRATEGIES[strategy]
    raw = space_dict(args) | {"sampler": sampler, "pruner": pruner, "seed": seed}
    space = parse_space(raw)
    handle = create_study(f"{strategy.replace('+', '-')}-seed{seed}-{time.time_ns()}", space)
    run_study(handle)
    return curve_of(strategy, seed, handle.study.get_trials(deepcopy=False))


def curve_of(strategy: str, seed: int, trials: list[Any]) -> Curve:
    curve = Curve(strategy, seed)
    trials = sorted((t for t in trials if t.datetime_complete), key=lambda t: t.number)
    if not trials:
        return curve
    start = min(t.datetime_start for t in trials)
    flops, best = 0.0, math.inf
    for t in trials:
        flops += float(t.user_attrs.get("cost", {}).get("train_flops", 0.0))
        if t.state.name == "COMPLETE" and t.value is not None:
            best = min(best, t.value)
        wall = (t.datetime_complete - start).total_seconds()
        curve.points.append(Point(t.number, t.state.name, flops, wall, best))
    return curve


def schedule(strategies: list[str], seeds: int) -> list[tuple[str, int]]:
    """Seeds outer, strategies rotated within each seed, grid once: no strategy always runs
    first (slowest, on a cold process) or always last."""
    order = []
    for seed in range(seeds):
        shift = seed % len(strategies)
        for strategy in strategies[shift:] + strategies[:shift]:
            if strategy != "grid" or seed == 0:
                order.append((strategy, seed))
    return order


def warm_up() -> None:
    """One tiny trial-sized run so imports and first-call costs land on no strategy."""
    from tuner.config import RunConfig, from_dict
    from tuner.train import train_run

    train_run(
        from_dict(
            RunConfig,
            {
                "tokenizer": {"kind": "bpe", "vocab_size": 2048},
                "model": {"size": "nano"},
                "train": {
                    "batch_size": 8,
                    "seq_len": 64,
                    "tokens": 2048,
                    "milestones": 1,
                    "eval_tokens": 256,
                },
            },
        )
    )


def pick_targets(curves: list[Curve], given: float | None) -> list[tuple[str, float]]:
    """The given target, else two read off random search: the worst of its seeds' final
    bests (every random run got there: "match random search") and the best of them ("beat
    random search", which some random seeds never reach)."""
    if given is not None:
        return [("given", given)]
    finals = [c.final_best for c in curves if c.strategy == "random"]
    if not finals:
        return [("median final best", median([c.final_best for c in curves]))]
    targets = [("match random search: its worst seed's final best", max(finals))]
    if min(finals) < max(finals):
        targets.append(("beat random search: its best seed's final best", min(finals)))
    return targets


def summarize(curves: list[Curve], target: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for strategy in STRATEGIES:
        mine = [c for c in curves if c.strategy == strategy]
        if not mine:
            continue
        hits = [c.to_target(target) for c in mine]
        out[strategy] = {
            "seeds": len(mine),
            "reached": sum(math.isfinite(f) for f, _ in hits),
            "final_best": median([c.final_best for c in mine]),
            "flops_to_target": median([f for f, _ in hits]),
            "seconds_to_target": median([s for _, s in hits]),
            "total_flops": median([c.total_flops for c in mine]),
            "total_seconds": median([c.points[-1].wall for c in mine if c.points]),
            "trials": median([len(c.points) for c in mine]),
            "pruned": median([sum(p.state == "PRUNED" for p in c.points) for c in mine]),
        }
    return out


def ratio_to_random(value: float, base: float, base_spent: float) -> tuple[float, str]:
    """(ratio, text). Where random search never reached the target (median over seeds), its
    compute is more than it spent, so the ratio is an upper bound: "< x"."""
    if math.isfinite(value) and math.isfinite(base) and base > 0:
        return value / base, f"{value / base:.2f}"
    if math.isfinite(value) and base_spent > 0:
        return value / base_spent, f"< {value / base_spent:.2f}"
    return math.nan, "-"


def report(summary: dict[str, dict[str, Any]], target: float, say: Report) -> dict[str, Any]:
    base = summary.get("random", {})
    rows, ratios, texts = [], {}, {}
    for strategy, s in summary.items():
        f_ratio, f_text = ratio_to_random(
            s["flops_to_target"], base.get("flops_to_target", 0), base.get("total_flops", 0)
        )
        _, t_text = ratio_to_random(
            s["seconds_to_target"], base.get("seconds_to_target", 0), base.get("total_seconds", 0)
        )
        ratios[strategy], texts[strategy] = f_ratio, f_text
        rows.append(
            [
                strategy,
                f"{s['reached']}/{s['seeds']}",
                f"{s['final_best']:.4f}",
                _fmt_flops(s["flops_to_target"]),
                f_text,
                _fmt_seconds(s["seconds_to_target"]),
                t_text,
                f"{s['trials']:.0f} ({s['pruned']:.0f} pruned)",
                si(s["total_flops"], "FLOP"),
                f"{s['total_seconds']:.0f} s",
            ]
        )
    say(
        markdown_table(
            [
                "strategy",
                "seeds reaching target",
                "final best (median)",
                "FLOPs to target (median)",
                "x random",
                "wall to target",
                "x random",
                "trials",
                "FLOPs spent",
                "wall spent",
            ],
            rows,
        )
    )
    hb = ratios.get("tpe+hb", math.nan)
    if "tpe+hb" in summary and base:
        text = texts["tpe+hb"]
        if math.isfinite(hb) and hb <= 1 / 3:
            verdict = "met"
        elif text.startswith("<"):
            verdict = "undecided: random search never got there, so only an upper bound"
        else:
            verdict = "NOT met"
        say(
            f"goal tpe+hb <= 1/3 of random's compute to reach val_loss {target:.4f}: "
            f"{text} ({verdict})"
        )
    return ratios


def _fmt_flops(value: float) -> str:
    return si(value, "FLOP") if math.isfinite(value) else "not reached"


def _fmt_seconds(value: float) -> str:
    return f"{value:.0f} s" if math.isfinite(value) else "not reached"


def plot(curves: list[Curve], targets: list[float]) -> Path | None:
    """Best val loss against cumulative training FLOPs, a line per study."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    colors = {"random": "#7f7f7f", "grid": "#1f77b4", "tpe": "#2ca02c", "tpe+hb": "#d62728"}
    fig = go.Figure()
    for c in curves:
        pts = [p for p in c.points if math.isfinite(p.best)]
        fig.add_trace(
            go.Scatter(
                x=[p.flops for p in pts],
                y=[p.best for p in pts],
                mode="lines+markers",
                line={"shape": "hv", "color": colors[c.strategy]},
                name=f"{c.strategy} seed {c.seed}",
                legendgroup=c.strategy,
            )
        )
    for target in targets:
        fig.add_hline(y=target, line_dash="dot", annotation_text=f"target {target:.4f}")
    fig.update_layout(
        title="Best validation loss vs cumulative training compute",
        xaxis_title="training FLOPs (cumulative)",
        yaxis_title="best val_loss",
        xaxis_type="log",
        template="plotly_white",
    )
    return write_html(fig, "search_efficiency")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="12-point space, 8 trials, 2 seeds, 16k tokens a trial, 4 milestones",
    )
    p.add_argument("--trials", type=int, default=None, help="trials per study (grid: its size)")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--tokens", type=int, default=None, help="training tokens per trial")
    p.add_argument(
        "--milestones",
        type=int,
        default=None,
        help="evaluations = pruning points (quick 4, full 6)",
    )
    p.add_argument("--eval-tokens", type=int, default=None, help="quick 1024, full 2048")
    p.add_argument(
        "--target",
        type=float,
        default=None,
        help="target val_loss (default: random search's final best, median of seeds)",
    )
    p.add_argument("--only", default=",".join(STRATEGIES), help="comma-separated strategies")
    p.add_argument(
        "--report",
        metavar="JSON",
        default=None,
        help="re-analyse a results JSON this script wrote (e.g. with another "
        "--target) instead of running the studies",
    )
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    args = p.parse_args(argv)
    args.trials = args.trials or (8 if args.quick else 24)
    args.seeds = args.seeds or (2 if args.quick else 3)
    args.tokens = args.tokens or (16384 if args.quick else 65536)
    args.milestones = args.milestones or (4 if args.quick else 6)
    args.eval_tokens = args.eval_tokens or (1024 if args.quick else 2048)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    set_threads(args.threads)
    use_temp_stores("search")
    say = Report()
    saved = json.loads(Path(args.report).read_text()) if args.report else None
    if saved:  # describe the measured run, not this invocation
        for key in ("quick", "tokens", "milestones", "eval_tokens", "trials", "seeds"):
            setattr(args, key, saved["args"][key])
    info = saved["machine"] if saved else machine()
    space = space_dict(args)
    say(f"# search efficiency ({'quick' if args.quick else 'full'})")
    say(f"machine: {machine_line(info)}")
    say(
        f"space: {', '.join(space['params'])}; gpt2, seq_len 64, {args.tokens:,} training "
        f"tokens per trial, {args.milestones} milestones x {args.eval_tokens:,} eval tokens; "
        f"{args.trials} trials per study, seeds 0..{args.seeds - 1}"
    )
    curves = load_curves(saved) if saved else run_all(args)
    for c in curves:
        pruned = sum(p.state == "PRUNED" for p in c.points)
        say(
            f"  {c.strategy:7s} seed {c.seed}: {len(c.points)} trials ({pruned} pruned), best "
            f"{c.final_best:.4f}, {si(c.total_flops, 'FLOP')}, "
            f"{c.points[-1].wall if c.points else 0:.0f} s from first trial start to last end"
        )
    targets = pick_targets(curves, args.target)
    analyses = []
    for meaning, target in targets:
        say()
        say(f"target val_loss {target:.4f} ({meaning})")
        summary = summarize(curves, target)
        ratios = report(summary, target, say)
        analyses.append(
            {
                "target": target,
                "meaning": meaning,
                "summary": summary,
                "flops_ratio_to_random": ratios,
            }
        )
    html = plot(curves, [t for _, t in targets])
    if html:
        say(f"\nplot: {html.relative_to(Path.cwd()) if html.is_relative_to(Path.cwd()) else html}")
    name = "search_efficiency" + ("-quick" if args.quick else "")
    payload = {
        "args": vars(args),
        "machine": info,
        "analyses": analyses,
        "curves": [
            {"strategy": c.strategy, "seed": c.seed, "points": [p.__dict__ for p in c.points]}
            for c in curves
        ],
    }
    path = save_results(name, payload, say.text)
    print(f"wrote {path} and {path.with_suffix('.json')}")


def run_all(args: argparse.Namespace) -> list[Curve]:
    warm_up()
    curves: list[Curve] = []
    for strategy, seed in schedule(
        [s.strip() for s in args.only.split(",") if s.strip()], args.seeds
    ):
        started = time.perf_counter()
        curve = run_strategy(strategy, seed, args)
        curves.append(curve)
        pruned = sum(p.state == "PRUNED" for p in curve.points)
        print(
            f"  {strategy:7s} seed {seed}: {len(curve.points)} trials ({pruned} pruned), "
            f"best {curve.final_best:.4f}, {si(curve.total_flops, 'FLOP')}, "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return curves


def load_curves(saved: dict[str, Any]) -> list[Curve]:
    return [
        Curve(c["strategy"], c["seed"], [Point(**p) for p in c["points"]]) for c in saved["curves"]
    ]


if __name__ == "__main__":
    main()
