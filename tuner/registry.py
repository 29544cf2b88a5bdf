"""The MLflow model of a final training: what the Model Registry holds and serves.

gpt2/llama go through MLflow's transformers flavour (a text-generation pipeline: the model as
saved for transformers, its tokenizer, a model card), so `mlflow.transformers.load_model(
"models:/NAME/1")` returns a pipeline and `mlflow.pyfunc.load_model` maps prompts to text.
LSTM/GRU go through the pytorch flavour as TorchScript (token ids of any batch and length in,
logits out; torch.jit archives hold no pickled Python objects, and loading needs no tuner code;
torch.export would fix the sequence length of an LSTM). The MLflow model is
written into a folder here; `tracking.FinalRun.log_model` uploads and registers it with the
Tracker's client (no process-wide tracking URI).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuner.saved import METRICS_FILE, load_saved

TEXT_PARAMS = {"max_new_tokens": 200, "temperature": 0.8, "top_k": 50, "do_sample": True}
"""pyfunc parameters of a transformers model, with `tuner generate`'s defaults."""


def write_mlflow_model(
    saved_dir: Path, dest: Path, run_id: str, model_id: str, registered_name: str
) -> None:
    """The MLflow model of the folder `tuner train` saved, written into `dest` (absent)."""
    from mlflow.models import Model

    # an absolute path is no hub repo id: MLflow's license lookup then never leaves the machine
    saved_dir = Path(saved_dir).resolve()
    saved = load_saved(saved_dir)
    model_info = Model(run_id=run_id, model_id=model_id)
    with _quiet_mlflow():
        if hasattr(saved.model, "config"):
            _transformers_model(saved_dir, saved.tokenizer, dest, model_info, registered_name)
        else:
            _pytorch_model(saved.model, dest, model_info)


def _transformers_model(
    saved_dir: Path, tokenizer: Any, dest: Path, model_info: Any, registered_name: str
) -> None:
    import mlflow.transformers
    import torch
    import transformers
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from transformers import AutoModelForCausalLM

    from tuner.saved import quiet_transformers

    with quiet_transformers():  # the folder exactly as saved: context and position table
        model = AutoModelForCausalLM.from_pretrained(str(saved_dir))
    types = {bool: "boolean", int: "long", float: "double"}
    signature = ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec(k, types[type(v)], v) for k, v in TEXT_PARAMS.items()]),
    )
    mlflow.transformers.save_model(
        {"model": model, "tokenizer": tokenizer},
        str(dest),
        task="text-generation",
        model_card=_model_card(saved_dir, registered_name),
        signature=signature,
        mlflow_model=model_info,
        pip_requirements=[
            f"transformers=={transformers.__version__}",
            f"torch=={torch.__version__.split('+')[0]}",
            "tokenizers",
            "safetensors",
        ],
    )


def _pytorch_model(model: Any, dest: Path, model_info: Any) -> None:
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    vocab = model.embed.num_embeddings
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("int64"), (-1, -1))]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, -1, vocab))]),
    )
    mlflow.pytorch.save_model(  # TorchScript: any batch and length, no tuner code to load it
        torch.jit.script(model.eval()),
        str(dest),
        serialization_format="pickle",  # for a ScriptModule: torch.jit.save, not pickle
        signature=signature,
        mlflow_model=model_info,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
    )


def _model_card(saved_dir: Path, name: str) -> Any:
    """A model card from the folder's metrics and config (no hub lookup)."""
    from huggingface_hub import ModelCard

    try:
        metrics = json.loads((saved_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    test, val = metrics.get("test", {}), metrics.get("val", {})
    cost = metrics.get("cost", {})
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [tuner]",
        "---",
        f"# {name}",
        "",
        "A language model trained by `tuner train`; its complete training config is "
        "`run_config.yaml` in the MLflow run that logged it.",
        "",
    ]
    for label, value in (
        ("parameters", cost.get("n_params")),
        ("training tokens", cost.get("tokens_seen")),
        ("validation loss (nats/token)", val.get("val_loss")),
        ("test loss (nats/token)", test.get("test_loss")),
        ("test perplexity", test.get("test_perplexity")),
        ("test bits per byte", test.get("test_bpb")),
    ):
        if isinstance(value, int | float):
            lines.append(f"- {label}: {value:.6g}")
    return ModelCard("\n".join(lines) + "\n")


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's INFO/WARNING chatter while saving (license lookups, pip notes) stays out of
    `tuner train`'s output; errors still show."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
