"""What notebooks 04-06 start from: the fit, its store and the held-out states.

:func:`load_theory_inputs` opens the fit of notebook 03 and the trajectory store it was
fitted on, takes the one-step transitions of one split, maps both ends into the fit's
PCA coordinates (float64) and draws a seeded random subset of the states. The caller
passes the folders (a notebook gets them from ``sde_utils.pipeline.artifacts``), so
the theory stage does not depend on the pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sde_utils.checks import check_int, check_seed, check_str
from sde_utils.extraction.store import TrajectoryStore, load_store
from sde_utils.models.fits import Fit, load_fit


def draw_subset(rng: np.random.Generator, n: int, max_states: int) -> np.ndarray:
    """Sorted indices of ``min(max_states, n)`` of ``0..n-1`` drawn without replacement.

    One ``rng.choice`` call: the draw the notebooks have always made, so a subset depends
    only on the generator's state, ``n`` and ``max_states``.
    """
    n = check_int("n", n, minimum=1)
    max_states = check_int("max_states", max_states, minimum=1)
    return np.sort(rng.choice(n, size=min(max_states, n), replace=False))


@dataclass(frozen=True)
class TheoryInputs:
    """The held-out transitions of one split in the fit's coordinates, and a subset.

    Attributes:
        fit: the loaded fit (``fit.models``, ``fit.features``, ``fit.params``).
        store: the trajectory store the fit was trained on.
        dt: the fit's step (``fit.params["dt"]``), in tokens.
        z0: ``(N, k)`` float64 states X_k in PCA coordinates.
        t0: ``(N,)`` float64 their times ``k dt``.
        z1: ``(N, k)`` float64 the next states X_{k+1}.
        keep: sorted indices of the subset (all of ``0..N-1`` when no subset was drawn).
        rng: ``np.random.default_rng(seed)`` after drawing ``keep``: the notebooks
            continue their seeded draws from it.
    """

    fit: Fit
    store: TrajectoryStore
    dt: float
    z0: np.ndarray
    t0: np.ndarray
    z1: np.ndarray
    keep: np.ndarray
    rng: np.random.Generator

    @property
    def states(self) -> np.ndarray:
        """``(n, k)`` the subset of held-out states."""
        return self.z0[self.keep]

    @property
    def times(self) -> np.ndarray:
        """``(n,)`` the subset's times."""
        return self.t0[self.keep]

    @property
    def firsts(self) -> np.ndarray:
        """``(R, k)`` the first state of every held-out response (the states at the
        smallest time)."""
        return self.z0[self.t0 == self.t0.min()]

    @property
    def state_dim(self) -> int:
        """k, the dimension of the PCA coordinates."""
        return int(self.z0.shape[1])


def load_theory_inputs(
    fit_folder: str | os.PathLike,
    store_folder: str | os.PathLike,
    *,
    split: str = "test",
    max_states: int | None = None,
    seed: int = 0,
) -> TheoryInputs:
    """Open a fit and its store and return the held-out transitions of ``split``.

    Args:
        fit_folder: a fit written by notebook 03 (:func:`sde_utils.models.fits.load_fit`).
        store_folder: a trajectory store; when the fit was trained on another store (its
            ``fit.store`` names a different folder), that one is opened instead, by name.
        split: the store split whose transitions are used (at most ``fit.params
            ["max_len"]`` states per sequence, step ``fit.params["dt"]``).
        max_states: the size of the random subset ``keep`` (all states when larger than
            N); None draws no subset (``keep`` is every index and ``rng`` is untouched).
        seed: seeds ``rng``.

    Returns:
        A :class:`TheoryInputs`.
    """
    split = check_str("split", split)
    seed = check_seed(seed)
    if max_states is not None:
        max_states = check_int("max_states", max_states, minimum=1)
    fit = load_fit(fit_folder)
    store = load_store(store_folder)
    if Path(fit.store).name != store.path.name:  # fitted on another store (e.g. notebook 02's)
        store = load_store(Path(fit.store).name)
    dt = float(fit.params["dt"])
    x0, t0, x1 = store.transitions(split, dt=dt, max_len=fit.params["max_len"])
    z0, z1 = fit.features.transform_transitions(x0, x1)
    z0, z1, t0 = (np.asarray(a, dtype=np.float64) for a in (z0, z1, t0))
    rng = np.random.default_rng(seed)
    if max_states is None:
        keep = np.arange(len(z0))
    else:
        keep = draw_subset(rng, len(z0), max_states)
    return TheoryInputs(fit=fit, store=store, dt=dt, z0=z0, t0=t0, z1=z1, keep=keep, rng=rng)


__all__ = ["TheoryInputs", "draw_subset", "load_theory_inputs"]
