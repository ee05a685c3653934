"""Tests for sde_utils.models.features: exact round trips, known-rank PCA, train-only fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from sde_utils.models.features import FeatureMap


def gaussian_data(n=400, d=6, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d) * 5


def test_no_reduction_round_trip_is_exact_and_standardises():
    X = gaussian_data()
    fm = FeatureMap(pca_dim=None).fit(X)
    Z = fm.transform(X)
    assert Z.shape == X.shape and fm.output_dim == X.shape[1]
    # standardised: zero mean, unit (population) std; 1e-12 is float64 rounding on ~1 values
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(0), 1, atol=1e-12)
    # exact inverse up to float64 rounding of a subtract/divide/multiply/add chain
    np.testing.assert_allclose(fm.inverse_transform(Z), X, rtol=1e-13, atol=1e-12)
    assert fm.n_components_for((1.0,)) == {1.0: X.shape[1]}  # full rank data


def test_known_rank_pca_reconstructs_exactly():
    rng = np.random.default_rng(1)
    n, d, r = 300, 10, 3
    X = rng.normal(size=(n, r)) @ rng.normal(size=(r, d)) + rng.normal(size=d)
    fm = FeatureMap(pca_dim=r, standardize=False).fit(X)
    Z = fm.transform(X)
    assert Z.shape == (n, r)
    # rank-r data lies in an r-dim affine subspace: the projection is lossless up to
    # float64 rounding of the eigendecomposition (~1e-12 relative to the data scale)
    np.testing.assert_allclose(fm.inverse_transform(Z), X, rtol=0, atol=1e-10 * np.abs(X).max())
    np.testing.assert_allclose(fm.explained_variance_ratio_.sum(), 1.0, atol=1e-12)
    assert fm.n_components_for((0.5, 0.9, 1.0))[1.0] == r
    # with one component fewer the reconstruction error is far from zero: the check can fail
    fm2 = FeatureMap(pca_dim=r - 1, standardize=False).fit(X)
    assert np.abs(fm2.inverse_transform(fm2.transform(X)) - X).max() > 1e-3


def test_matches_scikit_learn_pipeline():
    X = gaussian_data(d=8)
    k = 3
    fm = FeatureMap(pca_dim=k).fit(X)
    ref_pca = PCA(n_components=k, svd_solver="full").fit(StandardScaler().fit_transform(X))
    ref = ref_pca.transform(StandardScaler().fit(X).transform(X))
    Z = fm.transform(X)
    # components are defined up to sign; compare column-wise |.|, then the ratios
    # (1e-10: two eigensolvers on the same float64 matrix agree to rounding)
    np.testing.assert_allclose(np.abs(Z), np.abs(ref), atol=1e-10)
    np.testing.assert_allclose(fm.explained_variance_ratio_, ref_pca.explained_variance_ratio_)
    cum = np.cumsum(fm.full_explained_variance_ratio_)
    for f, kf in fm.n_components_for((0.5, 0.9, 0.99)).items():
        assert cum[kf - 1] >= f - 1e-12 and (kf == 1 or cum[kf - 2] < f)


def test_fitted_on_train_rows_only():
    rng = np.random.default_rng(2)
    X_train = rng.normal(size=(200, 4))
    X_val = rng.normal(size=(50, 4)) * 10 + 100  # a very different split
    fm = FeatureMap(pca_dim=None).fit(X_train)
    # the fitted statistics are the training split's, exactly as computed by numpy
    np.testing.assert_allclose(fm.mean_, X_train.mean(0), rtol=1e-14)
    np.testing.assert_allclose(fm.scale_, X_train.std(0), rtol=1e-13)
    state = (fm.mean_.copy(), fm.scale_.copy())
    Z_val = fm.transform(X_val)
    # transforming validation rows does not refit ...
    np.testing.assert_array_equal(fm.mean_, state[0])
    np.testing.assert_array_equal(fm.scale_, state[1])
    # ... so they land far from the standardised training cloud (a leak would centre them)
    np.testing.assert_allclose(Z_val.mean(0), (X_val.mean(0) - state[0]) / state[1], rtol=1e-12)
    assert np.all(Z_val.mean(0) > 50)
    # and fitting on train + val would give different statistics
    leaked = FeatureMap(pca_dim=None).fit(np.vstack([X_train, X_val]))
    assert np.abs(leaked.mean_ - fm.mean_).max() > 10


def test_dtypes_and_torch_inputs():
    X = gaussian_data().astype(np.float32)
    fm = FeatureMap(pca_dim=3).fit(X)
    Z = fm.transform(X)
    assert Z.dtype == np.float32 and fm.transform(X.astype(np.float64)).dtype == np.float64
    Xt = torch.from_numpy(X)
    Zt = fm.transform(Xt)
    assert isinstance(Zt, torch.Tensor) and Zt.dtype == torch.float32
    np.testing.assert_allclose(Zt.numpy(), Z)  # same float64 arithmetic, same cast
    z0, z1 = fm.transform_transitions(Xt[:-1], Xt[1:])
    assert torch.equal(z0, Zt[:-1]) and torch.equal(z1, Zt[1:])
    back = fm.inverse_transform(Zt.double())
    assert back.dtype == torch.float64 and back.shape == Xt.shape


@pytest.mark.parametrize("pca_dim", [None, 2])
def test_save_load_round_trip(tmp_path, pca_dim):
    X = gaussian_data()
    fm = FeatureMap(pca_dim=pca_dim, seed=3).fit(X)
    path = fm.save(tmp_path / "sub" / "features.npz")
    loaded = FeatureMap.load(path)  # np.load(allow_pickle=False) inside
    assert loaded.config() == fm.config() and loaded.n_train_ == X.shape[0]
    np.testing.assert_array_equal(loaded.transform(X), fm.transform(X))
    np.testing.assert_array_equal(loaded.full_explained_variance_ratio_,
                                  fm.full_explained_variance_ratio_)  # fmt: skip
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary left behind


@pytest.mark.parametrize(
    "tag", ["sde_utils.features.FeatureMap/1", "sde_utils.models.features.FeatureMap/1"]
)
def test_both_format_tags_load_and_others_are_refused(tmp_path, tag):
    """Fits saved before and after the package moved to sde_utils/models/ stay loadable."""
    X = gaussian_data()
    fm = FeatureMap(pca_dim=2).fit(X)
    path = fm.save(tmp_path / "f.npz")
    with np.load(path) as data:
        arrays = dict(data)
    assert json.loads(str(arrays["meta"]))["format"] == "sde_utils.features.FeatureMap/1"
    for value, ok in ((tag, True), ("other/1", False)):
        arrays["meta"] = np.array(json.dumps({**json.loads(str(arrays["meta"])), "format": value}))
        np.savez(tmp_path / "g.npz", **arrays)
        if ok:
            loaded = FeatureMap.load(tmp_path / "g.npz")
            np.testing.assert_array_equal(loaded.transform(X), fm.transform(X))
        else:
            with pytest.raises(ValueError, match="is not a saved FeatureMap"):
                FeatureMap.load(tmp_path / "g.npz")


def test_errors():
    X = gaussian_data(n=5, d=6)
    with pytest.raises(ValueError, match=r"pca_dim must be an int >= 1, got 0"):
        FeatureMap(pca_dim=0)
    with pytest.raises(TypeError, match=r"pca_dim must be an int >= 1, got 2.5 \(float\)"):
        FeatureMap(pca_dim=2.5)
    with pytest.raises(TypeError, match="standardize must be True or False, got 1"):
        FeatureMap(standardize=1)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        FeatureMap(seed=-1)
    with pytest.raises(ValueError, match=r"pca_dim=7 exceeds .* min\(N_train=5, d=6\) = 5"):
        FeatureMap(pca_dim=7).fit(X)
    with pytest.raises(ValueError, match=r"N_train=5"):  # more components than rows
        FeatureMap(pca_dim=6).fit(X)
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureMap().transform(X)
    fm = FeatureMap(pca_dim=2).fit(X)
    with pytest.raises(ValueError, match="X has 4 columns, expected 6"):
        fm.transform(X[:, :4])
    with pytest.raises(ValueError, match="Z has 6 columns, expected 2"):
        fm.inverse_transform(X)
    with pytest.raises(ValueError, match="must be 2-D"):
        fm.transform(X[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        fm.transform(np.full((2, 6), np.nan))
    with pytest.raises(ValueError, match=r"fractions must lie in \(0, 1\]"):
        fm.n_components_for((0.0,))
