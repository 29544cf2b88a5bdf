"""Downstream tasks: metric definitions, the genre split, every kind on a tiny trained model,
users' datasets from local files, and bad input caught before a trial trains."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from tests.conftest import TINY_BASE
from tuner import metrics
from tuner.config import ConfigError, DataConfig, RunConfig, from_dict, load_run_config
from tuner.data import load_token_data, prepare_documents
from tuner.evalconfig import EvalConfig, TaskConfig
from tuner.models import build_model, logits
from tuner.ngram import NgramModel, ngram_continuation_baseline
from tuner.tasks import (
    decode_prediction,
    fold_splits,
    genre_sample,
    line_tokens,
    run_tasks,
    validate_tasks,
)
from tuner.tasks_model import (
    classification_scores,
    generation_scores,
    greedy_generate,
    last_hidden,
    pooled_features,
)
from tuner.tasks_text import Passage, genre_passages, play_folds
from tuner.train import train_run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(shared_cache):
    """A nano GPT-2 trained on 16k tokens of the tiny corpus, and its token data."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNER_CACHE_DIR", str(shared_cache))
        config = from_dict(RunConfig, TINY_BASE).replace("train.tokens", 16384)
        data = load_token_data(config.data, config.tokenizer)
        result = train_run(config.replace("optim.lr", 0.01), data)
    return config, result.model.eval(), data


def with_tasks(config: RunConfig, *tasks: dict) -> RunConfig:
    return from_dict(RunConfig, config.to_dict() | {"eval": {"tasks": list(tasks)}})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ---------------------------------------------------------------- metric definitions


