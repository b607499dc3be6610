"""The synthetic survey on disk: its marker, its images and the checks on an existing folder.

The marker (``morphospace_synth.json``) is written last, so its presence means the survey
is complete; it records the generator version and the parameters, so an identical survey
is reused rather than rendered again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import UserError
from ...run import atomic_path
from .params import MAX_COMPANIONS
from .truth import TRUTH_COLUMNS

# bump when the same seed would give other bytes (1.1: mock ra, dec columns; 1.2: edge-on axis ratios in
# closed form, irregulars' position angle and axis ratio after their distortion)
GENERATOR_VERSION = "1.2"
MARKER_NAME = "morphospace_synth.json"
CATALOGUE_NAME = "catalogue.csv"
IMAGE_DIR = "images"


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as a PNG, atomically.

    Parameters
    ----------
    path : Path
        Destination.
    rgb : ndarray, shape (H, W, 3), uint8
        The image.
    """
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG", compress_level=1)  # fast; still lossless


def image_id(index: int, n: int) -> str:
    """The id of galaxy ``index`` of a survey of ``n`` (zero-padded to at least six digits).

    Parameters
    ----------
    index, n : int
        The galaxy's position and the survey's size.

    Returns
    -------
    str
        e.g. ``synth_000042``.
    """
    return f"synth_{index:0{max(6, len(str(n - 1)))}d}"


def marker(seed: int, n: int, size: int, morphologies: Sequence[str]) -> dict[str, Any]:
    """The marker of a survey with these parameters (what ``morphospace_synth.json`` holds).

    Parameters
    ----------
    seed, n, size : int
        Survey seed, number of galaxies and frame side.
    morphologies : sequence of str
        The classes drawn.

    Returns
    -------
    dict
        Generator, version, parameters, file layout and the meaning of every column.
    """
    columns = {}
    for name, meaning in TRUTH_COLUMNS.items():
        if "{i}" in name:
            for k in range(1, MAX_COMPANIONS + 1):
                columns[name.format(i=k)] = meaning.replace("companion i", f"companion {k}")
        else:
            columns[name] = meaning
    return {
        "generator": "morphospace.synth",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": int(n),
        "size": int(size),
        "morphologies": list(morphologies),
        "catalogue": CATALOGUE_NAME,
        "images": IMAGE_DIR,
        "image_format": "png (8-bit RGB: R = i, G = r, B = g, Lupton asinh stretch)",
        "id_column": "id",
        "file_column": "file",
        "truth_label": "morphology",
        "columns": columns,
        "conventions": "x = column, y = row (0-based, row 0 at the top as displayed); angles in degrees "
                       "counter-clockwise from +x as displayed; winding +1 = arms turn clockwise outward",
    }


def read_marker(path: str | Path) -> dict[str, Any]:
    """The marker of the synthetic survey in folder ``path``.

    Parameters
    ----------
    path : str or Path
        The survey folder.

    Returns
    -------
    dict
        The parsed ``morphospace_synth.json``.

    Raises
    ------
    UserError
        When the folder holds no marker.
    """
    marker_path = Path(path) / MARKER_NAME
    if not marker_path.is_file():
        raise UserError(f"{path} is not a synthetic survey (no {MARKER_NAME})")
    try:
        got = json.loads(marker_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{marker_path} is damaged ({exc.__class__.__name__}): delete the survey folder and render "
                        f"it again") from None
    if not isinstance(got, dict):
        raise UserError(f"{marker_path} is damaged (not a JSON object): delete the survey folder and render it again")
    return got


def is_synth_survey(path: str | Path) -> bool:
    """Whether ``path`` holds a complete synthetic survey (its marker is written last).

    Parameters
    ----------
    path : str or Path
        A folder.

    Returns
    -------
    bool
    """
    return (Path(path) / MARKER_NAME).is_file()


def looks_like_partial_survey(out: Path) -> bool:
    """Whether ``out`` holds an interrupted run: only images/ (with synth_* PNGs) and maybe a catalogue.

    Parameters
    ----------
    out : Path
        A folder that exists.

    Returns
    -------
    bool
    """
    names = {p.name for p in out.iterdir()}
    imgs = out / IMAGE_DIR
    if not names <= {IMAGE_DIR, CATALOGUE_NAME} or not imgs.is_dir():
        return False  # a catalogue alone is the user's: the images are rendered before it
    files = [f.name for f in imgs.iterdir()]
    if not all(f.startswith(("synth_", ".synth_")) for f in files):
        return False
    if CATALOGUE_NAME in names:  # written after every image: there are some, and it is the generator's
        try:
            header = (out / CATALOGUE_NAME).open(encoding="utf-8").readline().strip().split(",")
        except (OSError, UnicodeDecodeError):
            return False
        return bool(files) and header[:1] == ["id"] and "morphology" in header
    return True


def remove_survey(out: Path) -> None:
    """Delete the files a synthetic survey writes (and nothing else).

    Parameters
    ----------
    out : Path
        The survey folder.
    """
    (out / MARKER_NAME).unlink(missing_ok=True)  # first, so a half-deleted survey is not "complete"
    (out / CATALOGUE_NAME).unlink(missing_ok=True)
    imgs = out / IMAGE_DIR
    if imgs.is_dir():
        for f in imgs.iterdir():
            if f.is_file() and f.name.startswith(("synth_", ".synth_")):
                f.unlink()


def survey_digest(path: str | Path) -> str:
    """SHA-256 over the catalogue, marker and every image of a survey (for reproducibility checks).

    Parameters
    ----------
    path : str or Path
        The survey folder.

    Returns
    -------
    str
        The hex digest.
    """
    path = Path(path)
    h = hashlib.sha256()
    files = [path / CATALOGUE_NAME, path / MARKER_NAME] + sorted((path / IMAGE_DIR).glob("*.png"))
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
