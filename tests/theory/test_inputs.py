"""Tests for sde_utils.theory.inputs: the shared loader of notebooks 04-06, on a small
synthetic store and fit (the same numbers as the notebooks' former seven-line prelude)."""

import numpy as np
import pytest

from sde_utils import paths
from sde_utils.extraction.store import load_store
from sde_utils.models import fits
from sde_utils.theory.inputs import TheoryInputs, draw_subset, load_theory_inputs

D = 5
PARAMS = dict(
    seed=0, pca_dim=3, dt=1.0, max_len=8, hidden=8, depth=1, activation="tanh",
    time_encoding="linear", time_scale=10.0, sigma_floor=1e-3, lam=1.0, epochs=2,
    batch_size=64, lr=1e-2, weight_decay=0.0, patience=None, horizons=[1],
    n_paths=2, n_eval_trajectories=3, latent_window=4,  # max_len 8 holds 7 transitions
)  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory, ou_store):
    """Two stores of 12 AR(1) sequences of 10 states in R^5 (4 conversations per split) and
    a fit on the first."""
    root = tmp_path_factory.mktemp("theory-inputs")
    shape = dict(n_seqs=12, length=10, dim=D)
    store_dir = ou_store("ou", root / "trajectories", seed=0, params={"seed": 0}, **shape)
    other_dir = ou_store("other", root / "trajectories", seed=1, params={"seed": 1}, **shape)
    fit = fits.fit_all(load_store(store_dir), PARAMS, root=root / "fits", progress=False)
    return fit.path, store_dir, other_dir


def test_loader_reproduces_the_notebook_prelude(built):
    fit_dir, store_dir, _ = built
    got = load_theory_inputs(fit_dir, store_dir, split="test", max_states=7, seed=3)
    assert isinstance(got, TheoryInputs) and got.store.path.name == store_dir.name
    # the former prelude, step by step
    fit, store = fits.load_fit(fit_dir), load_store(store_dir)
    x0, t0, x1 = store.transitions("test", dt=1.0, max_len=8)
    z0, z1 = fit.features.transform_transitions(x0, x1)
    rng = np.random.default_rng(3)
    keep = np.sort(rng.choice(len(z0), size=min(7, len(z0)), replace=False))
    assert got.dt == 1.0 and got.state_dim == 3
    assert got.z0.dtype == got.z1.dtype == got.t0.dtype == np.float64
    np.testing.assert_array_equal(got.z0, np.asarray(z0, np.float64))  # same transform
    np.testing.assert_array_equal(got.z1, np.asarray(z1, np.float64))
    np.testing.assert_array_equal(got.keep, keep)
    np.testing.assert_array_equal(got.states, got.z0[keep])
    np.testing.assert_array_equal(got.times, np.asarray(t0, np.float64)[keep])
    assert got.rng.integers(1 << 30) == rng.integers(1 << 30)  # the generator continues
    # 4 test sequences of 8 states: 7 transitions each, the first at t = 0
    assert len(got.z0) == 28 and got.firsts.shape == (4, 3)


def test_no_subset_leaves_the_generator_untouched(built):
    fit_dir, store_dir, _ = built
    got = load_theory_inputs(fit_dir, store_dir, seed=5)
    np.testing.assert_array_equal(got.keep, np.arange(len(got.z0)))
    assert got.rng.integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)


def test_a_fit_of_another_store_opens_its_own(built, monkeypatch):
    fit_dir, store_dir, other_dir = built
    monkeypatch.setattr(paths, "TRAJECTORIES_DIR", store_dir.parent)
    got = load_theory_inputs(fit_dir, other_dir, max_states=3)
    assert got.store.path.name == store_dir.name  # the fit's store, found by name


def test_draw_subset_and_bad_arguments(built):
    fit_dir, store_dir, _ = built
    idx = draw_subset(np.random.default_rng(0), 10, 20)
    np.testing.assert_array_equal(idx, np.arange(10))  # more asked than there are: all, sorted
    with pytest.raises(ValueError, match="max_states must be an int >= 1, got 0"):
        load_theory_inputs(fit_dir, store_dir, max_states=0)
    with pytest.raises(TypeError, match="split must be a string"):
        load_theory_inputs(fit_dir, store_dir, split=None)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        load_theory_inputs(fit_dir, store_dir, seed=-1)
