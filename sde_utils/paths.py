"""Every directory of the project, derived from two roots.

Nothing else in the package hard-codes a path.

- ``PROJ_ROOT`` (env ``SDE_PROJ_ROOT``, default: this checkout) holds the code side:
  notebooks, parameter profiles, ``data/raw`` (never edited) and ``data/interim``
  (caches such as the dequantised model, safe to share between runs).
- ``OUTPUT_ROOT`` (env ``SDE_OUTPUT_ROOT``, default: ``PROJ_ROOT``) holds what a run
  produces: ``data/processed`` and ``reports``. The notebook smoke tests point it at a
  scratch folder so a quick run never overwrites the committed default-profile reports.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(os.environ.get("SDE_PROJ_ROOT", Path(__file__).resolve().parents[1])).resolve()

OUTPUT_ROOT = Path(os.environ.get("SDE_OUTPUT_ROOT", PROJ_ROOT)).resolve()

NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
PARAMS_DIR = PROJ_ROOT / "params"

DATA_DIR = PROJ_ROOT / "data"
RAW_DIR = DATA_DIR / "raw"  # never edited
INTERIM_DIR = DATA_DIR / "interim"  # caches (dequantised models, ...)
MODELS_DIR = INTERIM_DIR / "models"
PROCESSED_DIR = OUTPUT_ROOT / "data" / "processed"
TRAJECTORIES_DIR = PROCESSED_DIR / "trajectories"
FITS_DIR = PROCESSED_DIR / "fits"

REPORTS_DIR = OUTPUT_ROOT / "reports"
REPORT_NOTEBOOKS_DIR = REPORTS_DIR / "notebooks"
FIGURES_DIR = REPORTS_DIR / "figures"
METRICS_DIR = REPORTS_DIR / "metrics"
RUN_SUMMARY = REPORTS_DIR / "run_summary.json"

__all__ = [
    "PROJ_ROOT",
    "OUTPUT_ROOT",
    "NOTEBOOKS_DIR",
    "PARAMS_DIR",
    "DATA_DIR",
    "RAW_DIR",
    "INTERIM_DIR",
    "MODELS_DIR",
    "PROCESSED_DIR",
    "TRAJECTORIES_DIR",
    "FITS_DIR",
    "REPORTS_DIR",
    "REPORT_NOTEBOOKS_DIR",
    "FIGURES_DIR",
    "METRICS_DIR",
    "RUN_SUMMARY",
]
