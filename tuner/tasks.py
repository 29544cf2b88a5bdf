"""Downstream evaluation tasks: accuracy, F1 and BLEU beside perplexity.

`run_tasks(config, model, data, device, split)` runs every task of `config.eval` on a trained
model and returns its metrics as `task.NAME.METRIC` with each task's wall seconds. Tasks read
only the LM's validation split (trials) or test split (`tuner train`), never train on the
evaluated examples, and leave the model, its mode and the global RNG state as they found them.

Kinds:
- `genre` (built in): is a passage from a comedy, a history or a tragedy? Plays are dealt
  into folds; each passage is classified by a probe (or a fine-tuned head) trained on the other
  folds' plays only, so no play is ever on both sides. accuracy, f1 (macro), and the
  majority-class baseline of each fold's training side on the same passages.
- `continuation` (built in): the next line of a held-out speech, generated greedily (fixed
  length, cut at the newline): bleu, chrf (sacrebleu), exact_match, token_accuracy.
- `classification` / `generation`: the same two on a user's dataset (hub or local files).

`validate_tasks` checks everything that can be checked before a trial trains;
`EvalConfig.metric_names()` lists what a study may use as an objective.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tokenizers import Tokenizer
from torch import nn

from tuner.config import RunConfig
from tuner.data import TokenData
from tuner.errors import ConfigError
from tuner.evalconfig import TaskConfig
from tuner.metrics import TASK_METRICS
from tuner.models import max_positions
from tuner.tasks_model import (
    classification_scores,
    finetune_predict,
    generation_scores,
    greedy_generate,
    pooled_features,
    probe_predict,
)
from tuner.tasks_text import (
    Prompted,
    check_labels,
    continuation_examples,
    evenly,
    genre_passages,
    load_rows,
    memo,
    play_folds,
    texts_of,
)

CLASSIFICATION_METRICS = TASK_METRICS["classification"]
GENERATION_METRICS = TASK_METRICS["generation"]
TASK_BATCH = 64
"""Examples per forward pass at least (more if train.eval_batch_size says so)."""
GENERATION_BATCH = 256
"""Prompts generated together: one model call per new token for all of them..."""
LOGITS_PER_BATCH = 1 << 25
"""...unless their teacher-forced logits (prompts x new tokens x vocab) would pass this."""
CONTEXT_CHARS_PER_TOKEN = 16
"""Continuation prompts keep this many characters per prompt token before tokenizing."""


@dataclass
class TaskResults:
    """What `run_tasks` measured."""

    metrics: dict[str, float] = field(default_factory=dict)
    """`task.NAME.METRIC` -> value."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Task name -> wall seconds (to be kept out of training throughput)."""
    examples: dict[str, int] = field(default_factory=dict)
    """Task name -> evaluated examples."""

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def flat(self) -> dict[str, float]:
        """Metrics plus `task.NAME.seconds` and `task.NAME.examples`, for logging."""
        out = dict(self.metrics)
        for name, seconds in self.seconds.items():
            out[f"task.{name}.seconds"] = seconds
            out[f"task.{name}.examples"] = float(self.examples.get(name, 0))
        return out


@dataclass
class Context:
    """What every task runner needs, resolved once per `run_tasks` call."""

    config: RunConfig
    model: nn.Module
    data: TokenData
    tokenizer: Tokenizer
    device: torch.device
    split: str
    window: int
    """Tokens per forward pass: the model's positional range (train.seq_len)."""
    autocast: Callable

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    @property
    def batch_size(self) -> int:
        """Examples per forward pass: no logits over whole sequences are kept, so more than
        the LM evaluation's `eval_batch_size` fit."""
        return max(self.config.train.eval_batch_size, TASK_BATCH)


