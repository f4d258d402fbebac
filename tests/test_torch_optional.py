"""PyTorch is optional: one spelling of the advice everywhere, and nothing pinned depends on it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from lenet_core.torch_compat import TORCH_ADVICE, TORCH_INSTALL

REPO = Path(__file__).resolve().parent.parent
CHAPTER_11 = REPO / "notebooks" / "11_checking_against_pytorch.ipynb"
ADVISED_IN = [REPO / "README.md", REPO / "book" / "setup.md", REPO / "pyproject.toml", REPO / "requirements.txt"]


def test_the_torch_advice_has_one_spelling_everywhere():
    """README, setup page, pyproject, requirements, the package, the tests and chapter 11 all give
    the same CPU-only install line, and no other way to install PyTorch."""
    for path in ADVISED_IN:
        assert TORCH_INSTALL in path.read_text(), path
    assert TORCH_INSTALL in TORCH_ADVICE
    sources = ADVISED_IN + sorted((REPO / "lenet_core").rglob("*.py")) + sorted((REPO / "tests").glob("*.py"))
    for path in sources + [CHAPTER_11]:
        if path == Path(__file__):
            continue
        text = path.read_text()
        for match in re.finditer(r"pip install [^\n`\"')]*torch[^\n`\"')]*", text):
            assert match.group(0).startswith(TORCH_INSTALL), f"{path.name}: {match.group(0)!r}"
        assert '.[torch]"' not in text, f"{path.name} advises the torch extra (PyPI's large CUDA build)"


PROBE = r"""
import contextlib, io, json, sys
sys.modules["torch"] = None          # as if PyTorch were not installed: `import torch` fails
import nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
ns, seen = {}, []
for cell in nb.cells:
    if cell.cell_type != "code":
        continue
    code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<cell>", "exec"), ns)
    if "nbval-check-output" in cell.metadata.get("tags", []):
        seen.append(out.getvalue())
print(json.dumps(seen))
"""


def test_chapter_11_pinned_outputs_are_what_a_reader_without_torch_sees():
    """The chapter's pinned (nbval-checked) outputs must not change with PyTorch installed or not:
    run every cell with `import torch` failing and compare with what is pinned; each cell that
    needs PyTorch says so with the advice instead."""
    nb = nbformat.read(CHAPTER_11, as_version=4)
    pinned = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells
              if c.cell_type == "code" and "nbval-check-output" in c.metadata.get("tags", [])]
    assert pinned
    env = {**os.environ, "MPLBACKEND": "Agg", "LENET_QUICK": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(CHAPTER_11)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=CHAPTER_11.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == pinned
    skipping = [c for c in nb.cells if c.cell_type == "code" and "HAVE_TORCH" in c.source and "else:" in c.source]
    assert len(skipping) >= 5 and all("SKIPPED" in c.source for c in skipping)
