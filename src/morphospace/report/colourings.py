"""The explorer's colourings: by a clustering (clusters in order, noise grey), by a label column (the
page's label colours, apart from the clusters'), by the anomaly score (a colour ramp); each as one
int16 code or float32 value per point shown, the categories and their colours."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .clusterings import MISSING, Clustering
from .collect import RunContents
from .context import natural
from .style import GREY, colormap_lut, colour
from .views import category_colours

__all__ = ["anomaly_colouring", "categorical_colouring", "clustering_colouring", "label_colouring"]


def categorical_colouring(name: str, kind: str, values: np.ndarray, order: list | None = None,
                          colours: dict | None = None, missing: str = "(missing)") -> dict:
    """A categorical colouring: category names, colours and one int16 code per point.

    Vectorised: the values are factorised once and only the distinct ones go through Python.
    """
    inv, uniq = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    blank = np.array([isinstance(v, str) and v.strip() == "" for v in uniq], dtype=bool)
    present = [v for v, b in zip(uniq, blank) if not b]  # in order of first appearance, like Series.unique
    if order is None:
        order = natural(present)
    cats = [str(c) for c in order]
    index = {str(c): k for k, c in enumerate(order)}
    table = np.array([-1 if b else index.get(str(v), -1) for v, b in zip(uniq, blank)] + [-1], dtype=np.int16)
    codes = table[inv]  # inv == -1 (missing) picks the trailing -1
    cols = [colours.get(c, colour(k, len(order))) if colours else colour(k, len(order)) for k, c in enumerate(order)]
    if (codes < 0).any():
        codes[codes < 0] = len(cats)
        cats.append(missing)
        cols.append(GREY)
    counts = np.bincount(codes, minlength=len(cats)).tolist()
    return {"name": name, "kind": kind, "type": "categorical", "categories": cats, "colours": cols,
            "counts": counts, "codes": codes}


def label_colouring(contents: RunContents, column: str, points: np.ndarray) -> dict:
    """The explorer's colouring by a label column: its classes in natural order, taken from every
    galaxy, not the points shown (a class absent from a sample was left out of the legend), each in
    the page's colour of its value (:attr:`~.collect.RunContents.class_colours`, as every figure
    gives it, whichever column shows it)."""
    values = contents.labels(column)
    present = pd.Series(values, dtype=object).dropna().astype(str)
    order = natural(present[present.str.strip() != ""].unique())
    return categorical_colouring(column, "label", values[points], order=order,
                                 colours=category_colours(order, contents.class_colours))


def clustering_colouring(c: Clustering, points: np.ndarray) -> dict:
    """The explorer's colouring by a clustering: clusters in order, noise grey, uncovered galaxies apart.

    Parameters
    ----------
    c : Clustering
    points : ndarray of int
        The cube rows on the map.

    Returns
    -------
    dict
        ``name``, ``kind`` (``"clustering"``), ``type`` (``"categorical"``),
        ``categories``, ``colours``, ``counts``, ``codes`` (int16, one per
        point; base64 once inlined, :func:`~morphospace.report.explorer.inline`) and ``stamp``: a hash of
        every galaxy's label, under which the user's names of its clusters are
        kept (a clustering made again has other clusters behind the same numbers).
    """
    every = np.ascontiguousarray(c.labels, dtype=np.int64)
    stamp = hashlib.blake2b(every.tobytes(), digest_size=8).hexdigest()
    labels = every[points]
    clusters = [k for k in c.clusters]
    names = {k: ("noise" if k < 0 else str(k)) for k in clusters}
    uniq, inv = np.unique(labels, return_inverse=True)  # the distinct labels through Python, not every point
    values = np.array([names.get(int(v)) if v != MISSING else None for v in uniq] + [None], dtype=object)[inv]
    order = [names[k] for k in clusters]
    n = max([*clusters, *c.empty], default=-1) + 1  # as the cluster cards colour them
    colours = {names[k]: colour(k, n) for k in clusters}
    return {**categorical_colouring(c.name, "clustering", values, order, colours, missing="(not clustered)"), "stamp": stamp}


def anomaly_colouring(what: str, score: np.ndarray, points: np.ndarray) -> dict:
    """The explorer's colouring by the anomaly score (magma, from its 1st to its 99th percentile).

    Parameters
    ----------
    what : str
        What the score is.
    score : ndarray
        One score per cube row (NaN: none).
    points : ndarray of int
        The cube rows on the map.

    Returns
    -------
    dict
        ``name``, ``kind`` (``"score"``), ``type`` (``"continuous"``),
        ``values`` (float32), ``lo``, ``hi`` and ``lut`` (RGB triplets).
    """
    s = score[points].astype(np.float32)
    finite = s[np.isfinite(s)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    return {"name": what, "kind": "score", "type": "continuous", "values": s,
            "lo": float(lo), "hi": float(hi if hi > lo else lo + 1), "lut": colormap_lut("magma", lo=0.28)}