def run_tasks(
    config: RunConfig,
    model: nn.Module,
    data: TokenData,
    device: torch.device | None = None,
    split: str = "val",
) -> TaskResults:
    """Run `config.eval.tasks` on `model`: `split="val"` in a trial, `"test"` for `tuner train`."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', not {split!r}")
    results = TaskResults()
    if not config.eval.tasks:
        return results
    device = device or next(model.parameters()).device
    use_bf16 = config.train.precision == "bf16" or (
        config.train.precision == "auto" and device.type == "cuda"
    )

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    positions = max_positions(model)
    ctx = Context(
        config=config,
        model=model,
        data=data,
        tokenizer=Tokenizer.from_file(str(data.tokenizer_path)),
        device=device,
        split=split,
        window=min(config.train.seq_len, positions or config.train.seq_len),
        autocast=autocast,
    )
    was_training = model.training
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices):  # training's RNG stream is untouched
            model.eval()
            for task in config.eval.tasks:
                start = time.perf_counter()
                metrics, n = RUNNERS[task.kind](task, ctx)
                results.seconds[task.name] = time.perf_counter() - start
                results.examples[task.name] = n
                results.metrics.update({f"task.{task.name}.{k}": v for k, v in metrics.items()})
    finally:
        model.train(was_training)
    return results


# ---------------------------------------------------------------- classification


def _genre(task: TaskConfig, ctx: Context) -> tuple[dict[str, float], int]:
    passages = genre_sample(task, ctx.config, ctx.split)
    folds = play_folds(passages, task.folds, task.seed, f"eval.tasks.{task.name}")
    ids = ctx.encode([p.text for p in passages])
    labels = [p.label for p in passages]
    features = None
    if task.method == "probe":
        features = pooled_features(
            ctx.model, ids, ctx.window, ctx.batch_size, ctx.device, ctx.autocast
        )
    y_true: list[str] = []
    y_pred: list[str] = []
    majority: list[str] = []
    for train, test in fold_splits([folds[p.play] for p in passages]):
        train = evenly(train, task.max_train_examples)
        pred = _classify(task, ctx, ids, labels, features, train, test)
        top = _majority([labels[i] for i in train])
        y_true += [labels[i] for i in test]
        y_pred += pred
        majority += [top] * len(test)
    return classification_scores(y_true, y_pred, majority), len(passages)


def genre_sample(task: TaskConfig, config: RunConfig, split: str) -> list:
    """The same number of passages of each genre (max_examples / genres), spread evenly over
    each genre's scenes, so that guessing the majority class is right a third of the time."""
    key = ("genre", config.data, split, task.passage_chars)
    passages = memo(key, lambda: genre_passages(config.data, split, task.passage_chars))
    by_label: dict[str, list[int]] = {}
    for i, p in enumerate(passages):
        by_label.setdefault(p.label, []).append(i)
    each = min([task.max_examples // max(len(by_label), 1), *map(len, by_label.values())])
    return [passages[i] for i in sorted(i for ids in by_label.values() for i in evenly(ids, each))]


def fold_splits(fold_of: list[int]) -> list[tuple[list[int], list[int]]]:
    """(train, test) example indices for each fold: test = the fold, train = all the others."""
    return [
        ([i for i, f in enumerate(fold_of) if f != k], [i for i, f in enumerate(fold_of) if f == k])
        for k in sorted(set(fold_of))
    ]


def _classification(task: TaskConfig, ctx: Context) -> tuple[dict[str, float], int]:
    train_rows = load_rows(task, "train", ("text", "label"))
    eval_rows = load_rows(task, ctx.split, ("text", "label"))
    train_idx = evenly(range(len(train_rows["text"])), task.max_train_examples)
    eval_idx = evenly(range(len(eval_rows["text"])), task.max_examples)
    train_labels = check_labels(task, [train_rows["label"][i] for i in train_idx], "train")
    eval_labels = [str(eval_rows["label"][i]) for i in eval_idx]
    texts = texts_of([train_rows["text"][i] for i in train_idx])
    texts += texts_of([eval_rows["text"][i] for i in eval_idx])
    ids = ctx.encode(texts)
    labels = train_labels + eval_labels
    features = None
    if task.method == "probe":
        features = pooled_features(
            ctx.model, ids, ctx.window, ctx.batch_size, ctx.device, ctx.autocast
        )
    train = list(range(len(train_idx)))
    test = list(range(len(train_idx), len(ids)))
    pred = _classify(task, ctx, ids, labels, features, train, test)
    majority = [_majority(train_labels)] * len(test)
    return classification_scores(eval_labels, pred, majority), len(test)


def _classify(task, ctx, ids, labels, features, train, test) -> list[str]:
    """Labels for `test` from a probe or a fine-tuned head that learned from `train` only."""
    train_y = [labels[i] for i in train]
    if task.method == "probe":
        return probe_predict(features[train], train_y, features[test], task.probe_c)
    return finetune_predict(
        ctx.model,
        [ids[i] for i in train],
        train_y,
        [ids[i] for i in test],
        ctx.window,
        ctx.device,
        steps=task.finetune_steps,
        batch_size=task.finetune_batch_size,
        lr=task.finetune_lr,
        seed=task.seed,
        autocast=ctx.autocast,
    )


def _majority(labels: list[str]) -> str:
    """The most frequent label (the alphabetically first among ties)."""
    return min(set(labels), key=lambda label: (-labels.count(label), label))


# ---------------------------------------------------------------- generation


def _continuation(task: TaskConfig, ctx: Context) -> tuple[dict[str, float], int]:
    context_chars = task.prompt_tokens * CONTEXT_CHARS_PER_TOKEN
    key = ("continuation", str(ctx.data.root), ctx.split, task.max_examples, context_chars)
    examples = memo(
        key,
        lambda: continuation_examples(
            ctx.tokenizer.decode(ctx.data.split(ctx.split).tolist()),
            task.max_examples,
            context_chars,
        ),
    )
    if not examples:
        raise ConfigError(
            f"eval.tasks.{task.name}: the {ctx.split} split has no paragraph of 3+ lines to "
            "continue"
        )
    return _generate_and_score(task, ctx, examples), len(examples)


def _generation(task: TaskConfig, ctx: Context) -> tuple[dict[str, float], int]:
    rows = load_rows(task, ctx.split, ("prompt", "reference"))
    picked = evenly(range(len(rows["prompt"])), task.max_examples)
    prompts, refs = texts_of(rows["prompt"]), texts_of(rows["reference"])
    examples = [Prompted(prompts[i], refs[i]) for i in picked]
    return _generate_and_score(task, ctx, examples), len(examples)


def prompt_length(task: TaskConfig, ctx: Context) -> int:
    """Prompt tokens kept: `prompt_tokens`, fewer when the model's window needs the room."""
    room = ctx.window - task.max_new_tokens if max_positions(ctx.model) else task.prompt_tokens
    if room < 1:
        raise ConfigError(
            f"eval.tasks.{task.name}.max_new_tokens: {task.max_new_tokens} leaves no room for a "
            f"prompt in train.seq_len {ctx.window}"
        )
    return min(task.prompt_tokens, room)


def _generate_and_score(task: TaskConfig, ctx: Context, examples: list[Prompted]) -> dict:
    keep, new = prompt_length(task, ctx), task.max_new_tokens
    empty, breaks = memo(("lines", str(ctx.data.root)), lambda: line_tokens(ctx.tokenizer))
    banned, stop = (empty, breaks) if task.stop_at_newline else ([], [])
    prompts = [p[-keep:] or [0] for p in ctx.encode([e.prompt for e in examples])]
    refs = [r[:new] or [0] for r in ctx.encode([e.reference for e in examples])]
    hypotheses = [""] * len(examples)
    hits = total = 0
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):  # one length per batch: no padding inside a prompt
        by_length.setdefault(len(p), []).append(i)
    batch_size = max(1, min(GENERATION_BATCH, LOGITS_PER_BATCH // (ctx.data.vocab_size * new)))
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            batch = torch.tensor([prompts[i] for i in chunk], device=ctx.device)
            with ctx.autocast():
                out, h, t = greedy_generate(
                    ctx.model, batch, new, banned, stop, [refs[i] for i in chunk]
                )
            hits, total = hits + h, total + t
            for i, row in zip(chunk, out.tolist(), strict=True):
                hypotheses[i] = decode_prediction(ctx.tokenizer, row, task.stop_at_newline)
    return generation_scores(hypotheses, [e.reference for e in examples], hits, total)


def line_tokens(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """(ids that would end a line before it starts: a newline first, or special; ids that
    hold a newline anywhere, after which a line is over)."""
    specials = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    empty, breaks = [], []
    for token, idx in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        text = tokenizer.decode([idx], skip_special_tokens=False)
        if token in specials or text.lstrip(" \t").startswith(("\n", "\r")):
            empty.append(idx)
        if "\n" in text or token in specials:
            breaks.append(idx)
    return empty, breaks


def decode_prediction(tokenizer: Tokenizer, ids: list[int], stop_at_newline: bool) -> str:
    """Generated ids -> the predicted text (up to its first newline, if asked)."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return (text.split("\n", 1)[0] if stop_at_newline else text).strip()


RUNNERS: dict[str, Callable[[TaskConfig, Context], tuple[dict[str, float], int]]] = {
    "genre": _genre,
    "continuation": _continuation,
    "classification": _classification,
    "generation": _generation,
}


# ---------------------------------------------------------------- validation


def validate_tasks(config: RunConfig, splits: tuple[str, ...] = ("val",)) -> None:
    """Everything checkable before a trial trains: the genre task's corpus and plays, the
    generation window, and each user dataset's splits, columns and classes. `splits` are the
    run splits evaluated: ("val",) for a study, ("test",) for `tuner train`."""
    for task in config.eval.tasks:
        where = f"eval.tasks.{task.name}"
        if task.kind == "genre":
            if config.data.source != "shakespeare":
                raise ConfigError(
                    f"{where}.kind: genre needs data.source=shakespeare (its play folders are "
                    f"the labels), not {config.data.source!r}"
                )
            for split in splits:
                play_folds(genre_sample(task, config, split), task.folds, task.seed, where)
        transformer = config.model.arch in ("gpt2", "llama")
        generates = task.kind in ("continuation", "generation")
        if generates and transformer and config.train.seq_len <= task.max_new_tokens:
            raise ConfigError(
                f"{where}.max_new_tokens: {task.max_new_tokens} leaves no room for a prompt "
                f"in train.seq_len {config.train.seq_len}"
            )
        if task.kind == "classification":
            train = load_rows(task, "train", ("text", "label"))
            check_labels(task, evenly(train["label"], task.max_train_examples), "train")
            for split in splits:
                load_rows(task, split, ("text", "label"))
        if task.kind == "generation":
            for split in splits:
                load_rows(task, split, ("prompt", "reference"))
