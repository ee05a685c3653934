"""The papermill runner, on small fixture notebooks written into tmp_path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sde_utils.paths import NOTEBOOKS_DIR, PROJ_ROOT
from sde_utils.pipeline import profiles, run


def _notebook(path: Path, params: str, *body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# fixture"), cell]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in body]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path):
    """Three fixture notebooks; 02 writes what it received, 03 fails in its 4th cell."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    out = tmp_path / "out"
    _notebook(nbs / "01-first.ipynb", "seed = 0\nalpha = 1.0", "x = alpha * 2")
    _notebook(
        nbs / "02-second.ipynb",
        "seed = 0\nname = 'a'\nwidths = [1, 2]",
        f"import json; json.dump(dict(seed=seed, name=name, widths=widths), open({str(out / 'got.json')!r}, 'w'))",
    )
    _notebook(nbs / "03-third.ipynb", "seed = 0", "y = 1", "raise ValueError('boom on purpose')")
    (nbs / "notes.ipynb").write_text("{}")  # not NN-name: ignored by discovery
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "common:\n  seed: 7\n01-first:\n  alpha: 0.5\n02-second:\n  name: b\n  widths: [3, 4]\n"
    )
    out.mkdir()
    return tmp_path


def _cli(project, *args):
    cmd = [
        sys.executable, "-m", "sde_utils.pipeline.run", "--no-progress",
        "--notebooks", str(project / "notebooks"),
        "--output", str(project / "executed"),
        "--summary", str(project / "summary.json"),
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=PROJ_ROOT, timeout=600)


def test_discovery_orders_and_ignores_other_files(project):
    found = run.discover_notebooks(project / "notebooks")
    assert [nb.stem for nb in found] == ["01-first", "02-second", "03-third"]


def test_parameter_names_reads_the_tagged_cell(project):
    names = profiles.parameter_names(project / "notebooks" / "02-second.ipynb")
    assert names == {"seed": 0, "name": "a", "widths": [1, 2]}


def test_unknown_parameter_is_rejected_before_anything_runs(project):
    bad = project / "bad.yaml"
    bad.write_text("common:\n  seed: 1\n02-second:\n  nmae: typo\n")
    proc = _cli(project, "--profile", str(bad))
    assert proc.returncode == 1
    assert "02-second: unknown parameter 'nmae'" in proc.stderr
    assert "allowed: ['name', 'seed', 'widths']" in proc.stderr
    assert not (project / "executed").exists()  # nothing executed, not even 01
    assert not (project / "summary.json").exists()


def test_profile_block_for_a_missing_notebook_is_rejected(project):
    bad = project / "bad.yaml"
    bad.write_text("09-nothing:\n  seed: 1\n")
    with pytest.raises(
        run.RunnerError, match=r"'09-nothing': notebook file .*09-nothing.ipynb does not exist"
    ):
        run.resolve_parameters(
            run.load_profile(bad)[2], run.discover_notebooks(project / "notebooks")
        )
    bad.write_text("plots:\n  seed: 1\n")  # not a notebook name at all
    with pytest.raises(run.RunnerError, match="'plots' matches no notebook"):
        run.resolve_parameters(
            run.load_profile(bad)[2], run.discover_notebooks(project / "notebooks")
        )


@pytest.mark.parametrize(
    ("value", "default", "ok"),
    [
        (40, 30, True), ("40", 30, False), (True, 30, False), (0.5, 30, False),
        (3, 0.1, True), (0.3, 0.1, True), ("0.3", 0.1, False), (False, True, True),
        (1, True, False), ([1, 2], [1], True), ((1,), [1], True), ("1,2", [1], False),
        ("x", "y", True), (None, "y", False), ("anything", None, True), (None, None, True),
    ],
)  # fmt: skip
def test_parameter_types_follow_the_defaults(value, default, ok):
    problem = profiles.type_problem("n", value, default)
    assert (problem is None) == ok, problem
    if not ok:
        assert problem.startswith("n must be a") and repr(value) in problem


def test_a_wrongly_typed_value_fails_before_anything_runs(project):
    bad = project / "bad.yaml"
    bad.write_text('common:\n  seed: "1"\n')
    with pytest.raises(
        run.RunnerError, match=r"seed must be an int like its default 0, got '1' \(str\)"
    ):
        run.resolve_parameters(
            run.load_profile(bad)[2], run.discover_notebooks(project / "notebooks")
        )


