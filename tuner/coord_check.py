"""The coordinate check: is μP implemented right?

Train the same recipe at several widths for a few Adam steps and record the RMS of every
layer's output (embedding, each block, the final norm, the logits) at each step. Under μP the
curves against width are flat: a coordinate neither blows up nor vanishes as the model widens.
Under SP they grow with width after the first update (most of all the logits), which is why a
learning rate tuned narrow is too large wide. What `tuner mup check CONFIG` shows, as a table
and a plotly figure; the gathering (`coord_check`) needs no plotly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuner.config import RunConfig
from tuner.data import TokenData, load_token_data
from tuner.errors import ConfigError
from tuner.files import atomic_write, make_parent
from tuner.models import build_model, logits
from tuner.train import make_optimizer, sample_batch
from tuner.width import at_width

PARAMETRIZATIONS = ("sp", "mup")


@dataclass
class CoordCheck:
    """RMS of each layer's output, averaged over seeds: rms[parametrization][width][step] is a
    {layer: rms} dict; step 0 is at initialisation, step t after t optimizer steps."""

    widths: tuple[int, ...]
    steps: int
    lr: float
    layers: tuple[str, ...]
    rms: dict[str, dict[int, list[dict[str, float]]]] = field(default_factory=dict)

    def growth(self, layer: str = "logits", step: int | None = None) -> dict[str, float]:
        """RMS at the widest model over RMS at the narrowest, per parametrization."""
        step = self.steps if step is None else step
        lo, hi = min(self.widths), max(self.widths)
        return {
            p: by_width[hi][step][layer] / by_width[lo][step][layer]
            for p, by_width in self.rms.items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoordCheck:
        """Inverse of `to_dict` (after a JSON round trip)."""
        rms = {p: {int(w): v for w, v in d.items()} for p, d in data["rms"].items()}
        return cls(tuple(data["widths"]), data["steps"], data["lr"], tuple(data["layers"]), rms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "widths": list(self.widths),
            "steps": self.steps,
            "lr": self.lr,
            "layers": list(self.layers),
            "rms": {p: {str(w): v for w, v in d.items()} for p, d in self.rms.items()},
        }


def parse_widths(text: str, flag: str = "--widths") -> tuple[int, ...]:
    """ "64,128,256" -> (64, 128, 256); ConfigError naming `flag` for anything else."""
    try:
        widths = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers") from None
    if len(widths) < 2 or widths[0] <= 0:
        raise ConfigError(f"{flag} {text!r}: needs two or more positive widths")
    return widths


def check_arguments(
    widths: str, steps: int, seeds: int, output: str | None
) -> tuple[tuple[int, ...], Path | None]:
    """`tuner mup check`'s flags, checked before any training: the widths, the figure file."""
    if steps < 1:
        raise ConfigError(f"--steps {steps}: must be >= 1")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: must be >= 1")
    parsed = parse_widths(widths)
    if output is None:
        return parsed, None
    path = Path(output)
    if path.is_dir() or path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"-o {output}: expected an .html file name")
    make_parent(path, "-o")
    return parsed, path