def test_classification_scores_by_hand_and_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score

    y_true = ["a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "b", "b", "b", "c", "a"]
    scores = classification_scores(y_true, y_pred, ["b"] * 6)
    # per-class F1: a 1/2, b 4/5, c 2/3; majority "b": F1 of b = 1/2, a and c 0
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert scores["majority_accuracy"] == pytest.approx(2 / 6)
    assert scores["majority_f1"] == pytest.approx(0.5 / 3)
    assert scores["accuracy"] == accuracy_score(y_true, y_pred)
    assert scores["f1"] == f1_score(y_true, y_pred, average="macro")


def test_generation_scores_are_sacrebleus():
    import sacrebleu

    hyps = ["the cat sat on the mat today", "a dog", "  To be,  or not to be "]
    refs = ["the cat sat on a mat today", "the dog barked", "To be, or not to be"]
    scores = generation_scores(hyps, refs, hits=3, total=4)
    assert scores["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert scores["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert 0 < scores["bleu"] < 100 and 0 < scores["chrf"] < 100
    assert scores["exact_match"] == pytest.approx(1 / 3)  # whitespace is normalised
    assert scores["token_accuracy"] == 0.75
    same = generation_scores(refs, refs, hits=1, total=1)
    assert same["bleu"] == pytest.approx(100) and same["chrf"] == pytest.approx(100)


def test_metric_names_and_directions():
    config = EvalConfig(
        tasks=(
            TaskConfig(name="genre", kind="genre"),
            TaskConfig(name="lines", kind="continuation"),
        )
    )
    names = config.metric_names()
    assert names[:2] == ["task.genre.accuracy", "task.genre.f1"]
    assert "task.lines.bleu" in names and "task.lines.chrf" in names
    assert "task.genre.bleu" not in names and "task.lines.f1" not in names
    assert {metrics.direction(n) for n in names} == {"maximize"}
    assert metrics.get("task.lines.seconds").objective is False
    with pytest.raises(ConfigError, match="unknown metric 'task.lines.speed'"):
        metrics.get("task.lines.speed")
    assert EvalConfig().metric_names() == []


# ---------------------------------------------------------------- the genre split


def test_genre_passages_come_from_held_out_scenes_only():
    cfg = DataConfig()
    passages = genre_passages(cfg, "val", 400)
    assert {p.label for p in passages} == {"comedy", "history", "tragedy"}
    splits = prepare_documents(cfg)
    val_text = "\0".join(splits["val"])
    train_text = "\0".join(splits["train"])
    for p in passages[::25]:
        assert p.text in val_text and p.text not in train_text
    plays = {p.play for p in passages}
    assert "hamlet" in plays or "macbeth" in plays or "othello" in plays
    assert not plays & {"the-tempest", "measure-for-measure"}  # romances and problems left out
    assert {p.text for p in passages}.isdisjoint({p.text for p in genre_passages(cfg, "test", 400)})


@pytest.mark.parametrize("split", ["val", "test"])
def test_genre_folds_never_put_a_play_on_both_sides(split):
    passages = genre_passages(DataConfig(), split, 400)
    folds = play_folds(passages, 3, seed=0, where="eval.tasks.genre")
    pairs = fold_splits([folds[p.play] for p in passages])
    assert len(pairs) == 3
    tested = []
    for train, test in pairs:
        train_plays = {passages[i].play for i in train}
        test_plays = {passages[i].play for i in test}
        assert train_plays and test_plays and not train_plays & test_plays
        labels = {passages[i].label for i in test}
        assert labels == {passages[i].label for i in train} == {"comedy", "history", "tragedy"}
        tested += test
    assert sorted(tested) == list(range(len(passages)))  # each passage classified exactly once


def test_genre_sample_has_as_many_passages_of_each_genre(tiny_config):
    task = TaskConfig(name="genre", kind="genre", max_examples=100)
    passages = genre_sample(task, tiny_config, "val")
    counts = Counter(p.label for p in passages)
    assert counts == {"comedy": 33, "history": 33, "tragedy": 33}
    assert len({p.play for p in passages}) > 6  # spread over the plays, not the first few


def test_play_folds_need_two_plays_per_genre():
    passages = [Passage("a", "comedy", "x"), Passage("b", "comedy", "y")]
    passages += [Passage("c", "tragedy", "z")]
    with pytest.raises(ConfigError, match="eval.tasks.g: needs at least two plays"):
        play_folds(passages, 3, 0, "eval.tasks.g")
    passages.append(Passage("d", "tragedy", "w"))
    assert sorted(play_folds(passages, 5, 0, "w").values()) == [0, 0, 1, 1]  # folds cut to 2


# ---------------------------------------------------------------- the model side


@pytest.mark.parametrize("arch", ["gpt2", "llama", "lstm"])
def test_cached_greedy_generation_equals_the_full_recompute(tiny_config, arch):
    torch.manual_seed(0)
    model = build_model(tiny_config.replace("model.arch", arch).model, 97, 32).eval()
    prompts = torch.randint(97, (3, 10))
    fast, _, _ = greedy_generate(model, prompts, 8)
    seq = prompts
    for _ in range(8):
        seq = torch.cat([seq, logits(model, seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(fast, seq[:, 10:])
    banned = fast[:, 0].unique().tolist()
    assert not set(greedy_generate(model, prompts, 3, banned)[0][:, 0].tolist()) & set(banned)
    short, _, _ = greedy_generate(model, prompts, 8, stop=fast[:, 2].tolist())  # all stop by 3
    assert short.size(1) <= 3 and torch.equal(short, fast[:, : short.size(1)])


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gru"])
def test_reference_hits_count_teacher_forced_argmax(tiny_config, arch):
    """References: the model's own greedy tokens with one changed, of lengths 6, 5, 4."""
    torch.manual_seed(0)
    model = build_model(tiny_config.replace("model.arch", arch).model, 97, 32).eval()
    prompts = torch.randint(97, (3, 10))
    own, _, _ = greedy_generate(model, prompts, 6)
    refs = [own[row, : 6 - row].tolist() for row in range(3)]
    refs[0][2] = (refs[0][2] + 1) % 97
    _, hits, total = greedy_generate(model, prompts, 6, references=refs)
    expected = 0
    for p, r in zip(prompts.tolist(), refs, strict=True):
        out = logits(model, torch.tensor([p + r]))[0]
        expected += sum(int(out[len(p) - 1 + j].argmax()) == t for j, t in enumerate(r))
    assert (hits, total) == (expected, 15) and 0 < hits < total


@pytest.mark.parametrize("arch", ["gpt2", "gru"])
def test_pooled_features_are_the_mean_hidden_state_whatever_the_batch(tiny_config, arch):
    torch.manual_seed(0)
    model = build_model(tiny_config.replace("model.arch", arch).model, 97, 32).eval()
    ids = [list(range(5, 75)), [3, 4, 5], list(range(20, 40))]
    feats = pooled_features(model, ids, window=32, batch_size=2, device=CPU)
    with torch.no_grad():
        windows = [torch.tensor([ids[0][s : s + 32]]) for s in (0, 32, 64)]
        states = torch.cat([last_hidden(model, w)[0] for w in windows])  # (70, d)
        alone = last_hidden(model, torch.tensor([ids[1]]))[0].mean(0)
    assert np.allclose(feats[0], states.mean(0).numpy(), atol=1e-5)
    assert np.allclose(feats[1], alone.numpy(), atol=1e-5)  # padding beside a longer one
    if arch == "gpt2":
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids[2]]), output_hidden_states=True)
        assert np.allclose(feats[2], out.hidden_states[-1][0].mean(0).numpy(), atol=1e-5)


def test_ngram_backs_off_to_shorter_contexts():
    model = NgramModel(np.array([1, 2, 3, 1, 2, 4, 1, 2, 3, 5]), vocab_size=6, order=3)
    assert model.next_token([1, 2]) == 3  # (1, 2) -> 3 twice, 4 once
    assert model.next_token([1, 2], banned=frozenset({3})) == 4
    assert model.next_token([5, 2]) == 3  # (5, 2) unseen: back off to (2,)
    assert model.next_token([0]) == 1  # unseen token: the most frequent (1 and 2 tie: lower id)
    assert model.generate([1, 2], 3, banned_first=[3]) == [4, 1, 2]
    assert model.hits([1, 2], [3, 1, 2]) == 3


# ---------------------------------------------------------------- run_tasks end to end


def test_every_kind_on_a_tiny_trained_model(trained, tmp_path):
    config, model, data = trained
    words = ["love", "war"]
    rows = [{"text": f"{words[i % 2]} " * (3 + i % 5), "label": words[i % 2]} for i in range(60)]
    gen_rows = [{"prompt": "ROMEO:\n", "reference": "But soft, what light"}] * 4
    config = with_tasks(
        config,
        {"name": "genre", "kind": "genre", "max_examples": 90},
        {"name": "lines", "kind": "continuation", "max_examples": 12, "max_new_tokens": 8},
        {
            "name": "topic",
            "kind": "classification",
            "data_files": {
                "train": write_jsonl(tmp_path / "train.jsonl", rows[:40]),
                "validation": write_jsonl(tmp_path / "val.jsonl", rows[40:]),
            },
        },
        {
            "name": "reply",
            "kind": "generation",
            "max_new_tokens": 6,
            "data_files": {"validation": write_jsonl(tmp_path / "gen.jsonl", gen_rows)},
        },
    )
    validate_tasks(config)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    results = run_tasks(config, model, data, CPU, split="val")
    assert sorted(results.metrics) == sorted(config.eval.metric_names())
    m = results.metrics
    for name in ("genre", "topic"):
        for metric in ("accuracy", "f1", "majority_accuracy", "majority_f1"):
            assert 0 <= m[f"task.{name}.{metric}"] <= 1
    for name in ("lines", "reply"):
        assert 0 <= m[f"task.{name}.bleu"] <= 100 and 0 <= m[f"task.{name}.chrf"] <= 100
        assert 0 <= m[f"task.{name}.token_accuracy"] <= 1
    # two classes told apart by their words: the probe is right where the majority is not
    assert m["task.topic.accuracy"] >= 0.9 and m["task.topic.majority_accuracy"] == 0.5
    assert results.examples == {"genre": 90, "lines": 12, "topic": 20, "reply": 4}
    assert all(s > 0 for s in results.seconds.values())
    assert results.total_seconds == pytest.approx(sum(results.seconds.values()))
    assert results.flat()["task.genre.examples"] == 90
    assert not model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_generation_scores_a_model_against_its_own_output(trained, tmp_path):
    """References equal to the model's own greedy line: exact match 1, chrF 100, and the
    first token never a newline (the task asks for a line)."""
    config, model, data = trained
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(data.tokenizer_path))
    empty, breaks = line_tokens(tok)
    prompts = ["HAMLET\n", "KING\n", "Enter the"]
    refs = []
    for text in prompts:
        ids = torch.tensor([tok.encode(text, add_special_tokens=False).ids])
        out, _, _ = greedy_generate(model, ids, 6, banned_first=empty, stop=breaks)
        assert out[0, 0].item() not in empty
        refs.append(decode_prediction(tok, out[0].tolist(), stop_at_newline=True))
    assert any(refs)
    rows = [{"prompt": p, "reference": r} for p, r in zip(prompts, refs, strict=True)]
    config = with_tasks(
        config,
        {
            "name": "echo",
            "kind": "generation",
            "max_new_tokens": 6,
            "data_files": {"test": write_jsonl(tmp_path / "echo.jsonl", rows)},
        },
    )
    m = run_tasks(config, model, data, CPU, split="test").metrics
    assert m["task.echo.exact_match"] == 1.0 and m["task.echo.chrf"] == pytest.approx(100)


def test_finetune_method_leaves_the_model_untouched(trained, tmp_path):
    config, model, data = trained
    rows = [{"text": f"{w} " * 4, "label": w} for w in ["love", "war"] * 10]
    config = with_tasks(
        config,
        {
            "name": "topic",
            "kind": "classification",
            "method": "finetune",
            "finetune_steps": 15,
            "finetune_lr": 3e-3,
            "data_files": {
                "train": write_jsonl(tmp_path / "t.jsonl", rows),
                "validation": write_jsonl(tmp_path / "v.jsonl", rows[:8]),
            },
        },
    )
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    m = run_tasks(config, model, data, CPU).metrics
    assert m["task.topic.accuracy"] >= 0.75
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_ngram_baseline_scores_the_same_examples(trained):
    config, _, data = trained
    task = TaskConfig(name="lines", kind="continuation", max_examples=32, max_new_tokens=8)
    scores = ngram_continuation_baseline(config, data, task, "val", order=3)
    assert set(scores) == {"bleu", "chrf", "exact_match", "token_accuracy"}
    assert 0 < scores["chrf"] < 100 and 0 < scores["token_accuracy"] < 1


# ---------------------------------------------------------------- bad input


def test_config_errors_name_the_task_key():
    cases = [
        ({"name": "x", "kind": "sentiment"}, "eval.tasks.x.kind: 'sentiment' is not one of"),
        ({"kind": "genre"}, "eval.tasks.name: '' must be letters, digits or _"),
        ({"name": "a.b", "kind": "genre"}, "eval.tasks.name: 'a.b' must be letters"),
        ({"name": "x", "kind": "classification"}, "eval.tasks.x.data_files: required"),
        ({"name": "x", "kind": "generation", "source": "hub"}, "eval.tasks.x.dataset: required"),
        ({"name": "x", "kind": "genre", "max_examples": 0}, "eval.tasks.x.max_examples: must be"),
        ({"name": "x", "kind": "genre", "folds": 1}, "eval.tasks.x.folds: must be >= 2"),
        ({"name": "x", "kind": "genre", "nope": 1}, r"eval.tasks\[0\].nope: unknown key"),
    ]
    for task, message in cases:
        with pytest.raises(ConfigError, match=message):
            from_dict(RunConfig, {"eval": {"tasks": [task]}})
    with pytest.raises(ConfigError, match="eval.tasks.g: duplicate task name"):
        from_dict(RunConfig, {"eval": {"tasks": [{"name": "g", "kind": "genre"}] * 2}})


def test_validation_catches_bad_datasets_before_training(tiny_config, tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"text": "a", "label": i % 2} for i in range(6)])
    one_class = write_jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": 1}] * 6)
    csv = tmp_path / "t.csv"
    csv.write_text("sentence,label\nhello,1\nworld,0\n")

    def task(**fields) -> dict:
        return {"name": "t", "kind": "classification"} | fields

    cases = [
        (task(data_files={"train": str(csv), "validation": str(csv)}), "t.text_column: no column"),
        (task(data_files={"train": one_class, "validation": good}), "t.label_column: 'label' "),
        (task(data_files={"train": good}), "t.data_files: no split 'validation' \\(have: train\\)"),
        (task(data_files={"train": "no.csv", "validation": good}), "t.data_files.train: file not"),
        (task(data_files={"train": str(tmp_path / "x.txt")}), "t.data_files.train: files must"),
        (
            {
                "name": "t",
                "kind": "generation",
                "reference_column": "answer",
                "data_files": {"validation": good},
            },
            "t.prompt_column: no column 'prompt'",
        ),
        ({"name": "t", "kind": "continuation", "max_new_tokens": 32}, "t.max_new_tokens: 32"),
    ]
    (tmp_path / "x.txt").write_text("plain text")
    for spec, message in cases:
        config = with_tasks(tiny_config, spec)
        with pytest.raises(ConfigError, match=f"eval.tasks.{message}"):
            validate_tasks(config)
    files = from_dict(RunConfig, {"data": {"source": "files", "paths": ["a.txt"]}})
    with pytest.raises(ConfigError, match="eval.tasks.g.kind: genre needs data.source"):
        validate_tasks(with_tasks(files, {"name": "g", "kind": "genre"}))
    ok = with_tasks(tiny_config, task(data_files={"train": good, "validation": good}))
    validate_tasks(ok)  # and nothing raised


