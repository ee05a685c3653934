"""The numbers behind the paper's figures 1–7, and the paper's captions.

Drawing lives in :mod:`sde_utils.plots.paper`; this module computes what is drawn (drift fields
on a grid, diffusion along trajectories, one-step and drift-path predictions, the App. B
example) and the numbers a figure's finding rests on. Importing it loads no torch (the
report reads :data:`PAPER_FIGURES` from here); the functions import what they need. Conventions: states are in the
fit's PCA space ``(L, k)`` (``k`` the PCA dimension), the ``j``-th state of a response
lives at ``t_j = t0 + j * dt``; every model call runs under ``torch.no_grad`` in the
model's own dtype and returns float64 numpy.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the functions: the report needs only captions
    import pandas as pd

    from sde_utils.models.neural import SDEModel

__all__ = [
    "FigureSpec",
    "PAPER_FIGURES",
    "figure_record",
    "nearest_token_ids",
    "DriftField",
    "drift_field",
    "data_extent",
    "drift_diffusion_along",
    "one_step_predictions",
    "diffusion_magnitudes",
    "trajectory_agreement",
    "normalise_token",
    "is_word",
    "AnswerProcess",
    "answer_process",
    "answer_overlap",
]


# ----------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class FigureSpec:
    """One paper figure: its number, the file stem it is saved under and its caption."""

    number: int
    stem: str
    title: str
    caption: str  # the paper's caption, verbatim


PAPER_FIGURES: dict[str, FigureSpec] = {
    spec.stem: spec
    for spec in (
        FigureSpec(
            1,
            "fig1-losses",
            "Training and validation losses",
            "Figure 1: Training and Validation Losses over Epochs for the SDE Model. The top "
            "plot shows the total loss, the middle plot shows the drift loss, and the bottom "
            "plot shows the diffusion loss. The model shows a consistent decrease in losses "
            "over the epochs, indicating improved learning and stability.",
        ),
        FigureSpec(
            2,
            "fig2-actual-vs-predicted",
            "Actual vs predicted trajectories",
            "Figure 2: Actual vs Predicted Trajectories. The left plot shows the actual "
            "trajectory of the text generation, while the right plot presents the predicted "
            "trajectory. The comparison between these trajectories highlights the alignment "
            "and discrepancies in the model's predictions.",
        ),
        FigureSpec(
            3,
            "fig3-trajectories-words",
            "Trajectories with words",
            "Figure 3: Text Generation Trajectories with Words. This plot visualizes the "
            "actual and predicted word trajectories during the text generation process. Each "
            "point represents a word in the sequence, showing the semantic movement in the "
            "PCA-reduced space. The alignment between the red (predicted) and blue (actual) "
            "paths illustrates the model's accuracy in capturing the semantic evolution.",
        ),
        FigureSpec(
            4,
            "fig4-drift-diffusion",
            "Drift field and diffusion heatmap",
            "Figure 4: (Left) SDE Vector Field illustrating the drift magnitude during the "
            "text generation process. (Right) Diffusion Magnitude Heatmap showing the "
            "diffusion effects across different token positions.",
        ),
        FigureSpec(
            5,
            "fig5-drift-pairs-uncertainty",
            "Drift across PC pairs and uncertainty heatmap",
            "Figure 5: (Left) Refined SDE Vector Field highlighting drift magnitude across "
            "various components. (Right) Uncertainty Heatmap demonstrating the uncertainty "
            "across different tokens during generation.",
        ),
        FigureSpec(
            6,
            "fig6-importance-attention",
            "Word importance and attention weights",
            "Figure 6: Analysis of Word Importance and Attention Weights in Text Generation. "
            "(a) Word Importance Based on Embedding Magnitude. (b) Attention Weights Heatmap.",
        ),
        FigureSpec(
            7,
            "fig7-capital-of-france",
            "The App. B example: the capital of France",
            "Figure 7: Illustration of the SDE-based Process for Answer Generation in LLMs. "
            "This figure demonstrates the sequential steps, starting from question "
            "embeddings, calculating the initial state, and using the SDE model to generate "
            "the final answer embeddings.",
        ),
    )
}
"""File stem -> :class:`FigureSpec`, in figure order; captions copied from the paper."""


def figure_record(stem: str, finding: str, numbers: dict | None = None) -> dict:
    """``{"number", "caption", "finding", "numbers"}`` for ``stem``, as notebook 07 records it
    (the report shows the caption and the finding under the figure)."""
    if stem not in PAPER_FIGURES:
        raise ValueError(f"unknown figure {stem!r}; paper figures: {list(PAPER_FIGURES)}")
    if not isinstance(finding, str) or not finding.strip():
        raise ValueError(f"finding must be a non-empty sentence, got {finding!r}")
    spec = PAPER_FIGURES[stem]
    return {
        "number": spec.number,
        "caption": spec.caption,
        "finding": finding.strip(),
        "numbers": dict(numbers or {}),
    }


# ----------------------------------------------------------------------------- helpers


def _as_states(name: str, x, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (L, d) with L, d >= 1, got {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} coordinates, expected {dim}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating)) or not dt > 0:
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    return float(dt)


def _model_eval(model: SDEModel, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(drift, diffusion)`` at states ``x (N, d)`` and times ``t (N,)``, float64 numpy."""
    import torch

    from sde_utils.models.simulate import model_dtype_device

    probe = torch.as_tensor(x)
    dtype, device = model_dtype_device(model, probe)
    with torch.no_grad():
        xt = probe.to(dtype=dtype, device=device)
        tt = torch.as_tensor(t).to(dtype=dtype, device=device)
        mu, sigma = model.drift_diffusion(xt, tt)
    mu = mu.detach().cpu().double().numpy()
    sigma = sigma.detach().cpu().double().numpy()
    if mu.shape != x.shape or sigma.shape != x.shape:
        raise ValueError(
            f"model returned drift {mu.shape} and diffusion {sigma.shape} for states "
            f"{x.shape}; the diagonal-noise contract needs both {x.shape}"
        )
    return mu, sigma


