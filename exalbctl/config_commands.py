"""``config check`` and ``config convert``: offline commands on config files.

``check`` prints every problem at once (or the model it would run); ``convert`` turns a
legacy ConfigMap into the ``metallb.io`` objects MetalLB's own converter would write, with a
note when a pool or BFD profile had to be renamed (Services that name the old pool must
change too). The objects it writes are checked as ``check`` would check them: a config
whose references do not resolve (a peer naming a BFD profile that does not exist, an
advertisement naming no pool) is refused here, as MetalLB's converter refuses it, rather
than written out for the API server to take and exalb to refuse later.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

import yaml

from exalb.config.crd import parse_objects
from exalb.config.documents import convert_documents, parse_files, read_text, split_documents
from exalb.config.export import config_to_dict, summary_lines
from exalb.config.legacy import Renamed
from exalb.config.problems import Problems
from exalbctl.output import dump


def config_check(args: argparse.Namespace, out: TextIO) -> int:
    result = parse_files(args.files, namespace=args.namespace)
    if args.output in ("json", "yaml"):
        dump(
            {
                "valid": result.ok,
                "errors": [str(p) for p in result.errors],
                "warnings": [str(p) for p in result.warnings],
                "config": config_to_dict(result.config) if result.config else None,
            },
            args.output,
            out,
        )
        return 0 if result.ok else 1
    for problem in result.problems:
        out.write(f"{problem}\n")
    if result.config is None:
        out.write(f"invalid: {len(result.errors)} error(s)\n")
        return 1
    for line in summary_lines(result.config):
        out.write(f"{line}\n")
    out.write("valid\n")
    return 0


def config_convert(args: argparse.Namespace, out: TextIO) -> int:
    read = Problems()
    text = read_text(args.file, read)
    if text is None:
        out.writelines(f"{p}\n" for p in read.items)
        return 1
    docs, problems = split_documents(text, args.file)
    objects, renamed, converted = convert_documents(docs, args.file, args.namespace)
    problems.extend(converted.items)
    if not problems.errors:
        problems.extend(p for p in parse_objects(objects).problems if p.severity == "error")
    if problems.errors:
        for problem in problems.items:
            out.write(f"{problem}\n")
        return 1
    for obj in objects:
        obj["metadata"].pop("annotations", None)
    notes = _rename_notes(renamed)
    if args.output == "json":
        for line in notes:  # JSON has no comments; the note goes to stderr
            sys.stderr.write(f"{line}\n")
        json.dump(
            {"apiVersion": "v1", "kind": "List", "items": objects}, out, indent=2, default=str
        )
        out.write("\n")
    else:
        out.writelines(f"# {line}\n" for line in notes)
        yaml.safe_dump_all(objects, out, sort_keys=False)
    return 0


# After the list of renamed objects of a kind: what the user must change outside the config.
_AFTER_RENAMES: dict[str, tuple[str, ...]] = {
    "IPAddressPool": (
        "Services that name an old pool in the metallb.io/address-pool (or",
        "metallb.universe.tf/address-pool) annotation must be changed to the new name.",
    ),
    "BFDProfile": ("The BGPPeers' bfdProfile references use the new names.",),
}


def _rename_notes(renamed: Sequence[Renamed]) -> list[str]:
    """Which pools and BFD profiles got another name, and what that means outside the config
    (Services name pools; only the peers, converted alongside, name BFD profiles)."""
    lines: list[str] = []
    for kind, after in _AFTER_RENAMES.items():
        these = [r for r in renamed if r.kind == kind]
        if not these:
            continue
        lines.append(f"{kind} names changed to valid object names (as MetalLB's converter does):")
        lines += [f"  {r.legacy} -> {r.name}  (from {r.source})" for r in these]
        lines += after
    return lines
