"""The sidecar's logs: one JSON object per line on stderr, stdlib only.

Why not structlog, as the controller and the speaker use: importing structlog imports
asyncio (and with it OpenSSL), about 6 MiB resident in a process that never runs an event
loop, on every node, next to three other processes. The lines are the ones structlog's
``JSONRenderer`` wrote for this sidecar before (``event``, the fields, ``level``, an ISO
``timestamp`` in UTC; ``exception`` with the traceback), so log pipelines see no change.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import traceback
from typing import Any, TextIO

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


class JsonLogger:
    """``log.info("event", key=value)``, the part of structlog's API the sidecar uses."""

    threshold = logging.INFO
    stream: TextIO | None = None  # None: sys.stderr at the time of the call

    def _emit(self, level: str, event: str, fields: dict[str, Any], exc: bool = False) -> None:
        if _LEVELS[level] < JsonLogger.threshold:
            return
        record: dict[str, Any] = {"event": event, **fields, "level": level}
        if exc:
            record["exception"] = traceback.format_exc()
        now = datetime.datetime.now(datetime.UTC)
        record["timestamp"] = now.isoformat().replace("+00:00", "Z")
        stream = JsonLogger.stream or sys.stderr
        try:
            stream.write(json.dumps(record, default=str) + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not take the sidecar down

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields, exc=True)


def configure(level: str) -> None:
    JsonLogger.threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)


def get_logger() -> JsonLogger:
    return JsonLogger()