# ----------------------------------------------------------------------------- drift fields


@dataclass(frozen=True)
class DriftField:
    """The drift restricted to a coordinate plane, on a regular grid.

    ``x (nx,)`` and ``y (ny,)`` are the grid values of coordinates ``dims[0]`` and
    ``dims[1]``; ``u, v (ny, nx)`` are the drift's components along them at the point
    ``base`` with those two coordinates replaced by ``(x[j], y[i])`` (row ``i``, column
    ``j``: the layout of ``np.meshgrid(x, y)`` that ``streamplot`` and ``quiver`` expect),
    at time ``t``.
    """

    dims: tuple[int, int]
    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    t: float

    @property
    def speed(self) -> np.ndarray:
        """In-plane magnitude ``sqrt(u**2 + v**2)``, ``(ny, nx)``."""
        return np.hypot(self.u, self.v)


def data_extent(points, *, quantile: float = 0.01, pad: float = 0.1) -> tuple[float, ...]:
    """``(xmin, xmax, ymin, ymax)`` covering the central ``1 - 2 quantile`` of ``points (N, 2)``,
    widened by ``pad`` times the range on each side (so outliers do not squash the plot)."""
    pts = _as_states("points", points, 2)
    if not 0 <= quantile < 0.5 or pad < 0:
        raise ValueError(f"need 0 <= quantile < 0.5 and pad >= 0, got {quantile}, {pad}")
    lo, hi = np.quantile(pts, [quantile, 1 - quantile], axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad * span, hi + pad * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def drift_field(
    model: SDEModel,
    base,
    extent: Sequence[float],
    *,
    dims: tuple[int, int] = (0, 1),
    n: int = 25,
    t: float = 0.0,
) -> DriftField:
    """Evaluate ``model.drift`` on an ``n x n`` grid of the plane spanned by ``dims``.

    ``base (d,)``: the state whose other coordinates are held fixed (zeros = the training
    mean after standardisation + PCA). ``extent``: ``(xmin, xmax, ymin, ymax)`` of the grid.
    """
    base = np.asarray(base, dtype=np.float64)
    if base.ndim != 1 or base.size < 2:
        raise ValueError(f"base must be a (d,) state with d >= 2, got shape {base.shape}")
    d = base.size
    dims = tuple(dims)
    if len(dims) != 2 or any(
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) for k in dims
    ):
        raise ValueError(f"dims must be two coordinate indices in 0..{d - 1}, got {dims!r}")
    i, j = int(dims[0]), int(dims[1])
    if i == j or not (0 <= i < d and 0 <= j < d):
        raise ValueError(f"dims must be two different coordinates in 0..{d - 1}, got {dims!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2 (grid points per axis), got {n!r}")
    xmin, xmax, ymin, ymax = (float(v) for v in extent)
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"extent must be (xmin, xmax, ymin, ymax) with min < max, got {extent}")
    xs, ys = np.linspace(xmin, xmax, n), np.linspace(ymin, ymax, n)
    gx, gy = np.meshgrid(xs, ys)  # (n, n): row = y, column = x
    states = np.tile(base, (gx.size, 1))
    states[:, i], states[:, j] = gx.ravel(), gy.ravel()
    mu, _ = _model_eval(model, states, np.full(gx.size, float(t)))
    return DriftField(
        dims=(i, j),
        x=xs,
        y=ys,
        u=mu[:, i].reshape(gx.shape),
        v=mu[:, j].reshape(gx.shape),
        t=float(t),
    )


