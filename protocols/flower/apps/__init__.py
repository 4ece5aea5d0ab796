"""Flower apps of the benchmark: ``plain`` (FedAvg) and ``flower_secaggplus`` (Flower's
own SecAgg+ workflow), importable modules whose ``server_app`` / ``client_app`` the
Flower app projects under ``projects/<name>/pyproject.toml`` point at.

Importing this package loads nothing from Flower; the app modules do.
"""

from __future__ import annotations

from pathlib import Path

PROJECTS_DIR = Path(__file__).resolve().parent / "projects"


def app_dir(name: str) -> Path:
    """The Flower app project directory (holding ``pyproject.toml``) of app ``name``."""
    path = PROJECTS_DIR / name
    if not (path / "pyproject.toml").is_file():
        known = sorted(p.name for p in PROJECTS_DIR.iterdir() if (p / "pyproject.toml").is_file())
        raise KeyError(f"no Flower app project {name!r}; known: {', '.join(known)}")
    return path


__all__ = ["PROJECTS_DIR", "app_dir"]
