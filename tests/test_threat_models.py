"""Every threat model's guarantees name tests, and every named test exists."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "threat_models").glob("*.toml"))


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef) and n.name.startswith("test")
    }


def test_there_are_threat_models() -> None:
    assert len(MODELS) >= 2


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_guarantees_name_existing_tests(model: Path) -> None:
    data = tomllib.loads(model.read_text())
    assert (ROOT / "threat_models" / f"{model.stem}.md").exists(), "each TOML has its Markdown twin"
    for key in ("assets", "capabilities", "non_goals", "guarantees"):
        assert data.get(key), f"{model.name}: missing {key}"
    for g in data["guarantees"]:
        assert g.get("tests"), f"{model.name}: guarantee {g.get('id')} names no test"
        for node in g["tests"]:
            file, _, func = node.partition("::")
            path = ROOT / file
            assert path.exists(), f"{model.name}: {g['id']} names missing file {file}"
            if func:
                assert func in _test_functions(path), (
                    f"{model.name}: {g['id']} names missing {node}"
                )


ATTACK_MODULES = sorted((ROOT / "tests" / "attacks").glob("test_*.py"))


def _declared_guarantees(path: Path) -> tuple[str, ...] | None:
    """The module-level ``GUARANTEES = ("ID", ...)`` of an attack test module, if any."""
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "GUARANTEES" for t in node.targets)
            and isinstance(node.value, ast.Tuple | ast.List)
        ):
            return tuple(
                e.value
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            )
    return None


def _guarantee_ids() -> set[str]:
    return {g["id"] for m in MODELS for g in tomllib.loads(m.read_text()).get("guarantees", [])}


def test_there_are_attack_suites() -> None:
    assert ATTACK_MODULES


@pytest.mark.parametrize("module", ATTACK_MODULES, ids=lambda p: p.stem)
def test_attack_modules_name_existing_guarantees(module: Path) -> None:
    declared = _declared_guarantees(module)
    assert declared, f"{module.name}: declares no GUARANTEES = (...) tuple of guarantee ids"
    unknown = set(declared) - _guarantee_ids()
    assert not unknown, f"{module.name}: guarantees {sorted(unknown)} are in no threat model"
