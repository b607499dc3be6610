"""Shared pytest fixtures: tiny surveys (see ``fixtures.py``) and the path of the real data.

``tests/`` is put on ``sys.path`` so test modules can ``from fixtures import ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import fixtures  # noqa: E402

SHARED = TESTS.parents[1] / "shared"


@pytest.fixture
def tiny_folder_survey(tmp_path: Path) -> Path:
    """A folder of 6 images (PNG, JPEG, TIFF) with catalogue.csv (id, file, morphology, redshift)."""
    return fixtures.tiny_folder_survey(tmp_path / "folder", n=6)


@pytest.fixture
def tiny_sdss_gz1(tmp_path: Path) -> Path:
    return fixtures.tiny_sdss_gz1(tmp_path / "gz1", n=6)


@pytest.fixture
def tiny_kaggle(tmp_path: Path) -> Path:
    return fixtures.tiny_kaggle(tmp_path / "kaggle")


@pytest.fixture
def tiny_synthetic(tmp_path: Path) -> Path:
    return fixtures.tiny_synthetic(tmp_path / "synth", n=6)


@pytest.fixture
def sdss_gz1_path() -> Path:
    """The real sdss-gz1 survey in ../shared (skips the test when it is absent)."""
    path = SHARED / "data" / "sdss-gz1"
    if not (path / "labels.csv").is_file():
        pytest.skip(f"real data not available: {path} (the shared folder is absent)")
    return path
