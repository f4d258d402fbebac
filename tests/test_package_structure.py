"""The package's shape: modules form a one-way stack, imports sit at the top of each module,
and what a reader installs (requirements.txt) is what the package declares (pyproject.toml)."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "lenet_core"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
OPTIONAL = {"torch"}   # optional dependencies may be imported where they are needed, and only there


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path) -> set[str]:
    """The lenet_core modules that ``path`` imports (at any depth of its syntax tree)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("lenet_core"):
                for alias in node.names:   # `from . import fastmath` names a module
                    sub = f"{target}.{alias.name}"
                    found.add(sub if (REPO / (sub.replace(".", "/") + ".py")).exists()
                              or (REPO / sub.replace(".", "/")).is_dir() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lenet_core")}
    found.discard(name)
    return found


def test_no_import_cycles():
    graph = {module_name(p): package_imports(p) for p in MODULES}
    graph = {m: {d for d in deps if d in graph} for m, deps in graph.items()}
    # the package's own __init__ re-exports everything; nothing inside may import it
    importers_of_init = sorted(m for m, deps in graph.items() if "lenet_core" in deps and m != "lenet_core")
    assert importers_of_init == [], f"modules importing the package __init__ (a hidden cycle): {importers_of_init}"
    done, stack = set(), []

    def visit(m):
        if m in stack:
            cycle = stack[stack.index(m):] + [m]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if m in done:
            return
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_sit_at_the_top_of_the_module(path):
    """An import inside a function hides a dependency (or a cycle) from the reader."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    hidden = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
            if not all(n.split(".")[0] in OPTIONAL for n in names):
                hidden.append(f"line {node.lineno}: {', '.join(names)}")
    assert hidden == []


def _requirement_names(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")
            out[name] = line.replace(" ", "")
    return out


def test_requirements_txt_agrees_with_pyproject():
    """requirements.txt (what a reader installs to run the notebooks) = the package's
    dependencies plus its ``notebooks`` and ``book`` extras, with the same version bounds."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = _requirement_names(project["dependencies"] + extras["notebooks"] + extras["book"])
    listed = _requirement_names((REPO / "requirements.txt").read_text().splitlines())
    assert listed == declared


def test_readme_and_setup_page_say_how_to_open_the_notebooks():
    """A newcomer's first hour: one extra brings JupyterLab, and the pages give the command."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "jupyterlab" in _requirement_names(extras["notebooks"])
    for page in (REPO / "README.md", REPO / "book" / "setup.md"):
        text = page.read_text()
        assert 'pip install -e ".[notebooks]"' in text and "jupyter lab notebooks/" in text, page.name
