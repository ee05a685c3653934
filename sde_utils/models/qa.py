"""Question -> answer transitions (paper App. B, step 3) and a model trained with them.

The paper trains its SDE "by mapping the question embeddings to the answer embeddings"
and then steps from ``Q_init``, the mean of the question's word embeddings. Made precise:
for every response of a store, one extra transition ``Q_init -> A_1``: ``x0`` the mean of
the input-embedding rows of the prompt's word tokens (the prompt tokenised on its own, no
chat template; tokens of only spaces/punctuation dropped, as the paper averages words),
``x1`` the response's first state (for an ``"input"``-kind store: its first token's
embedding row), at ``t0 = -dt``: one token before the response's first, so that ``A_1``
lands at ``t = 0`` where the data put it and every later step keeps the data's times.

:func:`fine_tune_qa` adds those transitions to a split's own (repeated so they are a
``qa_share`` of the training rows) and trains a copy of a fitted model on them through
:func:`sde_utils.models.train.fit`; the shuffled control pairs each question with another
response's first state (:func:`qa_transitions` with ``shuffle_seed``), so it learns where
answers start but not which answer follows which question. States are in the fit's PCA
space ``(n, k)``; embedding tables ``(V, D)``.
"""

from __future__ import annotations

import copy
import math
import string

import numpy as np
import torch

from sde_utils.checks import check_dt, check_fraction, check_seed
from sde_utils.extraction.tokens import display_token
from sde_utils.models.base import SDEModel
from sde_utils.models.train import History, fit

_PUNCTUATION = set(string.punctuation) | {"\u2019", "\u2018", "\u201c", "\u201d", "\u2026"}


def is_word(display: str) -> bool:
    """True when a displayed token holds a letter or digit (not only spaces/punctuation)."""
    text = display.strip()
    return bool(text) and any(ch not in _PUNCTUATION for ch in text)


def word_token_ids(tokenizer, text: str, *, words_only: bool = True) -> list[int]:
    """Ids of ``text`` tokenised on its own (no special tokens); with ``words_only`` the
    tokens that are only spaces/punctuation are dropped. ValueError when none is left."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    toks = tokenizer.convert_ids_to_tokens(ids)
    keep = [
        i for i, t in zip(ids, toks, strict=True) if not words_only or is_word(display_token(t))
    ]
    if not keep:
        raise ValueError(f"{text[:80]!r} has no word token to embed")
    return keep


def question_state(weight, tokenizer, question: str, *, words_only: bool = True) -> np.ndarray:
    """``Q_init (D,)``: the mean of the input-embedding rows ``weight (V, D)`` of the
    question's (word) tokens, float64."""
    rows = np.asarray(weight, dtype=np.float64)[
        word_token_ids(tokenizer, question, words_only=words_only)
    ]
    return rows.mean(axis=0)


def qa_transitions(
    store, split: str, weight, tokenizer, features, *, dt: float, shuffle_seed: int | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], np.ndarray]:
    """One ``Q_init -> A_1`` transition per response of ``split`` (module docstring):
    ``(z0 (n, k), t0 (n,) = -dt, z1 (n, k))`` float64 tensors in ``features``' space, and
    the row of each in the split's ``sequences`` ``(n,)`` int64 (its ``conv_id``,
    ``token_ids``). Prompts without a word token are skipped.

    ``shuffle_seed``: pair question ``i`` with the first state of another response (a
    random cyclic derangement, so no question keeps its own answer; needs ``n >= 2``).
    """
    dt = check_dt(dt)
    view = store.split(split)
    seqs = view.sequences
    q, a, keep = [], [], []
    for i, prompt in enumerate(seqs["prompt"]):
        try:
            q.append(question_state(weight, tokenizer, str(prompt)))
        except ValueError:
            continue
        a.append(np.asarray(view.trajectory(i)[0], dtype=np.float64))
        keep.append(i)
    if not keep:
        raise ValueError(f"split {split!r} has no prompt with a word token")
    a = np.stack(a)
    if shuffle_seed is not None:
        if len(a) < 2:
            raise ValueError("a shuffled pairing needs >= 2 responses")
        order = np.random.default_rng(check_seed(shuffle_seed)).permutation(len(a))
        shuffled = np.empty_like(a)
        shuffled[order] = a[np.roll(order, 1)]  # question order[j] gets answer order[j - 1]
        a = shuffled
    z0 = np.asarray(features.transform(np.stack(q)), dtype=np.float64)
    z1 = np.asarray(features.transform(a), dtype=np.float64)
    t0 = np.full(len(z0), -dt)
    return tuple(torch.as_tensor(v) for v in (z0, t0, z1)), np.asarray(keep, dtype=np.int64)


def split_transitions(store, split: str, features, *, dt: float, max_len=None) -> tuple:
    """A split's own one-step transitions ``(z0, t0, z1)`` in ``features``' space, float64
    tensors (what the fit trained on)."""
    x0, t0, x1 = store.transitions(split, dt=dt, max_len=max_len)
    z0, z1 = features.transform_transitions(np.asarray(x0, np.float64), np.asarray(x1, np.float64))
    return tuple(torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (z0, t0, z1))


