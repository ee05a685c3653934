"""Nothing lost, nothing silently wrong (issue 16, fit side): concurrent fit_all runs,
damaged fit folders, damaged checkpoints, kill -9 during training, NaN stores.

Every test fits a tiny store (18 OU-like sequences of 12 states in R^6, 6 epochs), so a
fit takes well under a second; subprocesses are used only where concurrency or a real
SIGKILL is the point. "Identical" means bit-identical: the fits are deterministic on CPU
(fixed seeds, one thread), so no tolerance is needed anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sde_utils.extraction.store import TrajectoryStore, load_store
from sde_utils.models import fits

REPO = Path(__file__).resolve().parents[2]
D = 6
PARAMS = dict(
    seed=0, pca_dim=3, dt=1.0, max_len=None, hidden=16, depth=1, activation="tanh",
    time_encoding="linear", time_scale=10.0, sigma_floor=1e-3, lam=1.0, epochs=6,
    batch_size=64, lr=1e-2, weight_decay=0.0, patience=None, horizons=[1, 2],
    n_paths=4, n_eval_trajectories=6,
)  # fmt: skip

# run in a subprocess: fit_all on argv[1] into root argv[2]. With argv[3] == "race", wait
# (after the slow imports) until the file argv[4] exists, so two such processes start
# fitting at the same moment; with argv[3] == "kill", SIGKILL itself after epoch 3 of the
# neural SDE. Prints the fit's folder name and its evaluation as one JSON line.
SCRIPT = """
import json, os, signal, sys, time
from pathlib import Path
from sde_utils.extraction.store import TrajectoryStore, load_store
from sde_utils.models import fits
params = json.loads(sys.argv[5])
if sys.argv[3] == "race":
    Path(sys.argv[4] + f".ready{os.getpid()}").touch()
    while not Path(sys.argv[4]).exists():
        time.sleep(0.01)
if sys.argv[3] == "kill":
    real_fit = fits.fit
    def fit(model, *args, **kwargs):
        def callback(epoch, history):
            if epoch == 3 and type(model).__name__ == "NeuralSDE":
                os.kill(os.getpid(), signal.SIGKILL)
        return real_fit(model, *args, callback=callback, **kwargs)
    fits.fit = fit
