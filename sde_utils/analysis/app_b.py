"""Paper App. B, the "capital of France" example (figure 7): embed the question, average it
into ``Q_init``, step the SDE from there and decode every state to its nearest tokens.

Model space is the LLM's input-embedding space ``(D,)``, state space the fit's PCA space
``(k,)``. :func:`answer_process` runs the example, :func:`answer_overlap` scores it,
:func:`answer_table` and :func:`figure7_record` are what notebook 07 shows and records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from sde_utils.analysis.intervals import mean_interval
from sde_utils.analysis.paper_figures import figure_record
from sde_utils.analysis.rollout_text import embedding_table, token_ranks
from sde_utils.extraction.tokens import display_token, nearest_tokens
from sde_utils.models.base import SDEModel
from sde_utils.models.qa import is_word, qa_transitions
from sde_utils.models.simulate import drift_path, simulate

# the held-out table's two guesses that ignore the question (heldout_app_b)
FIRST_CENTROID = "first-answer centroid"
RESPONSE_CENTROID = "response centroid"


def normalise_token(display: str) -> str:
    """A displayed token as a word to compare: stripped, lower-cased."""
    return display.strip().lower()


@dataclass
class AnswerProcess:
    """The App. B example run through a fit (see :func:`answer_process`).

    Model space is the LLM's input-embedding space ``(D,)``, state space the fit's PCA
    space ``(k,)``. ``drift``: ``(n_steps + 1, k)``, row 0 is ``Q_init``; ``samples``:
    ``(n_steps + 1, n_samples, k)``. ``decoded_drift[s]``: the ``top_k`` nearest vocabulary
    tokens (raw BPE, cosine score) of ``inverse_transform(drift[s])``; ``decoded_samples[p][s]``
    likewise for sample ``p``; ``decoded_roundtrip[i]``: for answer token ``i``, the nearest
    tokens of its own embedding sent through the PCA and back (what the state space can
    still tell apart at best). ``rank_drift[s-1]`` (``s = 1..min(n_steps, answer tokens)``):
    the rank (1 = nearest, cosine) of the expected word ``A_s`` for the drift path's step
    ``s`` (:func:`~sde_utils.analysis.rollout_text.token_ranks` over words: the best row of
    any token with the same normalised text); ``rank_samples (n_samples, steps)`` the same
    per sampled path; ``rank_roundtrip`` for each answer token's own round trip. ``t0``: the
    time of ``Q_init``.
    """

    question: str
    answer: str
    question_tokens: list[str]
    answer_tokens: list[str]
    z_question: np.ndarray
    z_init: np.ndarray
    z_answer: np.ndarray
    drift: np.ndarray
    samples: np.ndarray
    decoded_drift: list[list[tuple[str, float]]]
    decoded_samples: list[list[list[tuple[str, float]]]]
    decoded_roundtrip: list[list[tuple[str, float]]]
    top_k: int
    dt: float
    seed: int
    notes: list[str] = field(default_factory=list)
    t0: float = 0.0
    rank_drift: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rank_samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    rank_roundtrip: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def answer_process(
    llm,
    tokenizer,
    features,
    sde: SDEModel,
    question: str = "What is the capital of France?",
    answer: str = "The capital of France is Paris.",
    *,
    n_steps: int = 6,
    n_samples: int = 3,
    top_k: int = 5,
    dt: float = 1.0,
    seed: int = 0,
    words_only: bool = True,
    t0: float = 0.0,
    word_of: np.ndarray | None = None,
) -> AnswerProcess:
    """Paper App. B: ``Q_init`` = mean of the question's token embeddings, six SDE steps.

    The question and the answer are tokenised on their own (no chat template, no special
    tokens) and embedded with the LLM's input-embedding rows (the store's ``"input"`` kind,
    which the fit's ``features`` must have been fitted on). With ``words_only`` tokens that
    are only punctuation are dropped, as the paper averages the six words. ``Q_init`` is
    projected with ``features``; from it the drift path and ``n_samples`` paths of
    ``n_steps`` steps (``simulate`` with ``seed``) start at ``t = 0``, the time of a
    response's first token (the paper's ``t_1``); every state is mapped back with
    ``features.inverse_transform`` and decoded to its ``top_k`` nearest tokens (cosine).
    ``t0``: the time of ``Q_init`` (``-dt`` for a model trained on question -> answer
    transitions, :mod:`sde_utils.models.qa`: ``A_1`` then lands at ``t = 0``).
    ``word_of``: :func:`vocabulary_words` of the tokenizer (computed when None).
    """
    weight = embedding_table(llm).numpy()
    if features.input_dim != weight.shape[1]:
        raise ValueError(
            f"the fit's feature map takes {features.input_dim}-dim states but the LLM's "
            f"embeddings are {weight.shape[1]}-dim: fit notebook 03 on an 'input'-kind store"
        )

    def tokens_of(text: str) -> tuple[list[str], np.ndarray, list[int]]:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        toks = tokenizer.convert_ids_to_tokens(ids)
        keep = [i for i, t in enumerate(toks) if is_word(display_token(t)) or not words_only]
        if not keep:
            raise ValueError(f"{text!r} has no word token to embed")
        return [toks[i] for i in keep], weight[[ids[i] for i in keep]], [ids[i] for i in keep]

    q_tokens, q_states, _ = tokens_of(question)
    a_tokens, a_states, a_ids = tokens_of(answer)
    z_question = np.asarray(features.transform(q_states), dtype=np.float64)
    q_init = q_states.mean(axis=0)
    z_init = np.asarray(features.transform(q_init[None]), dtype=np.float64)[0]
    z_answer = np.asarray(features.transform(a_states), dtype=np.float64)
    start = torch.as_tensor(z_init)
    drift = drift_path(sde, start, n_steps, dt=dt, t0=t0).double().numpy()
    samples = (
        simulate(sde, start, n_steps=n_steps, dt=dt, t0=t0, n_paths=n_samples, seed=seed)
        .double()
        .numpy()
    )

    if word_of is None:
        word_of = vocabulary_words(tokenizer, weight.shape[0])
    steps = min(n_steps, len(a_ids))
    k = z_init.shape[-1]
    # every state decoded in one pass: drift (T), samples (T * P, path-major), answer (n_a)
    T = n_steps + 1
    states = np.concatenate([drift, samples.transpose(1, 0, 2).reshape(-1, k), z_answer])
    back = np.asarray(features.inverse_transform(np.asarray(states, dtype=np.float64)))
    decoded = nearest_tokens(llm, tokenizer, back, k=top_k)
    picks = np.concatenate(
        [np.arange(1, steps + 1) + T * p for p in range(n_samples + 1)]
        + [T * (n_samples + 1) + np.arange(len(a_ids))]
    )
    targets = list(a_ids[:steps]) * (n_samples + 1) + list(a_ids)
    ranks = token_ranks(weight, back[picks], targets, word_of=word_of)
    return AnswerProcess(
        question=question,
        answer=answer,
        question_tokens=q_tokens,
        answer_tokens=a_tokens,
        z_question=z_question,
        z_init=z_init,
        z_answer=z_answer,
        drift=drift,
        samples=samples,
        decoded_drift=decoded[:T],
        decoded_samples=[decoded[T * (p + 1) : T * (p + 2)] for p in range(n_samples)],
        decoded_roundtrip=decoded[T * (n_samples + 1) :],
        top_k=int(top_k),
        dt=float(dt),
        seed=int(seed),
        t0=float(t0),
        rank_drift=ranks[:steps],
        rank_samples=ranks[steps : steps * (n_samples + 1)].reshape(n_samples, steps),
        rank_roundtrip=ranks[steps * (n_samples + 1) :],
    )


def vocabulary_words(tokenizer, vocab_size: int) -> np.ndarray:
    """``(vocab_size,)`` int label per token id: equal for tokens that display as the same
    word after :func:`normalise_token` (``"The"``, ``"Ġthe"``)."""
    toks = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    return pd.factorize(np.array([normalise_token(display_token(t)) for t in toks]))[0]


def answer_overlap(process: AnswerProcess) -> dict:
    """How well the decoded steps match the answer, as numbers.

    Words are compared after :func:`display_token`, stripping and lower-casing. Returns
    ``answer_words`` (the answer's distinct words), ``step_hits`` (steps ``s = 1..n`` whose
    top-k holds answer token ``s``, the paper's ``A_s``), ``drift_overlap`` (share of the
    answer's words found anywhere in the drift path's top-k), ``sample_overlap`` (the same,
    averaged over samples), ``roundtrip_hits`` (answer tokens whose PCA round trip keeps
    them in their own top-k: the ceiling any path in this state space could reach),
    ``question_word_share`` (share of the drift path's decoded words that are question
    words), the cosine ``cos_to_answer_drift[s-1]`` between step ``s`` and ``A_s`` in PCA
    space and ``cos_to_answer_init[s-1]`` between ``Q_init`` and ``A_s``.
    """

    def words(decoded: list[tuple[str, float]]) -> set[str]:
        return {normalise_token(display_token(t)) for t, _ in decoded}

    answer = [normalise_token(display_token(t)) for t in process.answer_tokens]
    question = {normalise_token(display_token(t)) for t in process.question_tokens}
    answer_set = set(answer)
    n_steps = process.drift.shape[0] - 1
    steps = range(1, min(n_steps, len(answer)) + 1)
    step_hits = [s for s in steps if answer[s - 1] in words(process.decoded_drift[s])]
    drift_words = set().union(*(words(d) for d in process.decoded_drift[1:]))
    sample_overlaps = [
        len(answer_set & set().union(*(words(d) for d in sample[1:]))) / len(answer_set)
        for sample in process.decoded_samples
    ]
    roundtrip = [a in words(d) for a, d in zip(answer, process.decoded_roundtrip, strict=True)]

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")

    return {
        "answer_words": sorted(answer_set),
        "n_steps": n_steps,
        "top_k": process.top_k,
        "step_hits": step_hits,
        "n_step_hits": len(step_hits),
        "drift_overlap": len(answer_set & drift_words) / len(answer_set),
        "drift_words_matched": sorted(answer_set & drift_words),
        "sample_overlap": float(np.mean(sample_overlaps)) if sample_overlaps else float("nan"),
        "roundtrip_hits": int(sum(roundtrip)),
        "n_answer_tokens": len(answer),
        "question_word_share": len(drift_words & question) / max(len(drift_words), 1),
        "cos_to_answer_drift": [cos(process.drift[s], process.z_answer[s - 1]) for s in steps],
        "cos_to_answer_init": [cos(process.z_init, process.z_answer[s - 1]) for s in steps],
    }


def answer_table(process: AnswerProcess, n_steps: int) -> pd.DataFrame:
    """Step ``A_s`` (``s = 1 .. min(n_steps, answer tokens)``) against the answer token it
    should produce: ``expected`` and the drift path's decoded tokens, ``" | "``-joined."""
    return pd.DataFrame(
        {
            "expected": [display_token(t) for t in process.answer_tokens[:n_steps]],
            "drift path": [
                " | ".join(display_token(t) for t, _ in d)
                for d in process.decoded_drift[1 : len(process.answer_tokens) + 1]
            ],
        },
        index=[f"A_{s}" for s in range(1, min(n_steps, len(process.answer_tokens)) + 1)],
    )


