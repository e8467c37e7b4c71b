"""Command-line flags with an environment fallback, for the programs' ``main()`` wiring.

Why: a DaemonSet or Deployment sets most settings as environment variables (values, the
downward API), humans and tests pass flags. Every flag therefore takes its default from one
variable and names it in its help, so ``--help`` documents both ways in one place. An empty
variable counts as unset (a chart that renders ``value: ""`` means "default").
"""

from __future__ import annotations

import argparse
import os
from typing import Any

TRUE = ("1", "true", "yes", "on")


def env(name: str, default: str | None = None) -> str | None:
    """The variable's value, or ``default`` when it is unset or empty."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    return default if value is None else value.lower() in TRUE


def add_env_flag(
    parser: argparse.ArgumentParser | argparse._ActionsContainer,
    flag: str,
    env_name: str,
    *,
    default: Any = None,
    help: str = "",
    **kwargs: Any,
) -> None:
    """``parser.add_argument(flag, ...)`` whose default comes from ``env_name``."""
    action = kwargs.get("action")
    if action == "store_true":
        value: Any = env_bool(env_name, bool(default))
    elif action is argparse.BooleanOptionalAction:
        value = env_bool(env_name, bool(default))
    else:
        raw = env(env_name)
        value = default if raw is None else kwargs.get("type", str)(raw)
    text = f"{help} (env {env_name})" if help else f"env {env_name}"
    parser.add_argument(flag, default=value, help=text, **kwargs)
