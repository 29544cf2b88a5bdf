"""The figures of bench/search_efficiency.py: curves of best loss against cumulative compute,
compute to a target read off random search, the terminator replayed, and the plot."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import Report, markdown_table, median, si, write_html

OBSERVED = "warm_observation"  # tuner.records.OBSERVED: a warm start's prior observation


@dataclass
class TrialPoint:
    """One finished trial of a study, with what the figures and a warm start need."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    flops: float
    """Training FLOPs this trial spent (a pruned trial: up to where it stopped)."""
    tokens: int
    curve: list[list[float]]
    """[tokens seen, val_loss] at each milestone reached."""
    config: dict[str, Any]
    start: float
    complete: float
    """Unix seconds."""
    seeded: bool = False
    """Enqueued by a warm start (a config of the source study, run again here)."""


@dataclass
class Point:
    """The state of a study after one more finished trial."""

    trial: int
    state: str
    flops: float
    wall: float
    best: float


@dataclass
class Curve:
    space: str
    strategy: str
    seed: int
    raw: dict[str, Any] = field(default_factory=dict)
    trials: list[TrialPoint] = field(default_factory=list)
    seconds: float = 0.0
    source_flops: float = 0.0
    """Warm starts: the compute of the study they started from (not in `points`)."""

    @classmethod
    def of_trials(cls, space: str, strategy: str, seed: int, trials: list[Any]) -> Curve:
        curve = cls(space, strategy, seed)
        for t in trials:
            if t.datetime_complete is None or t.user_attrs.get(OBSERVED):
                continue
            cost = t.user_attrs.get("cost", {})
            curve.trials.append(
                TrialPoint(
                    number=t.number,
                    state=t.state.name,
                    params=dict(t.params),
                    value=t.value if t.state.name == "COMPLETE" else None,
                    flops=float(cost.get("train_flops", 0.0)),
                    tokens=int(cost.get("tokens_seen", 0)),
                    curve=[list(map(float, xy)) for xy in t.user_attrs.get("curve") or []],
                    config=t.user_attrs.get("config") or {},
                    start=t.datetime_start.timestamp(),
                    complete=t.datetime_complete.timestamp(),
                    seeded=bool(t.user_attrs.get("warm_seeded_from")),
                )
            )
        return curve

    @property
    def points(self) -> list[Point]:
        """Finished trials in completion order: cumulative FLOPs and best value so far."""
        ordered = sorted(self.trials, key=lambda t: t.complete)
        if not ordered:
            return []
        start = min(t.start for t in ordered)
        flops, best, out = 0.0, math.inf, []
        for t in ordered:
            flops += t.flops
            if t.state == "COMPLETE" and t.value is not None and math.isfinite(t.value):
                best = min(best, t.value)
            out.append(Point(t.number, t.state, flops, t.complete - start, best))
        return out

    @property
    def final_best(self) -> float:
        pts = self.points
        return pts[-1].best if pts else math.inf

    @property
    def total_flops(self) -> float:
        return sum(t.flops for t in self.trials)

    @property
    def pruned(self) -> int:
        return sum(t.state == "PRUNED" for t in self.trials)

    def best_at(self, flops: float) -> float:
        """The best value once `flops` were spent (inf before the first completed trial)."""
        best = math.inf
        for p in self.points:
            if p.flops > flops:
                break
            best = p.best
        return best

    def flops_to(self, target: float) -> float:
        """FLOPs spent when a completed trial first reached `target` (inf if none did)."""
        for p in self.points:
            if p.best <= target:
                return p.flops
        return math.inf

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "strategy": self.strategy,
            "seed": self.seed,
            "raw": self.raw,
            "seconds": self.seconds,
            "source_flops": self.source_flops,
            "trials": [asdict(t) for t in self.trials],
            "points": [asdict(p) for p in self.points],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Curve:
        return cls(
            data["space"],
            data["strategy"],
            data["seed"],
            data.get("raw", {}),
            [TrialPoint(**t) for t in data["trials"]],
            data.get("seconds", 0.0),
            data.get("source_flops", 0.0),
        )