def test_an_empty_eval_section_changes_nothing():
    plain = RunConfig()
    assert plain.eval == EvalConfig() and plain.flat()["eval.tasks"] == []
    assert from_dict(RunConfig, plain.to_dict()) == plain
    tasks = from_dict(RunConfig, {"eval": {"tasks": [{"name": "genre", "kind": "genre"}]}})
    flat = tasks.flat()
    assert flat["eval.tasks.genre.kind"] == "genre" and "eval.tasks" not in flat
    assert {k: v for k, v in flat.items() if not k.startswith("eval.")} == {
        k: v for k, v in plain.flat().items() if not k.startswith("eval.")
    }
    assert math.isfinite(flat["eval.tasks.genre.probe_c"])


def test_eval_section_round_trips_through_yaml(tmp_path):
    text = """
eval:
  every_milestone: true
  tasks:
    - {name: genre, kind: genre, max_examples: 96}
    - name: topic
      kind: classification
      method: finetune
      data_files: {train: train.csv, validation: [val.csv]}
"""
    path = tmp_path / "run.yaml"
    path.write_text(text)
    config = load_run_config(path)
    assert config.eval.every_milestone and config.eval.tasks[0].max_examples == 96
    assert config.eval.tasks[1].data_files == {"train": ("train.csv",), "validation": ("val.csv",)}
    path.write_text(config.to_yaml())
    assert load_run_config(path) == config
