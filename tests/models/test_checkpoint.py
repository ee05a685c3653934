"""Tests of sde_utils.models.checkpoint: the data fingerprint, the run signature, and a
save -> load -> restore round trip (the resume-identity of whole fits is in test_train)."""

from __future__ import annotations

import pytest
import torch

from sde_utils.models.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    TrainingState,
    copy_state,
    fingerprint,
    restore,
)
from sde_utils.models.neural import NeuralSDE


class _History:
    """The one method a checkpoint needs of a History."""

    def __init__(self, data):
        self.data = data

    def to_dict(self):
        return dict(self.data)


def _state(model, seed=0):
    return TrainingState(
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2),
        generator=torch.Generator().manual_seed(seed),
        history=_History({"train_total": [1.0]}),
        best_state=copy_state(model),
    )


def test_fingerprint_sees_values_dtype_and_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, generator=g, dtype=torch.float64)
    assert fingerprint(x) == fingerprint(x.clone())
    y = x.clone()
    y[50, 1] += 1e-12
    assert fingerprint(y) != fingerprint(x)
    assert fingerprint(x.float()) != fingerprint(x)
    assert fingerprint(x[:99]) != fingerprint(x)
    # beyond `rows` rows only evenly spaced ones are hashed: row 1 of 100 is skipped at rows=3
    z = x.clone()
    z[1] += 1.0
    assert fingerprint(z, rows=3) == fingerprint(x, rows=3)


def test_copy_state_is_detached_and_independent():
    model = NeuralSDE(2, hidden=4)
    state = copy_state(model)
    with torch.no_grad():
        model.drift_net[0].weight.add_(1.0)
    assert not torch.equal(state["drift_net.0.weight"], model.drift_net[0].weight)


def test_no_directory_no_signature_no_file(tmp_path):
    model = NeuralSDE(2, hidden=4)
    ckpt = Checkpoint.for_run(None, model, list(model.parameters()), torch.float32, {}, (), ())
    assert ckpt.path is None and ckpt.signature is None
    ckpt.save(model, _state(model))  # nothing to write
    assert ckpt.load(epochs=5) is None


def test_save_load_restore_round_trip(tmp_path):
    torch.manual_seed(0)
    model = NeuralSDE(2, hidden=4).double()
    data = (torch.zeros(5, 2, dtype=torch.float64),)
    params = {"dt": 1.0, "epochs": 3}
    ckpt = Checkpoint.for_run(
        tmp_path, model, list(model.parameters()), torch.float64, params, data, data
    )
    assert ckpt.path == tmp_path / CHECKPOINT_NAME and "epochs" not in ckpt.signature["params"]
    assert ckpt.load(epochs=3) is None  # nothing saved yet
    state = _state(model, seed=7)
    state.epoch, state.best_val, state.bad_epochs = 2, 0.5, 1
    torch.randn(3, generator=state.generator)  # advance the generator
    ckpt.save(model, state)

    other = NeuralSDE(2, hidden=4).double()
    fresh = _state(other, seed=99)
    history = restore(ckpt.load(epochs=3), other, fresh)
    assert history == {"train_total": [1.0]}
    assert (fresh.epoch, fresh.best_val, fresh.bad_epochs) == (2, 0.5, 1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in other.state_dict().items())
    assert torch.equal(
        torch.randn(3, generator=fresh.generator), torch.randn(3, generator=state.generator)
    )

    with pytest.raises(ValueError, match="already holds 2 epochs > epochs=1"):
        ckpt.load(epochs=1)
    changed = Checkpoint.for_run(
        tmp_path, model, list(model.parameters()), torch.float64, {**params, "dt": 2.0}, data, data
    )
    with pytest.raises(ValueError, match="belongs to a different run"):
        changed.load(epochs=3)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated (torch raises OSError or RuntimeError)
        lambda b: b"",  # empty (EOFError)
        lambda b: b"\x00" * len(b),  # zeroed (RuntimeError: legacy .tar format)
    ],
    ids=["truncated", "empty", "zeroed"],
)
def test_damaged_checkpoint_is_named_and_ignored(tmp_path, damage):
    torch.manual_seed(0)
    model = NeuralSDE(2, hidden=4)
    data = (torch.zeros(5, 2),)
    ckpt = Checkpoint.for_run(
        tmp_path, model, list(model.parameters()), torch.float32, {}, data, data
    )
    ckpt.save(model, _state(model))
    assert ckpt.load(epochs=3) is not None  # control: the intact file is read
    ckpt.path.write_bytes(damage(ckpt.path.read_bytes()))
    pattern = rf"checkpoint {ckpt.path} is damaged \(\w+Error.*\); training restarts from scratch"
    with pytest.warns(UserWarning, match=pattern):
        assert ckpt.load(epochs=3) is None


def test_a_torch_file_that_is_no_checkpoint_is_damaged(tmp_path):
    model = NeuralSDE(2, hidden=4)
    ckpt = Checkpoint.for_run(tmp_path, model, list(model.parameters()), torch.float32, {}, (), ())
    torch.save({"format": 1, "epoch": 2}, ckpt.path)  # readable, but entries are missing
    with pytest.warns(UserWarning, match="damaged \\(not a checkpoint: entries missing\\)"):
        assert ckpt.load(epochs=3) is None
