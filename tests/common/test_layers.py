"""The layer rule (pyproject.toml [tool.importlinter]): a module imports only from layers below its own,
never from above, not even lazily inside a function.

Two checks that do not share code: import-linter's own contract (what CI runs first), and a small AST
walk over every import statement of the package (including those inside functions), held to the same
layer list read from pyproject.toml.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "mmrag"


def layer_table() -> Dict[str, Tuple[int, str]]:
    """Subpackage name -> (rank, group); rank 0 is the top. Siblings written `a | b` share a rank and are
    independent: neither may import the other."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    table = {}
    for rank, entry in enumerate(contract["layers"]):
        for name in entry.split("|"):
            table[name.strip().strip("()")] = (rank, entry)
    return table


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth (lazy imports included);
    `from x import y` yields x.y as well, since y may be a submodule."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb level-1 packages above this module's own package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")


def subpackage(module: str) -> str:
    """'mmrag.retrieval.corpus_index' -> 'retrieval'; the root package itself -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mmrag" else ""


def layers_named(target: str, root_layers: List[str]) -> List[str]:
    """The layers an import reaches: its own subpackage, or for the bare root package (whose
    __init__ registers every component) each layer that __init__ imports."""
    return root_layers if target == "mmrag" else [subpackage(target)]


def violations(files: List[Path], table: Dict[str, Tuple[int, str]]) -> List[str]:
    root = [p for p in files if p.parent.name == "mmrag" and p.name == "__init__.py"]
    root_layers = sorted({subpackage(t) for p in root for _, t in imported_modules(p)} - {""})
    found = []
    for path in files:
        own = subpackage(module_name(path))
        if own not in table:
            continue  # mmrag/__init__.py (the registration list) sits above every layer
        for line, target in imported_modules(path):
            if not target.startswith("mmrag.") and target != "mmrag":
                continue
            for other in layers_named(target, root_layers):
                if other == own or other not in table:
                    continue  # own layer; an unknown name is a plain module such as mmrag.foo, not a layer
                if table[other][0] <= table[own][0]:  # above, or an independent sibling
                    found.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {target} (-> {other})")
    return sorted(set(found))  # `from a.b import c` names a.b and a.b.c: one line per offending layer


def package_files(under: Path) -> List[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_common_imports_nothing_but_common():
    """The bottom layer, checked without the layer table: every mmrag import under mmrag/common names
    mmrag.common (the bare root package counts as above: importing it registers every layer)."""
    bad = [f"{p.relative_to(REPO_ROOT)}:{line} imports {target}"
           for p in package_files(PACKAGE / "common") for line, target in imported_modules(p)
           if (target == "mmrag" or target.startswith("mmrag.")) and subpackage(target) != "common"]
    assert bad == []


def test_every_module_imports_only_lower_layers():
    assert violations(package_files(PACKAGE), layer_table()) == []


def test_the_checker_sees_upward_lazy_and_sibling_imports(tmp_path, monkeypatch):
    """The AST check itself, on hand-made modules: an import inside a function counts, a relative
    import is resolved, the root package counts as above, and independent siblings may not meet."""
    table = {"tasks": (0, "tasks"), "retrievers": (1, "retrievers | runners"),
             "runners": (1, "retrievers | runners"), "common": (2, "common")}
    sources = {
        "mmrag/__init__.py": "from mmrag.tasks import base\nfrom mmrag.runners import runner\n",
        "mmrag/common/ok.py": "from mmrag.common import errors\nimport os\n",
        "mmrag/common/lazy.py": "def f():\n    from mmrag.tasks import base\n",
        "mmrag/common/rel.py": "from ..runners import runner\n",
        "mmrag/common/root.py": "import mmrag\n",
        "mmrag/runners/sib.py": "from mmrag.retrievers.base import Hit\n",
        "mmrag/tasks/down.py": "from mmrag.runners import runner\nfrom mmrag.common import errors\n",
    }
    for rel, text in sources.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    found = violations(package_files(tmp_path / "mmrag"), table)
    assert found == ["mmrag/common/lazy.py:2 imports mmrag.tasks (-> tasks)",
                     "mmrag/common/lazy.py:2 imports mmrag.tasks.base (-> tasks)",
                     "mmrag/common/rel.py:1 imports mmrag.runners (-> runners)",
                     "mmrag/common/rel.py:1 imports mmrag.runners.runner (-> runners)",
                     "mmrag/common/root.py:1 imports mmrag (-> runners)", "mmrag/common/root.py:1 imports mmrag (-> tasks)",
                     "mmrag/runners/sib.py:1 imports mmrag.retrievers.base (-> retrievers)",
                     "mmrag/runners/sib.py:1 imports mmrag.retrievers.base.Hit (-> retrievers)"]
    assert "mmrag/tasks/down.py" not in " ".join(found)  # downward imports are the rule, not a violation


def test_import_linter_contract_is_kept():
    """The contract CI runs (scripts/test.sh: lint-imports), run here too so pytest alone enforces it."""
    pytest.importorskip("importlinter")
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command(['--no-cache']))"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
