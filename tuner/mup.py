"""μP (Maximal Update Parametrisation) for gpt2 and llama, for Adam-family optimisers.

Under μP a learning rate tuned on a narrow proxy stays optimal on a wide model (Yang et al.
2022, "Tensor Programs V", Table 3 in its multiplier form, which the `mup` package uses).
With width_mult = d_model / base_width, relative to the same recipe at the base width:

| parameters                                   | init std        | Adam lr        | multiplier   |
|----------------------------------------------|-----------------|----------------|--------------|
| hidden matrices (attention qkv/out, MLP)     | x 1/sqrt(mult)  | x 1/mult       | 1            |
| embeddings, biases, norm gains               | unchanged       | unchanged      | 1            |
| readout (tied to the embedding)              | (the embedding) | (the embedding)| 1/mult       |
| attention scores                             |                 |                | 1/d_head     |

The base recipe keeps the head dim and d_ff / d_model (what `tuner.width.at_width` does), so
every hidden matrix's fan-in (d_model or d_ff) grows by the same width_mult: transformers
initialises them with a fixed std (0.02; GPT-2's output projections 0.02/sqrt(2·n_layer)),
which is exact at the base width, and multiplying by sqrt(1/width_mult) makes the variance
∝ 1/fan_in from there. Decoupled weight decay is multiplied by width_mult on the hidden
matrices so that the decay per step (lr x weight_decay) stays the same at every width, as the
`mup` package's MuAdamW does.

The readout reuses the embedding matrix, as the `mup` package's MuSharedReadout does: its
input is multiplied by 1/width_mult and the embedding itself is left alone. Attention uses
1/d_head instead of 1/sqrt(d_head); with a fixed head dim this is a constant change of
temperature (so μP at the base width differs from SP in that one respect), and it is what
keeps attention logits bounded where the head dim grows. The query is not zero-initialised
(the paper's option): with transformers' small init std the attention is already close to
uniform at initialisation, and the tied readout cannot be zero-initialised at all.

Why not the `mup` package (read from its 1.0.0 sdist, not installed): installing it pulls
torchvision and another torch; every parameter must first carry an `infshape` from
`set_base_shapes` (base shapes from a base and a delta model, or a .bsh file); its fan-in
bookkeeping takes dim 1 as fan-in (torch's (out, in)), the reverse of GPT-2's Conv1D (in, out);
`set_base_shapes(rescale_params=True)` multiplies a MuSharedReadout's weight, which is the
embedding, by sqrt(width_mult); transformers' attention scale needs patching either way; and
MuAdam writes the scaled lr into each param group, which a loop that sets `group["lr"]` every
step (tuner's) overwrites. So the rules are implemented here as a few module edits and param
groups with an `lr_scale` that the loop multiplies in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SharedReadout(nn.Linear):
    """The output layer of μP with weights tied to the input embedding: logits = W_emb (h·mult).

    Scaling the input (d numbers a position) rather than the logits (vocab numbers) is the same
    product and cheaper; the embedding weight stays as it is.
    """

    def __init__(self, weight: nn.Parameter, mult: float):
        nn.Module.__init__(self)
        self.out_features, self.in_features = weight.shape
        self.weight = weight
        self.register_parameter("bias", None)
        self.mult = mult

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden * self.mult, self.weight)  # (B, T, d) -> (B, T, V)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mult={self.mult:g}"


def width_mult(d_model: int, base_width: int) -> float:
    """d_model / base_width; a base width of 0 means the model's own width (no scaling)."""
    return d_model / base_width if base_width else 1.0


def model_width(model: nn.Module) -> int:
    """d_model of a transformers gpt2/llama model."""
    return int(model.config.hidden_size)


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention
    from transformers.models.llama.modeling_llama import LlamaAttention

    return [m for m in model.modules() if isinstance(m, GPT2Attention | LlamaAttention)]


