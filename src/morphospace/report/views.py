"""What the report's templates draw: figures, tables and label bars as plain data.

Section builders turn files and DataFrames into these views; the templates
(``templates/macros.html``) print them, autoescaped. Nothing here writes HTML.

Examples
--------
>>> import pandas as pd
>>> t = table(pd.DataFrame({"cluster": ["0", "1"], "AMI": [0.8, float("nan")]}), heat=True)
>>> [c.text for c in t.rows[0]], t.rows[1][1].text
(['0', '0.800'], '\u2013')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..image.palettes import class_colours
from .html import data_uri
from .style import GREY

__all__ = ["FigureView", "figure", "png_uri", "Cell", "TableView", "table", "mix_bar", "category_colours"]


def png_uri(path: Path) -> str:
    """The ``data:`` URI of a PNG file.

    Parameters
    ----------
    path : Path

    Returns
    -------
    str
    """
    return data_uri(Path(path).read_bytes(), "image/png")


@dataclass(frozen=True)
class FigureView:
    """A PNG figure as the page shows it: inlined, captioned with where it is saved.

    Attributes
    ----------
    uri : str
        The PNG as a ``data:`` URI.
    name : str
        Its file name under ``RUN/figures/``.
    caption, alt : str
        Caption text and alternative text (the caption, else the name).
    wide : bool
        Whether it spans the whole width of the page.
    """

    uri: str
    name: str
    caption: str = ""
    alt: str = ""
    wide: bool = False


def figure(path: Path, caption: str = "", alt: str = "", wide: bool = False) -> FigureView:
    """The :class:`FigureView` of a PNG file.

    Parameters
    ----------
    path : Path
        The PNG (read now, inlined as a data URI).
    caption : str
        Shown under the figure, before its file name.
    alt : str
        Alternative text; defaults to the caption, else the file name.
    wide : bool
        Span the page's width.

    Returns
    -------
    FigureView
    """
    name = Path(path).name
    return FigureView(png_uri(path), name, caption, alt or caption or name, wide)


@dataclass(frozen=True)
class Cell:
    """One cell of a :class:`TableView`: text, ``th``/``td``, classes and the heat of a shaded cell."""

    text: str
    tag: str = "td"
    cls: str = ""
    style: str = ""


@dataclass(frozen=True)
class TableView:
    """A table as the page shows it: a header row and rows of :class:`Cell`."""

    head: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    cls: str = ""


def table(frame: pd.DataFrame, heat: bool = False, digits: int = 3, cls: str = "",
          heat_range: tuple[float, float] | None = None, row_header: bool = True) -> TableView:
    """The :class:`TableView` of a DataFrame.

    Parameters
    ----------
    frame : DataFrame
        The values; its columns are the header.
    heat : bool
        Shade numeric cells (CSS variable ``--h`` from 0 to 1; ``hi`` class
        above 0.55, for white ink on the darker cells).
    digits : int
        Decimals of non-integer numbers.
    cls : str
        CSS class of the ``<table>``.
    heat_range : (float, float), optional
        Values at no and full shade; defaults to the table's finite range.
    row_header : bool
        The first column as row headers (``<th>``).

    Returns
    -------
    TableView
        Numbers as text (integers without decimals, non-finite as an en dash,
        class ``num``), other values as text (missing: empty).
    """
    numeric = frame.select_dtypes("number")
    lo, hi = heat_range if heat_range else (
        (float(np.nanmin(numeric.to_numpy())), float(np.nanmax(numeric.to_numpy())))
        if heat and numeric.size and np.isfinite(numeric.to_numpy(dtype=float)).any() else (0.0, 1.0))
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for j, v in enumerate(row):
            tag = "th" if (j == 0 and row_header) else "td"
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                fv = float(v)
                if not np.isfinite(fv):
                    cells.append(Cell("\u2013", tag, "num na"))
                    continue
                whole = fv == 0 or (fv.is_integer() and abs(fv) >= 1)
                text = f"{int(fv)}" if whole else f"{fv:.{digits}f}"
                if text.startswith("-") and float(text) == 0:  # -3e-16, an AMI of chance: not "-0.000"
                    text = text[1:]
                style, cls_ = "", "num"
                if heat and tag == "td":
                    t = 0.0 if hi <= lo else min(1.0, max(0.0, (fv - lo) / (hi - lo)))
                    style = f"--h:{t:.3f}"
                    # the page's dark ink on every cell: white ink on the cells above half the range was
                    # about 2:1 against them (the darkest, at 78% of the blue, still 5:1 with the dark ink)
                    cls_ += " heat"
                cells.append(Cell(text, tag, cls_, style))
            else:
                missing = v is None or (isinstance(v, float) and np.isnan(v))
                cells.append(Cell("" if missing else str(v), tag))
        rows.append(cells)
    return TableView([str(c) for c in frame.columns], rows, cls)


def mix_bar(counts: Sequence[tuple[str, int, str]]) -> dict[str, list[dict[str, Any]]]:
    """A stacked bar of label fractions, with its legend.

    Parameters
    ----------
    counts : sequence of (str, int, str)
        ``(label, count, colour)``; labels with no galaxy are left out.

    Returns
    -------
    dict
        ``segments``: width (percent), colour and tooltip of each part;
        ``legend``: colour, label and rounded percent of each legend entry.
    """
    total = sum(c for _, c, _ in counts) or 1
    segments, keys = [], []
    for label, count, col in counts:
        if count <= 0:
            continue
        pct = 100.0 * count / total
        segments.append({"width": f"{pct:.2f}", "colour": col, "tip": f"{label}: {count} ({pct:.0f}%)"})
        keys.append({"colour": col, "label": label, "pct": f"{pct:.0f}"})
    return {"segments": segments, "legend": keys}


def category_colours(categories: Iterable[Any], palette: dict[str, str] | None = None) -> dict[str, str]:
    """Colours of a label column's classes, each by its value in ``palette`` (the page's,
    :attr:`~morphospace.report.collect.RunContents.class_colours`, apart from the clusters'); ``"(missing)"``
    and a class the palette lacks (a blank one) are grey.

    Parameters
    ----------
    categories : iterable
        Category values (as text).
    palette : dict of str to str, optional
        Class -> colour; by default :func:`~morphospace.image.palettes.class_colours` of these
        categories alone.

    Returns
    -------
    dict of str to str
        Category -> hex colour.
    """
    categories = [str(c) for c in categories]
    palette = class_colours([categories]) if palette is None else palette
    return {c: palette.get(c, GREY) for c in categories}
