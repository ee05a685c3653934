import nbformat

from sde_utils.paths import NOTEBOOKS_DIR
from sde_utils.pipeline import nbcheck


def test_source_notebooks_carry_no_outputs():
    assert nbcheck.main([str(NOTEBOOKS_DIR)]) == 0, "run `make format` to strip notebook outputs"


def test_strip_removes_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1")
    cell.outputs = [
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)
    ]
    cell.execution_count = 1
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert nbcheck.main([str(tmp_path)]) == 1
    assert nbcheck.main(["--strip", str(tmp_path)]) == 0
    assert nbcheck.main([str(tmp_path)]) == 0
    assert not nbcheck.has_outputs(nbformat.read(tmp_path / "a.ipynb", as_version=4))
