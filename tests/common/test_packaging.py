"""pyproject.toml against the rest of the checkout: the dependency pins are requirements.txt's, and
every console script names a `main` that exists."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def requirement_pins():
    """requirements.txt's pins, split at its '# tests' comment into (runtime, test)."""
    runtime, test, current = [], [], None
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line == "# tests":
            current = test
        elif line and not line.startswith(("#", "-")):
            (test if current is test else runtime).append(line)
    return runtime, test


def test_dependencies_are_the_requirement_pins():
    runtime, test = requirement_pins()
    assert sorted(PYPROJECT["project"]["dependencies"]) == sorted(runtime)
    assert sorted(PYPROJECT["project"]["optional-dependencies"]["test"]) == sorted(test)
    assert "import-linter==2.17" in test


def test_every_console_script_names_an_existing_main():
    scripts = PYPROJECT["project"]["scripts"]
    assert {"mmrag-train", "mmrag-eval", "mmrag-make-world", "mmrag-run-surf"} <= set(scripts)
    for name, target in scripts.items():
        module, _, func = target.partition(":")
        assert module.startswith("mmrag.cli.") and name == "mmrag-" + module.rsplit(".", 1)[1].replace("_", "-")
        path = REPO_ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name}: {path} is missing"
        tree = ast.parse(path.read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, f"{name}: no {func}() in {path}"
