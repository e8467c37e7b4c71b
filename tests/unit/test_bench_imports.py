"""Every benchmark still imports: they run by hand, not in CI, so a moved helper would
otherwise only show up when someone next wants a figure."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("*.py")))
def test_benchmark_imports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # as `python bench/<name>.py` runs them
    monkeypatch.setattr(sys, "argv", [f"bench/{name}.py"])
    importlib.import_module(name)
