"""μP learning-rate transfer: does the optimal learning rate stay put as the model widens?

A learning-rate sweep (log-spaced values, same depth, same tokens, several seeds) at widths
64 to 512 under SP and under μP, every run a real `tuner.train.train_run` of the same recipe
moved to each width by `tuner.width.at_width` (head dim and d_ff/d_model kept, μP's base width
= the narrowest). Per width, the optimal learning rate is the vertex of a parabola in log lr
through the three grid points around the minimum of the seed-averaged final validation loss.

Printed: the optimum per width and its drift (max/min across widths) under SP and μP; the loss
at the widest width when trained at the narrowest width's optimum (the transferred learning
rate, trained for real) against the sweep's best there; and whether, under μP, wider is better
at every learning rate. The coordinate check of the same recipe (tuner.coord_check) comes
first, as the sanity check of the implementation.

  python bench/mup_transfer.py --quick     # 2 seeds, 9 lrs, 40k tokens a run: ~25 min, 2 idle cores
  python bench/mup_transfer.py             # 3 seeds, 11 lrs, 160k tokens a run: hours on a CPU
  python bench/mup_transfer.py --report bench/results/mup_transfer-quick.json   # re-analyse
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    THREADS_HELP,
    Report,
    machine,
    machine_line,
    markdown_table,
    quiet,
    save_results,
    set_threads,
    use_temp_stores,
    write_html,
)

PARAMS = ("sp", "mup")
NAMES = {"sp": "SP", "mup": "μP"}
RUNS_FILE = RESULTS / "mup_transfer-runs.jsonl"
_DATA: Any = None  # token arrays, loaded once per worker process


def base_config(args: argparse.Namespace, parametrization: str) -> Any:
    from tuner.config import RunConfig, from_dict

    width = min(args.widths)
    return from_dict(
        RunConfig,
        {
            "data": {"source": "shakespeare"},
            "tokenizer": {"kind": "byte"},  # 257 tokens: the embedding stays cheap
            "model": {
                "arch": args.arch,
                "size": "custom",
                "n_layer": args.n_layer,
                "d_model": width,
                "n_head": width // args.head_dim,
                "parametrization": parametrization,
            },
            "train": {
                "batch_size": args.batch_size,
                "seq_len": args.seq_len,
                "tokens": args.tokens,
                "milestones": 1,
                "eval_tokens": args.eval_tokens,
                "eval_batch_size": 64,
            },
        },
    )


def _init_worker(threads: int) -> None:
    quiet()
    set_threads(threads)


def _data(config: Any) -> Any:
    global _DATA
    if _DATA is None:
        from tuner.data import load_token_data

        _DATA = load_token_data(config.data, config.tokenizer)
    return _DATA


def run_one(args: argparse.Namespace, param: str, width: int, lr: float, seed: int) -> dict:
    """One training run; a diverged run has loss inf."""
    from tuner.train import train_run
    from tuner.width import at_width

    config = at_width(base_config(args, param), width=width).config
    config = config.replace("optim.lr", lr).replace("seed", seed)
    start = time.perf_counter()
    result = train_run(config, _data(config))
    loss = result.metrics.get("val_loss", math.inf) if result.status == "complete" else math.inf
    return {
        "param": param,
        "width": width,
        "lr": lr,
        "seed": seed,
        "val_loss": loss if math.isfinite(loss) else math.inf,
        "status": result.status,
        "seconds": time.perf_counter() - start,
    }


def run_coord_check(args: argparse.Namespace) -> dict:
    from tuner.coord_check import coord_check, table

    config = base_config(args, "mup")
    check = coord_check(
        config, widths=args.widths, steps=3, seeds=(0,), lr=args.coord_lr, data=_data(config)
    )
    return {"table": table(check), "growth": check.growth("logits"), "data": check.to_dict()}


# ------------------------------------------------------------------ analysis


def mean_losses(runs: list[dict], param: str, width: int, lrs: list[float]) -> list[float]:
    """Seed-averaged loss per learning rate (inf if any seed diverged)."""
    out = []
    for lr in lrs:
        key = job_key(param, width, lr, 0)[:3]
        values = [r["val_loss"] for r in runs if job_key(**_run_key(r))[:3] == key]
        out.append(float(np.mean(values)) if values else math.nan)
    return out


def parabola_optimum(lrs: list[float], losses: list[float]) -> tuple[float, str]:
    """Vertex of the parabola in log lr through the grid minimum and its two neighbours; at a
    grid edge (or next to a diverged point) the grid minimum itself, flagged."""
    i = int(np.nanargmin(losses))
    if i == 0 or i == len(lrs) - 1:
        return lrs[i], "at grid edge"
    x = np.log(lrs[i - 1 : i + 2])
    y = np.asarray(losses[i - 1 : i + 2])
    if not np.all(np.isfinite(y)):
        return lrs[i], "neighbour diverged"
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return lrs[i], "flat"
    return float(math.exp(np.clip(-b / (2 * a), x[0], x[2]))), ""


def analyse(runs: list[dict], transfer: list[dict], args: argparse.Namespace) -> dict:
    lrs, widths = args.lrs, args.widths
    out: dict[str, Any] = {}
    for p in PARAMS:
        per_width = {}
        for w in widths:
            losses = mean_losses(runs, p, w, lrs)
            lr_opt, note = parabola_optimum(lrs, losses)
            per_width[w] = {"losses": losses, "lr_opt": lr_opt, "note": note, "best": min(losses)}
        optima = [per_width[w]["lr_opt"] for w in widths]
        wide = max(widths)
        moved = [t["val_loss"] for t in transfer if t["param"] == p]
        transferred = float(np.mean(moved)) if moved else math.nan
        better = [
            all(
                per_width[a]["losses"][j] > per_width[b]["losses"][j]
                for a, b in zip(widths, widths[1:], strict=False)
            )
            for j in range(len(lrs))
        ]
        out[p] = {
            "per_width": per_width,
            "drift": max(optima) / min(optima),
            "transfer_lr": per_width[min(widths)]["lr_opt"],
            "transfer_loss": transferred,
            "widest_best": per_width[wide]["best"],
            "transfer_ratio": transferred / per_width[wide]["best"],
            "wider_better_at": better,
            "widest_minus_narrowest": [
                per_width[wide]["losses"][j] - per_width[min(widths)]["losses"][j]
                for j in range(len(lrs))
            ],
        }
    return out


# ------------------------------------------------------------------ report


def report(result: dict, say: Report) -> None:
    args = argparse.Namespace(**result["args"])
    lrs, widths = args.lrs, args.widths
    a = result["analysis"]
    if result.get("coord_check"):
        cc = result["coord_check"]
        say("Coordinate check of this recipe (tuner.coord_check, 1 seed):")
        say("```")
        say(cc["table"])
        say("```")
        g = cc["growth"]
        say(
            f"logits RMS {max(widths)}/{min(widths)} after 3 steps: SP {g['sp']:.2f}x, "
            f"μP {g['mup']:.2f}x"
        )
        say()
    say(f"Seed-averaged final val_loss (nats/token), {len(args.seeds)} seeds:")
    say()
    headers = ["param", "width", *(f"{lr:.3g}" for lr in lrs), "optimum lr", "note"]
    rows = []
    for p in PARAMS:
        for w in widths:
            pw = a[p]["per_width"][str(w)]
            rows.append(
                [p, w, *(f"{v:.4f}" for v in pw["losses"]), f"{pw['lr_opt']:.3g}", pw["note"]]
            )
    say(markdown_table(headers, rows))
    say()
    lo, hi = min(widths), max(widths)
    for p in PARAMS:
        r = a[p]
        say(
            f"{NAMES[p]}: optimum drift across widths {lo}-{hi} (max/min) {r['drift']:.2f}x; "
            f"lr {r['transfer_lr']:.3g} (the optimum at width {lo}) trained at width {hi}: loss "
            f"{r['transfer_loss']:.4f} vs the sweep's best {r['widest_best']:.4f} "
            f"({(r['transfer_ratio'] - 1) * 100:+.2f} %); loss at width {hi} minus width {lo}, "
            f"by lr: {', '.join(f'{g:+.3f}' for g in r['widest_minus_narrowest'])}"
        )
    drift, ratio = a["mup"]["drift"], a["mup"]["transfer_ratio"]
    better = a["mup"]["wider_better_at"]
    say(
        f"goal μP optimum drift ≤ 1.5x: {drift:.2f}x ({'met' if drift <= 1.5 else 'NOT met'}) "
        f"(SP beside it: {a['sp']['drift']:.2f}x)"
    )
    say(
        f"goal μP transferred lr within 1 % of the widest sweep's best: {(ratio - 1) * 100:+.2f} % "
        f"({'met' if ratio <= 1.01 else 'NOT met'})"
    )
    say(
        f"goal μP wider is better at every lr: {sum(better)} of {len(better)} learning rates "
        f"({'met' if all(better) else 'NOT met'}); SP: {sum(a['sp']['wider_better_at'])} of "
        f"{len(better)}"
    )


def figure(result: dict) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    args = argparse.Namespace(**result["args"])
    a = result["analysis"]
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, subplot_titles=[NAMES[p] for p in PARAMS]
    )
    for col, p in enumerate(PARAMS, start=1):
        for i, w in enumerate(args.widths):
            pw = a[p]["per_width"][str(w)]
            color = f"hsl({220 - 60 * i}, 70%, {65 - 10 * i}%)"
            fig.add_trace(
                go.Scatter(
                    x=args.lrs,
                    y=pw["losses"],
                    mode="lines+markers",
                    name=f"width {w}",
                    legendgroup=str(w),
                    showlegend=col == 1,
                    line={"color": color},
                ),
                row=1,
                col=col,
            )
            fig.add_vline(x=pw["lr_opt"], line={"color": color, "dash": "dot"}, row=1, col=col)
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(title_text="final val loss (nats/token)", col=1)
    fig.update_layout(
        title="Learning-rate sweeps by width: the optimum moves under SP, stays under μP",
        height=480,
        width=1100,
    )
    return fig


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="the short version (40k tokens a run)")
    ap.add_argument("--arch", default="gpt2", choices=["gpt2", "llama"])
    ap.add_argument("--widths", default="64,128,256,512")
    ap.add_argument(
        "--lrs", default="", help="comma-separated (default: log-spaced, see --lr-range)"
    )
    ap.add_argument("--lr-range", default="", help="low,high,count (default by mode)")
    ap.add_argument("--seeds", type=int, default=0, help="seeds a point (default 2 quick, 3 full)")
    ap.add_argument("--tokens", type=int, default=0, help="training tokens a run")
    ap.add_argument("--n-layer", type=int, default=0)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument(
        "--coord-lr", type=float, default=1e-2, help="learning rate of the coordinate check"
    )
    ap.add_argument("--jobs", type=int, default=2, help="training processes in parallel")
    ap.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    ap.add_argument("--tag", default="", help="suffix of the result files' names")
    ap.add_argument("--report", default="", help="re-analyse a saved results json")
    args = ap.parse_args(argv)
    args.widths = sorted(int(w) for w in args.widths.split(","))
    low, high, count = (
        map(float, args.lr_range.split(","))
        if args.lr_range
        else ((2.5e-4, 6.4e-2, 9) if args.quick else (1.25e-4, 1.28e-1, 11))
    )
    args.lrs = (
        [float(v) for v in args.lrs.split(",")]
        if args.lrs
        else [float(v) for v in np.geomspace(low, high, int(count))]
    )
    args.seeds = list(range(args.seeds or (2 if args.quick else 3)))
    args.tokens = args.tokens or (40_960 if args.quick else 163_840)
    args.n_layer = args.n_layer or 2
    return args


def recipe_key(args: argparse.Namespace) -> dict[str, Any]:
    """What a run's loss depends on besides (parametrization, width, lr, seed)."""
    names = ("arch", "n_layer", "head_dim", "batch_size", "seq_len", "tokens", "eval_tokens")
    return {n: getattr(args, n) for n in names} | {"base_width": min(args.widths)}


