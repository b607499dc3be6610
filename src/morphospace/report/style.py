"""The look shared by every figure of the report: palette, matplotlib style, saving.

:data:`PALETTE` is the categorical palette the explorer and the study's maps use too
(:mod:`morphospace.image.palettes`, where it is kept), so a cluster has the same colour
everywhere in the report; :data:`STYLE` is a quiet
matplotlib style applied while a figure is drawn (:func:`styled`), so a figure
keeps it wherever it is shown later (a notebook, a file); :func:`save_figure`
writes a figure as the report's PNG, atomically. Nothing here changes
matplotlib's backend or global state.

Examples
--------
>>> colour(0), colour(-1)
('#4e9df5', '#8b93a1')
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..image.palettes import GREY, LABEL_PALETTE, PALETTE, colour, label_colour
from ..run import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PALETTE", "LABEL_PALETTE", "GREY", "INK", "MUTED", "EXCLUDED", "KEPT", "STYLE", "SAVE", "colour", "label_colour", "colormap_lut", "styled", "new_figure",
           "save_figure"]

INK = "#1f2430"
MUTED = "#5c6577"
EXCLUDED, KEPT = "#e5484d", "#f5a623"  # quality flags: kept out of the cube / kept

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9.5,
    "axes.edgecolor": "#c9ced8",
    "axes.labelcolor": MUTED,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.titlelocation": "left",
    "axes.titlepad": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e9ecf2",
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "figure.facecolor": "white",
}
SAVE = {"facecolor": "white", "bbox_inches": "tight", "pad_inches": 0.12}  # how every report PNG is saved


def colormap_lut(name: str = "magma", n: int = 256, lo: float = 0.12, hi: float = 1.0) -> list[list[int]]:
    """RGB triplets of a matplotlib colormap: the explorer's continuous colours.

    Parameters
    ----------
    name : str
        A matplotlib colormap.
    n : int
        Number of colours.
    lo, hi : float
        The part of the colormap used (0-1).

    Returns
    -------
    list of [int, int, int]
        ``n`` colours, 0-255.
    """
    from matplotlib import colormaps

    cmap = colormaps[name]
    vals = cmap(np.linspace(lo, hi, n))[:, :3]
    return np.round(vals * 255).astype(int).tolist()


def styled(draw: Callable[..., Figure | None]) -> Callable[..., Figure | None]:
    """Decorate a drawing function so it draws in the report's :data:`STYLE`.

    The style is a :func:`matplotlib.rc_context`, restored when the function
    returns or raises; the figure's ticks are made inside it, so the figure
    looks the same wherever it is shown later.

    Parameters
    ----------
    draw : callable
        A function returning a Figure (or None).

    Returns
    -------
    callable
        The decorated function.
    """

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            fig = draw(*args, **kwargs)
            if fig is not None:
                for ax in fig.axes:  # ticks are made lazily: make them now, in the style
                    ax.xaxis.get_major_ticks()
                    ax.yaxis.get_major_ticks()
        return fig

    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """A blank report figure (110 dpi), made without pyplot.

    Parameters
    ----------
    width, height : float
        Size in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save a report figure as a PNG, atomically (a temporary name, then a rename).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure of this module.
    path : str or Path
        The PNG to write (at the figure's 110 dpi, cropped to what is drawn).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **SAVE)
    return path


def short(text: object, n: int = 28) -> str:
    """``text`` cut to ``n`` characters with an ellipsis (tick labels, legends).

    Parameters
    ----------
    text : object
        Anything; shown as ``str(text)``.
    n : int
        The longest result.

    Returns
    -------
    str
    """
    s = str(text)
    return s if len(s) <= n else s[: n - 1] + "\u2026"
