"""The code's own checks run with the tests: ruff (lint and format), mypy, and the package
rules (import-linter's contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each the virtual environment's own, beside its Python.
BIN = Path(sys.executable).parent
CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "."],
    "mypy": [sys.executable, "-m", "mypy"],
    "lint-imports": [str(BIN / "lint-imports")],
}


@pytest.mark.parametrize("name", CHECKS)
def test_code_passes(name: str) -> None:
    result = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}{result.stderr}"


def test_no_module_imports_itself_through_others() -> None:
    # import-linter's acyclic_siblings contract sees cycles between the packages' children;
    # this sees them between any two modules, at any depth.
    graph = grimp.build_graph("gateway", "inbound", "outbound")
    imported = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = [
        (module, other)
        for module in sorted(imported)
        for other in sorted(imported[module])
        if graph.chain_exists(importer=other, imported=module)
    ]
    assert cycles == []
