"""Rollouts read back as text: simulate from held-out starts, decode, let the LLM score it.

Every fitted model is simulated ``horizon`` steps from the state of a held-out response's
first token (``t = 0``); each simulated state ``z (k,)`` is mapped back to the LLM's
input-embedding space with the fit's ``features.inverse_transform`` and decoded to the
vocabulary row nearest to it (:func:`decode_ids`). The token sequences are compared with
the real continuation, the real continuation sent through the PCA and back (the most any
path in this state space can say), and the real tokens shuffled within the response (a
control with the right words in the wrong order). Scores per sequence:

* ``logprob``: the LLM's mean log-probability per token of the ``horizon`` tokens, teacher
  forced, given the prompt (chat template, :func:`~sde_utils.extraction.tokens.encode_prompt`)
  and the response's real first token (:func:`continuation_logprobs`);
* ``distinct_1``, ``distinct_2``: distinct n-grams over n-grams of the sequence
  (:func:`distinct_n`; 1 = no repeats);
* ``accuracy``: share of the ``horizon`` positions holding the real token.

Every source's mean gets a 95% conversation-bootstrap interval and so does its paired
difference from the real continuation (:func:`rollout_summary`; the machinery of
:func:`~sde_utils.analysis.intervals.mean_interval`). Embedding tables are ``(V, D)``,
states in PCA space ``(n, k)``, token ids int64.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from sde_utils.analysis.intervals import mean_interval
from sde_utils.checks import check_int
from sde_utils.config import torch_threads
from sde_utils.extraction.tokens import METRICS, encode_prompt, similarity
from sde_utils.models.simulate import simulate

SCORES = ("logprob", "distinct_1", "distinct_2", "accuracy")
REAL, ROUNDTRIP, SHUFFLED = "real", "real, PCA round trip", "real, shuffled"


def embedding_table(llm) -> torch.Tensor:
    """The LLM's input-embedding rows ``(V, D)`` as float64 on the CPU."""
    return llm.get_input_embeddings().weight.detach().to("cpu", torch.float64)


