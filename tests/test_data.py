"""Corpus sources, preprocessing, split, tokenizers and the token cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

import tuner.data as data_mod
from tuner.config import ConfigError, DataConfig, PreprocessConfig, TokenizerConfig
from tuner.data import clean, load_token_data, prepare_documents, split_documents


def test_builtin_corpus_is_real_shakespeare_split_by_document(tiny_data):
    meta = json.loads((tiny_data.root / "meta.json").read_text())
    splits = meta["splits"]
    assert all(splits[s]["documents"] > 0 for s in ("train", "val", "test"))
    text = Tokenizer.from_file(str(tiny_data.tokenizer_path)).decode(
        tiny_data.train[:2000].tolist()
    )
    assert "**" not in text and "thou" in text.lower()
    assert tiny_data.vocab_size == 512 and tiny_data.train.max() < 512


def test_split_is_deterministic_and_disjoint():
    docs = [f"document number {i} " * 5 for i in range(400)]
    cfg = DataConfig(val_fraction=0.1, test_fraction=0.1)
    a, b = split_documents(docs, cfg), split_documents(docs, cfg)
    assert a == b
    assert sum(len(v) for v in a.values()) == 400
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    assert 20 < len(a["test"]) < 60


def test_preprocessing_options():
    cfg = PreprocessConfig(
        normalize="NFKC", lowercase=True, strip_markup=True, strip_punctuation=True
    )
    assert (
        clean("## ACT I\n**HAMLET**  \n_Enter_ Ghost! <b>ﬁne</b>", cfg)
        == "act i\nhamlet\nenter ghost fine"
    )
    docs = prepare_documents(
        DataConfig(max_chars=400_000, preprocess=PreprocessConfig(min_doc_chars=2000))
    )
    assert all(len(d) >= 2000 for split in docs.values() for d in split[:-1])


@pytest.mark.parametrize("kind, vocab", [("byte", 257), ("char", None)])
def test_byte_and_char_tokenizers_round_trip(kind, vocab):
    td = load_token_data(DataConfig(max_chars=60_000), TokenizerConfig(kind=kind))
    tok = Tokenizer.from_file(str(td.tokenizer_path))
    sample = tok.decode(td.val[:300].tolist())
    assert len(sample) > 100 and "\n" in sample
    if vocab:
        assert td.vocab_size == vocab
        assert td.token_bytes[1:].tolist() == [1] * 256  # every byte token is one byte
    else:
        known = int((np.asarray(td.val) != 1).sum())  # id 1 is <unk>, skipped when decoding
        assert known == len(tok.decode(td.val.tolist()))  # one token per character


def test_local_files_and_pretrained_stand_in(tmp_path):
    (tmp_path / "a.txt").write_text("To be, or not to be, that is the question. " * 200)
    (tmp_path / "b.jsonl").write_text(
        "\n".join(json.dumps({"body": f"line {i} " * 40}) for i in range(60))
    )
    cfg = DataConfig(
        source="files",
        paths=(str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")),
        text_column="body",
        val_fraction=0.2,
        test_fraction=0.2,
    )
    td = load_token_data(cfg, TokenizerConfig(kind="byte"))
    assert len(td.train) > 1000
    # a "pretrained" tokenizer folder: the locally trained one saved in Hugging Face format
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_file=str(td.tokenizer_path)).save_pretrained(tmp_path / "tok")
    td2 = load_token_data(cfg, TokenizerConfig(kind="pretrained", name=str(tmp_path / "tok")))
    assert np.array_equal(np.asarray(td2.train), np.asarray(td.train))


def test_second_load_is_a_cache_hit(tiny_config, monkeypatch):
    first = load_token_data(tiny_config.data, tiny_config.tokenizer)

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was trained again")

    monkeypatch.setattr(data_mod, "train_tokenizer", no_training)
    monkeypatch.setattr(data_mod, "encode", no_training)
    second = load_token_data(tiny_config.data, tiny_config.tokenizer)
    assert second.root == first.root and np.array_equal(second.val, first.val)


@pytest.mark.parametrize(
    "data, tokenizer, message",
    [
        (
            DataConfig(source="files", paths=("/no/such/file.txt",)),
            TokenizerConfig(),
            "data.paths: file not found",
        ),
        (
            DataConfig(max_chars=20_000),
            TokenizerConfig(vocab_size=50_000),
            "larger than this corpus allows",
        ),
    ],
)
def test_bad_corpus_is_one_clear_error(data, tokenizer, message):
    with pytest.raises(ConfigError, match=message):
        load_token_data(data, tokenizer)


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(ConfigError, match="corpus is empty"):
        load_token_data(
            DataConfig(source="files", paths=(str(tmp_path / "empty.txt"),)), TokenizerConfig()
        )


def test_hub_source_with_a_local_stand_in(tmp_path):
    """`source: hub` goes through datasets.load_dataset; a local dataset folder stands in for
    the hub here (the machines running the tests are offline)."""
    folder = tmp_path / "my_corpus"
    folder.mkdir()
    rows = [
        json.dumps({"text": f"Sonnet {i}: shall I compare thee to a summer's day? " * 8})
        for i in range(80)
    ]
    (folder / "train.jsonl").write_text("\n".join(rows))
    td = load_token_data(
        DataConfig(source="hub", name=str(folder), split="train"), TokenizerConfig(kind="byte")
    )
    assert len(td.train) > 10_000 and len(td.val) > 0 and len(td.test) > 0
    with pytest.raises(ConfigError, match="data.name: cannot load hub dataset"):
        load_token_data(
            DataConfig(source="hub", name=str(tmp_path / "nothing-here")), TokenizerConfig()
        )
