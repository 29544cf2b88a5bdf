"""Scaling-law fits: how fast they are, and whether they recover a known law.

Section 1, speed: 10,000 synthetic runs fitted with 200 bootstrap resamples, by
`tuner.scaling.fit_scaling_law` (approach 3, and approach 2 where the runs form IsoFLOP
curves), against a straightforward implementation of the same fit measured in the same
invocation: L-BFGS-B with finite-difference gradients on the replication's (uncentred)
parametrisation, per resample from the full-data optimum, timed on a few resamples and scaled
to 200; and the replication's own full-data search, L-BFGS from all 4,500 grid starts, timed on
a few starts and scaled up.

Section 2, recovery: data drawn from L = 1.7 + 400/N^0.34 + 410/D^0.28 with log-normal noise,
fitted over several seeds: errors of alpha, beta and E, how often the bootstrap intervals cover
the truth, approach 2's exponents on IsoFLOP sweeps, and the recommended N against the law's.

Section 3, end to end: an IsoFLOP study on the built-in corpus (character tokenizer, one
epoch) up to C_max, fitted; the recommended model trained at 4 x C_max with `tuner train`, its
predicted final validation loss against the achieved one, and the recommended N against a
3-point sweep of N at that budget (see _scaling_e2e.py).

  python bench/scaling.py --quick   # 1 timing repeat, 3 recovery seeds, C_max 6e10 (~15 min)
  python bench/scaling.py           # 3 timing repeats, 10 recovery seeds, C_max 6e11 (hours)
  python bench/scaling.py --sections end_to_end --quick   # one section
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, machine, machine_line, markdown_table, save_results  # noqa: E402

from tuner.scaling import chinchilla_optimum, fit_scaling_law, make_points, recommend  # noqa: E402
from tuner.scaling.law import START_GRID, predict  # noqa: E402

TRUE = {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
TRUE_COEFS = np.array(list(TRUE.values()))
TOLERANCE = 0.02  # the goal: alpha, beta and E within 0.02
SPEED_GOAL_S = 30.0


def random_runs(n: int, noise: float, seed: int) -> Any:
    """N over 1e7..1e10 and D over 1e8..1e12, log-uniform; no budgets, so approach 3 only."""
    rng = np.random.default_rng(seed)
    params, tokens = 10 ** rng.uniform(7, 10, n), 10 ** rng.uniform(8, 12, n)
    loss = predict(TRUE_COEFS, params, tokens) * np.exp(rng.normal(0, noise, n))
    return make_points(params, loss, tokens=tokens)


def isoflop_runs(budgets: np.ndarray, sizes: int, span: float, noise: float, seed: int) -> Any:
    """IsoFLOP curves: per budget, `sizes` N log-uniform within `span` x of the true optimum."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = chinchilla_optimum(TRUE_COEFS, c)
        rows += [(n, c / (6 * n), c) for n in n_opt[0] * span ** np.linspace(-1, 1, sizes)]
    params, tokens, flops = map(np.array, zip(*rows, strict=True))
    loss = predict(TRUE_COEFS, params, tokens) * np.exp(rng.normal(0, noise, len(rows)))
    return make_points(params, loss, tokens=tokens, flops=flops)


PRIMARY = "random 300 runs, 1% noise"
DESIGNS = {
    PRIMARY: lambda seed: random_runs(300, 0.01, seed),
    "IsoFLOP 5 budgets x 9 sizes, 0.5% noise": lambda seed: isoflop_runs(
        np.logspace(18, 22, 5), 9, 4.0, 0.005, seed
    ),
    "IsoFLOP 5 budgets x 9 sizes, 1% noise": lambda seed: isoflop_runs(
        np.logspace(18, 22, 5), 9, 4.0, 0.01, seed
    ),
}


def timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


# --- the straightforward baseline ------------------------------------------------------------


def naive_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, target: np.ndarray, w: np.ndarray
) -> float:
    """The replication's objective as one would first write it: uncentred (a, b, e, alpha,
    beta), summed Huber loss, no gradient (scipy takes finite differences)."""
    a, b, e, alpha, beta = theta
    pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    r = np.abs(pred - target)
    return float((np.where(r <= 1e-3, 0.5 * r * r, 1e-3 * (r - 0.5e-3)) * w).sum())


