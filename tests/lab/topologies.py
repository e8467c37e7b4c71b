"""Where the repository's containerlab topologies are (importable by any lab test)."""

from __future__ import annotations

from pathlib import Path

TOPOLOGIES = Path(__file__).resolve().parents[2] / "containerlab"


def topology_path(name: str) -> Path:
    """``containerlab/<name>/<name>.clab.yml``."""
    return TOPOLOGIES / name / f"{name}.clab.yml"
