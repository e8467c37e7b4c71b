"""How every command prints: ``-o json`` / ``-o yaml`` dump one plain value; text is the
command's own table (:mod:`exalbctl.render`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import yaml


def dump(value: Any, fmt: str, out: TextIO) -> None:
    """``-o json`` / ``-o yaml``: the same plain value either way."""
    if fmt == "yaml":
        yaml.safe_dump(json.loads(json.dumps(value)), out, sort_keys=False)
    else:
        json.dump(value, out, indent=2)
        out.write("\n")


def emit(
    args: argparse.Namespace, out: TextIO, doc: Mapping[str, Any], text: Callable[[], str]
) -> None:
    """The document for ``-o json``/``-o yaml``, else ``text()``."""
    if args.output in ("json", "yaml"):
        dump(doc, args.output, out)
    else:
        out.write(text())
