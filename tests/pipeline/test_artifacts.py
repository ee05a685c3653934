import importlib

import pytest


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("SDE_OUTPUT_ROOT", str(tmp_path))
    from sde_utils import paths

    importlib.reload(paths)
    from sde_utils.pipeline import artifacts as module

    importlib.reload(module)
    yield module, paths
    monkeypatch.undo()
    importlib.reload(paths)
    importlib.reload(module)


def test_latest_round_trip_and_overwrite(artifacts):
    module, paths = artifacts
    a = paths.PROCESSED_DIR / "trajectories" / "run-a"
    b = paths.PROCESSED_DIR / "trajectories" / "run-b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    module.set_latest("trajectories/01", a)
    assert module.get_latest("trajectories/01") == a
    module.set_latest("trajectories/01", b)
    module.set_latest("fit/03", a)
    assert module.get_latest("trajectories/01") == b
    assert module.get_latest("fit/03") == a


def test_missing_role_says_which_notebook_to_run(artifacts):
    module, _ = artifacts
    with pytest.raises(FileNotFoundError, match="run notebook 03 first"):
        module.get_latest("fit/03")


def test_only_folders_inside_processed(artifacts, tmp_path):
    module, _ = artifacts
    with pytest.raises(ValueError, match="is not inside"):
        module.set_latest("fit/03", tmp_path.parent)
