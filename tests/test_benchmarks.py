"""The benchmark scripts' shared ends: a user's mistake is one line and status 2, and a run too small
for a score gives none rather than a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_a_missing_run_is_one_line_and_status_2():
    """bench_anomaly.py and ten others printed a traceback (status 1) for a run that is not there."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_anomaly.py"), "/no/such/run"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["bench_anomaly.py: error: run directory not found: /no/such/run"]


def test_a_missing_survey_is_no_success():
    """bench_study.py said "skipped" and exited 0, read as a measurement made."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_study.py"), "--data", "/no/such/survey",
                           "--out", "/no/such/out"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "labels.csv not found" in done.stderr


def test_the_probe_score_of_a_survey_too_small_for_10_percent_is_none(benchmarks_on_path):
    """10% of 60 galaxies of six classes cannot hold two of each: the probe makes no row, and
    score_run.py failed on the empty table (IndexError)."""
    from bench_vade import probe10

    rng = np.random.default_rng(0)
    truth = np.repeat(np.array(list("abcdef")), 10)
    assert np.isnan(probe10(rng.normal(size=(60, 4)), truth, np.ones(60, bool)))
    truth = np.repeat(np.array(list("ab")), 100)
    assert 0.0 <= probe10(rng.normal(size=(200, 4)), truth, np.ones(200, bool)) <= 1.0
