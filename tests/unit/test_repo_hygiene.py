"""The repository holds no leftovers of a merge: a conflict marker in a README or a chart
template breaks nothing that a linter sees, so this test looks for them in every tracked
text file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)


def test_no_merge_conflict_markers() -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, files):
        path = ROOT / name.decode()
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or gone
        found += [f"{name.decode()}: {m.group(0).strip()}" for m in MARKER.finditer(text)]
    assert not found, "\n".join(found)