fitted = fits.fit_all(load_store(sys.argv[1]), params, root=Path(sys.argv[2]), progress=False)
print(json.dumps({"path": fitted.path.name, "evaluation": fitted.evaluation}))
"""


def _run_script(store, root, mode, go="", **kw):
    args = [sys.executable, "-c", SCRIPT, str(store.path), str(root), mode, go, json.dumps(PARAMS)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory, ou_store):
    """18 OU-like sequences of 12 states in R^6, 6 conversations per split."""
    root = tmp_path_factory.mktemp("stores")
    return load_store(ou_store("ou", root, n_seqs=18, length=12, dim=D, params={"n": 18}))


@pytest.fixture(scope="module")
def clean(store, tmp_path_factory):
    """An uninterrupted fit: the reference every recovered fit must equal bit for bit."""
    return fits.fit_all(store, PARAMS, root=tmp_path_factory.mktemp("clean"), progress=False)


def _assert_identical(fit, ref):
    assert fit.path.name == ref.path.name  # same fit id
    assert json.dumps(fit.evaluation) == json.dumps(ref.evaluation)
    for name in fits.MODEL_NAMES:
        a, b = fit.models[name].state_dict(), ref.models[name].state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
        ha, hb = fit.histories[name].to_dict(), ref.histories[name].to_dict()
        ha.pop("seconds"), hb.pop("seconds")  # wall time, the one thing allowed to differ
        assert ha == hb, name


def _leftovers(root):
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))


def test_two_concurrent_fit_all_runs_share_one_fit(store, clean, tmp_path):
    """This process and a subprocess start fit_all on the same store, parameters and root
    at the same moment (one subprocess only: its imports cost seconds)."""
    root, go = tmp_path / "fits", tmp_path / "go"
    proc = _run_script(store, root, "race", str(go))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("go.ready*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the fitting subprocess died while starting"
        time.sleep(0.01)
    go.touch()  # the subprocess is past its imports: both start fitting now
    here = fits.fit_all(store, PARAMS, root=root, progress=False)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0
    there = json.loads(out.strip().splitlines()[-1])
    assert there["path"] == here.path.name == clean.path.name
    assert json.dumps(there["evaluation"]) == json.dumps(clean.evaluation)
    assert _leftovers(root) == [clean.path.name]  # one fit, no .partial, nothing moved aside
    _assert_identical(here, clean)
    _assert_identical(fits.load_fit(root / clean.path.name), clean)


def test_intact_fit_is_reused_without_training(store, tmp_path, monkeypatch):
    first = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.path.iterdir()}
    calls = []
    monkeypatch.setattr(fits, "fit", lambda *a, **k: calls.append(a))
    again = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    assert calls == []  # control for the damaged case below: nothing retrained
    assert {p.name: p.stat().st_mtime_ns for p in again.path.iterdir()} == stamps


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_model_file_is_named_and_the_fit_rebuilt(store, clean, tmp_path, damage):
    first = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    model = first.path / "model_neural_sde.pt"
    data = model.read_bytes()
    if damage == "truncate":
        model.write_bytes(data[: len(data) // 2])
    else:  # same size, one byte changed: only the hash can see it
        model.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    with pytest.raises(fits.DamagedFitError, match="model_neural_sde.pt differs from the sha256"):
        fits.load_fit(first.path)
    with pytest.warns(UserWarning, match=r"model_neural_sde\.pt differs.*moved it to .*damaged-0"):
        rebuilt = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    _assert_identical(rebuilt, clean)
    assert _leftovers(tmp_path) == sorted([first.path.name, f"{first.path.name}.damaged-0"])
    aside = tmp_path / f"{first.path.name}.damaged-0" / "model_neural_sde.pt"
    assert aside.read_bytes() != data  # the damaged folder was kept as it was, not deleted


def test_incomplete_fit_folder_from_the_issue_is_rebuilt(store, clean, tmp_path):
    """The folder the issue found: fit.json and the drift_only files only."""
    first = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    for p in first.path.iterdir():
        if p.name != "fit.json" and "drift_only" not in p.name:
            p.unlink()
    with pytest.warns(UserWarning, match=r"features\.npz is missing"):
        rebuilt = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    _assert_identical(rebuilt, clean)


def test_fit_without_recorded_hashes_is_not_reused(store, clean, tmp_path):
    first = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    meta = json.loads((first.path / "fit.json").read_text())
    del meta["files"]  # as written before hashes were recorded
    (first.path / "fit.json").write_text(json.dumps(meta))
    assert fits.load_fit(first.path).evaluation == clean.evaluation  # still loadable
    with pytest.warns(UserWarning, match="records no file hashes"):
        rebuilt = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    _assert_identical(rebuilt, clean)


def _interrupt_after_3_epochs(store, root, monkeypatch):
    real_fit = fits.fit

    def killed(model, *args, **kwargs):
        def callback(epoch, history):
            if epoch == 3:
                raise KeyboardInterrupt("killed on purpose")

        return real_fit(model, *args, callback=callback, **kwargs)

    monkeypatch.setattr(fits, "fit", killed)
    with pytest.raises(KeyboardInterrupt):
        fits.fit_all(store, PARAMS, root=root, progress=False)
    monkeypatch.setattr(fits, "fit", real_fit)
    return next(root.glob("*.partial")) / "checkpoints" / "neural_sde" / "checkpoint.pt"


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_checkpoint_warns_and_restarts(store, clean, tmp_path, monkeypatch, damage):
    ckpt = _interrupt_after_3_epochs(store, tmp_path, monkeypatch)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a zip archive")
    pattern = rf"checkpoint {ckpt} is damaged \(.+\); training restarts from scratch"
    with pytest.warns(UserWarning, match=pattern):
        resumed = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    _assert_identical(resumed, clean)
    assert _leftovers(tmp_path) == [clean.path.name]


def test_kill_9_during_training_then_resume_is_identical(store, clean, tmp_path):
    proc = _run_script(store, tmp_path, "kill")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    partial = next(tmp_path.glob("*.partial"))
    assert (partial / "checkpoints" / "neural_sde" / "checkpoint.pt").is_file()
    assert not (tmp_path / clean.path.name).exists()
    resumed = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)  # lock freed by death
    _assert_identical(resumed, clean)
    assert _leftovers(tmp_path) == [clean.path.name]


def test_nan_store_is_refused_naming_store_split_and_row(store, tmp_path):
    """A store holding a NaN state (in memory: load_store may refuse such a file itself)."""
    emb = np.array(store.embeddings)
    val = store.sequences[store.sequences["split"] == "val"].iloc[2]
    row = int(val["offset"]) + 5
    emb[row, 1] = np.nan
    bad = TrajectoryStore(store.path, store.meta, emb, store.sequences)
    root = tmp_path / "fits"
    expected = (
        rf"store {store.path}: split 'val' has non-finite states \(NaN or inf\) in 1 of 6 "
        rf"sequences; first: seq_id={int(val['seq_id'])} \(pair_id='{val['pair_id']}'\), "
        rf"state k=5 \(embeddings.npy row {row}\)"
    )
    with pytest.raises(ValueError, match=expected):
        fits.fit_all(bad, PARAMS, root=root, progress=False)
    assert _leftovers(root) == []  # no .partial, no fit
    fits.check_finite_states(store)  # control: the intact store passes


def test_fit_of_other_parameters_under_the_same_id_is_kept_not_reused(store, clean, tmp_path):
    first = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    meta = json.loads((first.path / "fit.json").read_text())
    meta["key"]["lr"] = 0.5  # as if another parameter set hashed to the same id
    (first.path / "fit.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="other parameters under the same id"):
        rebuilt = fits.fit_all(store, PARAMS, root=tmp_path, progress=False)
    _assert_identical(rebuilt, clean)
    aside = tmp_path / f"{first.path.name}.damaged-0" / "fit.json"
    assert json.loads(aside.read_text())["key"]["lr"] == 0.5  # kept, not deleted