def naive_costs(points: Any, theta: np.ndarray, resamples: int, starts: int) -> dict[str, float]:
    """Seconds per bootstrap refit and per grid start of the straightforward fit."""
    log_n, log_d, target = np.log(points.params), np.log(points.tokens), np.log(points.loss)
    rng = np.random.default_rng(0)
    wall = time.perf_counter()
    for _ in range(resamples):
        w = np.bincount(rng.integers(0, len(points), len(points)), minlength=len(points))
        minimize(
            naive_objective, theta, args=(log_n, log_d, target, w.astype(float)), method="L-BFGS-B"
        )
    per_refit = (time.perf_counter() - wall) / resamples
    ones = np.ones(len(points))
    wall = time.perf_counter()
    for start in START_GRID[rng.choice(len(START_GRID), starts, replace=False)]:
        minimize(naive_objective, start, args=(log_n, log_d, target, ones), method="L-BFGS-B")
    per_start = (time.perf_counter() - wall) / starts
    return {"per_refit_s": per_refit, "per_grid_start_s": per_start}


# --- section 1 -------------------------------------------------------------------------------


def speed(args: argparse.Namespace, say: Report) -> dict[str, Any]:
    say(f"## 1. speed: {args.points:,} points, {args.bootstrap} bootstrap resamples")
    designs = {
        "random (approach 3 only)": random_runs(args.points, 0.01, seed=0),
        "IsoFLOP, 20 budgets (approaches 2 and 3)": isoflop_runs(
            np.logspace(17, 23, 20), args.points // 20, 8.0, 0.01, seed=0
        ),
    }
    rows, figures = [], {}
    for name, points in designs.items():
        runs = [
            timed(lambda p=points: fit_scaling_law(p, n_bootstrap=args.bootstrap))
            for _ in range(args.repeats)
        ]
        fit = runs[-1][0]
        wall = statistics.median(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        full = fit.law
        theta = np.array(
            [math.log(full.A), math.log(full.B), math.log(full.E), full.alpha, full.beta]
        )
        naive = naive_costs(points, theta, args.naive_resamples, args.naive_starts)
        naive_total = naive["per_refit_s"] * args.bootstrap
        grid_total = naive["per_grid_start_s"] * len(START_GRID)
        figures[name] = {
            "points": len(points),
            "bootstrap": args.bootstrap,
            "wall_s": [r[1] for r in runs],
            "cpu_s": [r[2] for r in runs],
            "median_wall_s": wall,
            "median_cpu_s": cpu,
            "naive": naive,
            "naive_bootstrap_s": naive_total,
            "replication_grid_s": grid_total,
            "alpha": full.alpha,
            "beta": full.beta,
            "E": full.E,
        }
        rows.append(
            [
                name,
                f"{wall:.2f}",
                f"{cpu:.2f}",
                f"{naive_total:.0f}",
                f"{naive_total / wall:.1f}x",
                f"{grid_total:.0f}",
                f"{full.alpha:.4f}",
                f"{full.beta:.4f}",
                f"{full.E:.4f}",
            ]
        )
    say(
        markdown_table(
            [
                "design",
                "tuner wall s",
                "tuner CPU s",
                "naive bootstrap s (est.)",
                "speed-up",
                "replication grid s (est.)",
                "alpha",
                "beta",
                "E",
            ],
            rows,
        )
    )
    say(
        f"naive = L-BFGS-B with finite-difference gradients, uncentred, per resample from the "
        f"full-data optimum: timed on {args.naive_resamples} resamples, scaled to "
        f"{args.bootstrap}; replication grid = L-BFGS from all {len(START_GRID)} starts, timed "
        f"on {args.naive_starts} random starts, scaled up (one full-data fit, no bootstrap)."
    )
    worst = max(f["median_wall_s"] for f in figures.values())
    met = worst < SPEED_GOAL_S
    say(
        f"goal fit {args.points:,} points + {args.bootstrap} bootstrap: {worst:.1f} s "
        f"({'met' if met else 'NOT met'}; < {SPEED_GOAL_S:.0f} s, slower design, median of "
        f"{args.repeats})"
    )
    return {"designs": figures, "worst_wall_s": worst, "goal_met": met}


# --- section 2 -------------------------------------------------------------------------------


def recovery(args: argparse.Namespace, say: Report) -> dict[str, Any]:
    say()
    say(
        f"## 2. recovery of L = 1.7 + 400/N^0.34 + 410/D^0.28, {args.seeds} seeds, "
        f"{args.recovery_bootstrap} resamples, 95% intervals"
    )
    truth_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    n_true = chinchilla_optimum(TRUE_COEFS, 1e23)[0][0]
    out: dict[str, Any] = {}
    rows = []
    for name, make in DESIGNS.items():
        errors: dict[str, list[float]] = {k: [] for k in ("alpha", "beta", "E")}
        covered = dict.fromkeys(TRUE, 0)
        a2, n_err = [], []
        for seed in range(args.seeds):
            fit = fit_scaling_law(make(seed), n_bootstrap=args.recovery_bootstrap, seed=seed)
            law, intervals = fit.law, fit.law.intervals()
            for k in errors:
                errors[k].append(abs(getattr(law, k) - TRUE[k]))
            for k, truth in TRUE.items():
                covered[k] += intervals[k][0] <= truth <= intervals[k][1]
            if fit.approach2 and fit.approach2.params_opt:
                a2.append(fit.approach2.params_opt.exponent)
            n_err.append(recommend(fit, flops=1e23).params / n_true - 1)
        within = sum(all(errors[k][s] < TOLERANCE for k in errors) for s in range(args.seeds))
        out[name] = {
            "errors": errors,
            "worst": {k: max(v) for k, v in errors.items()},
            "seeds_within_tolerance": within,
            "covered": covered,
            "approach2_a": a2,
            "recommended_n_rel_error_at_1e23": n_err,
        }
        worst = out[name]["worst"]
        rows.append(
            [
                name,
                f"{worst['alpha']:.4f}",
                f"{worst['beta']:.4f}",
                f"{worst['E']:.4f}",
                f"{within}/{args.seeds}",
                " ".join(f"{k} {v}/{args.seeds}" for k, v in covered.items()),
                f"{statistics.median(a2):.4f} (true {truth_a:.4f})" if a2 else "-",
                f"{statistics.median(np.abs(n_err)):.1%}",
            ]
        )
    say(
        markdown_table(
            [
                "design",
                "max |alpha err|",
                "max |beta err|",
                "max |E err|",
                f"seeds all < {TOLERANCE}",
                "95% intervals cover truth",
                "approach 2 a (median)",
                "N_opt error at 1e23 (median)",
            ],
            rows,
        )
    )
    primary = out[PRIMARY]
    met = primary["seeds_within_tolerance"] == args.seeds
    hits = sum(sum(d["covered"].values()) for d in out.values())
    total = args.seeds * len(TRUE) * len(out)
    say(
        f"goal synthetic alpha, beta, E within {TOLERANCE} ({PRIMARY}, every seed): "
        f"{primary['seeds_within_tolerance']}/{args.seeds} seeds ({'met' if met else 'NOT met'})"
    )
    say(
        f"goal bootstrap intervals cover the truth: {hits}/{total} ({hits / total:.0%}) "
        f"coefficient-seed pairs over all designs at nominal 95% "
        f"({'met' if hits / total >= 0.9 else 'NOT met'}; met at >= 90%)"
    )
    return {"designs": out, "recovery_met": met, "coverage": hits / total}


# --- section 3 -------------------------------------------------------------------------------


def end_to_end(args: argparse.Namespace, say: Report) -> dict[str, Any]:
    """Fit IsoFLOP budgets up to C_max on the built-in corpus, train the recommended model at
    4 x C_max and a 3-point sweep of N there (see _scaling_e2e.py)."""
    from _common import use_temp_stores
    from _scaling_e2e import end_to_end as run

    say()
    say(f"## 3. end to end on the built-in corpus ({'quick' if args.quick else 'full'})")
    return run(args.quick, say, use_temp_stores("scaling-e2e"))


SECTIONS = {"speed": speed, "recovery": recovery, "end_to_end": end_to_end}


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        ),
        "unknown",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 timing repeat, 3 recovery seeds")
    p.add_argument("--points", type=int, default=10_000)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--repeats", type=int, default=None, help="timing repeats (median)")
    p.add_argument("--seeds", type=int, default=None, help="recovery seeds")
    p.add_argument("--recovery-bootstrap", type=int, default=100)
    p.add_argument("--naive-resamples", type=int, default=3)
    p.add_argument("--naive-starts", type=int, default=5)
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)}",
    )
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"--sections: unknown {sorted(unknown)}; one of {', '.join(SECTIONS)}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.seeds = args.seeds or (3 if args.quick else 10)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    say = Report()
    info = machine() | {"lscpu_model_name": lscpu_model()}
    say(f"# scaling fits ({'quick' if args.quick else 'full'})")
    flags = " ".join(argv if argv is not None else sys.argv[1:])
    say(f"command: python bench/scaling.py {flags}".rstrip())
    say(f"machine: {machine_line(info)}")
    say()
    payload = {"args": vars(args), "machine": info}
    for section in args.sections:
        payload[section] = SECTIONS[section](args, say)
    name = "scaling"
    if args.sections != list(SECTIONS):
        name += "-" + "-".join(s.replace("_", "") for s in args.sections)
    name += "-quick" if args.quick else ""
    path = save_results(name, payload, say.text)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
