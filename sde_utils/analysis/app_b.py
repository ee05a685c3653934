"""Paper App. B, the "capital of France" example (figure 7): embed the question, average it
into ``Q_init``, step the SDE from there and decode every state to its nearest tokens.

Model space is the LLM's input-embedding space ``(D,)``, state space the fit's PCA space
``(k,)``. :func:`answer_process` runs the example, :func:`answer_overlap` scores it,
:func:`answer_table` and :func:`figure7_record` are what notebook 07 shows and records.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from sde_utils.analysis.paper_figures import figure_record
from sde_utils.extraction.tokens import display_token, nearest_tokens
from sde_utils.models.base import SDEModel
from sde_utils.models.simulate import drift_path, simulate

_PUNCTUATION = set(string.punctuation) | {"\u2019", "\u2018", "\u201c", "\u201d", "\u2026"}


def normalise_token(display: str) -> str:
    """A displayed token as a word to compare: stripped, lower-cased."""
    return display.strip().lower()


def is_word(display: str) -> bool:
    """True when a displayed token holds a letter or digit (not only spaces/punctuation)."""
    text = display.strip()
    return bool(text) and any(ch not in _PUNCTUATION for ch in text)


@dataclass
class AnswerProcess:
    """The App. B example run through a fit (see :func:`answer_process`).

    Model space is the LLM's input-embedding space ``(D,)``, state space the fit's PCA
    space ``(k,)``. ``drift``: ``(n_steps + 1, k)``, row 0 is ``Q_init``; ``samples``:
    ``(n_steps + 1, n_samples, k)``. ``decoded_drift[s]``: the ``top_k`` nearest vocabulary
    tokens (raw BPE, cosine score) of ``inverse_transform(drift[s])``; ``decoded_samples[p][s]``
    likewise for sample ``p``; ``decoded_roundtrip[i]``: for answer token ``i``, the nearest
    tokens of its own embedding sent through the PCA and back (what the state space can
    still tell apart at best).
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
    """
    weight = llm.get_input_embeddings().weight.detach().to("cpu", torch.float64).numpy()
    if features.input_dim != weight.shape[1]:
        raise ValueError(
            f"the fit's feature map takes {features.input_dim}-dim states but the LLM's "
            f"embeddings are {weight.shape[1]}-dim: fit notebook 03 on an 'input'-kind store"
        )

    def tokens_of(text: str) -> tuple[list[str], np.ndarray]:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        toks = tokenizer.convert_ids_to_tokens(ids)
        keep = [i for i, t in enumerate(toks) if is_word(display_token(t)) or not words_only]
        if not keep:
            raise ValueError(f"{text!r} has no word token to embed")
        return [toks[i] for i in keep], weight[[ids[i] for i in keep]]

    q_tokens, q_states = tokens_of(question)
    a_tokens, a_states = tokens_of(answer)
    z_question = np.asarray(features.transform(q_states), dtype=np.float64)
    q_init = q_states.mean(axis=0)
    z_init = np.asarray(features.transform(q_init[None]), dtype=np.float64)[0]
    z_answer = np.asarray(features.transform(a_states), dtype=np.float64)
    start = torch.as_tensor(z_init)
    drift = drift_path(sde, start, n_steps, dt=dt).double().numpy()
    samples = (
        simulate(sde, start, n_steps=n_steps, dt=dt, n_paths=n_samples, seed=seed).double().numpy()
    )

    def decode(z: np.ndarray) -> list[list[tuple[str, float]]]:
        back = np.asarray(features.inverse_transform(np.asarray(z, dtype=np.float64)))
        return nearest_tokens(llm, tokenizer, back, k=top_k)

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
        decoded_drift=decode(drift),
        decoded_samples=[decode(samples[:, p]) for p in range(n_samples)],
        decoded_roundtrip=decode(z_answer),
        top_k=int(top_k),
        dt=float(dt),
        seed=int(seed),
    )


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


def figure7_record(process: AnswerProcess | None) -> dict:
    """Notebook 07's record of figure 7 (:func:`~sde_utils.analysis.paper_figures.figure_record`):
    the :func:`answer_overlap` numbers plus ``decoded_q_init``, and a finding that answers
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
    decoded_q_init = [display_token(t) for t, _ in process.decoded_drift[0]]
    return figure_record(stem, finding, overlap | {"decoded_q_init": decoded_q_init})


__all__ = [
    "AnswerProcess",
    "answer_overlap",
    "answer_process",
    "answer_table",
    "figure7_record",
    "is_word",
    "normalise_token",
]
