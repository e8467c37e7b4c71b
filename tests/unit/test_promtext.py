"""lab.promtext: the tests' and benchmarks' reading of Prometheus text."""

from __future__ import annotations

from lab.promtext import metric_sum

TEXT = """# HELP x_total things
# TYPE x_total counter
x_total{outcome="ready"} 2.0
x_total{outcome="expired"} 1.0
x_total_other 7.0
x_seconds_sum 0.5
x_total{outcome="ready"} 3.0
"""


def test_metric_sum_adds_the_matching_samples_of_exactly_that_series() -> None:
    assert metric_sum(TEXT, "x_total") == 6.0
    assert metric_sum(TEXT, "x_total", outcome="ready") == 5.0  # two nodes, one text
    assert metric_sum(TEXT, "x_seconds_sum") == 0.5
    assert metric_sum(TEXT, "x_total", outcome="refused") == 0.0
    assert metric_sum(TEXT, "y") == 0.0
