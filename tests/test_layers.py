"""lnlib is layered: every module imports only modules below it, as the README's layout section lists them.

The imports are read from the source with ``ast`` — at the top of a module and inside functions alike — so a
lazy import cannot hide a circle.
"""

import ast
import re

import pytest
from conftest import REPO

PACKAGE = REPO / "lnlib"


def readme_layers() -> list[str]:
    """The module names of the README's layer list, bottom first."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- layers: start -->\s*```\n(.*?)```\s*<!-- layers: end -->", text, re.S).group(1)
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def imports(path) -> set[str]:
    """The lnlib modules that ``path`` imports anywhere in it (``__init__`` for names of the package itself)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "lnlib":
            found |= {a.name if a.name in modules else "__init__" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lnlib."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] if "." in a.name else "__init__" for a in node.names
                      if a.name == "lnlib" or a.name.startswith("lnlib.")}
    return found - {path.stem}


def test_the_readme_lists_every_module_once():
    layers = readme_layers()
    assert sorted(layers) == sorted(p.stem for p in PACKAGE.glob("*.py")), "README layers vs lnlib/*.py"
    assert len(layers) == len(set(layers))


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_no_import_goes_up(module):
    layers = readme_layers()
    level = {name: i for i, name in enumerate(layers)}
    up = sorted(m for m in imports(PACKAGE / f"{module}.py") if level[m] >= level[module])
    assert not up, f"lnlib.{module} imports {up}, which the README lists above it (or at its level)"


def test_the_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "data.py"
    source.write_text("def f():\n    from lnlib.runs import Run\n    import lnlib.train\n"
                      "    from lnlib import plots, X\n")
    assert imports(source) == {"runs", "train", "plots", "__init__"}