def decode_ids(weight, vectors, *, metric: str = "cosine", chunk: int = 1024) -> np.ndarray:
    """``(n,)`` id of the row of ``weight (V, D)`` nearest to each of ``vectors (n, D)``
    (:func:`similarity`), ``chunk`` vectors at a time so memory stays ``chunk x V``."""
    chunk = check_int("chunk", chunk, minimum=1)
    x = np.asarray(vectors, dtype=np.float64)
    out = [
        similarity(weight, x[i : i + chunk], metric).argmax(1).numpy()
        for i in range(0, len(x), chunk)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def token_ranks(
    weight, vectors, targets, *, metric: str = "cosine", word_of: np.ndarray | None = None
) -> np.ndarray:
    """``(n,)`` rank (1 = nearest) of token ``targets[i]`` among all rows for ``vectors[i]``.

    With ``word_of (V,)`` (a word label per vocabulary row, e.g. the normalised text) the
    rank is that of the target's *word*: 1 + the number of rows scoring strictly higher
    than the best row with the same label (so ``"The"`` and ``"Ġthe"`` count as one word).
    """
    scores = similarity(weight, vectors, metric)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if targets.shape[0] != scores.shape[0]:
        raise ValueError(
            f"need one target per vector, got {targets.shape[0]} for {scores.shape[0]}"
        )
    ranks = np.empty(len(targets), dtype=np.int64)
    for i, target in enumerate(targets):
        row = scores[i]
        if word_of is None:
            best = row[target]
        else:
            best = row[torch.as_tensor(np.flatnonzero(word_of == word_of[target]))].max()
        ranks[i] = int((row > best).sum()) + 1
    return ranks


def distinct_n(ids: Sequence[int], n: int) -> float:
    """Distinct n-grams / n-grams of one sequence (1.0: no n-gram repeats; NaN if the
    sequence is shorter than ``n``)."""
    n = check_int("n", n, minimum=1)
    ids = [int(i) for i in ids]
    grams = [tuple(ids[j : j + n]) for j in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def continuation_logprobs(
    llm, context_ids: Sequence[int], continuations, *, rows_per_pass: int = 8
) -> np.ndarray:
    """``(S, H)`` log-probabilities of each row of ``continuations (S, H)`` token by token,
    teacher forced, after ``context_ids`` (shared): the context runs once and its KV cache
    is copied for ``rows_per_pass`` rows at a time (memory: that many caches of the
    context). float64 from the LLM's float32 log-softmax."""
    cont = torch.as_tensor(np.asarray(continuations, dtype=np.int64))
    if cont.ndim != 2 or cont.shape[1] < 1 or len(context_ids) < 1:
        raise ValueError(
            f"need a non-empty context and continuations (S, H >= 1), got {len(context_ids)} "
            f"context tokens and shape {tuple(cont.shape)}"
        )
    rows_per_pass = check_int("rows_per_pass", rows_per_pass, minimum=1)
    device = llm.device
    cont = cont.to(device)
    with torch.no_grad():
        ctx = torch.as_tensor([list(context_ids)], dtype=torch.long, device=device)
        first = llm(input_ids=ctx, use_cache=True, logits_to_keep=1)  # only the last logits
        logp0 = torch.log_softmax(first.logits[0, -1].float(), -1)
        head = logp0[cont[:, 0]][:, None]
        if cont.shape[1] == 1:
            return head.double().cpu().numpy()
        rest = []
        for i in range(0, cont.shape[0], rows_per_pass):
            rows = cont[i : i + rows_per_pass]
            cache = copy.deepcopy(first.past_key_values)
            cache.batch_repeat_interleave(rows.shape[0])
            out = llm(input_ids=rows[:, :-1], past_key_values=cache, use_cache=True)
            logp = torch.log_softmax(out.logits.float(), -1)
            rest.append(logp.gather(-1, rows[:, 1:, None])[..., 0])
    return torch.cat([head, torch.cat(rest)], 1).double().cpu().numpy()


def heldout_responses(store, features, *, n: int, horizon: int, seed: int) -> dict:
    """Up to ``n`` test responses of ``store`` longer than ``horizon`` tokens, drawn with
    ``seed``, in store order: ``trajectories`` (each ``(L_i, k)`` in ``features``' space),
    ``token_ids``, ``prompts`` and ``groups`` (conversation ids), lists of equal length."""
    n, horizon = check_int("n", n, minimum=1), check_int("horizon", horizon, minimum=1)
    test = store.split("test")
    seqs = test.sequences
    long = np.flatnonzero(seqs["length"].to_numpy() > horizon)
    if not len(long):
        raise ValueError(f"no test response is longer than horizon={horizon} tokens")
    chosen = sorted(np.random.default_rng(seed).permutation(long)[:n])
    return {
        "trajectories": [
            np.asarray(features.transform(np.asarray(test.trajectory(int(i)), np.float64)))
            for i in chosen
        ],
        "token_ids": [np.asarray(seqs.iloc[int(i)]["token_ids"], np.int64) for i in chosen],
        "prompts": [str(seqs.iloc[int(i)]["prompt"]) for i in chosen],
        "groups": seqs["conv_id"].to_numpy()[np.asarray(chosen, dtype=np.int64)],
    }


def rollout_sources(
    models: Mapping,
    features,
    weight,
    trajectories: Sequence[np.ndarray],
    token_ids: Sequence[Sequence[int]],
    *,
    horizon: int,
    n_paths: int = 1,
    dt: float = 1.0,
    seed: int = 0,
    metric: str = "cosine",
) -> dict[str, np.ndarray]:
    """Token ids ``(n, P, horizon)`` per source, for ``n`` held-out responses.

    ``trajectories[i] (L_i, k)``: response ``i`` in PCA space, ``L_i > horizon``;
    ``token_ids[i]``: its tokens. Sources: :data:`REAL` (tokens ``1..horizon``, ``P = 1``),
    :data:`ROUNDTRIP` (the real states ``1..horizon`` through ``features`` and back, decoded),
    :data:`SHUFFLED` (the real tokens permuted within the response, ``seed``) and every model
    of ``models`` (``n_paths`` Euler-Maruyama paths from state 0 at ``t = 0``, ``seed``,
    decoded with ``metric``).
    """
    horizon = check_int("horizon", horizon, minimum=1)
    short = [i for i, x in enumerate(trajectories) if len(x) <= horizon]
    if short or not len(trajectories):
        raise ValueError(f"need >= 1 response, each longer than horizon={horizon}; short: {short}")

    def decode(z: np.ndarray) -> np.ndarray:  # (..., k) -> (...) ids
        flat = np.asarray(features.inverse_transform(z.reshape(-1, z.shape[-1]).astype(np.float64)))
        return decode_ids(weight, flat, metric=metric).reshape(z.shape[:-1])

    real = np.stack([np.asarray(t[1 : horizon + 1], dtype=np.int64) for t in token_ids])
    future = np.stack([np.asarray(x[1 : horizon + 1], dtype=np.float64) for x in trajectories])
    rng = np.random.default_rng(seed)
    out = {
        REAL: real[:, None],
        ROUNDTRIP: decode(future)[:, None],
        SHUFFLED: np.stack([rng.permutation(r) for r in real])[:, None],
    }
    starts = torch.as_tensor(np.stack([np.asarray(x[0], dtype=np.float64) for x in trajectories]))
    for name, model in models.items():
        paths = simulate(model, starts, n_steps=horizon, dt=dt, n_paths=n_paths, seed=seed)
        z = paths[1:].double().numpy()  # (H, n, P, k)
        out[name] = decode(z).transpose(1, 2, 0)  # (n, P, H)
    return out


def score_rollouts(
    llm, tokenizer, prompts: Sequence[str], first_ids: Sequence[int], groups, sources: Mapping
) -> pd.DataFrame:
    """One row per (source, response, path): ``source, seq, path, group, logprob,
    distinct_1, distinct_2, accuracy`` (module docstring). ``prompts[i]``, ``first_ids[i]``
    (the real first token) and ``groups[i]`` (conversation) belong to response ``i``;
    ``sources``: :func:`rollout_sources`' output (must hold :data:`REAL`)."""
    real = sources[REAL][:, 0]
    rows = []
    names = [(name, p) for name, ids in sources.items() for p in range(ids.shape[1])]
    for i, prompt in enumerate(prompts):
        cont = np.stack([sources[name][i, p] for name, p in names])
        context = encode_prompt(tokenizer, prompt) + [int(first_ids[i])]
        with torch_threads(1):  # the project's LLM thread policy (sde_utils.config)
            logp = continuation_logprobs(llm, context, cont).mean(1)
        for (name, p), seq, lp in zip(names, cont, logp, strict=True):
            rows.append(
                {
                    "source": name,
                    "seq": i,
                    "path": p,
                    "group": groups[i],
                    "logprob": float(lp),
                    "distinct_1": distinct_n(seq, 1),
                    "distinct_2": distinct_n(seq, 2),
                    "accuracy": float((seq == real[i]).mean()),
                }
            )
    return pd.DataFrame(rows)


def rollout_summary(
    table: pd.DataFrame, *, reference: str = REAL, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per source and score: the mean over responses (paths averaged within a response
    first) with a 95% conversation-bootstrap interval, and the paired difference ``source
    minus reference`` per response with its interval. Columns: ``source, score, estimate,
    low, high, diff, diff_low, diff_high, n, n_groups``; sources in ``table`` order."""
    per_seq = table.groupby(["source", "seq"], sort=False)[list(SCORES)].mean()
    groups = table.drop_duplicates("seq").set_index("seq")["group"]
    ref = per_seq.loc[reference]
    rows = []
    for source in table["source"].unique():
        own = per_seq.loc[source]
        g = groups.loc[own.index].to_numpy()
        for score in SCORES:
            kw = dict(n_boot=n_boot, seed=seed)
            iv = mean_interval(own[score].to_numpy(), g, **kw)
            diff = mean_interval((own[score] - ref[score].loc[own.index]).to_numpy(), g, **kw)
            rows.append(
                {
                    "source": source,
                    "score": score,
                    "estimate": iv["estimate"],
                    "low": iv["low"],
                    "high": iv["high"],
                    "diff": diff["estimate"],
                    "diff_low": diff["low"],
                    "diff_high": diff["high"],
                    "n": int(len(own)),
                    "n_groups": int(iv["n_groups"]),
                }
            )
    return pd.DataFrame(rows)


def summary_table(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``summary`` as ``"estimate [low, high]"`` strings: one row per source, one column per
    score (for the notebook)."""

    def cell(r) -> str:
        return f"{r.estimate:.{digits}f} [{r.low:.{digits}f}, {r.high:.{digits}f}]"

    wide = summary.assign(text=summary.apply(cell, axis=1))
    return wide.pivot(index="source", columns="score", values="text").loc[
        list(dict.fromkeys(summary["source"])), list(SCORES)
    ]


def example_texts(sources: Mapping, tokenizer, index: int = 0) -> pd.Series:
    """Response ``index`` as text under every source (path 0), for the notebook."""
    return pd.Series(
        {name: tokenizer.decode(ids[index, 0].tolist()) for name, ids in sources.items()}
    )


def metric_check(
    features, weight, held: Mapping, *, horizon: int, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Why one metric decodes: per metric of :data:`METRICS`, the share of the real states
    ``1..horizon`` of ``held`` (:func:`heldout_responses`) whose PCA round trip decodes to
    their own token, with a 95% conversation-bootstrap interval (the metric that keeps more
    of the real tokens is the one to decode rollouts with)."""
    z = np.concatenate([x[1 : horizon + 1] for x in held["trajectories"]])
    real = np.concatenate([t[1 : horizon + 1] for t in held["token_ids"]])
    groups = np.concatenate(
        [
            [g] * len(x[1 : horizon + 1])
            for g, x in zip(held["groups"], held["trajectories"], strict=True)
        ]
    )
    back = np.asarray(features.inverse_transform(z.astype(np.float64)))
    out = {}
    for metric in METRICS:
        hit = (decode_ids(weight, back, metric=metric) == real).astype(np.float64)
        iv = mean_interval(hit, groups, n_boot=n_boot, seed=seed)
        out[metric] = {k: iv[k] for k in ("estimate", "low", "high", "n", "n_groups")}
    return out


def rollout_record(summary: pd.DataFrame, models: Sequence[str], *, horizon: int) -> dict:
    """The numbers (every estimate with its interval) and a finding: do any model's
    rollouts read as better text than shuffled real tokens (LLM log-prob, interval of the
    difference above 0), and how far are they from the real text?"""
    s = summary.set_index(["source", "score"])

    def iv(source, score, diff=False):
        r = s.loc[(source, score)]
        keys = ("diff", "diff_low", "diff_high") if diff else ("estimate", "low", "high")
        return {"estimate": float(r[keys[0]]), "low": float(r[keys[1]]), "high": float(r[keys[2]])}

    numbers = {
        "horizon": int(horizon),
        "n_responses": int(s["n"].max()),
        "n_groups": int(s["n_groups"].max()),
        "scores": {
            src: {sc: iv(src, sc) | {"minus_real": iv(src, sc, True)} for sc in SCORES}
            for src in dict.fromkeys(summary["source"])
        },
    }
    lp = numbers["scores"]
    shuffled = lp[SHUFFLED]["logprob"]
    above = [m for m in models if lp[m]["logprob"]["low"] > shuffled["high"]]
    best = max(models, key=lambda m: lp[m]["logprob"]["estimate"])

    def fmt(x):
        return f"{x['estimate']:.2f} [{x['low']:.2f}, {x['high']:.2f}]"

    finding = (
        f"Decoded {horizon}-step rollouts from {numbers['n_responses']} held-out starts "
        f"({numbers['n_groups']} conversations): the LLM gives the real continuation "
        f"{fmt(lp[REAL]['logprob'])} nats per token, shuffled real tokens "
        f"{fmt(shuffled)}, the PCA round trip of the real states {fmt(lp[ROUNDTRIP]['logprob'])}; "
        f"the best model, {best}, {fmt(lp[best]['logprob'])}, with next-token accuracy "
        f"{fmt(lp[best]['accuracy'])} (round trip {fmt(lp[ROUNDTRIP]['accuracy'])}). "
        + (
            f"Rollouts of {', '.join(above)} read as more likely text than shuffled real tokens "
            "(intervals apart)."
            if above
            else "No model's rollouts read as more likely text than the real tokens shuffled: "
            "read back as words, the simulated paths are not text."
        )
    )
    numbers["models_above_shuffled"] = above
    return {"finding": finding, "numbers": numbers}


__all__ = [
    "METRICS",
    "REAL",
    "ROUNDTRIP",
    "SCORES",
    "SHUFFLED",
    "continuation_logprobs",
    "decode_ids",
    "distinct_n",
    "embedding_table",
    "example_texts",
    "heldout_responses",
    "metric_check",
    "rollout_record",
    "rollout_sources",
    "rollout_summary",
    "score_rollouts",
    "similarity",
    "summary_table",
    "token_ranks",
]
