"""The chapters are committed without outputs, except the short plain-text facts nbval pins."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "notebooks").glob("*.ipynb"))

spec = importlib.util.spec_from_file_location("notebook_outputs", REPO / "scripts" / "notebook_outputs.py")
notebook_outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebook_outputs)


def test_there_are_twelve_chapters_in_the_table_of_contents():
    toc = (REPO / "_toc.yml").read_text()
    assert len(CHAPTERS) == 12
    for nb in CHAPTERS:
        assert f"notebooks/{nb.stem}" in toc


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    assert notebook_outputs.problems(path) == []


def test_the_checker_catches_outputs(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[0].execution_count = 3
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert len(notebook_outputs.problems(path)) == 2
    notebook_outputs.main(["strip", str(path)])
    assert notebook_outputs.problems(path) == []