# ---------------------------------------------------------------- compute to target


def _ratio(value: float, base: float, base_spent: float) -> tuple[float, str]:
    if math.isfinite(value) and math.isfinite(base) and base > 0:
        return value / base, f"{value / base:.3f}"
    if math.isfinite(value) and base_spent > 0:
        return value / base_spent, f"< {value / base_spent:.3f}"
    return math.nan, "not reached"


GOALS = (("tpe+hb", 0.33, "TPE + Hyperband (defaults)"), ("warm", 0.2, "warm start"))
"""(strategy, most compute to random search's final best as a fraction of random's, label)."""


def report_space(curves: list[Curve], say: Report) -> dict[str, Any]:
    """Compute to reach random search's final best loss (median over seeds), per strategy."""
    random = [c for c in curves if c.strategy == "random"]
    for c in curves:
        say(
            f"  {c.strategy:9s} seed {c.seed}: {len(c.trials)} trials ({c.pruned} pruned), best "
            f"{c.final_best:.4f}, {si(c.total_flops, 'FLOP')}"
            + (f" (+ source {si(c.source_flops, 'FLOP')})" if c.source_flops else "")
            + f", {c.seconds:.0f} s"
        )
    if not random:
        say("no random search: no target")
        return {}
    target = median([c.final_best for c in random])
    base = median([c.flops_to(target) for c in random])
    base_spent = median([c.total_flops for c in random])
    say()
    say(
        f"target val_loss {target:.4f} = random search's final best, median of "
        f"{len(random)} seeds ({', '.join(f'{c.final_best:.4f}' for c in random)})"
    )
    rows, summary = [], {}
    for strategy in dict.fromkeys(c.strategy for c in curves):
        mine = [c for c in curves if c.strategy == strategy]
        to_target = [c.flops_to(target) for c in mine]
        flops = median(to_target)
        ratio, text = _ratio(flops, base, base_spent)
        paired = _paired(mine, random)
        with_source = median([f + c.source_flops for f, c in zip(to_target, mine, strict=True)])
        summary[strategy] = {
            "seeds": len(mine),
            "reached": sum(math.isfinite(f) for f in to_target),
            "flops_to_target": flops,
            "flops_to_target_per_seed": to_target,
            "ratio": ratio,
            "ratio_text": text,
            "paired_ratio": paired,
            "ratio_with_source": _ratio(with_source, base, base_spent)[0]
            if any(c.source_flops for c in mine)
            else None,
            "final_best": median([c.final_best for c in mine]),
            "final_best_per_seed": [c.final_best for c in mine],
            "total_flops": median([c.total_flops for c in mine]),
            "trials": median([len(c.trials) for c in mine]),
            "pruned": median([c.pruned for c in mine]),
            "seconds": median([c.seconds for c in mine]),
        }
        s = summary[strategy]
        rows.append(
            [
                strategy,
                f"{s['reached']}/{s['seeds']}",
                si(flops, "FLOP") if math.isfinite(flops) else "not reached",
                text,
                f"{paired:.3f}" if math.isfinite(paired) else "-",
                f"{s['final_best']:.4f}",
                si(s["total_flops"], "FLOP"),
                f"{s['trials']:.0f} ({s['pruned']:.0f} pruned)",
                f"{s['seconds']:.0f} s",
            ]
        )
    say(
        markdown_table(
            [
                "strategy",
                "seeds reaching target",
                "FLOPs to target (median)",
                "x random",
                "x random, paired by seed (median)",
                "final best (median)",
                "FLOPs spent (median)",
                "trials",
                "wall (median, noisy)",
            ],
            rows,
        )
    )
    for strategy, goal, label in GOALS:
        if strategy not in summary:
            continue
        s = summary[strategy]
        met = math.isfinite(s["ratio"]) and s["ratio"] <= goal and s["ratio_text"][0] != "<"
        extra = ""
        if s.get("ratio_with_source") is not None:
            extra = f"; counting the source study's compute too: {s['ratio_with_source']:.3f}"
        say(
            f"goal {label} compute to random's final best <= {goal} x random: "
            f"{s['ratio_text']} ({'met' if met else 'NOT met'}){extra}"
        )
    at_equal = _best_at_equal_compute(curves, base_spent, say)
    return {
        "target": target,
        "random_flops_to_target": base,
        "summary": summary,
        "best_at_equal_compute": at_equal,
        "floor": _floor(random, target, GOALS[0][1], base, say),
    }


