"""Notebook 07's two text studies, one call each: App. B as the paper describes it
(:func:`app_b_study`) and the rollouts read back as text (:func:`rollout_study`).

Both take the fit (:class:`~sde_utils.models.fits.Fit`), its trajectory store, the LLM
and its tokenizer, and ``params``: notebook 07's parameters (the keys each function names),
so the notebook stays a list of calls. The pieces are public in
:mod:`sde_utils.analysis.app_b`, :mod:`sde_utils.analysis.rollout_text` and
:mod:`sde_utils.models.qa`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sde_utils.analysis import rollout_text
from sde_utils.analysis.app_b import (
    AnswerProcess,
    answer_process,
    figure7_record,
    heldout_app_b,
    vocabulary_words,
)
from sde_utils.config import torch_threads
from sde_utils.models.qa import fit_qa_models

QA, SHUFFLED_QA, RESPONSE_ONLY = "Q→A", "Q→A, shuffled pairs", "response only"
# Small nets, small batches and one LLM forward at a time: on this 2-core machine a second
# torch thread only adds synchronisation (the App. B fine-tune took 16 s with 2 threads
# against 0.7 s with 1 while other jobs ran), so both studies run on one.
THREADS = 1


@dataclass
class AppBStudy:
    """``processes``: model name -> :class:`~sde_utils.analysis.app_b.AnswerProcess`
    (:data:`QA` first, then its controls); ``heldout``: the held-out first-answer table
    (:func:`~sde_utils.analysis.app_b.heldout_app_b`); ``record``: figure 7's record.
    Empty processes and no table when the store's states are not input embeddings."""

    processes: dict[str, AnswerProcess]
    heldout: pd.DataFrame | None
    record: dict
    histories: dict = field(default_factory=dict)

    @property
    def process(self) -> AnswerProcess | None:
        """The Q->A model's process (None when not drawn)."""
        return self.processes.get(QA)


def app_b_study(fitted, store, llm, tokenizer, params: Mapping) -> AppBStudy:
    """App. B with question -> answer transitions (:func:`~sde_utils.models.qa.fit_qa_models`,
    ``qa_share``, ``qa_epochs``), its shuffled-pairs control and the response-only neural
    SDE: each stepped ``app_b_steps`` times from ``Q_init`` of ``question`` at ``t = -dt``
    (``n_samples`` sampled paths, ``top_k`` tokens decoded, ``seed``), ranks of ``answer``'s
    words; then every held-out question (``n_boot`` resamples, paired against the
    shuffled-pairs control). Keys read from ``params``: those named here."""
    if store.meta.get("embedding_kind") != "input":
        return AppBStudy({}, None, figure7_record(None))
    with torch_threads(THREADS):
        return _app_b_study(fitted, store, llm, tokenizer, params)


def _app_b_study(fitted, store, llm, tokenizer, params: Mapping) -> AppBStudy:
    p, dt, fmap = params, float(fitted.params["dt"]), fitted.features
    weight = rollout_text.embedding_table(llm).numpy()
    words = vocabulary_words(tokenizer, weight.shape[0])
    qa_models, histories = fit_qa_models(
        fitted, store, weight, tokenizer, share=p["qa_share"], epochs=p["qa_epochs"], seed=p["seed"]
    )
    models = qa_models | {RESPONSE_ONLY: fitted.sde}
    settings = dict(n_steps=p["app_b_steps"], n_samples=p["n_samples"], top_k=p["top_k"])
    processes = {
        name: answer_process(
            llm, tokenizer, fmap, model, p["question"], p["answer"], dt=dt, seed=p["seed"],
            t0=-dt, word_of=words, **settings,
        )
        for name, model in models.items()
    }  # fmt: skip
    heldout = heldout_app_b(
        models, store, fmap, weight, tokenizer, words, dt=dt, n_boot=p["n_boot"],
        seed=p["seed"], reference=SHUFFLED_QA,
    )  # fmt: skip
    controls = {name: proc for name, proc in processes.items() if name != QA}
    record = figure7_record(processes[QA], controls, heldout)
    return AppBStudy(processes, heldout, record, histories)


@dataclass
class RolloutStudy:
    """The rollouts of every model (:func:`rollout_study`): ``held`` (the held-out
    responses), ``sources`` (token ids per source), ``scores`` (one row per sequence),
    ``summary`` (means and paired differences with intervals) and ``record`` (numbers and
    finding, with the decoding metric's round-trip check)."""

    held: dict
    sources: dict[str, np.ndarray]
    scores: pd.DataFrame
    summary: pd.DataFrame
    record: dict

    def table(self) -> pd.DataFrame:
        """``"estimate [low, high]"`` per source and score."""
        return rollout_text.summary_table(self.summary)

    def examples(self, tokenizer, index: int = 0) -> pd.Series:
        """Held-out response ``index`` as text under every source (path 0)."""
        return rollout_text.example_texts(self.sources, tokenizer, index)


def rollout_study(fitted, store, llm, tokenizer, params: Mapping) -> RolloutStudy:
    """Every model of ``fitted`` simulated ``rollout_horizon`` steps from ``rollout_starts``
    held-out first tokens (``rollout_paths`` paths each, ``seed``), decoded with
    ``decode_metric``, scored by the LLM, summarised with ``n_boot`` conversation-bootstrap
    resamples (:mod:`sde_utils.analysis.rollout_text`). Keys read from ``params``: those
    named here."""
    with torch_threads(THREADS):
        return _rollout_study(fitted, store, llm, tokenizer, params)


def _rollout_study(fitted, store, llm, tokenizer, params: Mapping) -> RolloutStudy:
    p, dt, fmap = params, float(fitted.params["dt"]), fitted.features
    horizon, seed, n_boot = p["rollout_horizon"], p["seed"], p["n_boot"]
    weight = rollout_text.embedding_table(llm).numpy()
    held = rollout_text.heldout_responses(
        store, fmap, n=p["rollout_starts"], horizon=horizon, seed=seed
    )
    check = rollout_text.metric_check(fmap, weight, held, horizon=horizon, n_boot=n_boot, seed=seed)
    sources = rollout_text.rollout_sources(
        fitted.models, fmap, weight, held["trajectories"], held["token_ids"], horizon=horizon,
        n_paths=p["rollout_paths"], dt=dt, seed=seed, metric=p["decode_metric"],
    )  # fmt: skip
    first = [ids[0] for ids in held["token_ids"]]
    scores = rollout_text.score_rollouts(
        llm, tokenizer, held["prompts"], first, held["groups"], sources
    )
    summary = rollout_text.rollout_summary(scores, n_boot=n_boot, seed=seed)
    record = rollout_text.rollout_record(summary, list(fitted.models), horizon=horizon)
    record["numbers"] |= {"decode_metric": p["decode_metric"], "roundtrip_by_metric": check}
    record["finding"] += (
        f" Decoded by {p['decode_metric']}: the real states' PCA round trip decodes to their own "
        "token in "
        + " and ".join(
            f"{v['estimate']:.0%} [{v['low']:.0%}, {v['high']:.0%}] by {m}"
            for m, v in check.items()
        )
        + " of positions."
    )
    return RolloutStudy(held, sources, scores, summary, record)


__all__ = [
    "QA",
    "RESPONSE_ONLY",
    "SHUFFLED_QA",
    "AppBStudy",
    "RolloutStudy",
    "app_b_study",
    "rollout_study",
]
