"""sde_utils: an SDE lens on LLM text generation (arXiv 2408.11863).

The public API is re-exported here and imported lazily (PEP 562), so ``import
sde_utils`` stays cheap for the runner and the CLI while ``from sde_utils import
NeuralSDE`` still works. Each name lives in one module:

- data and states: ``load_pairs``, ``assign_splits`` (data); ``load_llm``,
  ``teacher_forced_states``, ``sample_trajectories`` (llm); ``build_store``,
  ``load_store``, ``TrajectoryStore`` (trajectories); ``extract_pairs``,
  ``sample_to_store`` (extract);
- models and fitting: ``SDEModel``, ``NeuralSDE``, ``save_model``, ``load_model`` (sde);
  ``RandomWalk``, ``LinearSDE``, ``DriftOnlyMLP`` (baselines); ``fit``, ``History``,
  ``drift_loss``, ``diffusion_loss``, ``evaluate_losses`` (train); ``FeatureMap``
  (features); ``fit_all``, ``load_fit``, ``Fit`` (fits);
- simulation and metrics: ``euler_maruyama``, ``drift_path`` (simulate; the function
  ``simulate`` is imported from ``sde_utils.simulate``, the submodule of that name);
  ``evaluate_model``, ``one_step_nll``, ``energy_distance``, ``mmd_rbf`` (metrics);
- running: ``seed_everything``, ``run_id`` (config); ``run_notebooks`` (run);
  ``savefig`` (plots); ``save_metrics`` (results).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "data": ["load_pairs", "assign_splits"],
    "llm": ["load_llm", "teacher_forced_states", "sample_trajectories"],
    "trajectories": ["build_store", "load_store", "TrajectoryStore"],
    "extract": ["extract_pairs", "sample_to_store"],
    "sde": ["SDEModel", "NeuralSDE", "save_model", "load_model"],
    "baselines": ["RandomWalk", "LinearSDE", "DriftOnlyMLP"],
    "train": ["fit", "History", "drift_loss", "diffusion_loss", "evaluate_losses"],
    "features": ["FeatureMap"],
    "fits": ["fit_all", "load_fit", "Fit"],
    # `simulate` itself is not re-exported: it would clash with the submodule of that name
    "simulate": ["euler_maruyama", "drift_path"],
    "metrics": ["evaluate_model", "one_step_nll", "energy_distance", "mmd_rbf"],
    "config": ["seed_everything", "run_id"],
    "run": ["run_notebooks"],
    "plots": ["savefig"],
    "results": ["save_metrics"],
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