def job_key(param: str, width: int, lr: float, seed: int) -> tuple:
    """Learning rates compare as 6 significant digits (grids computed two ways agree)."""
    return (param, int(width), f"{lr:.6g}", int(seed))


def _run_key(run: dict) -> dict:
    return {k: run[k] for k in ("param", "width", "lr", "seed")}


def load_done(args: argparse.Namespace) -> dict[tuple, dict]:
    """Runs of this recipe finished by earlier invocations (RUNS_FILE): a sweep that is
    interrupted, or widened, only trains what it lacks."""
    done: dict[tuple, dict] = {}
    if RUNS_FILE.is_file():
        key = recipe_key(args)
        for line in RUNS_FILE.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("recipe") == key:
                done[job_key(rec["param"], rec["width"], rec["lr"], rec["seed"])] = rec
    return done


def run_all(
    pool: ProcessPoolExecutor, args: argparse.Namespace, jobs: list[tuple], done: dict
) -> list[dict]:
    """Train every job not in `done` (appending each to RUNS_FILE as it finishes)."""
    todo = [j for j in jobs if job_key(*j) not in done]
    futures = {pool.submit(run_one, args, *j): j for j in todo}
    start = time.perf_counter()
    for k, future in enumerate(as_completed(futures), start=1):
        rec = future.result() | {"recipe": recipe_key(args)}
        RUNS_FILE.parent.mkdir(parents=True, exist_ok=True)
        with RUNS_FILE.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        done[job_key(*futures[future])] = rec
        print(
            f"[{k}/{len(todo)} {time.perf_counter() - start:.0f}s] {rec['param']} "
            f"width {rec['width']} lr {rec['lr']:.3g} seed {rec['seed']}: "
            f"{rec['val_loss']:.4f} ({rec['seconds']:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    return [done[job_key(*j)] for j in jobs]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    say = Report()
    if args.report:
        result = json.loads(Path(args.report).read_text())
        result["analysis"] = json.loads(
            json.dumps(
                analyse(result["runs"], result["transfer"], argparse.Namespace(**result["args"]))
            )
        )
        path = Path(args.report)
        if "header" not in result:  # files written before the header was stored in the json
            lines = path.with_suffix(".md").read_text().splitlines()
            result["header"] = lines[
                : lines.index("Coordinate check of this recipe (tuner.coord_check, 1 seed):")
            ]
        for line in result["header"]:
            say(line)
        report(result, say)
        say()
        say(
            f"Wall time: {result['wall_seconds'] / 60:.1f} min. Re-analysed with `python "
            f"bench/mup_transfer.py --report {path}`."
        )
        save_results(path.stem, result, say.text)
        write_figures(result, path.stem)
        return
    quiet()
    use_temp_stores("mup")
    set_threads(args.threads)
    mode = "quick" if args.quick else "full"
    command = "python bench/mup_transfer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    say(f"# μP learning-rate transfer ({mode})")
    say()
    say(f"Command: `{command}`")
    say(f"Machine: {machine_line()}")
    say(
        f"Recipe: {args.arch}, {args.n_layer} layers, head dim {args.head_dim}, d_ff = 4 d_model, "
        f"byte tokenizer (257), Shakespeare; batch {args.batch_size} x {args.seq_len}, "
        f"{args.tokens} tokens a run ({args.tokens // (args.batch_size * args.seq_len)} steps), "
        f"AdamW (β 0.9/0.95, wd 0.1, clip 1.0), cosine schedule with 5 % warmup; "
        f"final val_loss on {args.eval_tokens} tokens. μP base width {min(args.widths)}."
    )
    jobs = [
        (p, w, lr, s)
        for w in reversed(args.widths)  # widest first: the pool ends on short runs
        for p in PARAMS
        for lr in args.lrs
        for s in args.seeds
    ]
    done = load_done(args)
    reused = sum(job_key(*j) in done for j in jobs)
    say(
        f"Sweep: widths {args.widths}, lrs {[f'{v:.3g}' for v in args.lrs]}, seeds {args.seeds}: "
        f"{len(jobs)} runs ({reused} reused from {RUNS_FILE.name}), {args.jobs} processes."
    )
    say()
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=_init_worker, initargs=(args.threads,)) as pool:
        coord = pool.submit(run_coord_check, args)
        runs = run_all(pool, args, jobs, done)
        partial = analyse(runs, [], args)
        wide = max(args.widths)
        moved = [(p, wide, partial[p]["transfer_lr"], s) for p in PARAMS for s in args.seeds]
        transfer = run_all(pool, args, moved, done)
        coord_result = coord.result()
    wall = time.perf_counter() - start
    analysis = json.loads(json.dumps(analyse(runs, transfer, args)))  # str keys, as reloaded
    result = {
        "args": vars(args),
        "machine": machine(),
        "wall_seconds": wall,
        "runs": runs,
        "transfer": transfer,
        "coord_check": coord_result,
        "analysis": analysis,
    }
    result["header"] = list(say.lines)
    report(result, say)
    say()
    say(f"Wall time: {wall / 60:.1f} min ({len(jobs) + len(moved) - reused} runs trained).")
    name = "-".join(
        [
            "mup_transfer",
            *([args.arch] if args.arch != "gpt2" else []),
            mode,
            *filter(None, [args.tag]),
        ]
    )
    save_results(name, result, say.text)
    write_figures(result, name)


def write_figures(result: dict, name: str) -> None:
    """results/NAME.html (loss against lr by width) and NAME-coord.html (coordinate check)."""
    from tuner.coord_check import CoordCheck
    from tuner.coord_check import figure as coord_figure

    write_html(figure(result), name)
    if result.get("coord_check"):
        check = CoordCheck.from_dict(result["coord_check"]["data"])
        write_html(coord_figure(check), f"{name}-coord")


if __name__ == "__main__":
    main()
