"""Tokenizers: byte-level BPE trained locally, raw bytes, characters, or a pretrained one.

All four are `tokenizers.Tokenizer` objects, so every one saves as a `tokenizer.json` that
`transformers.PreTrainedTokenizerFast` loads as it is. Special token `<|endoftext|>` (id 0 for
trained tokenizers) marks beginning/end of text; corpus text never contains it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from tuner.config import ConfigError, TokenizerConfig

EOT = "<|endoftext|>"


def train_tokenizer(cfg: TokenizerConfig, texts: list[str]) -> Tokenizer:
    """Build the tokenizer `cfg` names; trained ones learn only from `texts` (the train split)."""
    if cfg.kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
        if tok.get_vocab_size() < cfg.vocab_size:
            raise ConfigError(
                f"tokenizer.vocab_size: {cfg.vocab_size} is larger than this corpus "
                f"allows (BPE stopped at {tok.get_vocab_size()} tokens)"
            )
        return tok
    if cfg.kind == "byte":
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        vocab = {EOT: 0} | {ch: i + 1 for i, ch in enumerate(sorted(alphabet))}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([EOT])
        return tok
    if cfg.kind == "char":
        chars = sorted({ch for text in texts for ch in text})
        vocab = {EOT: 0, "<unk>": 1} | {ch: i + 2 for i, ch in enumerate(chars)}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        tok.add_special_tokens([EOT, "<unk>"])
        return tok
    return load_pretrained(cfg.name)


def load_pretrained(name: str) -> Tokenizer:
    """A Hugging Face tokenizer by hub name (needs network or the local HF cache) or folder."""
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(name)
    except Exception as err:  # noqa: BLE001 - any load failure is a user-facing config problem
        raise ConfigError(
            f"tokenizer.name: cannot load pretrained tokenizer {name!r} ({type(err).__name__})"
        ) from None
    if not getattr(hf, "is_fast", False):
        raise ConfigError(f"tokenizer.name: {name!r} has no fast (Rust) tokenizer")
    return hf.backend_tokenizer


def _batches(texts: list[str], size: int = 256) -> Iterable[list[str]]:
    for start in range(0, len(texts), size):
        yield texts[start : start + size]


def encode(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    """Concatenate documents (separated by a blank line) into one flat id array."""
    dtype = np.uint16 if tok.get_vocab_size() <= 65536 else np.uint32
    pieces = [
        np.asarray(enc.ids, dtype=dtype)
        for enc in tok.encode_batch([t + "\n\n" for t in texts], add_special_tokens=False)
    ]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def token_byte_lengths(tok: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens), for bits-per-byte."""
    vocab_size = tok.get_vocab_size()
    lengths = np.zeros(vocab_size, dtype=np.int64)
    byte_level = isinstance(tok.decoder, decoders.ByteLevel)
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    for token, idx in tok.get_vocab().items():
        if token in specials or idx >= vocab_size:
            continue
        if byte_level:
            lengths[idx] = len(token)  # one byte-level symbol per byte
        else:
            piece = tok.decode([idx], skip_special_tokens=True)
            lengths[idx] = len(piece.encode("utf-8"))
    return lengths
