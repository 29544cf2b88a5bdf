"""A saved model folder: written by `tuner train`, read back by `tuner generate`, by
`tuner train --init-from` and, for gpt2/llama, by transformers itself.

gpt2/llama folders are plain Hugging Face folders (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json), so `AutoModelForCausalLM`,
`AutoTokenizer` and `pipeline("text-generation")` load them without tuner. LSTM/GRU folders
hold model.safetensors and tuner_model.json and load through `load_saved`. Every folder also
holds the RunConfig that trained it (run_config.yaml) and its metrics (metrics.json).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuner.config import ConfigError, ModelConfig, RunConfig
from tuner.hf_generation import for_transformers, trained_model
from tuner.models import RecurrentLM, Shape, logits, max_positions, resolve_shape
from tuner.mup import to_standard
from tuner.tokenizer import EOT

RECURRENT_FILE = "tuner_model.json"
CONFIG_FILE = "run_config.yaml"
METRICS_FILE = "metrics.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class SavedModel:
    """A model and its tokenizer as loaded from a folder."""

    path: Path
    model: nn.Module
    tokenizer: Any
    """A transformers fast tokenizer."""
    model_config: ModelConfig
    """The architecture and shape in tuner's terms (for FLOP counts and `--init-from`)."""

    @property
    def tokenizer_file(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def eot_id(self) -> int | None:
        return self.tokenizer.get_vocab().get(EOT)


# ---------------------------------------------------------------- write


def hf_tokenizer(tokenizer_file: Path, max_length: int | None = None) -> Any:
    """The trained `tokenizers` file wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {"model_max_length": max_length} if max_length else {}
    if Tokenizer.from_file(str(tokenizer_file)).token_to_id(EOT) is not None:
        kwargs |= {"bos_token": EOT, "eos_token": EOT}  # never add a token the model lacks
    return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), **kwargs)


def save_model_dir(
    folder: Path,
    model: nn.Module,
    tokenizer_file: Path,
    config: RunConfig,
    provenance: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Write model, tokenizer, config and metrics into the (empty) `folder`."""
    model = model.to("cpu").eval()
    tokenizer = hf_tokenizer(tokenizer_file, max_positions(model))
    if config.model.parametrization == "mup":  # a reloaded model knows nothing of μP
        model = to_standard(copy.deepcopy(model))
    if hasattr(model, "config"):
        _save_hf(folder, model, tokenizer)
    else:
        _save_recurrent(folder, model, config.model)
    tokenizer.save_pretrained(folder)
    _portable_tokenizer_config(folder / "tokenizer_config.json")
    body = config.to_yaml()
    tail = _yaml({"provenance": provenance}) if provenance else ""
    (folder / CONFIG_FILE).write_text(body + tail, encoding="utf-8")
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")


def _save_hf(folder: Path, model: nn.Module, tokenizer: Any) -> None:
    model = for_transformers(model)  # stops at its context; longer requests do not crash
    eot = tokenizer.get_vocab().get(EOT)
    if eot is None:
        model.save_pretrained(folder)
        return
    for cfg in (model.config, model.generation_config):
        cfg.bos_token_id = cfg.eos_token_id = eot
    model.generation_config.pad_token_id = eot
    with quiet_transformers():
        model.save_pretrained(folder)  # safetensors is the default format


def _save_recurrent(folder: Path, model: nn.Module, model_cfg: ModelConfig) -> None:
    from safetensors.torch import save_model

    shape = resolve_shape(model_cfg)
    meta = {
        "format": "tuner-recurrent-lm",
        "arch": model_cfg.arch,
        "vocab_size": model.embed.num_embeddings,
        "n_layer": shape.n_layer,
        "d_model": shape.d_model,
        "dropout": model_cfg.dropout,
    }
    save_model(model, str(folder / WEIGHTS_FILE))  # tied head/embedding stored once
    (folder / RECURRENT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _portable_tokenizer_config(path: Path) -> None:
    """Name the class that transformers 4.x and 5.x both know (5.x writes its own alias)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------- read


def load_saved(path: str | Path) -> SavedModel:
    """Load a folder written by `tuner train` (or any local gpt2/llama HF folder)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: model folder not found")
    if not (folder / TOKENIZER_FILE).is_file():
        raise ConfigError(f"{folder}: no {TOKENIZER_FILE} (not a folder saved by `tuner train`)")
    if (folder / RECURRENT_FILE).is_file():
        model, model_cfg = _load_recurrent(folder)
    elif (folder / "config.json").is_file():
        model, model_cfg = _load_hf(folder)
    else:
        raise ConfigError(
            f"{folder}: neither config.json nor {RECURRENT_FILE} "
            "(not a folder saved by `tuner train`)"
        )
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    return SavedModel(folder, model.eval(), tokenizer, model_cfg)


def _load_recurrent(folder: Path) -> tuple[nn.Module, ModelConfig]:
    from safetensors.torch import load_model

    try:
        meta = json.loads((folder / RECURRENT_FILE).read_text(encoding="utf-8"))
        arch, vocab = meta["arch"], int(meta["vocab_size"])
        cfg = ModelConfig(
            arch=arch,
            size="custom",
            n_layer=int(meta["n_layer"]),
            d_model=int(meta["d_model"]),
            dropout=float(meta["dropout"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{folder / RECURRENT_FILE}: unreadable ({err})") from None
    model = RecurrentLM(arch, vocab, Shape(cfg.n_layer, cfg.d_model, 1, 0), cfg.dropout)
    load_model(model, str(folder / WEIGHTS_FILE))
    return model, cfg


def _load_hf(folder: Path) -> tuple[nn.Module, ModelConfig]:
    from transformers import AutoModelForCausalLM

    try:
        with quiet_transformers():
            model = trained_model(AutoModelForCausalLM.from_pretrained(str(folder)))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{folder}: cannot load the model ({str(err).splitlines()[0][:200]})"
        ) from None
    return model, model_config_of(model.config)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars while saving or loading (they would land in `tuner generate` output)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def model_config_of(hf_config: Any) -> ModelConfig:
    """tuner's description of a gpt2/llama transformers config."""
    kind = hf_config.model_type
    if kind == "gpt2":
        d_model = hf_config.n_embd
        return ModelConfig(
            arch="gpt2",
            size="custom",
            n_layer=hf_config.n_layer,
            d_model=d_model,
            n_head=hf_config.n_head,
            d_ff=hf_config.n_inner or 4 * d_model,
            dropout=float(hf_config.resid_pdrop),
        )
    if kind == "llama":
        return ModelConfig(
            arch="llama",
            size="custom",
            n_layer=hf_config.num_hidden_layers,
            d_model=hf_config.hidden_size,
            n_head=hf_config.num_attention_heads,
            d_ff=hf_config.intermediate_size,
            dropout=float(hf_config.attention_dropout),
        )
    raise ConfigError(f"model type {kind!r}: tuner trains gpt2, llama, lstm and gru only")


# ---------------------------------------------------------------- sample


@torch.no_grad()
def sample(
    model: nn.Module,
    ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    stop_id: int | None = None,
) -> list[int]:
    """Append up to `max_new_tokens` sampled ids; a sliding window keeps transformers inside
    their positional range. temperature 0 = greedy; top_k 0 = the whole vocabulary."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    window = max_positions(model)
    out = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    new: list[int] = []
    for _ in range(max_new_tokens):
        context = out[:, -window:] if window else out
        scores = logits(model, context)[0, -1].float().cpu()  # (V,)
        if temperature <= 0:
            next_id = int(scores.argmax())
        else:
            scores = scores / temperature
            if 0 < top_k < scores.numel():
                kth = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            next_id = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=gen))
        if stop_id is not None and next_id == stop_id:
            break
        new.append(next_id)
        out = torch.cat([out, torch.tensor([[next_id]], device=device)], dim=1)
    return new


def generate_text(
    path: str | Path,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int = 0,
) -> str:
    """The prompt followed by sampled text from the model saved in `path`."""
    if max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens: must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"--temperature: must be >= 0, got {temperature}")
    if top_k < 0:
        raise ConfigError(f"--top-k: must be >= 0, got {top_k}")
    saved = load_saved(path)
    ids = saved.tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    start = ids or ([saved.eot_id] if saved.eot_id is not None else [])
    if not start:
        raise ConfigError("--prompt: empty, and the tokenizer has no <|endoftext|> to start from")
    new = sample(saved.model, start, max_new_tokens, temperature, top_k, seed, saved.eot_id)
    return saved.tokenizer.decode(ids + new, skip_special_tokens=True)
