"""A trivial benchmark module used by the CLI tests."""

from __future__ import annotations


def run(quick: bool = False, progress: bool = False) -> dict[str, object]:
    return {"ratio": 0.5, "name": "fake"}
