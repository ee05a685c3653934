"""What a run finds, in sentences generated from the recorded numbers.

The report opens with these. Each sentence is built from ``reports/metrics/<nb>.json``
alone (this module reads JSON and imports no science), so it always matches the numbers
beside it. A notebook may record its own ``findings`` (a list of strings) in its
metrics; those are used as they are. Otherwise a summariser below reads the keys the
notebook records. Intervals are shown as ``estimate [low, high]`` wherever the notebook
recorded one; where it did not, the sentence says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Metrics = Mapping[str, Any]


def fmt(x: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant digits; ``–`` when missing."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def interval(iv: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``estimate [low, high]`` of a recorded interval dict."""
    if not isinstance(iv, Mapping) or iv.get("estimate") is None:
        return "–"
    return f"{fmt(iv['estimate'], digits)} [{fmt(iv.get('low'), digits)}, {fmt(iv.get('high'), digits)}]"


def _extraction(m: Metrics) -> list[str]:
    k = m.get("pca_components_for", {})
    return [
        f"{fmt(m['n_sequences'])} responses, {fmt(m['n_tokens'])} tokens, states of dimension "
        f"{m['dim']}; principal components for 50/90/99% of the variance: "
        f"{k.get('0.5')}/{k.get('0.9')}/{k.get('0.99')}."
    ]


def _sampling(m: Metrics) -> list[str]:
    ent = m.get("entropy_by_temperature", {})
    shown = ", ".join(f"T = {t}: {fmt(v)}" for t, v in ent.items())
    return [f"{fmt(m['n_sequences'])} sampled answers; mean next-token entropy (nats) {shown}."]


def _training(m: Metrics) -> list[str]:
    ev = m["evaluation"]
    nll = ", ".join(f"{name} {fmt(row.get('nll'))}" for name, row in ev.items())
    e16 = ", ".join(
        f"{name} {fmt(row.get('energy_h16'))}" for name, row in ev.items() if "energy_h16" in row
    )
    out = [f"Held-out one-step NLL per dimension (lower is better): {nll}."]
    if e16:
        out.append(f"Energy distance of simulated to real states at h = 16: {e16}.")
    nn = ev.get("neural_sde", {})
    if "drift_r2" in nn:
        out.append(
            f"The neural SDE's drift explains {fmt(100 * nn['drift_r2'], 2)}% of the step variance; "
            f"50%/90% intervals cover {fmt(100 * nn.get('coverage_0.5', float('nan')), 3)}%/"
            f"{fmt(100 * nn.get('coverage_0.9', float('nan')), 3)}%."
        )
    iv = m.get("intervals")
    if not isinstance(iv, Mapping):
        out.append("(One seed, one split: notebook 03 records no interval for these numbers.)")
        return out
    ref = iv.get("reference", "neural_sde")
    for metric in ("nll", f"energy_h{max(_horizons(ev), default=16)}"):
        diffs = [
            f"{name} {interval(pair.get(metric))}"
            for name, pair in iv.get("paired", {}).items()
            if isinstance(pair, Mapping) and pair.get(metric)
        ]
        if diffs:
            out.append(
                f"{ref} minus each baseline, {metric} (negative: {ref} better; 95% "
                f"conversation-bootstrap intervals): " + "; ".join(diffs) + "."
            )
    verdict = m.get("verdicts_intervals", {}).get("models", {})
    winners = [name for name, row in verdict.items() if row.get("beats_all")]
    out.append(
        "Beats every other model on both criteria with intervals excluding zero: "
        + (", ".join(winners) if winners else "no model")
        + "."
    )
    sdes = m.get("verdicts_intervals", {}).get("sde_winners")
    if sdes is not None:
        out.append(
            "An SDE beating every baseline on both criteria, intervals excluding zero: "
            + (", ".join(sdes) if sdes else "none")
            + "."
        )
    noise = m.get("latent_noise", {}).get("tradeoff")
    if isinstance(noise, Mapping) and noise:
        rows = [(name, r) for name, r in noise.items() if name.startswith("latent_sde[")]
        out.append(
            "The latent SDE by observation noise s (held-out one-step NLL, energy distance at "
            "the last horizon): "
            + "; ".join(
                f"{name} NLL {_bracket(r, 'nll')}, energy {_bracket(r, _energy_key(r))}"
                for name, r in rows
            )
            + "."
        )
    seq = m.get("latent_noise", {}).get("sequence")
    if isinstance(seq, Mapping) and seq.get("per_model"):
        out.append(
            f"NLL of whole held-out {seq.get('window')}-step windows per dimension and step "
            "(latent SDEs: -ELBO, an upper bound): "
            + "; ".join(f"{name} {interval(iv)}" for name, iv in seq["per_model"].items())
            + "."
        )
    spectra = m.get("jacobian_spectra")
    if isinstance(spectra, Mapping) and spectra:
        out.append(
            "One-step map x -> x + mu dt at held-out states, median spectral radius / norm "
            "(share of states with radius > 1): "
            + "; ".join(
                f"{name} {fmt(r.get('radius_median'))} / {fmt(r.get('norm_median'))} "
                f"({fmt(100 * r.get('share_radius_above_1', float('nan')), 2)}%)"
                for name, r in spectra.items()
            )
            + "."
        )
    return out