def rank_table(processes: Mapping[str, AnswerProcess]) -> pd.DataFrame:
    """Step ``A_s`` against the expected word, per model: the drift path's nearest token,
    the expected word's rank there, and its rank over the sampled paths as ``"median
    [min, max]"``; the last column the rank of the answer's own PCA round trip."""
    first = next(iter(processes.values()))
    steps = len(first.rank_drift)
    table = pd.DataFrame(
        {"expected": [display_token(t) for t in first.answer_tokens[:steps]]},
        index=[f"A_{s}" for s in range(1, steps + 1)],
    )
    for name, proc in processes.items():
        table[f"{name}: nearest"] = [
            display_token(d[0][0]) for d in proc.decoded_drift[1 : steps + 1]
        ]
        table[f"{name}: rank"] = proc.rank_drift
        r = proc.rank_samples
        table[f"{name}: sampled rank"] = [
            f"{int(np.median(r[:, j]))} [{r[:, j].min()}, {r[:, j].max()}]" for j in range(steps)
        ]
    table["round trip rank"] = first.rank_roundtrip[:steps]
    return table


def heldout_first_answer(
    models: Mapping[str, SDEModel],
    transitions: tuple,
    groups,
    target_ids,
    features,
    weight,
    word_of: np.ndarray,
    *,
    dt: float,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str | None = None,
    fixed: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """App. B on every held-out question: one noise-free step ``Q_init + mu dt`` from each
    test prompt's ``Q_init`` (``transitions``: :func:`~sde_utils.models.qa.qa_transitions`
    of the test split, unshuffled), decoded against the response's real first token
    ``target_ids (n,)``: per model the mean ``log10`` word rank (0 = nearest) and the share
    ranked in the top 10, each with a 95% conversation-bootstrap interval (``groups (n,)``),
    and, with ``reference``, the paired difference ``model minus reference``. Also the
    PCA round trip of the real first state (``round trip``: the best any step could do),
    and each state of ``fixed`` (``{name: (k,)}``, e.g. a centroid) as a guess that ignores
    the question. Columns: ``model, score, estimate, low, high, diff, diff_low,
    diff_high``."""
    z0, t0, z1 = transitions
    steps = {
        name: drift_path(m, z0, 1, dt=dt, t0=float(t0[0]))[1].double().numpy()
        for name, m in models.items()
    } | {"round trip": np.asarray(z1, dtype=np.float64)}
    for name, state in (fixed or {}).items():
        steps[name] = np.broadcast_to(np.asarray(state, dtype=np.float64), np.shape(z1))
    scores = {}
    for name, z in steps.items():
        back = np.asarray(features.inverse_transform(np.asarray(z, dtype=np.float64)))
        r = token_ranks(weight, back, target_ids, word_of=word_of)
        scores[name] = {"log10_rank": np.log10(r), "top10": (r <= 10).astype(np.float64)}
    rows = []
    for name, own in scores.items():
        for score, y in own.items():
            iv = mean_interval(y, groups, n_boot=n_boot, seed=seed)
            row = {"model": name, "score": score} | {k: iv[k] for k in ("estimate", "low", "high")}
            if reference is not None:
                d = mean_interval(y - scores[reference][score], groups, n_boot=n_boot, seed=seed)
                row |= {"diff": d["estimate"], "diff_low": d["low"], "diff_high": d["high"]}
            rows.append(row)
    return pd.DataFrame(rows)


def heldout_app_b(
    models: Mapping[str, SDEModel],
    store,
    features,
    weight,
    tokenizer,
    word_of: np.ndarray,
    *,
    dt: float,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str | None = None,
) -> pd.DataFrame:
    """:func:`heldout_first_answer` on the test split of ``store``: every test prompt's
    ``Q_init`` (:func:`~sde_utils.models.qa.qa_transitions`, at ``t = -dt``) against its
    response's real first token, conversations as the bootstrap's groups. Two guesses that
    ignore the question stand beside the models: the centroid of the training responses'
    first states (``first-answer centroid``, what a squared-error fit of ``Q_init -> A_1``
    learns when the question carries nothing) and the centroid of every training response
    state (``response centroid``)."""
    transitions, rows = qa_transitions(store, "test", weight, tokenizer, features, dt=dt)
    (_, _, first), _ = qa_transitions(store, "train", weight, tokenizer, features, dt=dt)
    train_states = store.split("train").states()
    fixed = {
        FIRST_CENTROID: np.asarray(first, dtype=np.float64).mean(axis=0),
        RESPONSE_CENTROID: np.asarray(features.transform(train_states)).mean(axis=0),
    }
    seqs = store.split("test").sequences
    targets = np.array([int(seqs.iloc[int(i)]["token_ids"][0]) for i in rows])
    groups = seqs["conv_id"].to_numpy()[rows]
    return heldout_first_answer(
        models,
        transitions,
        groups,
        targets,
        features,
        weight,
        word_of,
        dt=dt,
        n_boot=n_boot,
        seed=seed,
        reference=reference,
        fixed=fixed,
    )


def figure7_record(
    process: AnswerProcess | None,
    controls: Mapping[str, AnswerProcess] | None = None,
    heldout: pd.DataFrame | None = None,
) -> dict:
    """Notebook 07's record of figure 7 (:func:`~sde_utils.analysis.paper_figures.figure_record`):
    the :func:`answer_overlap` numbers plus ``decoded_q_init`` and the expected word's ranks
    (``rank_drift``, ``rank_samples`` median/min/max per step, ``rank_roundtrip``) of
    ``process``, the same ranks of each ``controls`` model, and ``heldout``
    (:func:`heldout_first_answer`'s table, intervals included), and a finding that answers
    "does the SDE produce the answer?" from them. ``process`` None (a store without
    ``input`` states) records that the figure was not drawn. The state dimension quoted is
    that of ``process.z_init``."""
    stem = "fig7-capital-of-france"
    if process is None:
        return figure_record(
            stem, "Not drawn: the fit's states are not the paper's word embeddings."
        )
    overlap = answer_overlap(process)
    top_k, state_dim = process.top_k, process.z_init.shape[-1]
    matched = overlap["drift_words_matched"]
    n_words = len(overlap["answer_words"])
    finding = (
        f"No: the drift path's top-{top_k} tokens over {overlap['n_steps']} steps contain "
        f"{len(matched)} of the answer's {n_words} words ({', '.join(matched) or 'none'}), step s decodes "
        f"to A_s at {overlap['n_step_hits']} of {min(overlap['n_steps'], overlap['n_answer_tokens'])} steps, "
        f"and the sampled paths reach {overlap['sample_overlap']:.0%} of the words on average. Even the "
        f"answer's own embeddings, sent through the {state_dim}-dimensional PCA and back, decode "
        f"to themselves for {overlap['roundtrip_hits']} of {overlap['n_answer_tokens']} tokens"
        + (
            ", so this state space cannot carry the answer whatever the SDE does."
            if overlap["roundtrip_hits"] < overlap["n_answer_tokens"]
            else ": the state space could carry the answer; the SDE does not reach it."
        )
        if overlap["n_step_hits"] < min(overlap["n_steps"], overlap["n_answer_tokens"])
        else f"Yes: every step decodes to the expected answer token within the top {top_k}."
    )

    def ranks(proc: AnswerProcess) -> dict:
        r = proc.rank_samples
        if not r.size:  # a process built without ranks
            return {"rank_drift": proc.rank_drift.tolist()}
        return {
            "rank_drift": proc.rank_drift.tolist(),
            "rank_samples_median": np.median(r, axis=0).tolist(),
            "rank_samples_min": r.min(axis=0).tolist(),
            "rank_samples_max": r.max(axis=0).tolist(),
        }

    numbers = overlap | ranks(process) | {"rank_roundtrip": process.rank_roundtrip.tolist()}
    numbers["decoded_q_init"] = [display_token(t) for t, _ in process.decoded_drift[0]]
    controls = dict(controls or {})
    numbers["controls"] = {
        name: ranks(c) | {"n_step_hits": answer_overlap(c)["n_step_hits"]}
        for name, c in controls.items()
    }
    finding += (
        ""
        if not len(process.rank_drift)
        else (
            f" Ranks of the expected word at steps 1-{len(process.rank_drift)}: "
            + "; ".join(
                [f"this model {process.rank_drift.tolist()}"]
                + [f"{name} {c.rank_drift.tolist()}" for name, c in controls.items()]
                + [f"round trip {process.rank_roundtrip[: len(process.rank_drift)].tolist()}"]
            )
            + "."
        )
    )
    if heldout is not None and len(heldout):
        numbers["heldout_first_answer"] = heldout.to_dict("records")
        h = heldout.set_index(["model", "score"])
        parts = [
            f"{m} {h.loc[(m, 'log10_rank'), 'estimate']:.2f} [{h.loc[(m, 'log10_rank'), 'low']:.2f}, "
            f"{h.loc[(m, 'log10_rank'), 'high']:.2f}]"
            for m in dict.fromkeys(heldout["model"])
        ]
        finding += (
            " On held-out questions, the mean log10 rank of the real first answer word after one "
            "step from Q_init: " + "; ".join(parts) + "."
        )
        if (FIRST_CENTROID, "log10_rank") in h.index and (
            RESPONSE_CENTROID,
            "log10_rank",
        ) in h.index:
            first = h.loc[(FIRST_CENTROID, "log10_rank"), "estimate"]
            centre = h.loc[(RESPONSE_CENTROID, "log10_rank"), "estimate"]
            finding += (
                f" Of the two guesses that ignore the question, the centroid of the training "
                f"answers' first states ranks {first:.2f} and the centroid of all response states "
                f"{centre:.2f}: a squared-error fit of Q_init -> A_1 learns the first when the "
                "question carries nothing, while nearest-token ranks "
                + ("favour the second." if centre < first else "do not favour the second.")
            )
    return figure_record(stem, finding, numbers)


__all__ = [
    "AnswerProcess",
    "answer_overlap",
    "answer_process",
    "answer_table",
    "figure7_record",
    "heldout_app_b",
    "heldout_first_answer",
    "rank_table",
    "is_word",
    "normalise_token",
    "vocabulary_words",
]
