"""Cross-fitting over prompts (notebook 08): folds, splits without leaks, held-out tables.

``fit_all`` is replaced by a fake that returns a linear SDE with a known constant sigma, so
the held-out ``sigma2`` has a closed form: with a standardising second map of scale ``s``
the model-space trace is ``sum_i sigma_i^2 s_i^2``.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sde_utils.analysis import sampled_fit as S
from sde_utils.models.baselines import LinearSDE, RandomWalk
from sde_utils.models.features import FeatureMap


def samples(make_store, n_conv=8, per=3, temps=(0.7, 1.3)):
    """``per`` samples of each of ``n_conv`` prompts at every temperature, lengths 4..6."""
    n = n_conv * per * len(temps)
    lengths = 4 + np.arange(n) % 3
    store = make_store(lengths, dim=3)
    seqs = store.sequences
    seqs["conv_id"] = [f"c{i // (per * len(temps))}" for i in range(n)]
    seqs["prompt_index"] = [i // (per * len(temps)) for i in range(n)]
    seqs["temperature"] = [temps[(i // per) % len(temps)] for i in range(n)]
    seqs["token_ids"] = [[int(i % 2), 5] + [7] * (L - 2) for i, L in enumerate(lengths)]
    return store


def test_prompt_folds_balanced_seeded_and_checked(make_store):
    seqs = samples(make_store).sequences
    folds = S.prompt_folds(seqs, 3, seed=4)
    assert sorted(folds) == sorted(seqs["conv_id"].unique())
    sizes = np.bincount(list(folds.values()))
    assert sizes.max() - sizes.min() <= 1  # 8 prompts in 3 folds: 3, 3, 2
    assert folds == S.prompt_folds(seqs, 3, seed=4)  # same seed, same folds
    assert folds != S.prompt_folds(seqs, 3, seed=5)
    with pytest.raises(ValueError, match="only 8 prompts"):
        S.prompt_folds(seqs, 9, seed=0)
    with pytest.raises(ValueError, match="n_folds"):
        S.prompt_folds(seqs, 1, seed=0)


def test_fold_store_holds_each_prompt_in_one_split(make_store):
    store = samples(make_store)
    folds = S.prompt_folds(store.sequences, 4, seed=0)
    views = [S.fold_store(store, folds, i, 0.2, seed=0) for i in range(4)]
    for i, view in enumerate(views):
        seqs = view.sequences
        assert (seqs.groupby("conv_id")["split"].nunique() == 1).all()  # no prompt in two
        test = set(seqs.loc[seqs["split"] == "test", "conv_id"])
        assert test == {c for c, f in folds.items() if f == i}
        assert (seqs["split"] == "val").any() and (seqs["split"] == "train").any()
        assert store.sequences["split"].eq("train").all()  # the original is untouched
    hashes = {v.meta["content_hash"] for v in views}
    assert len(hashes) == 4  # fit_all's cache key tells the folds apart
    table = S.split_table(
        [S.Fold(i, v, None, None) for i, v in enumerate(views)]  # fits not needed here
    )
    tested = table[table["split"] == "test"]
    assert tested["prompts"].sum() == 8 and list(tested["fold"]) == [0, 1, 2, 3]


def test_split_table_rejects_leaks(make_store):
    # control: the same view twice tests its prompts in two folds; a prompt whose samples
    # sit in two splits of one fold is a leak too
    store = samples(make_store)
    folds = S.prompt_folds(store.sequences, 2, seed=0)
    view = S.fold_store(store, folds, 0, 0.3, seed=0)
    with pytest.raises(ValueError, match="tested in folds 0 and 1"):
        S.split_table([S.Fold(0, view, None, None), S.Fold(1, view, None, None)])
    seqs = view.sequences.copy()
    seqs.loc[0, "split"] = "train" if seqs.loc[0, "split"] != "train" else "test"
    leaky = type(view)(view.path, view.meta, view.embeddings, seqs)
    with pytest.raises(ValueError, match="in two splits"):
        S.split_table([S.Fold(0, leaky, None, None)])


def test_detectable_effect_is_2_8_standard_errors():
    z = 1.959963984540054
    iv = {"estimate": 0.0, "low": -z, "high": z}  # se 1 from the width
    assert S.detectable_effect(iv) == pytest.approx(z + 0.8416212335729143, rel=1e-12)
    assert S.detectable_effect({**iv, "se": 0.5}) == pytest.approx((z + 0.841621) / 2, rel=1e-6)
    assert np.isnan(S.detectable_effect({"low": float("nan"), "high": float("nan")}))
    with pytest.raises(ValueError, match="power"):
        S.detectable_effect(iv, power=1.0)


def fake_cross_fit(monkeypatch, store, sigma, n_folds=2):
    """:func:`cross_fit` with ``fit_all`` returning a constant-sigma linear SDE whose
    feature map standardises 03's coordinates (identity here: no PCA, no scaling)."""
    base_features = FeatureMap(pca_dim=None, standardize=False).fit(
        np.asarray(store.embeddings, dtype=np.float64)
    )
    base = SimpleNamespace(
        params={"dt": 1.0, "pca_dim": 3}, features=base_features, path=Path("fit-03")
    )
    calls = []

    def fake_fit_all(projected, params, progress=False):
        calls.append((projected, params))
        features = FeatureMap(pca_dim=None).fit(
            projected.split("train").states().astype(np.float64)
        )
        sde = LinearSDE(3).double()
        sde.sigma_diag.fill_(sigma)
        walk = RandomWalk(3).double()
        walk.sigma_diag.fill_(sigma)
        return SimpleNamespace(
            sde=sde,
            features=features,
            models={"neural_sde": sde, "random_walk": walk},
            path=Path(f"fit-{len(calls)}"),
        )

    monkeypatch.setattr(S, "fit_all", fake_fit_all)
    folds = S.cross_fit(
        store, base, n_folds=n_folds, val_frac=0.25, seed=0, epochs=3, hidden=8, patience=1
    )
    return base, folds, calls


