"""Prometheus text exposition, read the way the tests and benchmarks need it."""

from __future__ import annotations


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (exactly that series name, e.g. ``x_total`` or
    ``x_sum``) whose labels include ``labels``; 0 when there is none."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, labelstr = head.partition("{")
        if metric == name and all(f'{k}="{v}"' in labelstr for k, v in labels.items()):
            total += float(value)
    return total
