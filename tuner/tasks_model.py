"""The model side of downstream tasks: pooled hidden states, a linear probe, fine-tuning with a
classification head, greedy generation, and the metrics (scikit-learn's and sacrebleu's own
definitions, so the numbers compare with anyone else's).

Every function takes token ids, never text, and works for all four architectures: gpt2/llama
through the transformers base model, lstm/gru through the recurrent stack of `RecurrentLM`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Autocast = Callable[[], AbstractContextManager]


# ---------------------------------------------------------------- hidden states


def last_hidden(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, T, d) last-layer states: what the LM head reads (after the final norm
    for transformers). Causal, so right padding never changes the states before it."""
    if hasattr(model, "config"):
        return model.base_model(input_ids=ids).last_hidden_state
    h, _ = model.rnn(model.drop(model.embed(ids)))  # RecurrentLM
    return h


def hidden_size(model: nn.Module) -> int:
    if hasattr(model, "config"):
        return int(model.config.hidden_size)
    return int(model.embed.embedding_dim)


def windows_of(ids: Sequence[Sequence[int]], window: int) -> tuple[list[list[int]], list[int]]:
    """Cut every example into windows of at most `window` tokens (the model's positions);
    returns the windows and, for each, the example it came from. An empty example gets one
    window holding token 0 so that every example has a feature vector."""
    out, owner = [], []
    for i, seq in enumerate(ids):
        seq = list(seq) or [0]
        for start in range(0, len(seq), window):
            out.append(seq[start : start + window])
            owner.append(i)
    return out, owner


def pooled(
    model: nn.Module, ids: Sequence[Sequence[int]], window: int, device: torch.device
) -> torch.Tensor:
    """(N, d) mean of the last hidden states over every token of each example; long examples
    are run window by window. Differentiable (fine-tuning uses it on small batches)."""
    wins, owner = windows_of(ids, window)
    length = max(len(w) for w in wins)
    batch = torch.zeros(len(wins), length, dtype=torch.long)
    mask = torch.zeros(len(wins), length)
    for row, w in enumerate(wins):
        batch[row, : len(w)] = torch.tensor(w)
        mask[row, : len(w)] = 1.0
    batch, mask = batch.to(device), mask.to(device)
    states = last_hidden(model, batch).float()  # (W, T, d)
    sums = (states * mask[..., None]).sum(1)  # (W, d)
    index = torch.tensor(owner, device=device)
    total = torch.zeros(len(ids), sums.size(1), device=device).index_add(0, index, sums)
    count = torch.zeros(len(ids), device=device).index_add(0, index, mask.sum(1))
    return total / count[:, None]


@torch.no_grad()
def pooled_features(
    model: nn.Module,
    ids: Sequence[Sequence[int]],
    window: int,
    batch_size: int,
    device: torch.device,
    autocast: Autocast = nullcontext,
) -> np.ndarray:
    """(N, d) pooled features of a frozen model, examples batched by length."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(ids), hidden_size(model)), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        with autocast():
            feats = pooled(model, [ids[i] for i in chunk], window, device)
        out[chunk] = feats.float().cpu().numpy()
    return out


# ---------------------------------------------------------------- classifiers


def probe_predict(
    train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, c: float
) -> list[str]:
    """A linear probe: standardised features -> multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    probe.fit(train_x, list(train_y))
    return [str(v) for v in probe.predict(test_x)]