def augment(transitions: tuple, qa: tuple, share: float) -> tuple:
    """``transitions`` plus the ``qa`` rows repeated ``ceil(share N / ((1 - share) n))``
    times (``N``, ``n`` their row counts), so the question rows are about ``share`` of the
    result (at least once each). Tensors in ``transitions``' dtype."""
    share = check_fraction("share", share)
    n_base, n_qa = transitions[0].shape[0], qa[0].shape[0]
    repeat = max(1, math.ceil(share * n_base / ((1 - share) * n_qa)))
    dtype = transitions[0].dtype
    return tuple(
        torch.cat([b, q.to(dtype).repeat((repeat,) + (1,) * (q.ndim - 1))])
        for b, q in zip(transitions, qa, strict=True)
    )


def fine_tune_qa(
    base: SDEModel,
    train: tuple,
    val: tuple,
    qa_train: tuple,
    qa_val: tuple,
    *,
    dt: float,
    share: float = 0.1,
    seed: int = 0,
    **fit_kwargs,
) -> tuple[SDEModel, History]:
    """A copy of ``base`` trained on ``train`` plus ``qa_train`` (:func:`augment` with
    ``share``), early-stopped on ``val`` plus ``qa_val`` (same share), through
    :func:`~sde_utils.models.train.fit` (``fit_kwargs``: its ``lam, epochs, batch_size, lr,
    weight_decay, patience, progress``). ``base`` is left unchanged."""
    model = copy.deepcopy(base)
    dtype = next(iter(model.parameters()), torch.zeros((), dtype=torch.float32)).dtype
    tr = tuple(v.to(dtype) for v in augment(train, qa_train, share))
    va = tuple(v.to(dtype) for v in augment(val, qa_val, share))
    history = fit(model, tr, va, dt=dt, seed=seed, **fit_kwargs)
    model.eval()
    return model, history


def subsample(transitions: tuple, max_rows: int | None, seed: int) -> tuple:
    """At most ``max_rows`` rows of ``transitions`` (a ``seed`` draw without replacement,
    kept in order); all of them when ``max_rows`` is None or not smaller."""
    n = transitions[0].shape[0]
    if max_rows is None or n <= max_rows:
        return transitions
    keep = np.sort(np.random.default_rng(check_seed(seed)).choice(n, size=max_rows, replace=False))
    index = torch.as_tensor(keep)
    return tuple(v[index] for v in transitions)


def fit_qa_models(
    fitted,
    store,
    weight,
    tokenizer,
    *,
    share: float,
    epochs: int,
    seed: int,
    shuffle_seed: int = 0,
    max_rows: int | None = 8192,
) -> tuple[dict[str, SDEModel], dict[str, History]]:
    """The App. B models of a fit (:class:`~sde_utils.models.fits.Fit` ``fitted`` on
    ``store``): its neural SDE fine-tuned ``epochs`` epochs on its own train/val transitions
    plus the question -> answer ones (:func:`fine_tune_qa` with ``share``; ``lam``,
    ``batch_size``, ``lr``, ``weight_decay``, ``patience``, ``dt``, ``max_len`` from the
    fit's parameters), as ``"Q→A"``, and the same with shuffled pairs (``shuffle_seed``) as
    ``"Q→A, shuffled pairs"``. The fit's own transitions are a ``seed`` subsample of at
    most ``max_rows`` per split (:func:`subsample`): the fine-tune starts from the fitted
    weights, so they only keep the response dynamics in place, and a few thousand do that
    at a fraction of the cost. Returns the models and their training histories."""
    p = fitted.params
    dt, max_len, fmap = float(p["dt"]), p.get("max_len"), fitted.features
    own = {
        s: subsample(split_transitions(store, s, fmap, dt=dt, max_len=max_len), max_rows, seed)
        for s in ("train", "val")
    }
    kw = {k: p[k] for k in ("lam", "batch_size", "lr", "weight_decay", "patience")}
    models, histories = {}, {}
    for name, shuffle in (("Q→A", None), ("Q→A, shuffled pairs", shuffle_seed)):
        pairs = {
            s: qa_transitions(store, s, weight, tokenizer, fmap, dt=dt, shuffle_seed=shuffle)[0]
            for s in ("train", "val")
        }
        models[name], histories[name] = fine_tune_qa(
            fitted.sde,
            own["train"],
            own["val"],
            pairs["train"],
            pairs["val"],
            dt=dt,
            share=share,
            seed=seed,
            epochs=epochs,
            progress=False,
            **kw,
        )
    return models, histories


__all__ = [
    "augment",
    "fine_tune_qa",
    "fit_qa_models",
    "is_word",
    "qa_transitions",
    "question_state",
    "split_transitions",
    "subsample",
    "word_token_ids",
]
