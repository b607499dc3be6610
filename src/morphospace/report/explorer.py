"""The data of the interactive explorer: maps, colourings, neighbours and tooltip rows.

:func:`explorer_payload` gathers, for the galaxies shown on the map (every
galaxy of the cube, or a random ``max_points`` of them):

- ``maps``: every 2-D reduction of the run (a PCA of the latent space or of
  the pixels when the run has none, so the explorer always exists),
  centred and scaled into [-1, 1], then the sky (RA/Dec) when the catalogue
  has ``ra`` and ``dec`` (:mod:`~morphospace.report.sky`);
- ``colourings``: each clustering, each categorical label column and the
  anomaly score;
- ``neighbours``: the k nearest neighbours of every galaxy in the latent space
  (:mod:`~morphospace.report.neighbours`: an approximate nearest-neighbour
  index), the "more like this" of a click and of the search box;
- ``columns``: the catalogue row shown when hovering a galaxy; ``sky``: each
  galaxy's RA and Dec (degrees), when known;
- ``storageKey``: the key under which the page keeps the user's tags and
  cluster names in the browser's local storage, one per run.

Numeric arrays travel as base64 of little-endian typed arrays (Float32,
Int16/Int32), which the page decodes without parsing numbers one by one.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from ..progress import Timer
from .clusterings import MISSING, Clustering
from .collect import RunContents
from .neighbours import latent_space, nearest_neighbours, pixel_features  # noqa: F401  (their home before)
from .sky import SKY_COLUMNS, sky_map, sky_positions
from .style import GREY, colormap_lut, colour

log = logging.getLogger("morphospace")

MAX_TOOLTIP_COLUMNS = 14


def b64(array: np.ndarray, dtype: str) -> str:
    """Base64 of an array as little-endian ``dtype``: the bytes of a JavaScript typed array.

    Parameters
    ----------
    array : ndarray
    dtype : str
        E.g. ``"float32"``, ``"int16"``.

    Returns
    -------
    str
    """
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode("ascii")


def choose_points(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Cube rows shown on the map: all of them, or a sorted random ``max_points``.

    Parameters
    ----------
    n : int
        Galaxies in the cube.
    max_points : int
        The most shown (``report.max_points``; 0 or less: no limit).
    seed : int

    Returns
    -------
    ndarray of int
        Sorted cube rows.
    """
    if max_points <= 0 or n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def normalise_xy(xy: np.ndarray) -> np.ndarray:
    """Centre a 2-D map and scale it uniformly (aspect kept) into [-1, 1].

    Parameters
    ----------
    xy : ndarray, shape (n, 2)

    Returns
    -------
    ndarray of float32, shape (n, 2)
        The longer side spans [-1, 1].
    """
    xy = np.asarray(xy, dtype=np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    half = float(np.max(hi - lo)) / 2 or 1.0
    return ((xy - (lo + hi) / 2) / half).astype(np.float32)


def _categorical(name: str, kind: str, values: np.ndarray, order: list | None = None,
                 colours: dict | None = None, missing: str = "(missing)") -> dict:
    """A categorical colouring: category names, colours and one int16 code per point."""
    vals = pd.Series(values, dtype=object)
    miss = vals.isna() | vals.map(lambda v: isinstance(v, str) and v.strip() == "")
    present = vals[~miss]
    if order is None:
        order = _natural_order(present.unique())
    cats = [str(c) for c in order]
    index = {str(c): k for k, c in enumerate(order)}
    codes = np.array([index.get(str(v), -1) if not m else -1 for v, m in zip(vals, miss)], dtype=np.int16)
    cols = [colours.get(c, colour(k)) if colours else colour(k) for k, c in enumerate(order)]
    if (codes < 0).any():
        codes[codes < 0] = len(cats)
        cats.append(missing)
        cols.append(GREY)
    counts = np.bincount(codes, minlength=len(cats)).tolist()
    return {"name": name, "kind": kind, "type": "categorical", "categories": cats, "colours": cols,
            "counts": counts, "codes": b64(codes, "int16")}


def _natural_order(values) -> list:
    def key(v):
        try:
            return (0, float(v), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(v))

    return sorted(values, key=key)


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
        ``categories``, ``colours``, ``counts`` and ``codes`` (base64 int16,
        one per point).
    """
    labels = c.labels[points]
    clusters = [k for k in c.clusters]
    names = {k: ("noise" if k < 0 else str(k)) for k in clusters}
    values = np.array([names.get(int(v)) if v != MISSING else None for v in labels], dtype=object)
    order = [names[k] for k in clusters]
    colours = {names[k]: colour(k) for k in clusters}
    return _categorical(c.name, "clustering", values, order, colours, missing="(not clustered)")


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
        ``values`` (base64 float32), ``lo``, ``hi`` and ``lut`` (RGB triplets).
    """
    s = score[points].astype(np.float32)
    finite = s[np.isfinite(s)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    return {"name": what, "kind": "score", "type": "continuous", "values": b64(s, "float32"),
            "lo": float(lo), "hi": float(hi if hi > lo else lo + 1), "lut": colormap_lut("magma", lo=0.28)}


def encode_column(values: pd.Series) -> dict:
    """A tooltip column, encoded compactly for the page.

    Parameters
    ----------
    values : Series

    Returns
    -------
    dict
        Floats as ``{"type": "num", "values": base64 float32}``; text with few
        distinct values as ``{"type": "cat", "categories", "codes"}`` (-1:
        missing); other text as ``{"type": "str", "prefix", "values"}``, the
        folder every value shares written once.
    """
    if pd.api.types.is_float_dtype(values):
        return {"type": "num", "values": b64(values.to_numpy(dtype=np.float32, na_value=np.nan), "float32")}
    text = [None if (v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA) else str(v)
            for v in values.to_numpy(dtype=object)]
    uniq = pd.unique(pd.Series([t for t in text if t is not None], dtype=object))
    if len(uniq) <= max(64, len(text) // 4):
        index = {u: k for k, u in enumerate(uniq)}
        codes = np.array([index[t] if t is not None else -1 for t in text], dtype=np.int32)
        return {"type": "cat", "categories": [str(u) for u in uniq], "codes": b64(codes, "int32")}
    present = [t for t in text if t is not None]
    prefix = os.path.commonprefix(present) if len(present) > 1 else ""
    # a shared folder is printed once, not 20,000 times (file paths of one survey)
    prefix = prefix[: prefix.rfind("/") + 1] if "/" in prefix else ""
    return {"type": "str", "prefix": prefix,
            "values": [t[len(prefix):] if t is not None else None for t in text]}


def tooltip_columns(contents: RunContents, points: np.ndarray, sky: bool = False) -> list[dict]:
    """Catalogue columns shown on hover: the raised flags as one line, the labels, then the rest.

    Parameters
    ----------
    contents : RunContents
    points : ndarray of int
        The cube rows on the map.
    sky : bool
        True: ``ra`` and ``dec`` are left out (the page shows them from the
        payload's ``sky``, at full precision).

    Returns
    -------
    list of dict
        ``{"name": column, **encode_column(...)}``, at most
        :data:`MAX_TOOLTIP_COLUMNS` catalogue columns (``id`` and
        ``cube_index`` left out).
    """
    inside = contents.inside.iloc[points].reset_index(drop=True)
    skip = {"id", "cube_index"}
    if sky:
        skip |= set(SKY_COLUMNS)
    cols = [c for c in inside.columns if c not in skip and not str(c).startswith("flag_")]
    # labels first, then the rest in catalogue order
    labels = [c for c in contents.label_columns if c in cols]
    cols = labels + [c for c in cols if c not in labels]
    out = []
    flags = [c for c in inside.columns if str(c).startswith("flag_")]
    if flags:
        raised = inside[flags].fillna(False).astype(bool).to_numpy()
        text = pd.Series([", ".join(f[5:] for f, r in zip(flags, row) if r) or None for row in raised],
                         dtype=object)
        if text.notna().any():
            out.append({"name": "flags", **encode_column(text)})
    for c in cols[:MAX_TOOLTIP_COLUMNS]:
        out.append({"name": str(c), **encode_column(inside[c])})
    return out


def explorer_payload(contents: RunContents, points: np.ndarray, k: int = 8, seed: int = 0) -> dict[str, Any]:
    """Everything the explorer's script reads (see the module docstring).

    Parameters
    ----------
    contents : RunContents
    points : ndarray of int
        The cube rows on the map (:func:`choose_points`).
    k : int
        Neighbours per galaxy.
    seed : int
        Random state of any PCA computed here.

    Returns
    -------
    dict
        ``n``, ``nTotal``, ``ids``, ``maps``, ``colourings``, ``primary``,
        ``neighbours`` (``k``, ``space``, ``index``, ``idx``: base64 int32,
        n x k), ``columns``, ``sky`` (``{"unit": "deg", "ra", "dec"}``, base64
        float64, NaN where unknown; None without ``ra``/``dec``) and
        ``storageKey``.
    """
    n = len(points)
    with Timer(f"explorer: neighbours of {n} galaxies"):
        space, X = latent_space(contents, points, seed)
        neighbours = nearest_neighbours(X, k, random_state=seed)
    maps = []
    for name, xy in contents.maps:
        xy = xy[points]
        if not np.isfinite(xy).all():
            log.warning("report: reduction %s has non-finite coordinates: left out of the explorer", name)
            continue
        maps.append({"name": name, "xy": b64(normalise_xy(xy), "float32")})
    if not maps:
        maps.append({"name": f"PCA of {space} (computed for the report)",
                     "xy": b64(normalise_xy(PCA(n_components=2, random_state=seed).fit_transform(X)
                                            if X.shape[1] >= 2 and n > 2 else np.c_[X[:, :1], np.zeros(n)]),
                               "float32")})
    radec = sky_positions(contents, points)
    sky = None
    if radec is not None:
        sm = sky_map(*radec)
        maps.append({"name": sm["name"], "xy": b64(sm["xy"], "float32"), "kind": "sky",
                     "grid": [{**g, "xy": b64(g["xy"], "float32")} for g in sm["grid"]]})
        sky = {"unit": "deg", "ra": b64(radec[0], "float64"), "dec": b64(radec[1], "float64")}

    colourings = []
    primary = contents.primary
    ordered = ([primary] if primary else []) + [c for c in contents.clusterings if c is not primary]
    cl = [clustering_colouring(c, points) for c in ordered]
    labs = [_categorical(col, "label", contents.labels(col)[points]) for col in contents.label_columns]
    anomaly = contents.anomaly
    an = [anomaly_colouring(anomaly[0], anomaly[1], points)] if anomaly else []
    # the primary clustering, the truth, the anomaly score, then the rest
    colourings = cl[:1] + labs[:1] + an + cl[1:] + labs[1:]
    if not colourings:
        colourings = [_categorical("galaxies", "none", np.array(["galaxy"] * n, dtype=object))]
    return {
        "n": n,
        "nTotal": contents.n,
        "ids": [str(i) for i in contents.ids[points]],
        "maps": maps,
        "colourings": colourings,
        "primary": primary.name if primary else None,
        "neighbours": {"k": k, "space": space, "index": "pynndescent", "idx": b64(neighbours, "int32")},
        "columns": tooltip_columns(contents, points, sky=sky is not None),
        "sky": sky,
        "storageKey": storage_key(contents),
    }


def storage_key(contents: RunContents) -> str:
    """The key of a run's tags and cluster names in the browser's local storage.

    Every report opened from ``file://`` shares one local storage, so the key
    tells runs apart: a hash of the run directory's absolute path and of the
    cube's galaxy ids. Rebuilding a run's report keeps its key (the tags
    survive); another run, or the same folder ingested anew with other
    galaxies, gets another.

    Parameters
    ----------
    contents : RunContents

    Returns
    -------
    str
        ``"morphospace:"`` and 20 hex digits.
    """
    h = hashlib.sha256(str(contents.path.resolve()).encode("utf-8", "surrogatepass") + b"\0")
    for start in range(0, contents.n, 65536):
        h.update("\n".join(contents.ids[start:start + 65536]).encode("utf-8", "surrogatepass") + b"\n")
    return "morphospace:" + h.hexdigest()[:20]