def finetune_predict(
    model: nn.Module,
    train_ids: Sequence[Sequence[int]],
    train_y: Sequence[str],
    test_ids: Sequence[Sequence[int]],
    window: int,
    device: torch.device,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    autocast: Autocast = nullcontext,
) -> list[str]:
    """Fine-tune a copy of the model with a linear head on its pooled states for `steps`
    AdamW steps (seeded minibatches), then classify `test_ids`. The model itself is untouched."""
    classes = sorted(set(train_y))
    target = torch.tensor([classes.index(y) for y in train_y], device=device)
    clone = copy.deepcopy(model).to(device).train()
    head = nn.Linear(hidden_size(model), len(classes)).to(device)
    params = [p for p in clone.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(len(train_ids), (min(batch_size, len(train_ids)),), generator=gen)
        with autocast():
            feats = pooled(clone, [train_ids[i] for i in pick.tolist()], window, device)
        loss = F.cross_entropy(head(feats.float()), target[pick.to(device)])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    clone.eval()
    predictions: list[str] = []
    with torch.no_grad():
        for start in range(0, len(test_ids), batch_size):
            with autocast():
                feats = pooled(clone, test_ids[start : start + batch_size], window, device)
            predictions += [classes[i] for i in head(feats.float()).argmax(-1).tolist()]
    return predictions


def classification_scores(
    y_true: Sequence[str], y_pred: Sequence[str], majority: Sequence[str]
) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn), for the predictions and for the majority-class
    baseline on the same examples."""
    from sklearn.metrics import accuracy_score, f1_score

    def f1(pred: Sequence[str]) -> float:
        return float(f1_score(y_true, pred, average="macro", zero_division=0))

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": f1(y_pred),
        "majority_accuracy": float(accuracy_score(y_true, majority)),
        "majority_f1": f1(majority),
    }


# ---------------------------------------------------------------- generation


class Stepper:
    """Feeds tokens to a model one chunk at a time, keeping its state between chunks: the KV
    cache for transformers, the recurrent state for lstm/gru. `copy()` forks the state, so one
    prompt's prefill serves both generation and the teacher-forced check."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.state = None
        self.hf = hasattr(model, "config")
        if self.hf:
            params = inspect.signature(model.forward).parameters
            # transformers 5 names the KV cache `cache`; 4.x named it `past_key_values`
            self.cache_name = "cache" if "cache" in params else "past_key_values"
            self.can_keep_last = "logits_to_keep" in params

    def __call__(self, ids: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, T) tokens after the state -> (B, T, V) logits, or (B, 1, V) for the last
        position only (a prompt's other positions are never read); the state moves past them."""
        if self.hf:
            extra = {self.cache_name: self.state} if self.state is not None else {}
            if last_only and self.can_keep_last:
                extra["logits_to_keep"] = 1
            out = self.model(input_ids=ids, use_cache=True, **extra)
            self.state = getattr(out, self.cache_name)
            return out.logits[:, -1:] if last_only else out.logits
        h, self.state = self.model.rnn(self.model.embed(ids), self.state)
        return self.model.head(h[:, -1:] if last_only else h)

    def copy(self) -> Stepper:
        twin = copy.copy(self)
        twin.state = copy.deepcopy(self.state)
        return twin


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    prompts: torch.Tensor,
    n_new: int,
    banned_first: Sequence[int] = (),
    stop: Sequence[int] = (),
    references: Sequence[Sequence[int]] = (),
) -> tuple[torch.Tensor, int, int]:
    """(B, P) prompts of one length -> ((B, <= n_new) greedy tokens, hits, total).

    One token's work per step (KV cache or recurrent state). `banned_first` are never the
    first token (as `min_new_tokens` keeps EOS out in transformers' generate): a task that asks
    for a line must not get an empty one. Generation ends once every row has produced a token
    of `stop`. With `references`, hits/total count teacher-forced next-token hits on them,
    from the same prefill (right padding is safe: the models are causal)."""
    was_training = model.training
    model.eval()
    device = prompts.device
    step = Stepper(model)
    last = step(prompts, last_only=True)[:, -1]  # (B, V)
    hits = total = 0
    if references:
        refs, mask = pad(references, device)
        guess = last.argmax(-1)[:, None]
        if refs.size(1) > 1:
            guess = torch.cat([guess, step.copy()(refs[:, :-1]).argmax(-1)], 1)  # (B, R)
        hits, total = int(((guess == refs) & mask).sum()), int(mask.sum())
    banned = torch.tensor(list(banned_first), dtype=torch.long, device=device)
    stops = torch.tensor(list(stop), dtype=torch.long, device=device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    out = []
    for i in range(n_new):
        if i == 0 and len(banned):
            last = last.float().index_fill(-1, banned, float("-inf"))
        out.append(last.argmax(-1))
        done |= torch.isin(out[-1], stops)
        if i + 1 == n_new or (len(stops) and bool(done.all())):
            break
        last = step(out[-1][:, None], last_only=True)[:, -1]
    model.train(was_training)
    return torch.stack(out, 1), hits, total


def pad(seqs: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, L) ids and the mask of real tokens."""
    length = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), length, dtype=torch.long)
    mask = torch.zeros(len(seqs), length, dtype=torch.bool)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = True
    return ids.to(device), mask.to(device)


def generation_scores(
    hypotheses: Sequence[str], references: Sequence[str], hits: int, total: int
) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenisation, 0-100), exact match of the
    whitespace-normalised line, and teacher-forced next-token accuracy on the references."""
    import sacrebleu

    from tuner.tasks_text import normalise_line

    hyps, refs = list(hypotheses), list(references)
    exact = sum(normalise_line(h) == normalise_line(r) for h, r in zip(hyps, refs, strict=True))
    return {
        "bleu": float(sacrebleu.corpus_bleu(hyps, [refs]).score),
        "chrf": float(sacrebleu.corpus_chrf(hyps, [refs]).score),
        "exact_match": exact / max(len(refs), 1),
        "token_accuracy": hits / max(total, 1),
    }
