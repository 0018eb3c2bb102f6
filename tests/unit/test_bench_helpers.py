"""The benchmarks' arithmetic, without services: trace throughput, figures, percentiles."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from benchmarks.measure import trace_stats
from benchmarks.openloop import percentile
from benchmarks.profile_summary import summarise
from benchmarks.reporting import Figure


def test_trace_stats_counts_calls_over_their_span(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    # Connection 1: 4 calls of 0.1 s, two at a time, from t=10.0 to t=10.2 -> 20 calls/s.
    lines = [
        "1 get 10.0 10.1 10",
        "1 get 10.0 10.1 10",
        "1 save 10.1 10.2 10",
        "1 save 10.1 10.2 10",
        "2 get 10.0 10.5 10",
        "1 get 5.0 5.1 10",  # before `since`: ignored
    ]
    trace.write_text("\n".join(lines) + "\n")
    stats = trace_stats(trace, since=9.0)
    assert stats[1].calls == 4
    assert stats[1].actors == 40
    assert stats[1].calls_per_s == pytest.approx(20.0)
    assert stats[1].mean_in_flight == pytest.approx(2.0)
    assert stats[2].calls_per_s == pytest.approx(2.0)


def test_figure_median_and_json() -> None:
    figure = Figure("x", "unit")
    for value in (3.0, 1.0, 2.0):
        figure.add(value)
    assert figure.median == 2.0
    assert figure.as_json() == {
        "unit": "unit",
        "runs": [3.0, 1.0, 2.0],
        "min": 1.0,
        "median": 2.0,
        "max": 3.0,
    }


def test_percentile_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0


def test_profile_summary_reads_gzipped_collapsed_stacks(tmp_path: Path) -> None:
    raw = (
        "main (a.py:1);work (a.py:5) 30\n"
        "main (a.py:1);helper (b.py:9) 10\n"
        "main (a.py:1);select (selectors.py:468) 60\n"
    )
    path = tmp_path / "p.txt.gz"
    path.write_bytes(gzip.compress(raw.encode()))
    total, idle, self_time, inclusive = summarise(path)
    assert (total, idle) == (100, 60)
    assert self_time["work (a.py)"] == 30
    assert inclusive["main (a.py)"] == 40
