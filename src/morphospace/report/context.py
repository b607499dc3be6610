"""What every section builder of the report shares: the run's contents, the thumbnails, the figures made.

A section builder takes the :class:`ReportContext` and returns a
:class:`Section` (its anchor, its label in the navigation and its HTML) or
None when the run holds nothing for it. Builders save their figures under
``RUN/figures/`` (names starting :data:`PREFIX`, through
:meth:`ReportContext.fig_path`) and record which existing figures they placed,
so the last section can show every remaining PNG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from markupsafe import Markup

from ..image.palettes import natural
from ..run import RunDir
from .collect import RunContents

__all__ = ["PREFIX", "Section", "Thumb", "SpriteBook", "ReportContext", "pct", "fmt", "natural", "slug",
           "cluster_of_figure"]

PREFIX = "report_"  # figures the report makes (re-made each time, never shown as "other figures")


class Section(NamedTuple):
    """One section of the page.

    Attributes
    ----------
    anchor : str
        Its ``id`` (the navigation links to ``#anchor``).
    label : str
        Its name in the navigation.
    html : markupsafe.Markup
        The rendered ``<section>``.
    """

    anchor: str
    label: str
    html: Markup


@dataclass(frozen=True)
class Thumb:
    """A thumbnail as the page shows it (the ``thumb`` macro of ``macros.html``).

    Attributes
    ----------
    gid : str
        The galaxy's id (its caption and tooltip).
    sprite : int or None
        Its tile in the sprite sheets; None for a galaxy outside the cube.
    point : int
        Its index on the explorer's map, -1 when it is not shown there.
    uri : str or None
        For a galaxy outside the cube: a small image of its own (a ``data:``
        URI), or None for the "no image" placeholder.
    caption : str
        A second line under the id.
    size : str
        ``""`` or ``"big"``.
    """

    gid: str
    sprite: int | None = None
    point: int = -1
    uri: str | None = None
    caption: str = ""
    size: str = ""


class SpriteBook:
    """Cube rows that get a thumbnail: the explorer's points first, then any row a gallery needs.

    Parameters
    ----------
    points : ndarray of int
        The cube rows shown on the explorer's map, in map order.

    Attributes
    ----------
    rows : list of int
        Every cube row with a thumbnail, in sprite order.
    n_points : int
        How many of them are the map's points.
    """

    def __init__(self, points: np.ndarray):
        self.rows: list[int] = [int(r) for r in points]
        self.n_points = len(self.rows)
        self._index = {r: i for i, r in enumerate(self.rows)}

    def sprite(self, row: int) -> int:
        """The sprite index of a cube row, given one now if it has none.

        Parameters
        ----------
        row : int

        Returns
        -------
        int
        """
        row = int(row)
        if row not in self._index:
            self._index[row] = len(self.rows)
            self.rows.append(row)
        return self._index[row]

    def point(self, row: int) -> int:
        """Index of ``row`` on the explorer's map, or -1 when it is not shown there.

        Parameters
        ----------
        row : int

        Returns
        -------
        int
        """
        i = self._index.get(int(row), -1)
        return i if 0 <= i < self.n_points else -1


@dataclass
class ReportContext:
    """Everything a section builder reads, and what the builders have done so far.

    Attributes
    ----------
    run : RunDir
    contents : RunContents
        The run's contents, read lazily.
    book : SpriteBook
        The thumbnails the page needs.
    cfg : Config
        The configuration (``report.*``, ``data.truth_label``).
    made : set of str
        File names of the figures this report wrote.
    placed : set of str
        File names of existing figures a section shows.
    seed : int
        Seed of every random choice (``report.seed``).
    """

    run: RunDir
    contents: RunContents
    book: SpriteBook
    cfg: Any
    made: set[str] = field(default_factory=set)
    placed: set[str] = field(default_factory=set)
    seed: int = 0

    def fig_path(self, name: str) -> Path:
        """Where the report's figure ``name`` goes (``RUN/figures/report_<name>.png``), recorded as made.

        Parameters
        ----------
        name : str

        Returns
        -------
        Path
        """
        path = self.run.figure_path(PREFIX + name)
        self.made.add(path.name)
        return path

    def existing_figure(self, name: str) -> Path | None:
        """A figure another stage saved (``RUN/figures/<name>``), recorded as placed; None if absent.

        Parameters
        ----------
        name : str
            The file name.

        Returns
        -------
        Path or None
        """
        p = self.run.path / "figures" / name
        if p.exists():
            self.placed.add(p.name)
            return p
        return None

    def thumb(self, row: int, caption: str = "", size: str = "") -> Thumb:
        """The thumbnail of a cube row (given a sprite).

        Parameters
        ----------
        row : int
        caption : str
            A line under the id.
        size : str
            ``""`` or ``"big"``.

        Returns
        -------
        Thumb
        """
        row = int(row)
        return Thumb(str(self.contents.ids[row]), self.book.sprite(row), self.book.point(row), caption=caption,
                     size=size)


def pct(a: int, b: int) -> str:
    """``a`` as a percentage of ``b`` (one decimal), ``"-"`` when ``b`` is 0. A part that is not the
    whole never reads 100.0% (nor a part above nothing 0.0%): ">99.9%", "<0.1%".

    Parameters
    ----------
    a, b : int

    Returns
    -------
    str
    """
    if not b:
        return "-"
    value = 100.0 * a / b
    if a != b and f"{value:.1f}" == "100.0":
        return ">99.9%"
    if a and f"{value:.1f}" == "0.0":
        return "<0.1%"
    return f"{value:.1f}%"


def fmt(v: float) -> str:
    """A number in three significant digits (exponent from 10,000), ``"-"`` when not finite.

    Parameters
    ----------
    v : float

    Returns
    -------
    str
    """
    if not np.isfinite(v):
        return "-"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


def slug(text: str) -> str:
    """``text`` as a safe file-name part (anything but letters, digits, ``_.-`` becomes ``_``).

    Parameters
    ----------
    text : str

    Returns
    -------
    str
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def cluster_of_figure(p: Path) -> int | None:
    """Cluster number of a per-cluster figure such as ``vade_generated_3.png`` / ``vade_generated_cluster3.png``.

    Parameters
    ----------
    p : Path

    Returns
    -------
    int or None
        None when ``p`` is not a per-cluster figure.
    """
    m = re.fullmatch(r"vade_generated[_-]?(?:cluster|c|k)?[_-]?(\d+)", p.stem)
    return int(m.group(1)) if m else None
