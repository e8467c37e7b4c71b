"""The apiserver's audit log of writes by service accounts: how tests count what a program
wrote (the migration test: "nothing is written that need not be").

Only writes (create, update, patch, delete) by service accounts to Services (and their
status), Events, ConfigMaps and the ``metallb.io`` objects are logged, at Metadata level (who,
what, which object, the answer's code; no bodies), so the log stays small. The file lives in
the control-plane node's directory and goes with the run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

WRITES = ["create", "update", "patch", "delete", "deletecollection"]


def policy_yaml() -> str:
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [
            {
                "level": "Metadata",
                "userGroups": ["system:serviceaccounts"],
                "verbs": WRITES,
                "resources": [
                    {
                        "group": "",
                        "resources": ["services", "services/status", "events", "configmaps"],
                    },
                    {"group": "events.k8s.io", "resources": ["events"]},
                    {"group": "metallb.io"},
                ],
            },
            {"level": "None"},
        ],
    }
    return yaml.safe_dump(policy, sort_keys=False)


@dataclass(frozen=True)
class Write:
    user: str
    verb: str
    resource: str  # "services/status", "events", ...
    namespace: str
    name: str
    code: int

    @classmethod
    def from_event(cls, ev: dict[str, Any]) -> Write:
        ref = ev.get("objectRef") or {}
        resource = str(ref.get("resource", ""))
        if ref.get("subresource"):
            resource += f"/{ref['subresource']}"
        return cls(
            user=str((ev.get("user") or {}).get("username", "")),
            verb=str(ev.get("verb", "")),
            resource=resource,
            namespace=str(ref.get("namespace", "")),
            name=str(ref.get("name", "")),
            code=int((ev.get("responseStatus") or {}).get("code") or 0),
        )


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """Where the log ends now; :meth:`writes_since` reads what follows."""
        return self.path.stat().st_size if self.path.exists() else 0

    def writes_since(self, mark: int, *, user_prefix: str = "") -> list[Write]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(mark)
            lines = fh.read().splitlines()
        out = []
        for line in lines:
            try:
                w = Write.from_event(json.loads(line))
            except ValueError:
                continue  # a line being written
            if w.user.startswith(user_prefix):
                out.append(w)
        return out


def summary(writes: list[Write]) -> dict[str, int]:
    """``{"<user> <verb> <resource>": count}`` for reports."""
    return dict(Counter(f"{w.user} {w.verb} {w.resource}" for w in writes))
