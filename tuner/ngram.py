"""A token n-gram baseline for the generation tasks: what BLEU and chrF a model must beat.

Counted on the LM's train split with the run's own tokenizer, it continues a prompt greedily:
the most frequent next token after the longest context (up to `order - 1` tokens) seen in
training, backing off to shorter contexts and at last to the most frequent token. It is scored
on exactly the continuation task's prompts and references, with the same metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from tuner.config import RunConfig
from tuner.data import TokenData
from tuner.errors import ConfigError
from tuner.evalconfig import TaskConfig
from tuner.tasks import CONTEXT_CHARS_PER_TOKEN, decode_prediction, line_tokens
from tuner.tasks_model import generation_scores
from tuner.tasks_text import continuation_examples


class NgramModel:
    """Counts of every (context, next token) for context lengths 0..order-1."""

    def __init__(self, tokens: np.ndarray, vocab_size: int, order: int = 3):
        if order < 1 or vocab_size**order >= 2**63:
            raise ConfigError(f"ngram order {order} is out of range for vocab {vocab_size}")
        self.order = order
        self.vocab_size = vocab_size
        ids = np.asarray(tokens, dtype=np.int64)
        unigram = np.bincount(ids, minlength=vocab_size)
        self.by_frequency = np.lexsort((np.arange(vocab_size), -unigram))
        self.tables = [self._table(ids, n) for n in range(1, order)]

    def _table(self, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For contexts of n tokens: sorted context keys, and per key its next tokens from the
        most to the least frequent (ties: lower id first), as (keys, starts, next_tokens)."""
        v = self.vocab_size
        count = len(ids) - n
        context = np.zeros(count, dtype=np.int64)
        for j in range(n):
            context = context * v + ids[j : j + count]
        pairs, counts = np.unique(context * v + ids[n : n + count], return_counts=True)
        keys, nexts = pairs // v, pairs % v
        order = np.lexsort((nexts, -counts, keys))
        keys, nexts = keys[order], nexts[order]
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        return keys[first], first, nexts

    def next_token(self, context: Sequence[int], banned: frozenset[int] = frozenset()) -> int:
        """The most frequent allowed follower of the longest known suffix of `context`."""
        for n in range(min(self.order - 1, len(context)), 0, -1):
            keys, starts, nexts = self.tables[n - 1]
            key = 0
            for token in context[-n:]:
                key = key * self.vocab_size + int(token)
            at = int(np.searchsorted(keys, key))
            if at < len(keys) and keys[at] == key:
                end = starts[at + 1] if at + 1 < len(starts) else len(nexts)
                for token in nexts[starts[at] : end]:
                    if int(token) not in banned:
                        return int(token)
        return next(int(t) for t in self.by_frequency if int(t) not in banned)

    def generate(self, prompt: Sequence[int], n_new: int, banned_first: Sequence[int]) -> list[int]:
        seq, banned = list(prompt), frozenset(banned_first)
        for i in range(n_new):
            seq.append(self.next_token(seq, banned if i == 0 else frozenset()))
        return seq[len(prompt) :]

    def hits(self, prompt: Sequence[int], reference: Sequence[int]) -> int:
        """Teacher-forced next-token hits on the reference."""
        seq, correct = list(prompt), 0
        for token in reference:
            correct += self.next_token(seq) == token
            seq.append(token)
        return correct


def ngram_continuation_baseline(
    config: RunConfig, data: TokenData, task: TaskConfig, split: str = "val", order: int = 3
) -> dict[str, float]:
    """The continuation task's metrics for an n-gram model counted on the train split."""
    tokenizer = Tokenizer.from_file(str(data.tokenizer_path))
    text = tokenizer.decode(data.split(split).tolist())
    examples = continuation_examples(
        text, task.max_examples, task.prompt_tokens * CONTEXT_CHARS_PER_TOKEN
    )
    model = NgramModel(data.train, data.vocab_size, order)
    banned = line_tokens(tokenizer)[0] if task.stop_at_newline else []

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]

    prompts = encode([e.prompt for e in examples])
    refs = [r[: task.max_new_tokens] for r in encode([e.reference for e in examples])]
    hypotheses = [
        decode_prediction(
            tokenizer, model.generate(p, task.max_new_tokens, banned), task.stop_at_newline
        )
        for p in prompts
    ]
    hits = sum(model.hits(p, r) for p, r in zip(prompts, refs, strict=True))
    total = sum(len(r) for r in refs)
    return generation_scores(hypotheses, [e.reference for e in examples], hits, total)
