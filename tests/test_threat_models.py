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
