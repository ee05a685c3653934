"""fit_all on a small synthetic store: bad parameters, reuse, resume after a kill."""

import json

import pytest

from sde_utils.extraction.store import load_store
from sde_utils.models import finetune, fits

D = 6
PARAMS = dict(
    seed=0, pca_dim=3, dt=1.0, max_len=None, hidden=16, depth=1, activation="tanh",
    time_encoding="linear", time_scale=10.0, sigma_floor=1e-3, lam=1.0, epochs=6,
    batch_size=64, lr=1e-2, weight_decay=0.0, patience=None, horizons=[1, 2],
    n_paths=4, n_eval_trajectories=6,
)  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory, ou_store):
    """18 OU-like sequences of 12 states in R^6, 6 conversations per split."""
    root = tmp_path_factory.mktemp("stores")
    return load_store(ou_store("ou", root, n_seqs=18, length=12, dim=D, params={"n": 18}))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pca_dim": D + 1}, "larger than the state dimension"),
        ({"pca_dim": 0}, "pca_dim must be an int >= 1, got 0"),
        ({"dt": 0.0}, "dt must be a finite number > 0"),
        ({"hidden": 0}, "hidden must be an int >= 1"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
        ({"activation": "gelu"}, "activation"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"patience": 0}, "patience must be an int >= 1, got 0"),
        ({"n_paths": 0}, "n_paths must be an int >= 1, got 0"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"multistep_k": 0}, "multistep_k must be an int >= 1"),
        ({"contraction": -1.0}, "contraction"),
        ({"latent_window": 0}, "latent_window must be an int >= 1"),
        ({"latent_obs_frac": 0.0}, "latent_obs_frac must be a finite number > 0"),
        ({"contraction_radius": 0.0}, "radius"),
    ],
)
def test_bad_parameters_fail_before_any_work(store, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        fits.fit_all(store, PARAMS | change, root=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())  # nothing was written


def test_empty_split_is_an_error(store, tmp_path):
    no_val = store.split("train")  # a view without val/test conversations
    with pytest.raises(ValueError, match="has no 'val' sequences"):
        fits.fit_all(no_val, PARAMS, root=tmp_path, progress=False)


def test_fit_round_trip_and_reuse(store, tmp_path):
    first = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    assert set(first.models) == set(fits.MODEL_NAMES)
    assert first.features.output_dim == 3
    assert first.histories["neural_sde"].n_epochs == PARAMS["epochs"]
    multi = first.histories["multistep_sde"]
    assert type(first.models["multistep_sde"]).__name__ == "MultiStepNeuralSDE"
    assert multi.params["objective"]["name"] == "multi_step"
    assert multi.params["objective"]["k"] == finetune.MULTISTEP_DEFAULTS["multistep_k"]
    assert 1 <= multi.n_epochs <= finetune.MULTISTEP_DEFAULTS["multistep_epochs"]
    assert first.histories["neural_sde"].params["objective"] == {"name": "one_step"}
    latent = first.histories["latent_sde"]
    assert type(first.models["latent_sde"]).__name__ == "LatentSDE"
    assert latent.params["objective"]["name"] == "elbo"
    assert latent.params["lam"] == 1.0  # the KL weighs 1: the loss is the negative ELBO
    assert 1 <= latent.n_epochs <= finetune.LATENT_DEFAULTS["latent_epochs"]
    assert not (tmp_path / f"{first.path.name}.partial").exists()
    stamp = (first.path / "model_neural_sde.pt").stat().st_mtime_ns
    again = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    assert again.path == first.path
    assert (again.path / "model_neural_sde.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    assert again.evaluation == first.evaluation
    other = fits.fit_all(store, PARAMS | {"seed": 1}, root=tmp_path, progress=False)
    assert other.path != first.path  # other parameters, other fit


def test_killed_fit_resumes_to_the_same_numbers(store, tmp_path, monkeypatch):
    clean = fits.fit_all(store, PARAMS, root=tmp_path / "clean", progress=False)

    real_fit = fits.fit

    def killed_after_3_epochs(model, *args, **kwargs):
        def callback(epoch, history):
            if epoch == 3:
                raise KeyboardInterrupt("killed on purpose")

        return real_fit(model, *args, callback=callback, **kwargs)

    monkeypatch.setattr(fits, "fit", killed_after_3_epochs)
    with pytest.raises(KeyboardInterrupt):
        fits.fit_all(store, PARAMS, root=tmp_path / "killed", progress=False)
    partial = next((tmp_path / "killed").glob("*.partial"))
    assert (partial / "checkpoints" / "neural_sde" / "checkpoint.pt").is_file()
    monkeypatch.setattr(fits, "fit", real_fit)

    resumed = fits.fit_all(store, PARAMS, root=tmp_path / "killed", progress=False)
    assert json.dumps(resumed.evaluation) == json.dumps(clean.evaluation)  # bit-identical
    h_clean, h_resumed = clean.histories["neural_sde"], resumed.histories["neural_sde"]
    assert h_resumed.val_total == h_clean.val_total
    assert h_resumed.train_total == h_clean.train_total


def test_fit_json_records_the_sha256_of_every_file(store, tmp_path):
    import hashlib

    fitted = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    meta = json.loads((fitted.path / "fit.json").read_text())
    on_disk = {p.name for p in fitted.path.iterdir()} - {"fit.json"}
    assert set(meta["files"]) == on_disk  # every file but fit.json itself, nothing else
    for name, digest in meta["files"].items():
        assert hashlib.sha256((fitted.path / name).read_bytes()).hexdigest() == digest
    assert fits.verify_fit(fitted.path) == meta
    history = fitted.path / "history_linear_ou.json"
    history.write_text(history.read_text() + " ")  # control: one extra byte is seen
    with pytest.raises(fits.DamagedFitError, match="history_linear_ou.json differs"):
        fits.verify_fit(fitted.path)
