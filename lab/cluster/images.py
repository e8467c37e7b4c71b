"""The images a lab cluster runs: built (or found in the cache) by ``scripts/image.sh``, loaded
into every node's containerd with ``ctr images import``. No registry is involved, so pods
must use them with ``imagePullPolicy: Never`` (or ``IfNotPresent``)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_SH = REPO / "scripts" / "image.sh"
#: containerd namespace the CRI plugin (so the kubelet) uses.
K8S_NAMESPACE = "k8s.io"


@dataclass(frozen=True)
class Image:
    name: str
    ref: str
    archive: Path
    size: int

    @property
    def repository(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]


def parse_image_lines(text: str) -> dict[str, Image]:
    """``<name> <ref> <archive> <size>`` lines (image.sh's stdout) by name."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 4 and words[3].isdigit():
            out[words[0]] = Image(words[0], words[1], Path(words[2]), int(words[3]))
    return out


def build(
    names: tuple[str, ...] = ("exalb", "backend", "pause"), log: Path | None = None
) -> dict[str, Image]:
    """Run image.sh (a no-op apart from hashing when cached); its progress goes to ``log``."""
    err = log.open("ab") if log is not None else None
    try:
        proc = subprocess.run(
            ["bash", str(IMAGE_SH), *names], stdout=subprocess.PIPE, stderr=err, text=True,
            check=False, timeout=1800,
        )  # fmt: skip
    finally:
        if err is not None:
            err.close()
    images = parse_image_lines(proc.stdout)
    if proc.returncode != 0 or set(images) != set(names):
        where = f" (see {log})" if log is not None else ""
        raise RuntimeError(f"scripts/image.sh {' '.join(names)} failed{where}")
    return images


def import_argv(socket: Path, archive: Path) -> list[str]:
    return ["ctr", "--address", str(socket), "--namespace", K8S_NAMESPACE, "images", "import",
            "--no-unpack", str(archive)]  # fmt: skip
