"""The colours of categories in every figure and the explorer: clusters in :data:`PALETTE`'s bright
tones (by cluster number), the classes of a run's label columns in :data:`LABEL_PALETTE`'s deep ones
(keyed by the class's value, :func:`class_colours`), noise and missing in :data:`GREY`. The study's
maps and the report's charts take them from here, so a class or a cluster has one colour in every figure.

Examples
--------
>>> colour(0), colour(-1)
('#4e9df5', '#8b93a1')
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["PALETTE", "LABEL_PALETTE", "GREY", "class_colours", "colour", "label_colour", "natural"]

PALETTE = ["#4e9df5", "#f5a623", "#e5484d", "#30c48d", "#a07cf0", "#ff7fbf", "#38c5d8", "#c7d93a",
           "#f07a3a", "#7a8cff", "#2fb37a", "#d65db1", "#8fd0ff", "#ffcf70", "#b5e48c", "#ff9f9f",
           "#9aa7ff", "#66d9c2", "#e0a3ff", "#c9a27e"]
# Classes of a label column (Galaxy Zoo's elliptical / spiral / ...) in deep tones, clusters in the
# bright ones above, so a cluster card's label-mix bar beside its cluster's swatch never shows a
# class and a cluster in one colour (cluster 1 and the second class were both orange); the explorer
# takes them too.
LABEL_PALETTE = ["#1d3557", "#9b2226", "#2d6a4f", "#bb3e03", "#5a189a", "#005f73", "#7f4f24", "#6c6f00",
                 "#8e3b6e", "#3a0ca3"]
GREY = "#8b93a1"  # noise, missing, "not in this clustering"


def colour(k: int, n: int | None = None) -> str:
    """Palette colour of category ``k`` of ``n``.

    Parameters
    ----------
    k : int
        A category (cluster) number; negative numbers are noise.
    n : int, optional
        How many categories there are (the largest number + 1 for clusters): beyond the
        palette's 20, each gets its own colour of a continuous colormap (turbo), where the
        palette would give two categories of a map the same colour.

    Returns
    -------
    str
        A hex colour of :data:`PALETTE` (or turbo's), or :data:`GREY` for ``k < 0``.
    """
    if k < 0:
        return GREY
    if n is not None and n > len(PALETTE):
        return _turbo(n)[k % n]
    return PALETTE[k % len(PALETTE)]


def label_colour(k: int, n: int | None = None) -> str:
    """Colour of class ``k`` of ``n`` of a label column: :data:`LABEL_PALETTE`'s deep tones, apart from
    the clusters' :func:`colour`; beyond its 10, turbo darkened to the same depth.

    Parameters
    ----------
    k : int
        The class's place in the column's order.
    n : int, optional
        How many classes there are.

    Returns
    -------
    str
        A hex colour.
    """
    if n is not None and n > len(LABEL_PALETTE):
        return _turbo(n, shade=0.6)[k % n]
    return LABEL_PALETTE[k % len(LABEL_PALETTE)]


def class_colours(columns) -> dict[str, str]:
    """One colour per class of a run's label columns, keyed by its value (as text), so a class has one
    colour whichever column, figure or view shows it; the classes of any one column all differ.

    Each class, in natural order of all of them, takes the first place that no class sharing a column
    with it holds: a column alone keeps its classes' places in its order. The first 10 places are
    :data:`LABEL_PALETTE`'s deep colours, the rest darkened turbo, so the classes that take the first
    10 keep the deep colours whatever the others hold (one palette over the union turned a yes / no
    column into two greens once 13 classes were known; a column of more than 10 classes, such as
    T-types, has its first 10 in deep colours and the rest in turbo's). By
    place in each column, ``spiral`` was the second colour beside ``elliptical`` and ``uncertain``,
    the third beside ``edge-on`` and ``elliptical``.

    Parameters
    ----------
    columns : iterable of array-like
        The values of each label column; missing (None, NaN), blank and ``"(missing)"`` ones
        are left out.

    Returns
    -------
    dict of str to str
        Class -> hex colour.

    Examples
    --------
    >>> c = class_colours([["elliptical", "spiral", "uncertain"], ["edge-on", "elliptical", "spiral"]])
    >>> len({c["edge-on"], c["elliptical"], c["spiral"]}), c["uncertain"] == c["edge-on"]
    (3, True)
    """
    import pandas as pd

    in_columns = []
    for values in columns:
        text = pd.Series(values, dtype=object).dropna().astype(str).unique()
        in_columns.append({v for v in text if v.strip() and v != "(missing)"})
    order = natural(sorted(set().union(*in_columns)))  # sorted first: "1" and "1.0" tie in natural order
    beside: dict[str, set[str]] = {c: set() for c in order}  # the classes sharing a column with each
    for classes in in_columns:
        for c in classes:
            beside[c] |= classes
    place: dict[str, int] = {}
    for c in order:
        held = {place[b] for b in beside[c] if b in place}
        place[c] = next(k for k in range(len(order)) if k not in held)
    beyond = max(place.values(), default=-1) + 1 - len(LABEL_PALETTE)  # places past the deep palette
    return {c: LABEL_PALETTE[place[c]] if place[c] < len(LABEL_PALETTE)
            else _turbo(beyond, shade=0.6)[place[c] - len(LABEL_PALETTE)] for c in order}


@functools.lru_cache(maxsize=32)
def _turbo(n: int, shade: float = 1.0) -> tuple[str, ...]:
    """``n`` colours spread over turbo, its darkest and palest ends left out (they vanish on the map),
    taken in golden-ratio steps: in order along the ramp, clusters 0-6 of 36 were near the same blue."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["turbo"]
    step = (5 ** 0.5 - 1) / 2
    return tuple(to_hex(np.asarray(cmap(0.08 + 0.84 * ((i * step) % 1.0))[:3]) * shade) for i in range(n))


def natural(values) -> list:
    """Values in natural order: numbers (as numbers) first, then text.

    Parameters
    ----------
    values : iterable

    Returns
    -------
    list
    """
    def key(v):
        try:
            return (0, float(v), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(v))

    return sorted(values, key=key)