def _energy_key(row: Mapping[str, Any]) -> str:
    """The energy column of a trade-off row (``energy_h<k>``, not its bounds)."""
    return next(k for k in row if k.startswith("energy_h") and not k.endswith(("_low", "_high")))


def _bracket(row: Mapping[str, Any], key: str) -> str:
    """``estimate [low, high]`` of a trade-off row's ``key``."""
    return f"{fmt(row.get(key))} [{fmt(row.get(f'{key}_low'))}, {fmt(row.get(f'{key}_high'))}]"


def _horizons(evaluation: Mapping[str, Any]) -> list[int]:
    row = next(iter(evaluation.values()), {})
    return [int(k[len("energy_h") :]) for k in row if k.startswith("energy_h")]


def _lipschitz(m: Metrics) -> list[str]:
    parts = [
        f"{name} K in [{fmt(v.get('K_lower'))}, {fmt(v.get('K_upper'))}]"
        for name, v in m["verdicts"].items()
    ]
    growth = ", ".join(
        f"{name} C = {fmt(v.get('C_certified'))} ({v.get('certified_for', 'at the grid times')})"
        if v.get("linear_growth_holds")
        else f"{name} not certified"
        for name, v in m["verdicts"].items()
    )
    return [
        "Lipschitz constant bracketed (empirical lower, certified upper): "
        + "; ".join(parts)
        + ".",
        f"Linear growth (|mu|^2 + |sigma|^2 <= C (1 + |x|^2)) certified: {growth}.",
    ]


def _lyapunov(m: Metrics) -> list[str]:
    v = m["verdicts"]
    lv = ", ".join(f"{name} {fmt(row.get('LV_at_x_star'))}" for name, row in v.items())
    frac = ", ".join(
        f"{name} {fmt(100 * row['paper_fraction_LV_nonpositive_data'], 2)}%"
        for name, row in v.items()
        if row.get("paper_fraction_LV_nonpositive_data") is not None
    )
    out = [
        f"LV at the equilibrium (the paper's condition needs LV <= 0): {lv}.",
        f"Share of held-out states with LV <= 0: {frac}.",
    ]
    rows = dict(v)
    control = (m.get("controls") or {}).get("unstable_linear", {}).get("verdict")
    if control:
        rows["unstable control"] = control
    checked = {name: row for name, row in rows.items() if row.get("passes_continuous") is not None}
    if checked:
        parts = [
            f"{name} {'passes' if row['passes_continuous'] else 'fails'} / "
            f"{'passes' if row.get('passes_discrete') else 'fails'} "
            f"(level {fmt(row.get('level_over_max_V_fit'))} x largest fitted V)"
            for name, row in checked.items()
        ]
        out.append(
            "LV <= -cV + d, fitted on half the held-out states and checked on the other half "
            "and on simulated paths (continuous / Euler chain): " + "; ".join(parts) + "."
        )
    return out


def _moments(m: Metrics) -> list[str]:
    v = m["verdicts"]
    flat = {k: x for k, x in v.items() if isinstance(x, bool)}
    return [
        "Moment checks: "
        + "; ".join(f"{k.replace('_', ' ')}: {fmt(x)}" for k, x in flat.items())
        + "."
    ]


def _figures(m: Metrics) -> list[str]:
    figs = m.get("figures", {})
    rollouts = m.get("rollouts")
    return [
        f"Figure {info.get('number', '?')}: {info['finding']}"
        for info in figs.values()
        if isinstance(info, Mapping) and info.get("finding")
    ] + (
        [f"Rollouts read back as text: {rollouts['finding']}"]
        if isinstance(rollouts, Mapping) and rollouts.get("finding")
        else []
    )


def _uncertainty(m: Metrics) -> list[str]:
    return [
        f"§{row['section']} {row['claim']}: {row['verdict']} "
        f"({row.get('statistic', 'estimate')} {interval(row)})"
        for row in m.get("verdicts", [])
        if isinstance(row, Mapping) and "claim" in row
    ]


SUMMARISERS: dict[str, Callable[[Metrics], list[str]]] = {
    "01": _extraction,
    "02": _sampling,
    "03": _training,
    "04": _lipschitz,
    "05": _lyapunov,
    "06": _moments,
    "07": _figures,
    "08": _uncertainty,
}


def findings(stem: str, record: Mapping[str, Any]) -> list[str]:
    """Sentences for notebook ``stem`` from its metrics ``record``.

    A recorded ``findings`` list wins; otherwise the summariser for the notebook's number.
    A record lacking what its summariser reads gives one sentence saying so (never an
    exception: the report must still be built).
    """
    metrics = record.get("metrics", record)
    own = metrics.get("findings") if isinstance(metrics, Mapping) else None
    if isinstance(own, list) and all(isinstance(s, str) for s in own):
        return list(own)
    summarise = SUMMARISERS.get(stem[:2])
    if summarise is None:
        return []
    try:
        return summarise(metrics)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return [f"(no summary: the record lacks {type(exc).__name__}: {exc})"]


__all__ = ["findings", "fmt", "interval", "SUMMARISERS"]