def test_cross_fit_tokens_cover_every_prompt_once_with_closed_form_sigma2(monkeypatch, make_store):
    store = samples(make_store)
    base, folds, calls = fake_cross_fit(monkeypatch, store, sigma=0.5)
    assert len(folds) == len(calls) == 2
    params = calls[0][1]
    assert params["pca_dim"] is None and params["epochs"] == 3 and params["hidden"] == 8
    tokens = S.held_out_tokens(folds, base, dt=1.0)
    # every transition of the store, each judged by the fold that held its prompt out
    assert len(tokens) == int((store.sequences["length"] - 1).sum())
    for f in folds:
        test = set(f.store.sequences.loc[f.store.sequences["split"] == "test", "conv_id"])
        assert set(tokens.loc[tokens["fold"] == f.index, "conv_id"]) == test
        scale = f.fit.features.scale_
        want = (0.25 * scale**2).sum()  # sum_i sigma_i^2 s_i^2, sigma = 0.5
        got = tokens.loc[tokens["fold"] == f.index, "sigma2"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12)  # float64 throughout
        assert not np.isclose(want, 3 * 0.25)  # control: the scale matters (not the identity)
    x = np.asarray(store.embeddings, dtype=np.float64)
    chained = folds[0].features.transform(x[:5])  # model space -> 03's -> the fold's
    want = folds[0].fit.features.transform(base.features.transform(x[:5]))
    np.testing.assert_allclose(chained, want, rtol=1e-12)
    wrong = base.features.transform(folds[0].fit.features.transform(x[:5]))  # control
    assert not np.allclose(chained, wrong)


def test_held_out_first_step_groups_unique_across_folds(monkeypatch, make_store):
    store = samples(make_store, n_conv=4, per=4)
    _, folds, _ = fake_cross_fit(monkeypatch, store, sigma=0.5)
    first = S.held_out_first_step(folds, 1.0, dims=2, min_size=2, n_model=50, n_null=5, seed=0)
    assert set(first["fold"]) == {0, 1}
    per_group = first.groupby("group")["fold"].nunique()
    assert (per_group == 1).all()  # a group number never spans two folds
    # samples of a prompt at a temperature alternate first tokens 0/1: two groups each
    assert first["group"].nunique() == 4 * 2 * 2
    assert set(first["model"]) == {"neural_sde", "random_walk"}
