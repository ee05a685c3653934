"""What notebook 07 records under each of the paper's figures 1-6: the inputs a figure
needs beyond one call, the numbers its finding rests on and the finding itself.

Each ``figureN_record`` returns :func:`~sde_utils.analysis.paper_figures.figure_record`'s
dict ``{"number", "caption", "finding", "numbers"}``; the finding is a sentence computed
from the numbers (a claim of the paper is checked on held-out responses where it is about
the model). Figure 7 is in :mod:`sde_utils.analysis.app_b`. States are in the fit's PCA
space ``(L, k)``, the ``j``-th state of a response at ``t_j = j * dt``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from sde_utils.analysis.intervals import mean_interval, spearman_interval
from sde_utils.analysis.paper_figures import (
    DriftField,
    data_extent,
    diffusion_magnitudes,
    drift_diffusion_along,
    drift_field,
    figure_record,
    nearest_token_ids,
    one_step_predictions,
    trajectory_agreement,
)
from sde_utils.analysis.paper_intervals import (
    FIG2_TEXT,
    FIG3_TEXT,
    FIG4_TEXT,
    agreement_intervals,
    closing_sentence,
    response_groups,
    row_groups,
)
from sde_utils.captions import PAPER_FIGURES
from sde_utils.extraction.states import attention_maps
from sde_utils.extraction.store import TrajectoryStore
from sde_utils.extraction.tokens import display_token
from sde_utils.models.base import SDEModel
from sde_utils.models.features import FeatureMap
from sde_utils.models.simulate import drift_path, simulate
from sde_utils.models.train import History

# ----------------------------------------------------------------------------- inputs


def held_out_sample(
    test: TrajectoryStore, features: FeatureMap, *, n: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``min(n, len(test))`` responses of ``test`` drawn without replacement with ``seed``,
    in store order: their states in ``features``' space (each ``(L_i, k)`` float64), their
    token ids (each ``(L_i,)``) and their conversations ``(n,)`` (the bootstrap's groups)."""
    order = np.random.default_rng(seed).permutation(len(test))[: min(n, len(test))]
    states = [
        features.transform(np.asarray(test.trajectory(int(i)), dtype=np.float64))
        for i in sorted(order)
    ]
    ids = [np.asarray(test.sequences.iloc[int(i)]["token_ids"]) for i in sorted(order)]
    groups = test.sequences["conv_id"].to_numpy()[np.sort(order).astype(np.int64)]
    return states, ids, groups


