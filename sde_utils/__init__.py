"""sde_utils: an SDE lens on LLM text generation (arXiv 2408.11863).

The package reads as the pipeline, one folder per stage, each imported only by the
stages after it:

- ``extraction/``: text -> LLM states -> trajectory store (notebooks 01, 02);
- ``models/``: the ``SDEModel`` interface, neural SDE, baselines, features, training,
  simulation, held-out metrics, fits (notebook 03);
- ``theory/``: Lipschitz and growth, Lyapunov, moments, Picard on any SDEModel (04-06);
- ``analysis/``: statistics with intervals, the uncertainty study, paper-figure numbers
  (07, 08);
- ``plots/``: every figure of every notebook;
- ``pipeline/``: papermill runner, metrics records, report page (no science imported);
- ``paths``, ``config`` (seeding, run ids), ``checks`` (argument checks), ``io``
  (atomic writes, ``to_jsonable``) serve them all.

The most used names are re-exported here and imported lazily (PEP 562), so ``import
sde_utils`` stays cheap for the runner while ``from sde_utils import NeuralSDE`` works.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "extraction.pairs": ["load_pairs", "assign_splits"],
    "extraction.llm": ["load_llm"],
    "extraction.states": ["teacher_forced_states"],
    "extraction.sampling": ["sample_trajectories"],
    "extraction.store": ["load_store", "TrajectoryStore"],
    "extraction.store_build": ["build_store"],
    "extraction.extract": ["extract_pairs", "sample_to_store"],
    "models.base": ["SDEModel"],
    "models.neural": ["NeuralSDE"],
    "models.serialize": ["save_model", "load_model"],
    "models.baselines": ["RandomWalk", "LinearSDE", "DriftOnlyMLP"],
    "models.train": ["fit", "History"],
    "models.losses": ["drift_loss", "diffusion_loss", "evaluate_losses"],
    "models.features": ["FeatureMap"],
    "models.fits": ["fit_all", "load_fit", "Fit", "verify_fit", "DamagedFitError"],
    # `simulate` itself is not re-exported: it would clash with the submodule of that name
    "models.simulate": ["euler_maruyama", "drift_path"],
    "models.metrics": ["evaluate_model", "one_step_nll", "energy_distance", "mmd_rbf"],
    "config": ["seed_everything", "run_id"],
    "pipeline.run": ["run_notebooks"],
    "plots.style": ["savefig", "show"],
    "pipeline.results": ["save_metrics"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'sde_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
