"""Data for fine-tuning: a corpus tokenized with a saved model's own tokenizer.

`tuner train --init-from DIR` must feed the model the ids it was trained on, so the corpus is
encoded with DIR/tokenizer.json, never a newly trained tokenizer. The arrays are cached like
`data.load_token_data` (same layout, same lock-and-rename discipline); the cache key includes
the tokenizer file's content hash, so a different model in the same folder never reuses them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tuner import stores
from tuner.config import ConfigError, DataConfig, TokenizerConfig, to_dict
from tuner.data import SPLITS, TokenData, cache_key, prepare_documents
from tuner.data import _open as open_token_cache
from tuner.saved import SavedModel
from tuner.tokenizer import encode, token_byte_lengths


def load_token_data_with(data: DataConfig, tokenizer_file: Path) -> TokenData:
    """Token arrays of `data` encoded with an existing tokenizer.json, cached like
    `data.load_token_data` (key includes the tokenizer's content hash; atomic, locked build)."""
    digest = hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    stand_in = TokenizerConfig(kind="pretrained", name=f"tokenizer.json:sha256:{digest}")
    key = cache_key(data, stand_in)
    root = stores.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    if not (final / "meta.json").is_file():
        with open(root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # others wait here, then find it built
            try:
                if not (final / "meta.json").is_file():
                    _build_with(data, tokenizer_file, final)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return open_token_cache(final)


def _build_with(data: DataConfig, tokenizer_file: Path, final: Path) -> None:
    from tokenizers import Tokenizer

    splits = prepare_documents(data)
    tok = Tokenizer.from_file(str(tokenizer_file))
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
        counts = {}
        for name in SPLITS:
            ids = encode(tok, splits[name])
            np.save(tmp / f"{name}.npy", ids)
            counts[name] = {"documents": len(splits[name]), "tokens": int(ids.size)}
        np.save(tmp / "token_bytes.npy", token_byte_lengths(tok))
        meta = {
            "vocab_size": tok.get_vocab_size(),
            "splits": counts,
            "data": to_dict(data),
            "tokenizer_file": str(tokenizer_file),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_vocab(saved: SavedModel, data: TokenData) -> None:
    rows = (
        saved.model.get_input_embeddings().num_embeddings
        if hasattr(saved.model, "config")
        else saved.model.embed.num_embeddings
    )
    if data.vocab_size > rows:
        raise ConfigError(
            f"--init-from {saved.path}: the tokenizer has {data.vocab_size} tokens "
            f"but the model only {rows} embeddings"
        )