def predicted_paths(
    sde: SDEModel, example, *, horizon: int, n_samples: int, dt: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Figure 2's prediction from ``example[0]`` (``example (L, k)``) over
    ``min(horizon, L - 1)`` steps: the drift path ``(T, k)`` and ``n_samples`` simulated
    paths ``(T, n_samples, k)`` (``seed``), ``T = steps + 1``, float64."""
    steps = min(horizon, len(example) - 1)
    start = torch.as_tensor(example[0])
    path = drift_path(sde, start, steps, dt=dt).double().numpy()
    paths = simulate(sde, start, n_steps=steps, dt=dt, n_paths=n_samples, seed=seed)
    return path, paths.double().numpy()


def pc_pair_fields(
    sde: SDEModel, train_states, *, n: int, t: float, pairs: Sequence[int] = (0, 2, 4)
) -> list[DriftField]:
    """Figure 5's drift fields: the planes ``(k, k + 1)`` for ``k`` in ``pairs`` that exist
    in the ``d`` coordinates of ``train_states (N, d)``, each on an ``n x n`` grid over the
    data's extent in that plane, other coordinates at 0 (the training mean), at time ``t``."""
    d = train_states.shape[1]
    zero = np.zeros(d)
    return [
        drift_field(sde, zero, data_extent(train_states[:, [k, k + 1]]), dims=(k, k + 1), n=n, t=t)
        for k in pairs
        if k + 1 < d
    ]


def attention_inputs(
    llm, tokenizer, row: pd.Series, *, layer: int, head: int | None
) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """Figure 6's inputs for one response ``row`` of a store's ``sequences``: the response's
    tokens, their attention ``(L, L)`` (:func:`~sde_utils.extraction.states.attention_maps` of
    block ``layer``, head ``head`` or the mean of heads), the L2 norms ``(L,)`` of their input
    embeddings (float64) and a label naming the block and head."""
    tokens = list(row["tokens"])
    response = (
        row["response"]
        if isinstance(row.get("response"), str)
        else tokenizer.convert_tokens_to_string(tokens)
    )
    att_tokens, attention = attention_maps(
        llm, tokenizer, row["prompt"], response, layer=layer, head=head
    )
    weight = llm.get_input_embeddings().weight.detach().double().cpu().numpy()
    norms = np.linalg.norm(weight[tokenizer.convert_tokens_to_ids(att_tokens)], axis=1)
    block = "the last block" if layer == -1 else f"block {layer}"
    label = f"{block}, " + ("mean of heads" if head is None else f"head {head}")
    return att_tokens, attention, norms, label


def one_step_decoded(
    sde: SDEModel, llm, features: FeatureMap, states, *, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Figure 3's red points: the one-step predictions ``(L - 1, k)`` from ``states (L, k)``
    and the id of the nearest vocabulary token of each, mapped back to model space."""
    predicted = one_step_predictions(sde, states, dt=dt)
    return predicted, nearest_token_ids(llm, features.inverse_transform(predicted))


def field_and_magnitudes(
    sde: SDEModel,
    train_states,
    example,
    held_out: Sequence[np.ndarray],
    *,
    n: int,
    t: float,
    rows: int,
    max_len: int,
    dt: float,
) -> tuple[DriftField, np.ndarray]:
    """Figure 4's inputs: the drift field in the PC1-PC2 plane (other coordinates at 0, an
    ``n x n`` grid over the extent of ``train_states`` and ``example`` in that plane, time
    ``t``) and the diffusion heatmap ``(rows, T <= max_len)`` of the first ``rows``
    held-out responses."""
    extent = data_extent(np.concatenate([train_states[:, :2], example[:, :2]]))
    field = drift_field(sde, np.zeros(train_states.shape[1]), extent, dims=(0, 1), n=n, t=t)
    mags = diffusion_magnitudes(sde, held_out[:rows], dt=dt, max_len=max_len)
    return field, mags


def findings_table(records: dict[str, dict]) -> pd.DataFrame:
    """One row per recorded figure: the start of its caption and its finding."""
    return pd.DataFrame(
        {
            stem: {"caption": PAPER_FIGURES[stem].caption[:60] + "…", "finding": rec["finding"]}
            for stem, rec in records.items()
        }
    ).T


# ----------------------------------------------------------------------------- figure 1


def figure1_record(history: History) -> dict:
    """Figure 1: does the validation loss fall, and monotonically? (``history``: the neural
    SDE's training history from notebook 03.)"""
    h = history
    val = np.asarray(h.val_total)
    rises = int((np.diff(val) > 0).sum())
    numbers = {
        "epochs": h.n_epochs,
        "best_epoch": h.best_epoch,
        "first_val_total": val[0],
        "best_val_total": val.min(),
        "last_val_total": val[-1],
        "val_rises": rises,
        "first_val_diffusion": h.val_diffusion[0],
        "last_val_diffusion": h.val_diffusion[-1],
        "stopped_reason": h.stopped_reason,
    }
    finding = (
        f"The validation total fell from {val[0]:.3g} to {val.min():.3g} (best epoch {h.best_epoch} of "
        f"{h.n_epochs}); it rose in {rises} of {h.n_epochs - 1} epochs, so the decrease is "
        f"{'monotone' if rises == 0 else 'not monotone'}. The diffusion NLL went from "
        f"{h.val_diffusion[0]:.3g} to {h.val_diffusion[-1]:.3g}."
    )
    return figure_record("fig1-losses", finding, numbers)


# ----------------------------------------------------------------------------- figure 2


def figure2_record(
    sde: SDEModel,
    held_out: Sequence[np.ndarray],
    groups=None,
    *,
    horizon: int,
    dt: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Figure 2: how long does the drift path from the first token follow held-out
    responses? Returns the per-step :func:`~sde_utils.analysis.paper_figures.trajectory_agreement`
    table (horizon ``min(horizon, longest response - 1)``) and the record; its skills and
    correlations get 95% conversation-bootstrap intervals (``groups``: each response's
    conversation, :mod:`sde_utils.analysis.paper_intervals`)."""
    h_eval = min(horizon, max(len(x) for x in held_out) - 1)
    agreement = trajectory_agreement(sde, held_out, horizon=h_eval, dt=dt)
    g = response_groups(groups, len(held_out))
    used = [i for i, x in enumerate(held_out) if len(x) > h_eval]
    actual = np.stack([held_out[i][: h_eval + 1] for i in used])
    pred = drift_path(sde, torch.as_tensor(actual[:, 0]), h_eval, dt=dt).double().numpy()
    intervals = agreement_intervals(
        pred.transpose(1, 0, 2), actual, g[used], n_boot=n_boot, seed=seed
    )
    early, late = agreement.iloc[1:4], agreement.iloc[-3:]
    skill_steps = agreement["skill_vs_mean"].iloc[1:]
    useful = int((skill_steps > 0.05).cumprod().sum())  # leading steps with skill above 5%
    numbers = {
        "n_responses": int(agreement["n"].iloc[0]),
        "horizon": h_eval,
        "skill_step1": agreement["skill_vs_mean"].iloc[1],
        "skill_early": early["skill_vs_mean"].mean(),
        "skill_late": late["skill_vs_mean"].mean(),
        "corr_early": early["corr_drift"].mean(),
        "corr_late": late["corr_drift"].mean(),
        "leading_steps_with_skill": useful,
        "beats_stay_every_step": bool(
            (agreement["rmse_drift"] <= agreement["rmse_stay"]).iloc[1:].all()
        ),
        "intervals": intervals,
    }
    finding = (
        f"Over {numbers['n_responses']} held-out responses the drift path explains "
        f"{numbers['skill_step1']:.0%} of the squared distance to the mean at step 1 and "
        f"{numbers['skill_early']:.0%} on average over steps 1-3 (correlation with the actual states "
        f"{numbers['corr_early']:.2f}), but {numbers['skill_late']:.0%} over the last three of {h_eval} steps "
        f"(correlation {numbers['corr_late']:.2f}). "
        + (
            f"It follows the text for {useful} step(s) and is then no better than the training mean, "
            "so the paper's 'close early, diverging later' holds only in this short sense."
            if numbers["skill_late"] < 0.05
            else f"It keeps {numbers['skill_late']:.0%} of its skill to the end of the horizon."
        )
        + f" It is {'closer than' if numbers['beats_stay_every_step'] else 'not always closer than'} "
        "'stay at the first token' at every step." + closing_sentence(intervals, FIG2_TEXT)
    )
    return agreement, figure_record("fig2-actual-vs-predicted", finding, numbers)


# ----------------------------------------------------------------------------- figure 3


def figure3_record(
    sde: SDEModel,
    llm,
    features: FeatureMap,
    held_out: Sequence[np.ndarray],
    held_ids: Sequence[np.ndarray],
    example_predicted_ids: np.ndarray,
    example_next_ids: Sequence[int],
    groups=None,
    *,
    dt: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Figure 3: is the one-step prediction closer to the next state than the current state
    and the mean are, and does it decode to the next token? Over every step of
    ``held_out`` (states ``(L_i, k)``, token ids ``held_ids``); the PCA round trip of the
    actual next state is the ceiling. ``example_predicted_ids`` (the figure's decoded
    predictions) are compared with the first ``len(example_predicted_ids)`` of
    ``example_next_ids`` for the figure's own count. Every share gets a 95%
    conversation-bootstrap interval (``groups``: each response's conversation)."""
    pred_all = [one_step_predictions(sde, x, dt=dt) for x in held_out]
    err = np.concatenate(
        [np.linalg.norm(p - x[1:], axis=1) for p, x in zip(pred_all, held_out, strict=True)]
    )
    stay = np.concatenate([np.linalg.norm(x[:-1] - x[1:], axis=1) for x in held_out])
    mean = np.concatenate([np.linalg.norm(x[1:], axis=1) for x in held_out])
    decoded = nearest_token_ids(llm, features.inverse_transform(np.concatenate(pred_all)))
    roundtrip = nearest_token_ids(
        llm, features.inverse_transform(np.concatenate([x[1:] for x in held_out]))
    )
    target = np.concatenate([ids[1:] for ids in held_ids])
    steps = row_groups(response_groups(groups, len(held_out)), [len(x) - 1 for x in held_out])
    example_next_ids = np.asarray(example_next_ids)[: len(example_predicted_ids)]
    shares = {
        "closer_than_current": err < stay,
        "closer_than_mean": err < mean,
        "decoded_is_next_token": decoded == target,
        "roundtrip_is_next_token": roundtrip == target,
    }
    intervals = {k: mean_interval(v, steps, n_boot=n_boot, seed=seed) for k, v in shares.items()}
    numbers = {
        "n_steps": int(len(err)),
        "closer_than_current": float((err < stay).mean()),
        "closer_than_mean": float((err < mean).mean()),
        "decoded_is_next_token": float((decoded == target).mean()),
        "roundtrip_is_next_token": float((roundtrip == target).mean()),
        "example_decoded_hits": int((example_predicted_ids == np.asarray(example_next_ids)).sum()),
        "example_steps": int(len(example_predicted_ids)),
        "intervals": intervals,
    }
    finding = (
        f"Over {numbers['n_steps']} held-out steps the one-step prediction is closer to the next state "
        f"than the current state is in {numbers['closer_than_current']:.0%} of steps and closer than "
        f"the training mean in {numbers['closer_than_mean']:.0%}. Decoded to the nearest token it is "
        f"the actual next token in {numbers['decoded_is_next_token']:.1%} of steps "
        f"({numbers['example_decoded_hits']} of {numbers['example_steps']} in the figure), while the "
        f"actual next state sent through the PCA and back decodes to itself in "
        f"{numbers['roundtrip_is_next_token']:.0%}"
        + (
            ": the red points track the region of the text, not its words."
            if numbers["decoded_is_next_token"] < 0.5 * numbers["roundtrip_is_next_token"]
            else ", so the prediction keeps much of what the state space can tell apart."
        )
        + closing_sentence(intervals, FIG3_TEXT)
    )
    return figure_record("fig3-trajectories-words", finding, numbers)


# ----------------------------------------------------------------------------- figure 4


def figure4_record(
    sde: SDEModel,
    held_out: Sequence[np.ndarray],
    field: DriftField,
    mags,
    groups=None,
    *,
    dt: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Figure 4: does the drift point back to the training mean at held-out states (cosine
    of ``mu(x, t)`` and ``-x``), where does the grid ``field`` peak, and how does the
    diffusion heatmap ``mags (n, T)`` (NaN-padded; row ``i`` is ``held_out[i]``) vary with
    position? The held-out statistics get 95% conversation-bootstrap intervals (``groups``:
    each response's conversation); the grid numbers are exact functions of the fitted model
    and the heatmap's extremes describe the drawn figure, so neither has one."""
    states = np.concatenate(held_out)
    mu = np.concatenate([drift_diffusion_along(sde, x, dt=dt)[0] for x in held_out])
    cos_to_mean = -(mu * states).sum(1) / (
        np.linalg.norm(mu, axis=1) * np.linalg.norm(states, axis=1)
    )
    grid_edge = np.zeros(field.speed.shape, bool)
    grid_edge[[0, -1], :] = grid_edge[:, [0, -1]] = True
    cells = np.isfinite(mags)
    position = np.broadcast_to(np.arange(mags.shape[1]), mags.shape)[cells]
    rho, _ = spearmanr(position, mags[cells])
    g = response_groups(groups, len(held_out))
    at_state = row_groups(g, [len(x) for x in held_out])
    at_cell = np.broadcast_to(g[: mags.shape[0], None], mags.shape)[cells]
    kw = dict(n_boot=n_boot, seed=seed)
    first5 = position < 5
    intervals = {
        "toward_mean_share": mean_interval(cos_to_mean > 0, at_state, **kw),
        "toward_mean_cos": mean_interval(cos_to_mean, at_state, **kw),
        "sigma_position_spearman": spearman_interval(position, mags[cells], at_cell, **kw),
        "sigma_first5_mean": mean_interval(mags[cells][first5], at_cell[first5], **kw),
        "sigma_rest_mean": mean_interval(mags[cells][~first5], at_cell[~first5], **kw),
    }
    numbers = {
        "n_states": int(len(states)),
        "toward_mean_share": float((cos_to_mean > 0).mean()),
        "toward_mean_cos": float(cos_to_mean.mean()),
        "grid_speed_max": float(field.speed.max()),
        "grid_speed_max_on_edge": bool(grid_edge.flat[field.speed.argmax()]),
        "sigma_min": float(np.nanmin(mags)),
        "sigma_max": float(np.nanmax(mags)),
        "sigma_cv": float(np.nanstd(mags) / np.nanmean(mags)),
        "sigma_position_spearman": float(rho),
        "sigma_first5_mean": float(np.nanmean(mags[:, :5])),
        "sigma_rest_mean": float(np.nanmean(mags[:, 5:])),
        "intervals": intervals,
    }
    finding = (
        f"At {numbers['toward_mean_share']:.0%} of {numbers['n_states']} held-out states the drift points "
        f"back toward the training mean (mean cosine {numbers['toward_mean_cos']:.2f})"
        + (
            ": the field is mostly a pull to the centre"
            if numbers["toward_mean_share"] > 0.5
            else ""
        )
        + f"; on the grid it peaks at {numbers['grid_speed_max']:.3g}"
        + (
            ", on the edge of the data range. "
            if numbers["grid_speed_max_on_edge"]
            else " inside the data range. "
        )
        + f"|σ| ranges from {numbers['sigma_min']:.3g} to {numbers['sigma_max']:.3g} (coefficient of "
        f"variation {numbers['sigma_cv']:.2f}); its rank correlation with token position is {rho:.2f}, and "
        f"it averages {numbers['sigma_first5_mean']:.3g} over the first five tokens against "
        f"{numbers['sigma_rest_mean']:.3g} after." + closing_sentence(intervals, FIG4_TEXT)
    )
    return figure_record("fig4-drift-diffusion", finding, numbers)


# ----------------------------------------------------------------------------- figure 5


def figure5_record(fields: Sequence[DriftField], sigma, tokens: Sequence[str]) -> dict:
    """Figure 5: which PC plane has the strongest drift, and does ``sigma (L, d)`` (one
    response's tokens ``tokens[:L]``) vary more between components or between tokens? The
    variance of ``log sigma`` is split into a part between components and one between tokens."""
    log_sigma = np.log(sigma)
    total = log_sigma.var()
    between_pcs = log_sigma.mean(axis=0).var() / total
    between_tokens = log_sigma.mean(axis=1).var() / total
    token_scale = np.exp(log_sigma.mean(axis=1))
    speeds = {f"PC{f.dims[0] + 1}-PC{f.dims[1] + 1}": float(f.speed.mean()) for f in fields}
    numbers = {
        "mean_speed_by_pair": speeds,
        "strongest_pair": max(speeds, key=speeds.get),
        "log_sigma_share_between_pcs": float(between_pcs),
        "log_sigma_share_between_tokens": float(between_tokens),
        "most_uncertain_token": display_token(tokens[int(token_scale.argmax())]),
        "least_uncertain_token": display_token(tokens[int(token_scale.argmin())]),
        "token_sigma_ratio": float(token_scale.max() / token_scale.min()),
    }
    finding = (
        f"The drift is strongest in the {numbers['strongest_pair']} plane (mean in-plane speed "
        f"{max(speeds.values()):.3g} against {min(speeds.values()):.3g}). Of the variance of log σ over "
        f"the {len(sigma)} tokens shown, {between_pcs:.0%} lies between components and "
        f"{between_tokens:.0%} between tokens; the geometric-mean σ per token varies by a factor "
        f"{numbers['token_sigma_ratio']:.2f}, highest at {numbers['most_uncertain_token']!r} and lowest at "
        f"{numbers['least_uncertain_token']!r}. "
        + (
            "σ tells the components apart more than the words."
            if between_pcs > between_tokens
            else "σ varies more between words than between components."
        )
    )
    return figure_record("fig5-drift-pairs-uncertainty", finding, numbers)


# ----------------------------------------------------------------------------- figure 6


def figure6_record(att_tokens: Sequence[str], attention, norms, label: str) -> dict:
    """Figure 6: does a large embedding norm (``norms (L,)``) earn a token more attention?
    Spearman of the norm and the attention a token receives (``attention (L, L)``, mean
    over the queries that can see it); ``label`` names the block and head."""
    L = len(att_tokens)
    received = attention.sum(axis=0) / np.arange(L, 0, -1)  # mean over queries i >= j
    rho_att, _ = spearmanr(norms, received)
    top = [display_token(att_tokens[i]) for i in np.argsort(norms)[::-1][:3]]
    numbers = {
        "n_tokens": L,
        "top_norm_tokens": top,
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
        "norm_attention_spearman": float(rho_att),
        "attention_within_response": float(attention.sum(axis=1).mean()),
        "attention_to_first_token": float(attention[1:, 0].mean()),
        "attention_to_self": float(np.diag(attention).mean()),
    }
    finding = (
        f"Embedding norms of the {L} response tokens span {norms.min():.2f}-{norms.max():.2f} "
        f"(largest: {', '.join(repr(t) for t in top)}). Their rank correlation with the attention a "
        f"token receives in {label} is {rho_att:.2f}"
        + (
            " (a large norm does not mark a token the model attends to)"
            if abs(rho_att) < 0.3
            else ""
        )
        + f". Rows keep {numbers['attention_within_response']:.0%} "
        f"of their attention inside the response (the rest goes to the prompt); a token's own "
        f"position gets {numbers['attention_to_self']:.2f} on average and the first response token "
        f"{numbers['attention_to_first_token']:.2f}."
    )
    return figure_record("fig6-importance-attention", finding, numbers)


__all__ = [
    "attention_inputs",
    "field_and_magnitudes",
    "findings_table",
    "figure1_record",
    "figure2_record",
    "figure3_record",
    "figure4_record",
    "figure5_record",
    "figure6_record",
    "held_out_sample",
    "one_step_decoded",
    "pc_pair_fields",
    "predicted_paths",
]
