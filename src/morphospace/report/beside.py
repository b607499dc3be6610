"""The explorer's data beside the page, for maps of hundreds of thousands to millions of galaxies.

Above ``report.inline_points`` the page would carry tens to hundreds of MB of
base64, all parsed before the map draws. Instead :func:`write_beside` writes
the explorer's arrays (:func:`~morphospace.report.explorer.explorer_arrays`)
into ``RUN/report_files/`` as *chunks*, each loaded only when the page needs it:

- ``m<k>``: map ``k``'s coordinates; ``c<k>``: colouring ``k``'s codes or
  values (the first map and colouring are loaded at open, the others when
  chosen or shown in a tooltip);
- ``i<s>``: the ids of shard ``s`` (``report.shard_points`` galaxies), for a
  tooltip, "more like this", the search box, tags and CSV downloads;
- ``r<s>``: the rest of shard ``s``: its tooltip columns, nearest neighbours
  and sky positions, loaded when one of its galaxies is hovered or clicked.

The page opens from disk with no server: ``fetch`` and ``XMLHttpRequest`` of
``file://`` are refused by browsers, and a ``<script src>`` beside the page
cannot be allowed by hash (Chromium blocks subresource integrity on
``file://``). So a chunk is a tiny HTML document (:data:`CHUNK_SCRIPT`, the
same script in every chunk, allowed by the chunk's own Content-Security-Policy
by its hash) that the page loads in a hidden, sandboxed ``<iframe>``: it
decodes its base64 and hands the bytes to the page with ``postMessage``
(transferred, not copied). The page's own scripts are still only its inline
ones (by hash); it accepts a message only from a frame it made for that chunk,
and only bytes whose SHA-256 matches the one listed in the page. Nothing is
executed from the data.

The map's thumbnails are sprite sheets beside the page
(:func:`~morphospace.report.sprites.write_sheets`), one image per 4,096
galaxies, loaded by the page when one of their galaxies is shown.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import progress
from ..run import atomic_path
from .context import SpriteBook
from .html import json_for_script

__all__ = ["CHUNK_SCRIPT", "chunk_html", "write_beside", "GalleryBook"]

CHUNK_SCRIPT = (
    "(function () { 'use strict';"
    " var b = document.getElementById('b').textContent, t = document.getElementById('t').textContent, u;"
    " if (Uint8Array.fromBase64) u = Uint8Array.fromBase64(b);"
    " else { var s = atob(b), n = s.length; u = new Uint8Array(n); for (var i = 0; i < n; i++) u[i] = s.charCodeAt(i); }"
    " parent.postMessage({ morphospaceChunk: document.documentElement.getAttribute('data-name'),"
    " buf: u.buffer, text: t }, '*', [u.buffer]); })();")


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def chunk_html(name: str, parts: dict[str, np.ndarray], text: dict | None = None) -> tuple[bytes, list[str]]:
    """One chunk: arrays as base64 bytes and a JSON text, in an HTML document that posts them to the page.

    Parameters
    ----------
    name : str
        The chunk's name (letters and digits).
    parts : dict of str to ndarray
        Numeric arrays, stored little-endian one after another (8-byte aligned).
    text : dict, optional
        More data as JSON (ids, text columns).

    Returns
    -------
    html : bytes
        The document.
    digests : list of str
        Base64 SHA-256 of the bytes and of the text, which the page checks.
    """
    if not name.isalnum():
        raise ValueError(f"bad chunk name {name!r}")
    blobs, layout, offset = [], {}, 0
    for key, arr in parts.items():
        a = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        raw = a.tobytes()
        layout[key] = [a.dtype.name, offset, int(a.size)]
        pad = (-len(raw)) % 8
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    data = b"".join(blobs)
    meta = json_for_script({"parts": layout, **(text or {})})  # no <, > or & left: safe inside <pre>
    script_hash = _sha256(CHUNK_SCRIPT.encode("utf-8"))
    html = (f'<!doctype html><html data-name="{name}"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; script-src \'sha256-{script_hash}\'">'
            f'</head><body><pre id="b">{base64.b64encode(data).decode("ascii")}</pre><pre id="t">{meta}</pre>'
            f'<script>{CHUNK_SCRIPT}</script></body></html>')
    return html.encode("utf-8"), [_sha256(data), _sha256(meta.encode("utf-8"))]


def _write(folder: Path, prefix: str, files: dict, name: str, parts: dict, text: dict | None = None) -> None:
    html, digests = chunk_html(name, parts, text)
    path = folder / f"ex_{name}.html"
    with atomic_path(path) as tmp:
        tmp.write_bytes(html)
    files[name] = {"url": f"{prefix}/{path.name}", "sha": digests, "bytes": len(html)}


def write_beside(arrays: dict[str, Any], folder: Path, prefix: str, shard: int = 32768) -> dict[str, Any]:
    """Write the explorer's arrays as chunks in ``folder``; return the page's payload that points to them.

    Parameters
    ----------
    arrays : dict
        :func:`~morphospace.report.explorer.explorer_arrays`' output.
    folder : Path
        ``RUN/report_files`` (made if needed).
    prefix : str
        The folder's URL relative to the page (``"report_files"``).
    shard : int
        Galaxies per ``i``/``r`` chunk.

    Returns
    -------
    dict
        The payload, as :func:`~morphospace.report.explorer.explorer_payload`'s
        but without per-galaxy arrays: each map and colouring names its chunk
        (``res``), ``columns`` keep their type, categories and prefix, and
        ``lazy`` lists ``shard``, ``shards`` and ``files`` (``url``, ``sha``,
        ``bytes`` by chunk name).
    """
    folder.mkdir(parents=True, exist_ok=True)
    n, files = int(arrays["n"]), {}
    out = {k: v for k, v in arrays.items() if k not in ("ids", "maps", "colourings", "columns", "neighbours", "sky")}
    out["maps"] = []
    for k, m in enumerate(arrays["maps"]):
        _write(folder, prefix, files, f"m{k}", {"xy": m["xy"]})
        grid = [{**g, "xy": base64.b64encode(np.asarray(g["xy"], "<f4").tobytes()).decode("ascii")}
                for g in m.get("grid", [])]
        out["maps"].append({**{a: b for a, b in m.items() if a != "xy"}, "res": f"m{k}",
                            **({"grid": grid} if "grid" in m else {})})
    out["colourings"] = []
    for k, c in enumerate(arrays["colourings"]):
        key = "codes" if c["type"] == "categorical" else "values"
        _write(folder, prefix, files, f"c{k}", {key: c[key]})
        out["colourings"].append({**{a: b for a, b in c.items() if a != key}, "res": f"c{k}"})
    cols = arrays["columns"]
    out["columns"] = [{a: b for a, b in c.items() if a not in ("values", "codes")} for c in cols]
    nb = arrays["neighbours"]
    out["neighbours"] = {a: b for a, b in nb.items() if a != "idx"}
    sky = arrays["sky"]
    out["sky"] = None if sky is None else {"unit": sky["unit"]}
    ids = arrays["ids"]
    shards = range(0, n, shard)
    for s, lo in enumerate(progress(shards, total=len(shards), desc="explorer data", unit="shard")):
        hi = min(n, lo + shard)
        _write(folder, prefix, files, f"i{s}", {}, {"ids": [str(v) for v in ids[lo:hi]]})
        parts, text = {"nn": nb["idx"][lo:hi]}, {}
        for j, c in enumerate(cols):
            if c["type"] == "str":
                text[f"s{j}"] = [None if v is None else str(v) for v in c["values"][lo:hi]]
            else:
                parts[f"c{j}"] = c["values" if c["type"] == "num" else "codes"][lo:hi]
        if sky is not None:
            parts["ra"], parts["dec"] = sky["ra"][lo:hi], sky["dec"][lo:hi]
        _write(folder, prefix, files, f"r{s}", parts, text)
    out["lazy"] = {"shard": shard, "shards": len(shards), "files": files}
    return out


class GalleryBook(SpriteBook):
    """The thumbnails of the sections' galleries only, for a map whose thumbnails are beside the page.

    A :class:`~morphospace.report.context.SpriteBook` gives the map's points the
    first sprites; with a million points they are written beside the page
    instead (:func:`~morphospace.report.sprites.write_sheets`), and this book
    holds only the galleries' few hundred rows, so the page loads no map sheet
    to show them.

    Parameters
    ----------
    points : ndarray of int
        The map's cube rows, sorted.
    """

    def __init__(self, points: np.ndarray):
        super().__init__(np.empty(0, dtype=np.int64))
        self._points = np.asarray(points, dtype=np.int64)

    def point(self, row: int) -> int:
        """Index of ``row`` on the explorer's map, or -1 when it is not shown there.

        Parameters
        ----------
        row : int

        Returns
        -------
        int
        """
        i = int(np.searchsorted(self._points, int(row)))
        return i if i < len(self._points) and self._points[i] == int(row) else -1
