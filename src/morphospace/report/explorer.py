"""The data of the interactive explorer: maps, colourings, neighbours and tooltip rows.

:func:`explorer_payload` gathers, for the galaxies shown on the map (every
galaxy of the cube, or a random ``report.max_points`` of them):

- ``maps``: every 2-D reduction of the run (a PCA of the latent space or of
  the pixels when the run has none, so the explorer always exists),
  centred and scaled into [-1, 1], then the sky (RA/Dec) when the catalogue
  has ``ra`` and ``dec`` (:mod:`~morphospace.report.sky`);
- ``colourings``: each clustering, each categorical label column and the
  anomaly score (:mod:`~morphospace.report.colourings`);
- ``neighbours``: the k nearest neighbours of every galaxy in the latent space
  (:mod:`~morphospace.report.neighbours`), the "more like this" of a click and of the search box;
- ``columns``: the catalogue row shown when hovering a galaxy; ``sky``: each galaxy's RA and
  Dec (degrees), when known;
- ``storageKey``: the key under which the page keeps the user's tags and cluster names in the
  browser's local storage, one per run.

:func:`explorer_arrays` returns them as numpy arrays; inside the page
(:func:`explorer_payload`, :func:`inline`) numeric arrays travel as base64 of
little-endian typed arrays (Float32, Int16/Int32), which the page decodes
without parsing numbers one by one; above ``report.inline_points`` they go
beside the page instead (:mod:`~morphospace.report.beside`). Everything here
is vectorised: only distinct values (categories, flag combinations) go
through Python, never each of a million galaxies.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from ..data.ingest.catalogue import storable_texts
from ..progress import Timer
from ..run import MISSING_MARKERS
from .collect import RunContents
from .colourings import anomaly_colouring, categorical_colouring, clustering_colouring, label_colouring
from .neighbours import latent_space, neighbour_search
from .sky import SKY_COLUMNS, sky_map, sky_positions

log = logging.getLogger("morphospace")

MAX_TOOLTIP_COLUMNS = 14


def b64(array: np.ndarray, dtype: str) -> str:
    """Base64 of ``array`` as little-endian ``dtype`` (e.g. ``"float32"``, ``"int16"``): the bytes
    of a JavaScript typed array, as an ASCII string."""
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


def _a_folder(prefix: str) -> bool:
    """Whether a shared prefix is a folder the tooltip may leave out: an absolute path, or one that
    starts from here (``./``, ``../``) or from home (``~/``)."""
    return prefix.startswith(("/", "./", "../", "~/")) or (len(prefix) > 2 and prefix[1] == ":" and prefix[2] in "/\\")


def encode_column(values: pd.Series) -> dict:
    """A tooltip column, encoded compactly for the page.

    Parameters
    ----------
    values : Series

    Returns
    -------
    dict
        Floats as ``{"type": "num", "values": float32}``; text with few
        distinct values as ``{"type": "cat", "categories", "codes"}`` (int32,
        -1: missing); other text as ``{"type": "str", "prefix", "values"}``
        (an object array, None where missing), the folder every value shares
        (an absolute path, or one from ``./``, ``../`` or ``~/``) written once. Arrays
        become base64 once inlined (:func:`inline`).
    """
    if pd.api.types.is_float_dtype(values):
        return {"type": "num", "values": values.to_numpy(dtype=np.float32, na_value=np.nan)}
    obj = pd.Series(values.to_numpy(dtype=object), dtype=object)
    miss = obj.isna().to_numpy()
    text = obj[~miss].astype(str)  # str(v) of every present value, in C, not a loop over rows
    inv, uniq = pd.factorize(text)
    n = len(obj)
    if len(uniq) <= max(64, n // 4):
        codes = np.full(n, -1, dtype=np.int32)
        codes[~miss] = inv
        return {"type": "cat", "categories": [str(u) for u in uniq], "codes": codes}
    present = text.to_numpy(dtype=object)
    # a shared folder is printed once, not a million times (file paths of one survey); only a folder:
    # a prefix such as "2021/" of dates or "w/" of notes is part of what each value says
    prefix = os.path.commonprefix([min(present), max(present)]) if len(present) > 1 else ""
    prefix = prefix[: prefix.rfind("/") + 1] if "/" in prefix and _a_folder(prefix) else ""
    out = np.full(n, None, dtype=object)
    out[~miss] = text.str.slice(len(prefix)).to_numpy(dtype=object) if prefix else present
    return {"type": "str", "prefix": prefix, "values": out}


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
        # each distinct combination of raised flags through Python once, not each galaxy
        uniq, inv = np.unique(raised, axis=0, return_inverse=True)
        lines = [", ".join(f[5:] for f, r in zip(flags, row) if r) or None for row in uniq]
        text = pd.Series(np.array(lines + [None], dtype=object)[np.ravel(inv)], dtype=object)
        if text.notna().any():
            out.append({"name": "flags", **encode_column(text)})
    root = str((contents.summary or {}).get("source") or "")
    for c in cols[:MAX_TOOLTIP_COLUMNS]:
        out.append({"name": str(c), **encode_column(shareable_paths(inside[c], root))})
    return out


ABSOLUTE_PATH = r"^(?:/|~/|\\\\|[A-Za-z]:[/\\])"  # /..., ~/..., \\server\..., C:\... or C:/...


def is_absolute_text(text: str) -> bool:
    """Whether ``text`` reads as an absolute path on any system (POSIX, home, UNC or drive letter),
    whichever system reads it: a report made on one machine is opened on another."""
    return re.match(ABSOLUTE_PATH, text) is not None


def shareable_paths(values: pd.Series, survey: str = "") -> pd.Series:
    """A text column with every absolute path (``/``, ``~/``, ``C:\\``, ``\\\\server``) made shareable: relative
    to the ``survey`` folder where it lies inside it, else its file name. A report is shared; the
    folders of the user's machine are not (the ingest's ``source`` column holds absolute paths).

    Parameters
    ----------
    values : Series
    survey : str
        The survey's folder (the ingest summary's ``source``); empty: file names alone.

    Returns
    -------
    Series
        ``values`` itself when it holds no absolute path.
    """
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values
    obj = pd.Series(values.to_numpy(dtype=object), dtype=object)
    text = obj[obj.notna()].astype(str)  # in C; only the paths found are replaced
    hit = text.str.contains(ABSOLUTE_PATH, regex=True)
    if not hit.any():
        return values
    paths = text[hit]
    folder = storable_texts([survey])[0].rstrip("/\\")  # as the catalogue stores a folder of another encoding
    inside = paths.str.startswith(folder + "/") | paths.str.startswith(folder + "\\") if folder \
        else pd.Series(False, index=paths.index)
    obj[paths.index] = paths.str.split(r"[/\\]", regex=True).str[-1]  # the file name
    obj[paths.index[inside.to_numpy()]] = paths[inside].str.slice(len(folder) + 1)
    return obj


def explorer_payload(contents: RunContents, points: np.ndarray, k: int = 8, seed: int = 0) -> dict[str, Any]:
    """Everything the explorer's script reads, as embedded in the page (:func:`inline` of :func:`explorer_arrays`).

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
        See :func:`explorer_arrays`; every array as base64 of its
        little-endian bytes, ``ids`` and text columns as lists.
    """
    return inline(explorer_arrays(contents, points, k=k, seed=seed))


def inline(obj: Any) -> Any:
    """The payload as JSON data: numeric arrays as base64 of their little-endian bytes, object arrays as lists.

    Parameters
    ----------
    obj : object
        :func:`explorer_arrays`' dict (or any part of it).

    Returns
    -------
    object
        The same structure, ready for :func:`~morphospace.report.html.json_for_script`.
    """
    if isinstance(obj, dict):
        return {k: inline(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [inline(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return [None if v is None else str(v) for v in obj]
        return b64(obj, obj.dtype.name)
    return obj


def explorer_arrays(contents: RunContents, points: np.ndarray, k: int = 8, seed: int = 0) -> dict[str, Any]:
    """Everything the explorer's script reads (see the module docstring), arrays as numpy arrays.

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
        ``n``, ``nTotal``, ``ids`` (object array), ``maps`` (``xy``: float32,
        n x 2), ``colourings``, ``primary``, ``neighbours`` (``k``,
        ``space``, ``index``: exact or approximate, ``recall``: the share of the true nearest the
        search finds, as its index measured it, ``idx``: int32, n x k), ``columns``, ``sky``
        (``{"unit": "deg", "ra", "dec"}``, float64, NaN where unknown; None
        without ``ra``/``dec``) and ``storageKey``.
    """
    n = len(points)
    with Timer(f"explorer: neighbours of {n} galaxies"):
        space, X = latent_space(contents, points, seed)
        neighbours, index = neighbour_search(X, k, random_state=seed)
    maps = []
    for name, xy in contents.maps:
        xy = xy[points]
        if not np.isfinite(xy).all():
            log.warning("report: reduction %s has non-finite coordinates: left out of the explorer", name)
            continue
        # an LDA map is fitted with the labels: said in its name, not shown as if found without them
        # (a study's is "lda", a run's "<embedding>_lda"; one of more than 2 discriminants "... (1, 2)")
        shown = f"{name} (fitted with the labels)" if re.match(r"(?:.*_)?lda(?: \(1, 2\))?$", name) else name
        maps.append({"name": shown, "xy": normalise_xy(xy)})
    if not maps:
        maps.append({"name": f"PCA of {space} (computed for the report)",
                     "xy": normalise_xy(PCA(n_components=2, random_state=seed).fit_transform(X)
                                        if X.shape[1] >= 2 and n > 2 else np.c_[X[:, :1], np.zeros(n)])})
    radec = sky_positions(contents, points)
    sky = None
    if radec is not None:
        sm = sky_map(*radec)
        maps.append({"name": sm["name"], "xy": np.asarray(sm["xy"], dtype=np.float32), "kind": "sky",
                     "grid": [{**g, "xy": np.asarray(g["xy"], dtype=np.float32)} for g in sm["grid"]]})
        sky = {"unit": "deg", "ra": np.asarray(radec[0], dtype=np.float64), "dec": np.asarray(radec[1], dtype=np.float64)}

    colourings = []
    primary = contents.primary
    ordered = ([primary] if primary else []) + [c for c in contents.clusterings if c is not primary]
    cl = [clustering_colouring(c, points) for c in ordered]
    labs = [label_colouring(contents, col, points) for col in contents.label_columns]
    anomaly = contents.anomaly
    an = [anomaly_colouring(anomaly[0], anomaly[1], points)] if anomaly else []
    # the primary clustering, the truth, the anomaly score, then the rest
    colourings = cl[:1] + labs[:1] + an + cl[1:] + labs[1:]
    if not colourings:
        colourings = [categorical_colouring("galaxies", "none", np.full(n, "galaxy", dtype=object))]
    return {
        "n": n,
        "nTotal": contents.n,
        "ids": np.asarray(contents.ids[points], dtype=object),
        "maps": maps,
        "colourings": colourings,
        "primary": primary.name if primary else None,
        "neighbours": {"k": k, "space": space, "index": "exact" if index is None or index.exact_ else "approximate",
                       "recall": 1.0 if index is None else index.recall_, "idx": np.asarray(neighbours, dtype=np.int32)},
        "columns": tooltip_columns(contents, points, sky=sky is not None),
        "sky": sky,
        "storageKey": storage_key(contents),
        # names classify reads as no label ("none" refused), which a label of the explorer may not take
        "noLabelNames": sorted(MISSING_MARKERS - {""}),
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