def completed(curves: list[Curve]) -> list[TrialPoint]:
    """Every completed trial of these studies."""
    return [t for c in curves for t in c.trials if t.state == "COMPLETE" and t.value is not None]


def reaching(done: list[TrialPoint], target: float) -> list[TrialPoint]:
    """Of the completed trials `done`, those that reached `target` on their own, cheapest
    first."""
    return sorted((t for t in done if t.value <= target), key=lambda t: t.flops)


def _floor(
    random: list[Curve], target: float, goal: float, base: float, say: Report
) -> dict[str, Any]:
    """What the target costs at least: the random studies' trials are unbiased draws from the
    space, so the share of them that reach the target, and what those trials cost on their
    own, bound what any search can do without knowing the answer in advance. `goal` x `base`
    (random's FLOPs to the target) is the goal's budget."""
    draws = completed(random)
    hits = reaching(draws, target)
    budget = goal * base
    cheap = [t for t in hits if t.flops <= budget]
    say()
    if not hits:
        say(f"no random trial reached {target:.4f} on its own")
        return {"draws": len(draws), "hits": 0, "hits_within_budget": 0}
    sizes = ", ".join(f"{si(t.flops, 'FLOP')} ({t.params.get('model_size', '?')})" for t in hits)
    line = (
        f"what the target costs at least: {len(hits)} of {len(draws)} random trials reach "
        f"{target:.4f} on their own, each costing {sizes}"
    )
    if math.isfinite(budget):
        line += (
            f"; {len(cheap)} of them cost no more than the {goal:g}x goal's budget "
            f"({si(budget, 'FLOP')}), so a search meets that goal only by finding, within that "
            f"budget, what a random draw finds {len(cheap)} time{'s' * (len(cheap) != 1)} "
            f"in {len(draws)}"
        )
    say(line)
    return {
        "draws": len(draws),
        "hits": len(hits),
        "hit_flops": [t.flops for t in hits],
        "budget": budget,
        "hits_within_budget": len(cheap),
    }


def rerun_picks(random: list[Curve], target: float) -> dict[str, TrialPoint]:
    """The trials worth training again: random search's best, and its cheapest to reach
    the target."""
    done = completed(random)
    if not done:
        return {}
    best = min(done, key=lambda t: t.value)
    hits = reaching(done, target)
    if not hits:
        return {"best": best}
    if hits[0] is best:
        return {"best, cheapest to target": best}
    return {"best": best, "cheapest to target": hits[0]}


def report_reruns(
    runs: dict[str, tuple[TrialPoint, Curve]], target: float, say: Report
) -> dict[str, Any]:
    """How much of a trial's loss is its seed: the same configuration under other seeds."""
    say()
    say("the same configuration trained again with other trial seeds (random search's trials):")
    rows, out = [], {}
    for label, (trial, curve) in runs.items():
        values = [t.value for t in curve.trials if t.value is not None]
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        reach = sum(v <= target for v in values)
        out[label] = {"params": trial.params, "value": trial.value, "reruns": values, "sd": sd}
        config = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in trial.params.items()
        )
        rows.append(
            [
                label,
                config,
                f"{trial.value:.4f}",
                f"{statistics.mean(values):.4f} +- {sd:.4f}",
                f"{min(values):.4f}..{max(values):.4f}",
                f"{reach}/{len(values)}",
            ]
        )
    heads = ["trial", "config", "its loss", "reruns: mean +- sd", "range", f"<= {target:.4f}"]
    say(markdown_table(heads, rows))
    return out


EQUAL_COMPUTE = (0.25, 0.5, 0.75, 1.0)
"""Budgets of the equal-compute table, as fractions of random search's median total FLOPs."""


