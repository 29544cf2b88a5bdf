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

from tuner.models import logits as model_logits

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


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    prompts: torch.Tensor,
    n_new: int,
    banned_first: Sequence[int] = (),
    stop: Sequence[int] = (),
) -> torch.Tensor:
    """(B, P) prompts of one length -> (B, <= n_new) greedy tokens, with the KV cache for
    transformers and the recurrent state for lstm/gru (one token's work per step).
    `banned_first` are never the first token (as `min_new_tokens` keeps EOS out in
    transformers' generate): a task that asks for a line must not get an empty one.
    Generation ends early once every row has produced a token of `stop`."""
    was_training = model.training
    model.eval()
    banned = torch.tensor(list(banned_first), dtype=torch.long, device=prompts.device)
    stops = torch.tensor(list(stop), dtype=torch.long, device=prompts.device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=prompts.device)

    def finished(token: torch.Tensor) -> bool:
        nonlocal done
        if not len(stops):
            return False
        done = done | torch.isin(token, stops)
        return bool(done.all())

    def pick(scores: torch.Tensor, first: bool) -> torch.Tensor:
        if first and len(banned):
            scores = scores.float().index_fill(-1, banned, float("-inf"))
        return scores.argmax(-1)

    out = []
    if hasattr(model, "config"):
        name = cache_argument(model)
        step = model(input_ids=prompts, use_cache=True, **last_logits_only(model))
        for i in range(n_new):
            out.append(pick(step.logits[:, -1], i == 0))
            if i + 1 == n_new or finished(out[-1]):
                break
            past = getattr(step, name)
            step = model(input_ids=out[-1][:, None], use_cache=True, **{name: past})
    else:
        h, state = model.rnn(model.embed(prompts))
        for i in range(n_new):
            out.append(pick(model.head(h[:, -1]), i == 0))
            if i + 1 == n_new or finished(out[-1]):
                break
            h, state = model.rnn(model.embed(out[-1][:, None]), state)
    model.train(was_training)
    return torch.stack(out, 1)


def last_logits_only(model: nn.Module) -> dict[str, int]:
    """Ask transformers for the last position's logits only (a prompt's others are unused)."""
    params = inspect.signature(model.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


def cache_argument(model: nn.Module) -> str:
    """transformers 5 names the KV cache `cache`; 4.x named it `past_key_values`."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@torch.no_grad()
def reference_hits(
    model: nn.Module, prompts: torch.Tensor, references: Sequence[Sequence[int]]
) -> tuple[int, int]:
    """Teacher-forced next-token hits on the reference tokens after each prompt: (correct,
    total). Right padding is safe: the models are causal."""
    was_training = model.training
    model.eval()
    n_prompt = prompts.size(1)
    length = max(len(r) for r in references)
    refs = torch.zeros(len(references), length, dtype=torch.long)
    mask = torch.zeros(len(references), length, dtype=torch.bool)
    for row, ref in enumerate(references):
        refs[row, : len(ref)] = torch.tensor(list(ref), dtype=torch.long)
        mask[row, : len(ref)] = True
    refs, mask = refs.to(prompts.device), mask.to(prompts.device)
    seq = torch.cat([prompts, refs[:, :-1]], 1)  # inputs predicting every reference token
    guess = model_logits(model, seq)[:, n_prompt - 1 :].argmax(-1)  # (B, R)
    model.train(was_training)
    return int(((guess == refs) & mask).sum()), int(mask.sum())


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