def test_output_roots_keep_other_profiles_away_from_the_committed_reports(monkeypatch, tmp_path):
    monkeypatch.delenv("SDE_OUTPUT_ROOT", raising=False)
    assert run.output_root_for("default") == run.paths.PROJ_ROOT
    assert run.output_root_for("quick") == run.paths.PROJ_ROOT / "runs" / "quick"
    assert run.output_root_for("quick", tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("SDE_OUTPUT_ROOT", str(tmp_path / "env"))
    assert run.output_root_for("default") == (tmp_path / "env").resolve()


def test_an_unwritable_output_root_is_refused_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(run.RunnerError, match="is not writable"):
        run.check_writable(blocker / "root")


def test_help_names_the_default_profile_and_examples(capsys):
    with pytest.raises(SystemExit):
        run.main(["--help"])
    out = capsys.readouterr().out
    assert "default profile: default" in out and "--profile quick --only 03" in out


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(
        run.RunnerError,
        match=r"profile 'nope' not found .* known: \['default', 'gpu', 'quick'\]",
    ):
        run.load_profile("nope")


def test_failure_names_notebook_and_cell_and_keeps_partial_output(project):
    proc = _cli(project, "--profile", str(project / "p.yaml"))
    assert proc.returncode == 1
    assert "notebook 03-third failed in cell 4" in proc.stderr
    assert "ValueError: boom on purpose" in proc.stderr
    partial = nbformat.read(project / "executed" / "03-third.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in partial.cells for o in c.get("outputs", []))

    summary = json.loads((project / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["profile"] == "p"
    assert summary["finished"] is not None
    by_name = {nb["notebook"]: nb for nb in summary["notebooks"]}
    assert [by_name[n]["status"] for n in ("01-first", "02-second", "03-third")] == [
        "ok",
        "ok",
        "failed",
    ]
    assert by_name["03-third"]["error"]["cell"] == 4  # in the source notebook
    assert by_name["03-third"]["error"]["output_cell"] == 5  # papermill injected one cell
    assert by_name["03-third"]["error"]["ename"] == "ValueError"
    # common values reach only the notebooks that declare them, blocks override
    assert by_name["01-first"]["parameters"] == {"seed": 7, "alpha": 0.5}
    assert by_name["02-second"]["parameters"] == {"seed": 7, "name": "b", "widths": [3, 4]}
    assert all(nb["seconds"] > 0 for nb in summary["notebooks"])
    # the injected values are what the notebook saw (YAML types preserved, not strings)
    assert json.loads((project / "out" / "got.json").read_text()) == {
        "seed": 7,
        "name": "b",
        "widths": [3, 4],
    }


def test_only_and_from_select_notebooks(project):
    proc = _cli(project, "--profile", str(project / "p.yaml"), "--only", "2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((project / "summary.json").read_text())
    assert [nb["notebook"] for nb in summary["notebooks"]] == ["02-second"]
    assert summary["status"] == "ok"
    assert summary["git_commit"] is None or len(summary["git_commit"]) >= 40

    notebooks = run.discover_notebooks(project / "notebooks")
    assert [nb.number for nb in run.select_notebooks(notebooks, start="02")] == ["02", "03"]
    assert [nb.number for nb in run.select_notebooks(notebooks, only=["1", "03"])] == ["01", "03"]
    with pytest.raises(
        run.RunnerError, match=r"no notebook numbered 05; available: \['01', '02', '03'\]"
    ):
        run.select_notebooks(notebooks, only=["05"])


def test_template_notebook_runs_and_records_its_result(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "01-template.ipynb").write_bytes((NOTEBOOKS_DIR / "template.ipynb").read_bytes())
    profile = tmp_path / "t.yaml"
    profile.write_text("common:\n  seed: 3\n01-template:\n  n_samples: 2000\n")
    env = os.environ | {"SDE_OUTPUT_ROOT": str(tmp_path / "outputs")}
    cmd = [sys.executable, "-m", "sde_utils.pipeline.run", "--no-progress", "--profile", str(profile),
           "--notebooks", str(nbs)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJ_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    # the kernel's own start-up and shutdown chatter goes to its log, not the terminal;
    # no cursor-movement codes when the output is not a terminal
    for noise in ("Kernel is running over TCP", "KeyboardInterrupt", "\x1b["):
        assert noise not in proc.stderr + proc.stdout, noise
    assert "[1/1] 01-template ok in" in proc.stdout
    record = json.loads(
        (tmp_path / "outputs" / "reports" / "metrics" / "template.json").read_text()
    )
    assert record["parameters"] == {"seed": 3, "n_samples": 2000, "true_std": 2.0}
    m = record["metrics"]
    # std of 2000 N(0, 2^2) draws: relative SE ~ 1/sqrt(2*2000) ~ 1.6%, so 10% is > 6 SE
    assert abs(m["std"] - 2.0) < 0.2
    assert abs(m["mean"]) < 6 * m["se_mean"]
    assert (
        tmp_path / "outputs" / "reports" / "figures" / "template-histogram.png"
    ).stat().st_size > 1000
    assert (tmp_path / "outputs" / "reports" / "run_summary.json").is_file()
