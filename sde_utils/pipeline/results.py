"""Metrics a notebook records: ``reports/metrics/<notebook>.json``.

Each file holds the notebook's numbers and, beside them, the parameters that produced
them (so a number is never separated from its settings), and the profile and git commit
of the run that wrote them (``run``; set by the runner through the environment variables
``SDE_RUN_PROFILE`` and ``SDE_RUN_COMMIT``, both None outside the runner). The smoke tests
read these files to assert on what each notebook computed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sde_utils import paths
from sde_utils.io import atomic_write_text, to_jsonable


def _non_finite(value: Any, where: str = "") -> list[str]:
    """Key paths of every NaN or infinite float in ``value`` (which JSON records as null)."""
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _non_finite(v, f"{where}/{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{where}[{i}]")]
    try:
        return [] if math.isfinite(value) or isinstance(value, bool) else [where or "/"]
    except TypeError:
        return []


def save_metrics(notebook: str, metrics: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """Write ``{"notebook", "run", "parameters", "metrics"}`` atomically to
    ``reports/metrics/<notebook>.json`` and print one line saying so (relative to the
    output root, so no machine path lands in a notebook). Non-finite numbers are recorded
    as null and listed in that line, never dropped silently."""
    if not notebook:
        raise ValueError("notebook name must be a non-empty string such as '03-train-sde'")
    path = paths.METRICS_DIR / f"{notebook}.json"
    payload = {
        "notebook": notebook,
        "run": {
            "profile": os.environ.get("SDE_RUN_PROFILE"),
            "git_commit": os.environ.get("SDE_RUN_COMMIT"),
        },
        "parameters": to_jsonable(dict(parameters)),
        "metrics": to_jsonable(dict(metrics)),
    }
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    message = f"metrics saved: reports/metrics/{notebook}.json"
    missing = _non_finite(to_jsonable(dict(metrics), keep_non_finite=True))
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        message += f"; {len(missing)} value(s) not finite, recorded as null: {shown}"
    print(message)


def notebook_parameters(
    notebook: str, namespace: Mapping[str, Any], folder: Path | None = None
) -> dict[str, Any]:
    """The values of ``notebook``'s parameters as they stand in ``namespace``.

    Call it as ``PARAMS = notebook_parameters(NOTEBOOK, globals())`` right after the
    parameters cell: names come from the notebook's own ``parameters`` cell, values from
    the kernel, so papermill's injected values are what gets recorded.
    """
    from sde_utils.pipeline.profiles import parameter_names

    path = Path(folder or paths.NOTEBOOKS_DIR) / f"{notebook}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"notebook {notebook!r} not found at {path}")
    names = parameter_names(path)
    missing = [n for n in names if n not in namespace]
    if missing:
        raise KeyError(f"parameters {missing} of {notebook} are not defined yet; run that cell")
    return {name: namespace[name] for name in names}


def load_metrics(notebook: str, folder: Path | None = None) -> dict[str, Any]:
    path = Path(folder or paths.METRICS_DIR) / f"{notebook}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics recorded for {notebook!r}: {path} does not exist")
    return json.loads(path.read_text())


__all__ = ["save_metrics", "load_metrics", "notebook_parameters", "to_jsonable"]
