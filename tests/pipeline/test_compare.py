"""The metrics comparison a refactor reruns: it must see a moved number and ignore timings."""

import json

import pytest

from sde_utils.pipeline.compare import compare_metrics, main


def _write(root, name, payload):
    folder = root / "reports" / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(payload))


PAYLOAD = {
    "notebook": "03-train-sde",
    "parameters": {"seed": 0, "store": "/tmp/a/data"},
    "metrics": {"nll": [2.37, 2.52], "training": {"seconds": 1.5, "best_epoch": 7}},
}


def test_identical_runs_differ_only_in_timings_and_paths(tmp_path):
    _write(tmp_path / "old", "03-train-sde", PAYLOAD)
    moved = json.loads(json.dumps(PAYLOAD))
    moved["metrics"]["training"]["seconds"] = 9.0  # a timing: ignored
    moved["parameters"]["store"] = "/elsewhere/data"  # an absolute path: ignored
    _write(tmp_path / "new", "03-train-sde", moved)
    assert compare_metrics(tmp_path / "old", tmp_path / "new") == []
    assert main([str(tmp_path / "old"), str(tmp_path / "new")]) == 0


def test_a_moved_number_a_missing_key_and_a_missing_file_are_reported(tmp_path):
    # the control: the comparison can fail
    _write(tmp_path / "old", "03-train-sde", PAYLOAD)
    _write(tmp_path / "old", "04-lipschitz-growth", {"metrics": {}})
    moved = json.loads(json.dumps(PAYLOAD))
    moved["metrics"]["nll"][1] = 2.52 + 1e-12
    del moved["metrics"]["training"]["best_epoch"]
    _write(tmp_path / "new", "03-train-sde", moved)
    diffs = compare_metrics(tmp_path / "old", tmp_path / "new")
    assert "04-lipschitz-growth.json: only in old" in diffs
    assert any(d.startswith("03-train-sde.json/metrics/nll[1]: 2.52 ->") for d in diffs)
    assert "03-train-sde.json/metrics/training/best_epoch: only in old" in diffs
    # a tolerance admits float noise, not a missing key
    loose = compare_metrics(tmp_path / "old", tmp_path / "new", rtol=1e-9)
    assert not any("nll" in d for d in loose) and len(loose) == 2
    assert main([str(tmp_path / "old"), str(tmp_path / "new")]) == 1


def test_missing_metrics_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics folder"):
        compare_metrics(tmp_path / "nothing", tmp_path / "nothing")