def _best_at_equal_compute(curves: list[Curve], spent: float, say: Report) -> dict[str, Any]:
    """Median best val_loss of each strategy after the same FLOPs: a view that does not hinge
    on one target (with few seeds, "FLOPs to random's median best" moves with the seeds)."""
    budgets = [f * spent for f in EQUAL_COMPUTE]
    table: dict[str, list[float]] = {}
    for strategy in dict.fromkeys(c.strategy for c in curves):
        mine = [c for c in curves if c.strategy == strategy]
        table[strategy] = [median([c.best_at(b) for c in mine]) for b in budgets]
    say()
    say("median best val_loss after the same compute (x random search's median total FLOPs):")
    labels = (f"{f:g}x ({si(b, 'FLOP')})" for f, b in zip(EQUAL_COMPUTE, budgets, strict=True))
    rows = [
        [strategy, *(f"{v:.4f}" if math.isfinite(v) else "-" for v in values)]
        for strategy, values in table.items()
    ]
    heads = ["strategy", *labels]
    say(markdown_table(heads, rows))
    return {"fractions": list(EQUAL_COMPUTE), "flops": budgets, "median_best": table}


def _paired(mine: list[Curve], random: list[Curve]) -> float:
    """Median over seeds of: FLOPs to reach random seed s's final best / random seed s's own
    FLOPs to reach it."""
    by_seed = {c.seed: c for c in random}
    ratios = []
    for c in mine:
        r = by_seed.get(c.seed)
        if r is None:
            continue
        base = r.flops_to(r.final_best)
        ratios.append(c.flops_to(r.final_best) / base if base > 0 else math.nan)
    return median(ratios) if ratios else math.nan


# ---------------------------------------------------------------- terminator


def replay(space_raw: dict[str, Any], trials: list[Any], settings: dict[str, Any]) -> Any:
    """The number of the trial after which tuner.terminator's verdict would have stopped a
    finished study (None if never), replayed in the order its trials finished."""
    import optuna

    from tuner.space import parse_space
    from tuner.terminator import verdict

    space = parse_space(space_raw)
    dists = space.distributions()
    minimize = space.objectives[0].direction == "minimize"
    frozen = []
    for t in sorted(trials, key=lambda t: t.complete):
        state = optuna.trial.TrialState[t.state]
        frozen.append(
            optuna.trial.create_trial(
                state=state,
                value=t.value if state == optuna.trial.TrialState.COMPLETE else None,
                params=t.params,
                distributions={k: dists[k] for k in t.params},
            )
        )
        if verdict(frozen, minimize, settings, seed=len(frozen)):
            return t.number
    return None


def terminator_replay(curves: list[Curve], say: Report) -> dict[str, Any]:
    """Replay tuner's study terminator (space key `terminate`) on every finished study: after
    each trial, would it have stopped? Report where, and what stopping there cost in loss and
    saved in compute."""
    out: dict[str, Any] = {}
    rows = []
    for c in curves:
        if c.strategy not in ("random", "tpe+hb"):
            continue
        for margin in (0.01, 0.03):
            stop = replay(c.raw, c.trials, {"margin": margin})
            pts = c.points
            if stop is None:
                rows.append([c.strategy, c.seed, margin, "never", "-", "-", "-"])
                out[f"{c.strategy}-{c.seed}-{margin}"] = None
                continue
            at = next(i for i, p in enumerate(pts) if p.trial == stop)
            lost = pts[at].best - c.final_best
            saved = 1 - pts[at].flops / c.total_flops
            rows.append(
                [
                    c.strategy,
                    c.seed,
                    margin,
                    f"after trial {at + 1} of {len(pts)}",
                    f"{pts[at].best:.4f}",
                    f"{lost:+.4f}",
                    f"{saved:.0%}",
                ]
            )
            out[f"{c.strategy}-{c.seed}-{margin}"] = {
                "stop_after": at + 1,
                "best_at_stop": pts[at].best,
                "final_best": c.final_best,
                "compute_saved": saved,
            }
    if rows:
        say()
        say("study terminator (`terminate: {margin: M}`) replayed on these studies:")
        say(
            markdown_table(
                [
                    "strategy",
                    "seed",
                    "margin",
                    "would stop",
                    "best then",
                    "vs final best",
                    "compute saved",
                ],
                rows,
            )
        )
    return out


