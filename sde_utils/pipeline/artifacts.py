"""Which artefact in ``data/processed/`` each notebook produced last.

Notebooks hand work to later notebooks only through ``data/processed/``. Stores and
fits live in folders named by a hash of their parameters; a small registry,
``data/processed/latest.json``, maps a role such as ``"trajectories/01"`` or
``"fit/03"`` to the folder the producing notebook wrote on its latest run, so a
consumer never has to recompute another notebook's hash.
"""

from __future__ import annotations

import json
from pathlib import Path

from sde_utils import paths
from sde_utils.io import atomic_write_text


def _registry() -> Path:
    return paths.PROCESSED_DIR / "latest.json"


def _read() -> dict[str, str]:
    path = _registry()
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{path} is corrupt ({exc}); delete it and rerun the notebooks") from exc


def set_latest(role: str, folder: Path) -> None:
    """Record ``folder`` (inside ``data/processed/``) as the latest output for ``role``."""
    folder = Path(folder).resolve()
    try:
        relative = folder.relative_to(paths.PROCESSED_DIR)
    except ValueError as exc:
        raise ValueError(f"{folder} is not inside {paths.PROCESSED_DIR}") from exc
    if not folder.exists():
        raise FileNotFoundError(f"cannot register {folder}: it does not exist")
    entries = _read() | {role: str(relative)}
    atomic_write_text(_registry(), json.dumps(entries, indent=2, sort_keys=True) + "\n")


def get_latest(role: str) -> Path:
    """The folder last registered for ``role``; a clear error naming what to run if none."""
    entries = _read()
    if role not in entries:
        producer = role.split("/")[-1]
        raise FileNotFoundError(
            f"no output registered for {role!r} in {_registry()}: run notebook {producer} "
            f"first in this output root (e.g. python -m sde_utils --profile quick --only {producer}); "
            f"registered: {sorted(entries)}"
        )
    folder = paths.PROCESSED_DIR / entries[role]
    if not folder.exists():
        raise FileNotFoundError(f"{role!r} points at {folder}, which no longer exists; rerun it")
    return folder


__all__ = ["set_latest", "get_latest"]
