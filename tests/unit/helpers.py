"""Small builders for unit tests of the pure core."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable, Coroutine
from typing import Any

from exalb.config.model import Config, Pool, ServiceAllocation
from exalb.views import ServiceView


def pool(name: str, *cidrs: str, **kw: Any) -> Pool:
    return Pool(name, tuple(ipaddress.ip_network(c) for c in cidrs), **kw)


def config(*pools: Pool) -> Config:
    return Config(pools=tuple(sorted(pools, key=lambda p: p.name)), source="crd")


def svc(name: str, ns: str = "default", **kw: Any) -> ServiceView:
    if "ports" in kw:
        kw["ports"] = tuple(kw["ports"])
    for key in ("requested_ips", "assigned_ips"):
        if key in kw:
            kw[key] = tuple(ipaddress.ip_address(x) for x in kw[key])
    return ServiceView(namespace=ns, name=name, **kw)


def ips(*texts: str) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_address(t) for t in texts)


__all__ = ["ServiceAllocation", "config", "ips", "pool", "svc"]


def sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body with ``asyncio.run`` (the venv has no pytest-asyncio)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run
