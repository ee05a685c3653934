"""Tables, verdicts and metrics of notebook 04 (Lipschitz brackets and linear growth).

Inputs are dicts ``{model name: result}`` of :func:`~sde_utils.theory.lipschitz_bracket`
(``brackets``) and :func:`~sde_utils.theory.linear_growth` (``growth``), one entry per
model of the fit, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sde_utils.theory.report import bracket_table

#: the bracket fields notebook 04 records per constant (K_mu, K_sigma, K)
BRACKET_METRIC_KEYS = (
    "lower",
    "upper",
    "ratio",
    "upper_method",
    "upper_bounds",
    "lower_data",
    "lower_explore",
    "lower_by_time",
)
#: the linear-growth fields notebook 04 records per model
GROWTH_METRIC_KEYS = (
    "C_certified",
    "C_simple",
    "C_empirical",
    "sup_data",
    "f0_sq",
    "f0_sq_sup",
    "horizon",
    "certified_for",
    "time_lipschitz_mu",
    "time_lipschitz_sigma",
    "radii",
    "sup_sphere",
)


def bracket_summary(brackets: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`~sde_utils.theory.report.bracket_table` with a ``K_min_lower`` column (the
    lower bound of the smallest K of (3.1.1) itself; NaN on the K_mu and K_sigma rows)."""
    table = bracket_table(brackets)
    table["K_min_lower"] = [
        brackets[name]["K_min_lower"] if key == "K" else np.nan for name, key in table.index
    ]
    return table


def bracket_details(brackets: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per (model, constant) for K_mu and K_sigma: the certified bound used against the
    others computed (NaN where not computed) and the lower bound's sources (the states
    before the ascent, the random probes, after the ascent)."""
    rows = []
    for name, br in brackets.items():
        for key in ("K_mu", "K_sigma"):
            e = br[key]
            bounds = e["upper_bounds"]
            rows.append(
                {
                    "model": name,
                    "constant": key,
                    "method": e["upper_method"],
                    "upper (used)": e["upper"],
                    "naive": bounds.get("naive", np.nan),
                    "abs_product": bounds.get("abs_product", np.nan),
                    "midpoint": bounds.get("midpoint", np.nan),
                    "lower: data": e["lower_data"],
                    "lower: probes": e["lower_explore"],
                    "lower: ascent": e["lower"],
                }
            )
    return (
        pd.DataFrame(rows)
        .set_index(["model", "constant"])
        .astype({"naive": float, "abs_product": float, "midpoint": float})
    )


def growth_table(growth: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: certified, simple and empirical C and where the sup was found."""
    return pd.DataFrame(
        {
            name: {
                "C_certified": g["C_certified"],
                "C_simple (2 max(a², b²))": g["C_simple"],
                "C_empirical": g["C_empirical"],
                "sup over data": g["sup_data"],
                "sup over spheres": float(np.max(g["sup_sphere"])),
                "at x = 0: max over grid ‖f(0, t)‖²": float(np.max(g["f0_sq"])),
                "at x = 0: certified sup over [0, T]": g["f0_sq_sup"],
                "certified for": g["certified_for"],
                "certified / empirical": g["ratio"],
            }
            for name, g in growth.items()
        }
    ).T


def _verdict(br: Mapping[str, Any], g: Mapping[str, Any]) -> dict[str, Any]:
    k_up, k_lo = br["K"]["upper"], br["K"]["lower"]
    lip = k_up is not None and np.isfinite(k_up)
    grow = (
        g["C_certified"] is not None
        and np.isfinite(g["C_certified"])
        and g["certified_for"].startswith("all t")
    )
    consistent = bool(
        all(
            br[k]["upper"] is None or br[k]["lower"] <= br[k]["upper"] * (1 + 1e-9)
            for k in ("K_mu", "K_sigma", "K")
        )
        and (g["C_certified"] is None or g["C_empirical"] <= g["C_certified"] * (1 + 1e-9))
    )
    return {
        "lipschitz_holds": bool(lip),
        "K_lower": k_lo,
        "K_upper": k_up,
        "K_ratio": br["K"]["ratio"],
        "linear_growth_holds": bool(grow),
        "C_empirical": g["C_empirical"],
        "C_certified": g["C_certified"],
        "certified_for": g["certified_for"],
        "consistent": consistent,
    }


def _number(value: float | None, spec: str) -> str:
    return "None" if value is None else format(value, spec)


def lipschitz_verdicts(
    brackets: Mapping[str, Mapping[str, Any]],
    growth: Mapping[str, Mapping[str, Any]],
    max_radius: float,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per model: does each condition hold (a finite certified constant), the bracket, and
    are all searched values below their certificates (``consistent``)?

    Args:
        brackets, growth: as the module docstring. max_radius: the largest sphere radius
            searched for linear growth (quoted in the text).

    Returns:
        ``(verdicts, lines)``: ``verdicts[name]`` with ``lipschitz_holds``, ``K_lower``,
        ``K_upper``, ``K_ratio``, ``linear_growth_holds`` (a finite certified C for all t
        in [0, T]), ``C_empirical``, ``C_certified``, ``certified_for``, ``consistent``; ``lines`` the verdict in words, with its numbers.
    """
    verdicts, lines = {}, []
    for name, br in brackets.items():
        g = growth[name]
        v = verdicts[name] = _verdict(br, g)
        lip, grow = v["lipschitz_holds"], v["linear_growth_holds"]
        lines.append(
            f"{name:<11} Lipschitz {'holds' if lip else 'not certified'}: "
            f"K in [{v['K_lower']:.4g}, {_number(v['K_upper'], '.4g')}] "
            f"(ratio {_number(v['K_ratio'], '.3g')}; K_mu via {br['K_mu']['upper_method']}, "
            f"K_sigma via {br['K_sigma']['upper_method']})"
        )
        lines.append(
            f"{'':<11} linear growth {'holds' if grow else 'not certified'} for "
            f"{g['certified_for']}: "
            f"C in [{g['C_empirical']:.4g}, {_number(g['C_certified'], '.4g')}] (empirical sup "
            f"over x = 0, the data and spheres up to r = {max_radius:.3g}); "
            f"searched values below certificates: {v['consistent']}"
        )
    return verdicts, lines


def lipschitz_metrics(brackets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{name: {"K_mu": {...}, "K_sigma": {...}, "K": {...}, "K_min_lower"}}``, the
    :data:`BRACKET_METRIC_KEYS` present in each entry."""
    return {
        name: {
            **{
                key: {k: br[key].get(k) for k in BRACKET_METRIC_KEYS if k in br[key]}
                for key in ("K_mu", "K_sigma", "K")
            },
            "K_min_lower": br["K_min_lower"],
        }
        for name, br in brackets.items()
    }


def growth_metrics(growth: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{name: {key: value}}`` for the :data:`GROWTH_METRIC_KEYS`."""
    return {name: {k: g[k] for k in GROWTH_METRIC_KEYS} for name, g in growth.items()}


__all__ = [
    "BRACKET_METRIC_KEYS",
    "GROWTH_METRIC_KEYS",
    "bracket_summary",
    "bracket_details",
    "growth_table",
    "lipschitz_verdicts",
    "lipschitz_metrics",
    "growth_metrics",
]