# ----------------------------------------------------------------------------- along data


def drift_diffusion_along(
    model: SDEModel, trajectory, *, dt: float = 1.0, t0: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)``, each ``(L, d)``: drift and diffusion at each state of ``trajectory``
    ``(L, d)``, the j-th at time ``t0 + j * dt``."""
    x = _as_states("trajectory", trajectory)
    t = float(t0) + _check_dt(dt) * np.arange(len(x))
    return _model_eval(model, x, t)


def one_step_predictions(model: SDEModel, trajectory, *, dt: float = 1.0) -> np.ndarray:
    """``(L - 1, d)``: the drift's prediction ``x_j + mu(x_j, t_j) dt`` of each next state
    ``x_{j+1}`` from the actual current one (teacher-forced, noise-free)."""
    x = _as_states("trajectory", trajectory)
    if len(x) < 2:
        raise ValueError(f"trajectory needs >= 2 states for a one-step prediction, got {len(x)}")
    mu, _ = drift_diffusion_along(model, x[:-1], dt=dt)
    return x[:-1] + mu * float(dt)


def diffusion_magnitudes(
    model: SDEModel, trajectories: Sequence, *, dt: float = 1.0, max_len: int | None = None
) -> np.ndarray:
    """``(n, T)`` heatmap: the RMS of ``sigma(x_j, t_j)`` over coordinates
    (``||sigma|| / sqrt(d)``) at token ``j`` of each of the ``n`` trajectories.

    ``T`` is the longest length (capped at ``max_len``); shorter rows are NaN-padded.
    """
    if not len(trajectories):
        raise ValueError("trajectories is empty: need at least one (L, d) array")
    xs = [_as_states(f"trajectories[{i}]", x) for i, x in enumerate(trajectories)]
    if max_len is not None:
        if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise ValueError(f"max_len must be an int >= 1 or None, got {max_len!r}")
        xs = [x[:max_len] for x in xs]
    out = np.full((len(xs), max(len(x) for x in xs)), np.nan)
    for row, x in enumerate(xs):
        _, sigma = drift_diffusion_along(model, x, dt=dt)
        out[row, : len(x)] = np.sqrt((sigma**2).mean(axis=1))
    return out


def trajectory_agreement(
    model: SDEModel, trajectories: Sequence, *, horizon: int, dt: float = 1.0
) -> pd.DataFrame:
    """How far the drift path from each trajectory's first state is from the actual path.

    For every trajectory ``(L_i, d)`` with ``L_i > horizon``, the noise-free Euler path
    from ``x_0`` is run ``horizon`` steps. Per step ``k = 0..horizon`` the table holds
    ``rmse_drift`` (RMS over trajectories and coordinates of drift path - actual),
    ``rmse_stay`` (the same for "stay at ``x_0``", the random walk's mean path),
    ``rmse_mean`` (for "predict the training mean", 0 in standardised PCA space),
    ``skill_vs_mean`` (``1 - mse_drift / mse_mean``: > 0 when the drift path beats the
    mean) and ``corr_drift`` (Pearson correlation, pooled over trajectories and
    coordinates, of drift-path and actual states; 1 at ``k = 0``, NaN if either is
    constant). ``n`` is the number of trajectories used.
    """
    import pandas as pd
    import torch

    from sde_utils.models.simulate import drift_path

    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    xs = [_as_states(f"trajectories[{i}]", x) for i, x in enumerate(trajectories)]
    xs = [x[: horizon + 1] for x in xs if len(x) > horizon]
    if not xs:
        raise ValueError(f"no trajectory is longer than horizon={horizon} states")
    actual = np.stack(xs)  # (n, H + 1, d)
    starts = torch.as_tensor(actual[:, 0])
    pred = drift_path(model, starts, horizon, dt=_check_dt(dt)).double().numpy()  # (H+1, n, d)
    pred = pred.transpose(1, 0, 2)

    def rms(a: np.ndarray) -> np.ndarray:
        return np.sqrt((a**2).mean(axis=(0, 2)))

    flat_p = pred.transpose(1, 0, 2).reshape(horizon + 1, -1)
    flat_a = actual.transpose(1, 0, 2).reshape(horizon + 1, -1)
    corr = np.full(horizon + 1, np.nan)
    for k in range(horizon + 1):
        if flat_p[k].std() > 0 and flat_a[k].std() > 0:
            corr[k] = np.corrcoef(flat_p[k], flat_a[k])[0, 1]
    rmse_drift, rmse_mean = rms(pred - actual), rms(actual)
    return pd.DataFrame(
        {
            "step": np.arange(horizon + 1),
            "rmse_drift": rmse_drift,
            "rmse_stay": rms(actual[:, :1] - actual),
            "rmse_mean": rmse_mean,
            "skill_vs_mean": 1 - rmse_drift**2 / np.where(rmse_mean > 0, rmse_mean**2, np.nan),
            "corr_drift": corr,
            "n": len(xs),
        }
    )


def nearest_token_ids(llm, vectors, *, chunk: int = 512) -> np.ndarray:
    """``(n,)`` id of the vocabulary token whose input embedding has the largest cosine
    with each of ``vectors (n, D)`` (model space); float64 on the LLM's device, ``chunk``
    rows at a time so memory stays ``chunk x vocab``."""
    import torch

    weight = llm.get_input_embeddings().weight.detach().to(torch.float64)  # on the LLM's device
    unit = torch.nn.functional.normalize(weight, dim=-1)
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float64), device=weight.device)
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"vectors must have shape (n, {weight.shape[1]}), got {tuple(x.shape)}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    out = [
        (torch.nn.functional.normalize(x[i : i + chunk], dim=-1) @ unit.T).argmax(dim=-1)
        for i in range(0, len(x), chunk)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------- App. B

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
    import torch

    from sde_utils.extraction.llm import display_token, nearest_tokens
    from sde_utils.models.simulate import drift_path, simulate

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
    from sde_utils.extraction.llm import display_token

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