def hidden_matrices(model: nn.Module) -> list[nn.Module]:
    """The Linear/Conv1D layers whose both sides grow with width: attention and MLP projections
    (everything but the readout; GPT-2's Conv1D stores its weight as (in, out))."""
    from transformers.pytorch_utils import Conv1D

    readout = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, nn.Linear | Conv1D) and m is not readout]


def apply_mup(model: nn.Module, base_width: int) -> nn.Module:
    """Turn a freshly initialised transformers gpt2/llama model into its μP form, in place:
    hidden init std x sqrt(1/width_mult), attention 1/d_head, readout x 1/width_mult.

    Call once, on the model as built (it rescales the initial weights); the learning rates
    come from `param_groups`.
    """
    if isinstance(model.get_output_embeddings(), SharedReadout):
        raise ValueError("apply_mup: the model is in μP form already (it rescales the init)")
    mult = width_mult(model_width(model), base_width)
    with torch.no_grad():
        for layer in hidden_matrices(model):
            layer.weight.mul_(mult**-0.5)
    for attention in _attention_modules(model):
        # Both the eager and the sdpa path read `module.scaling` (transformers >= 4.48).
        attention.scaling = 1.0 / attention.head_dim
    readout = model.get_output_embeddings()
    model.set_output_embeddings(SharedReadout(readout.weight, 1.0 / mult))
    return model


def param_groups(
    model: nn.Module, base_width: int, lr: float, weight_decay: float
) -> list[dict[str, object]]:
    """AdamW param groups under μP, each with an `lr_scale` the training loop multiplies into
    the scheduled learning rate: hidden matrices lr x 1/width_mult and weight decay x width_mult;
    embeddings (the tied readout included), norm gains and biases unscaled and never decayed."""
    mult = width_mult(model_width(model), base_width)
    hidden_ids = {id(m.weight) for m in hidden_matrices(model)}
    hidden, other, seen = [], [], set()
    for param in model.parameters():
        if id(param) in seen or not param.requires_grad:
            continue
        seen.add(id(param))
        (hidden if id(param) in hidden_ids else other).append(param)
    return [
        {
            "params": hidden,
            "weight_decay": weight_decay * mult,
            "lr_scale": 1.0 / mult,
            "lr": lr / mult,
        },
        {"params": other, "weight_decay": 0.0, "lr_scale": 1.0, "lr": lr},
    ]


def to_standard(model: nn.Module) -> nn.Module:
    """Fold μP's multipliers into the weights, in place, so the model is a plain transformers
    model with the same outputs (what `save_pretrained` must write, since a reloaded model
    knows nothing of μP): the query is scaled by (1/d_head)/(1/sqrt(d_head)) and the attention
    scale restored; the readout's multiplier moves into the final norm, whose output only the
    readout reads."""
    readout = model.get_output_embeddings()
    if not isinstance(readout, SharedReadout):
        return model
    with torch.no_grad():
        for attention in _attention_modules(model):
            standard = attention.head_dim**-0.5
            ratio = attention.scaling / standard
            if hasattr(attention, "q_proj"):  # llama: Linear (out, in)
                attention.q_proj.weight.mul_(ratio)
                if attention.q_proj.bias is not None:
                    attention.q_proj.bias.mul_(ratio)
            else:  # gpt2: fused qkv Conv1D (in, 3·d); the query is the first d columns
                d = attention.embed_dim
                attention.c_attn.weight[:, :d].mul_(ratio)
                attention.c_attn.bias[:d].mul_(ratio)
            attention.scaling = standard
        norm = _final_norm(model)
        norm.weight.mul_(readout.mult)
        if getattr(norm, "bias", None) is not None:
            norm.bias.mul_(readout.mult)
    plain = nn.Linear(readout.in_features, readout.out_features, bias=False)
    plain.weight = readout.weight  # still tied to the embedding
    model.set_output_embeddings(plain)
    return model


def _final_norm(model: nn.Module) -> nn.Module:
    body = model.transformer if hasattr(model, "transformer") else model.model
    return body.ln_f if hasattr(body, "ln_f") else body.norm
