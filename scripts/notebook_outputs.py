"""Keep the chapters committed without outputs, except the small facts nbval pins.

Usage::

    python scripts/notebook_outputs.py strip notebooks/*.ipynb   # clear every output (keeps pinned ones)
    python scripts/notebook_outputs.py pin notebooks/05_convolution.ipynb
    python scripts/notebook_outputs.py check notebooks/*.ipynb   # exit 1 if a notebook breaks the rules

The rules (checked by tests/test_notebook_hygiene.py):

* no cell has an output or an execution count except the cells tagged
  ``nbval-check-output`` (nbval refuses a cell with outputs but no count, so pinned
  cells are numbered 1, 2, 3, ... in order);
* a pinned cell's outputs are plain text only (stdout or a text/plain result),
  short, and nbval compares them when it runs the notebook (``--nbval-lax``);
* no notebook-level widget state is stored.

``pin`` executes the notebook in a fresh kernel with the small-data switch
(``LENET_QUICK=1``) and pins every cell whose output is short plain text and that
is not tagged ``nbval-ignore-output`` or ``nbval-skip``: shapes, parameter counts,
headers and the like. Review the diff before committing: a pinned output must be a
fact, not a timing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

CHECK, IGNORE, SKIP = "nbval-check-output", "nbval-ignore-output", "nbval-skip"
MAX_PINNED_CHARS = 2500


def tags(cell) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


def text_only(outputs) -> bool:
    for out in outputs:
        if out.output_type == "stream" and out.get("name") == "stdout":
            continue
        if out.output_type == "execute_result" and set(out.get("data", {})) == {"text/plain"}:
            continue
        return False
    return True


def out_chars(outputs) -> int:
    total = 0
    for out in outputs:
        total += len(out.get("text", "")) + len(out.get("data", {}).get("text/plain", ""))
    return total


def clean(nb, keep_pinned: bool = True):
    nb.metadata.pop("widgets", None)
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        pinned = keep_pinned and CHECK in tags(cell) and bool(cell.outputs)
        if not pinned:
            cell.outputs = []
            cell.execution_count = None
            continue
        count += 1
        cell.execution_count = count
        for out in cell.outputs:
            if "execution_count" in out:
                out.execution_count = count
            if out.output_type == "stream":
                out.pop("metadata", None)
    return nb


def set_tag(cell, tag, on: bool):
    t = [x for x in cell.metadata.get("tags", []) if x != tag]
    if on:
        t.append(tag)
    if t:
        cell.metadata["tags"] = t
    else:
        cell.metadata.pop("tags", None)


def pin(path: Path, timeout: int = 600):
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("LENET_QUICK", "1")
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    pinned = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        ok = (cell.outputs and not ({IGNORE, SKIP} & tags(cell)) and text_only(cell.outputs)
              and out_chars(cell.outputs) <= MAX_PINNED_CHARS)
        set_tag(cell, CHECK, bool(ok))
        pinned += bool(ok)
    clean(nb)
    nbformat.write(nb, path)
    print(f"{path}: pinned {pinned} cell(s)")


def problems(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    found = []
    if "widgets" in nb.metadata:
        found.append("notebook metadata stores widget state")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.execution_count is not None and CHECK not in tags(cell):
            found.append(f"cell {i}: has an execution count")
        if cell.outputs and CHECK not in tags(cell):
            found.append(f"cell {i}: has outputs but is not tagged {CHECK}")
        if CHECK in tags(cell) and not text_only(cell.outputs):
            found.append(f"cell {i}: pinned outputs must be plain text")
        if CHECK in tags(cell) and out_chars(cell.outputs) > MAX_PINNED_CHARS:
            found.append(f"cell {i}: pinned output longer than {MAX_PINNED_CHARS} characters")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["strip", "pin", "check"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        if args.action == "strip":
            nb = clean(nbformat.read(path, as_version=4))
            nbformat.write(nb, path)
        elif args.action == "pin":
            pin(path)
        else:
            for p in problems(path):
                print(f"{path}: {p}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