def layer_outputs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) whose output the check measures, input to output, for gpt2 and llama."""
    if hasattr(model, "transformer"):  # gpt2: token + position embedding leave through `drop`
        body = model.transformer
        embedding, blocks, norm = body.drop, body.h, body.ln_f
    elif hasattr(model, "model") and hasattr(model.model, "layers"):  # llama
        body = model.model
        embedding, blocks, norm = body.embed_tokens, body.layers, body.norm
    else:
        raise ConfigError("model.arch: the coordinate check is for gpt2 and llama")
    return [
        ("embedding", embedding),
        *((f"block {i}", block) for i, block in enumerate(blocks)),
        ("final norm", norm),
        ("logits", model.get_output_embeddings()),
    ]


def coord_check(
    config: RunConfig,
    widths: Sequence[int] = (64, 128, 256, 512),
    steps: int = 3,
    seeds: Sequence[int] = (0, 1),
    lr: float | None = None,
    data: TokenData | None = None,
) -> CoordCheck:
    """Run `steps` optimizer steps of `config` at every width, SP and μP, at a constant
    learning rate (`lr`, default the config's peak), and record each layer's output RMS.

    Widths come from `tuner.width.at_width`, so μP scales from the config's base width (its
    own width if none is set). Each seed draws its own init and batches, the same at every
    width and in both parametrizations.
    """
    if config.model.arch not in ("gpt2", "llama"):
        raise ConfigError(
            f"model.arch: the coordinate check is for gpt2 and llama, not {config.model.arch}"
        )
    if steps < 1 or not widths or not seeds:
        raise ConfigError("coord check: needs steps >= 1, one width and one seed at least")
    data = data or load_token_data(config.data, config.tokenizer)
    lr = lr if lr is not None else config.optim.lr
    result = CoordCheck(tuple(sorted(widths)), steps, lr, ())
    for parametrization in PARAMETRIZATIONS:
        recipe = config.replace("model.parametrization", parametrization)
        result.rms[parametrization] = {}
        for width in result.widths:
            run = at_width(recipe, width=width).config
            per_seed = [_trace(run, data, steps, lr, seed) for seed in seeds]
            result.layers = tuple(per_seed[0][0])
            result.rms[parametrization][width] = [
                {k: float(np.mean([s[t][k] for s in per_seed])) for k in result.layers}
                for t in range(steps + 1)
            ]
    return result


def _trace(
    config: RunConfig, data: TokenData, steps: int, lr: float, seed: int
) -> list[dict[str, float]]:
    """Layer RMS at init and after each of `steps` optimizer steps (dropout and gradient
    clipping off: the check is about the parametrization alone)."""
    tc = config.train
    torch.manual_seed(seed)
    model = build_model(config.model, data.vocab_size, tc.seq_len)
    model.eval()
    optimizer = make_optimizer(model, config)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    gen = torch.Generator().manual_seed(seed + 1)
    record: dict[str, float] = {}

    def hook(name: str):
        def save(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            record[name] = out.detach().float().pow(2).mean().sqrt().item()

        return save

    handles = [m.register_forward_hook(hook(name)) for name, m in layer_outputs(model)]
    trace = []
    try:
        for step in range(steps + 1):
            x, y = sample_batch(data.train, tc.batch_size, tc.seq_len, gen, torch.device("cpu"))
            out = logits(model, x)
            trace.append(dict(record))
            if step == steps:
                break
            F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    finally:
        for handle in handles:
            handle.remove()
    return trace


def table(check: CoordCheck, step: int | None = None) -> str:
    """Plain text: one row per layer and parametrization, RMS at each width after `step` steps
    (default the last), and the widest/narrowest ratio."""
    step = check.steps if step is None else step
    lo, hi = min(check.widths), max(check.widths)
    header = ["layer", "param", *(f"d={w}" for w in check.widths), f"{hi}/{lo}"]
    rows = []
    for layer in check.layers:
        for p, by_width in check.rms.items():
            values = [by_width[w][step][layer] for w in check.widths]
            rows.append([layer, p, *(f"{v:.3g}" for v in values), f"{values[-1] / values[0]:.2f}x"])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"coordinate check: layer output RMS after {step} Adam step(s) at lr {check.lr:g}",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def figure(check: CoordCheck) -> Any:
    """Plotly figure: a row per parametrization, a column per step; RMS against width (log-log),
    one line per layer."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale
    from plotly.subplots import make_subplots

    params = list(check.rms)
    cols = check.steps + 1
    fig = make_subplots(
        rows=len(params),
        cols=cols,
        shared_yaxes=True,
        subplot_titles=[
            f"{p.upper() if p == 'sp' else 'μP'} · step {t}" for p in params for t in range(cols)
        ],
    )
    colors = sample_colorscale(
        "Viridis", [i / max(1, len(check.layers) - 1) for i in range(len(check.layers))]
    )
    for r, p in enumerate(params, start=1):
        for t in range(cols):
            for i, layer in enumerate(check.layers):
                fig.add_trace(
                    go.Scatter(
                        x=list(check.widths),
                        y=[check.rms[p][w][t][layer] for w in check.widths],
                        mode="lines+markers",
                        name=layer,
                        legendgroup=layer,
                        showlegend=r == 1 and t == 0,
                        line={"color": colors[i]},
                    ),
                    row=r,
                    col=t + 1,
                )
    fig.update_xaxes(type="log", title_text="width (d_model)", tickvals=list(check.widths))
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="output RMS", col=1)
    fig.update_layout(
        title=f"Coordinate check (lr {check.lr:g}): flat under μP, growing under SP",
        height=330 * len(params),
        width=260 * cols + 200,
    )
    return fig


def write_figure(check: CoordCheck, path: str | Path) -> Path:
    """The figure as one self-contained HTML file (plotly.js inline, so it opens offline)."""
    return atomic_write(Path(path), figure(check).to_html(include_plotlyjs=True, full_html=True))