# ---------------------------------------------------------------- plot


COLORS = {
    "random": "#7f7f7f",
    "grid": "#1f77b4",
    "tpe": "#2ca02c",
    "tpe+hb": "#d62728",
    "tpe+hb-v0": "#ff7f0e",
    "warm": "#9467bd",
}


def plot(curves: list[Curve]) -> Path | None:
    """Best val loss against cumulative training FLOPs, a panel per space: per strategy the
    median over its seeds (thick) and each study (thin, faint)."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return None
    spaces = list(dict.fromkeys(c.space for c in curves))
    others = iter(["#17becf", "#bcbd22", "#8c564b", "#e377c2", "#ff7f0e", "#1f77b4"] * 3)
    colors = dict(COLORS)
    for strategy in dict.fromkeys(c.strategy for c in curves):
        colors.setdefault(strategy, next(others))
    fig = make_subplots(rows=1, cols=len(spaces), subplot_titles=spaces)
    for col, space in enumerate(spaces, start=1):
        here = [c for c in curves if c.space == space and c.points]
        low = min(p.flops for c in here for p in c.points)
        high = max(c.total_flops for c in here)
        grid = [low * (high / low) ** (i / 99) for i in range(100)]
        for strategy in dict.fromkeys(c.strategy for c in here):
            mine = [c for c in here if c.strategy == strategy]
            for c in mine:
                pts = [p for p in c.points if math.isfinite(p.best)]
                fig.add_trace(
                    go.Scatter(
                        x=[p.flops for p in pts],
                        y=[p.best for p in pts],
                        mode="lines",
                        line={"shape": "hv", "color": colors[strategy], "width": 1},
                        opacity=0.3,
                        name=f"{strategy} seed {c.seed}",
                        legendgroup=strategy,
                        showlegend=False,
                    ),
                    row=1,
                    col=col,
                )
            middle = [(x, median([c.best_at(x) for c in mine])) for x in grid]
            middle = [(x, y) for x, y in middle if math.isfinite(y)]
            fig.add_trace(
                go.Scatter(
                    x=[x for x, _ in middle],
                    y=[y for _, y in middle],
                    mode="lines",
                    line={"shape": "hv", "color": colors[strategy], "width": 3},
                    name=f"{strategy} (median of {len(mine)} seeds)",
                    legendgroup=strategy,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        finals = [c.final_best for c in here]
        top = median([c.final_best for c in here if c.strategy == "random"] or finals) + 0.3
        fig.update_xaxes(type="log", title_text="training FLOPs (cumulative)", row=1, col=col)
        fig.update_yaxes(
            title_text="best val_loss", range=[min(finals) - 0.02, top], row=1, col=col
        )
    fig.update_layout(title="Best validation loss vs cumulative training compute")
    return write_html(fig, "search_efficiency")


def spread(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return f"{statistics.pstdev(finite):.3f}" if len(finite) > 1 else "-"


# ---------------------------------------------------------------- pruners replayed


PRUNER_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "hyperband half-way eta3 (default)": {"name": "hyperband"},
    "hyperband r1 eta3 (the default before)": {
        "name": "hyperband",
        "min_resource": 1,
        "reduction_factor": 3,
    },
    "hyperband r1 eta2": {"name": "hyperband", "min_resource": 1, "reduction_factor": 2},
    "hyperband r2 eta3": {"name": "hyperband", "min_resource": 2, "reduction_factor": 3},
    "successive-halving r1 eta3": {"name": "successive-halving", "min_resource": 1},
    "successive-halving r1 eta2": {
        "name": "successive-halving",
        "min_resource": 1,
        "reduction_factor": 2,
    },
    "successive-halving r3 eta3": {"name": "successive-halving", "min_resource": 3},
    "median (warm-up 1)": {"name": "median"},
}


def replay_pruner(curve: Curve, pruner_raw: dict[str, Any]) -> Curve:
    """Random search with a pruner, replayed exactly from a random search without one: the
    random sampler's draws do not depend on pruning, so each trial is the same, cut where the
    pruner (Optuna's own, fed the recorded milestone losses in order) would have cut it.
    A cut trial is charged the FLOPs of the milestones it reached."""
    import optuna

    from tuner.samplers import make_pruner
    from tuner.space import parse_space

    space = parse_space({**curve.raw, "pruner": pruner_raw})
    study = optuna.create_study(study_name=f"replay-{curve.seed}", pruner=make_pruner(space))
    dists = space.distributions()
    out = Curve(curve.space, curve.strategy, curve.seed, curve.raw)
    for t in sorted(curve.trials, key=lambda t: t.complete):
        study.enqueue_trial(t.params)
        trial = study.ask({k: dists[k] for k in t.params})
        kept = len(t.curve)
        for step, (_, loss) in enumerate(t.curve):
            trial.report(loss, step)
            if step < len(t.curve) - 1 and trial.should_prune():
                kept = step + 1
                break
        full = kept == len(t.curve) and t.state == "COMPLETE"
        state = "COMPLETE" if full else "PRUNED"
        study.tell(trial, t.value if full else None, state=optuna.trial.TrialState[state])
        share = kept / max(len(t.curve), 1)
        out.trials.append(
            TrialPoint(
                t.number,
                state,
                t.params,
                t.value if full else None,
                t.flops * share,
                int(t.tokens * share),
                t.curve[:kept],
                t.config,
                t.start,
                t.complete,
            )
        )
    return out


def pruner_replays(curves: list[Curve], target: float, say: Report) -> dict[str, Any]:
    """Every pruner variant on every random study: compute to the target, final best, and how
    often the pruner cut the trial that would have been best."""
    random = [c for c in curves if c.strategy == "random" and c.raw]
    if not random:
        return {}
    base = median([c.flops_to(target) for c in random])
    rows, out = [], {}
    for label, raw in PRUNER_VARIANTS.items():
        replays = [replay_pruner(c, raw) for c in random]
        flops = median([r.flops_to(target) for r in replays])
        lost = sum(r.final_best > c.final_best + 1e-9 for r, c in zip(replays, random, strict=True))
        spent = median(
            [r.total_flops / c.total_flops for r, c in zip(replays, random, strict=True)]
        )
        out[label] = {"flops_to_target": flops, "best_cut": lost, "spent_share": spent}
        rows.append(
            [
                label,
                si(flops, "FLOP") if math.isfinite(flops) else "not reached",
                f"{flops / base:.3f}" if math.isfinite(flops) and base > 0 else "-",
                f"{spent:.2f}",
                f"{median([r.final_best for r in replays]):.4f}",
                f"{lost}/{len(random)}",
            ]
        )
    say()
    say(
        f"pruners replayed on the random studies (same trials, cut where each pruner cuts), "
        f"target {target:.4f}:"
    )
    say(
        markdown_table(
            [
                "random + pruner",
                "FLOPs to target",
                "x random",
                "compute spent / random's",
                "final best (median)",
                "seeds whose best trial it cut",
            ],
            rows,
        )
    )
    return out


def rank_correlations(curves: list[Curve], say: Report) -> list[float]:
    """Spearman correlation, over random search's complete trials, of the loss at each
    milestone with the final loss: how much an early cut can trust what it sees."""
    from scipy.stats import spearmanr

    full = [
        t.curve
        for c in curves
        if c.strategy == "random"
        for t in c.trials
        if t.state == "COMPLETE" and t.curve
    ]
    if len(full) < 5:
        return []
    m = min(len(cv) for cv in full)
    final = [cv[-1][1] for cv in full]
    rhos = [float(spearmanr([cv[k][1] for cv in full], final).statistic) for k in range(m)]
    say(
        f"rank correlation of the loss at milestone k with the final loss ({len(full)} random "
        f"trials): " + ", ".join(f"{k + 1}: {r:.2f}" for k, r in enumerate(rhos))
    )
    return rhos
