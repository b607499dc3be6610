"""HTML building blocks of the report: escaping, embedded data, figures, tables, the page.

Everything that comes from the user's data (ids, file names, label values,
column names) goes through :func:`esc` (``html.escape``, quotes included) or
:func:`json_script`, which escapes ``<``, ``>`` and ``&`` inside the JSON so a
string can never close the ``<script>`` element that holds it. The page
carries a Content-Security-Policy that allows only its own inline scripts (by
hash), inline styles and images from ``data:`` URIs or files beside the page:
even a bug in the escaping could not run a script or reach the network.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .figures import GREY, colour


def esc(value: Any) -> str:
    """HTML-escape any value (as text), quotes included."""
    return html.escape(str(value), quote=True)


def json_for_script(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` as ``\\u00xx``."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_script(element_id: str, obj: Any) -> str:
    return f'<script type="application/json" id="{esc(element_id)}">{json_for_script(obj)}</script>'


def asset(name: str) -> str:
    """Text of a file of ``morphospace/report/assets``."""
    return resources.files("morphospace.report").joinpath("assets", name).read_text(encoding="utf-8")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_uri(path: Path) -> str:
    return data_uri(Path(path).read_bytes(), "image/png")


# --- blocks ----------------------------------------------------------------------------------

def figure(path: Path, caption: str = "", alt: str = "", wide: bool = False) -> str:
    """A PNG figure inlined as a data URI, with its file name (where it is saved) in the caption."""
    name = Path(path).name
    cap = f"{esc(caption)} " if caption else ""
    return (f'<figure class="fig{" wide" if wide else ""}"><img src="{png_uri(path)}" alt="{esc(alt or caption or name)}">'
            f'<figcaption>{cap}<span class="file">figures/{esc(name)}</span>'
            f"</figcaption></figure>")


def stat(label: str, value: Any, hint: str = "") -> str:
    h = f'<div class="stat-hint">{esc(hint)}</div>' if hint else ""
    return f'<div class="stat"><div class="stat-value">{esc(value)}</div><div class="stat-label">{esc(label)}</div>{h}</div>'


def thumb(sprite: int, point: int, gid: str, caption: str = "", extra: str = "", size: str = "") -> str:
    """A thumbnail drawn from the sprite sheets by ``report.js`` (sprite index in data-s)."""
    cap = f'<span class="cap">{esc(caption)}</span>' if caption else ""
    cls = f"thumb {size}".strip()
    return (f'<button type="button" class="{cls}" data-s="{int(sprite)}" data-p="{int(point)}" '
            f'title="{esc(gid)}"><span class="img" aria-hidden="true"></span>'
            f'<span class="gid">{esc(gid)}</span>{cap}{extra}</button>')


def image_thumb(uri: str | None, gid: str, caption: str = "") -> str:
    """A thumbnail from its own small data URI (galaxies that are not in the cube)."""
    cap = f'<span class="cap">{esc(caption)}</span>' if caption else ""
    img = (f'<img src="{uri}" alt="" class="img">' if uri
           else '<span class="img missing">no image</span>')
    return f'<div class="thumb static" title="{esc(gid)}">{img}<span class="gid">{esc(gid)}</span>{cap}</div>'


def table(frame: pd.DataFrame, heat: bool = False, digits: int = 3, cls: str = "",
          heat_range: tuple[float, float] | None = None, row_header: bool = True) -> str:
    """A plain HTML table of a DataFrame (first column as row headers); ``heat`` shades numeric cells."""
    cols = list(frame.columns)
    numeric = frame.select_dtypes("number")
    lo, hi = heat_range if heat_range else (
        (float(np.nanmin(numeric.to_numpy())), float(np.nanmax(numeric.to_numpy())))
        if heat and numeric.size and np.isfinite(numeric.to_numpy(dtype=float)).any() else (0.0, 1.0))
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for j, v in enumerate(row):
            tag = "th" if (j == 0 and row_header) else "td"
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                fv = float(v)
                if not np.isfinite(fv):
                    cells.append(f'<{tag} class="num na">&ndash;</{tag}>')
                    continue
                whole = fv == 0 or (fv.is_integer() and abs(fv) >= 1)
                text = f"{int(fv)}" if whole else f"{fv:.{digits}f}"
                style, cls_ = "", "num"
                if heat and tag == "td":
                    t = 0.0 if hi <= lo else min(1.0, max(0.0, (fv - lo) / (hi - lo)))
                    style = f' style="--h:{t:.3f}"'
                    cls_ += " heat hi" if t > 0.55 else " heat"  # white ink on the darker cells
                cells.append(f'<{tag} class="{cls_}"{style}>{esc(text)}</{tag}>')
            else:
                cells.append(f"<{tag}>{esc('' if v is None or (isinstance(v, float) and np.isnan(v)) else v)}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table class="{esc(cls)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def mix_bar(counts: Sequence[tuple[str, int, str]]) -> str:
    """A stacked bar of label fractions (label, count, colour), with a legend under it."""
    total = sum(c for _, c, _ in counts) or 1
    segs, legend = [], []
    for label, count, col in counts:
        if count <= 0:
            continue
        pct = 100.0 * count / total
        tip = f"{label}: {count} ({pct:.0f}%)"
        segs.append(f'<span class="seg" style="width:{pct:.2f}%;background:{col}" title="{esc(tip)}"></span>')
        legend.append(f'<span class="key"><i style="background:{col}"></i>{esc(label)} '
                      f'<b>{pct:.0f}%</b></span>')
    return f'<div class="mix"><div class="mixbar">{"".join(segs)}</div><div class="mixkeys">{"".join(legend)}</div></div>'


def category_colours(categories: Iterable[Any]) -> dict[str, str]:
    out = {}
    for k, c in enumerate(categories):
        out[str(c)] = GREY if str(c) == "(missing)" else colour(k)
    return out


# --- the page --------------------------------------------------------------------------------

def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str, data: dict,
         scripts: Sequence[str] = ("report.js", "explorer.js")) -> str:
    """The whole document: head (CSS, CSP), sticky nav, sections, embedded data and scripts."""
    css = asset("report.css")
    js = [asset(name) for name in scripts]
    csp = ("default-src 'none'; img-src data: blob: file: 'self'; style-src 'unsafe-inline'; "
           "script-src " + " ".join(f"'sha256-{_sha256(s)}'" for s in js) + "; "
           "connect-src 'none'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    scripts_html = "".join(f"<script>{s}</script>" for s in js)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{esc(title)}</title>
<style>{css}</style>
</head>
<body>
<header class="topbar">
  <div class="brand"><span class="logo" aria-hidden="true"></span><span>morphospace</span></div>
  <nav class="nav">{links}</nav>
</header>
<main>
<section class="hero">
  <h1>{esc(title)}</h1>
  <p class="subtitle">{esc(subtitle)}</p>
</section>
{body}
</main>
<footer class="footer">Made by morphospace. This page works offline: every script, style and image is inside it
or beside it in the run folder.</footer>
{json_script("morphospace-data", data)}
{scripts_html}
</body>
</html>
"""


def section(anchor: str, title: str, lead: str, content: str, cls: str = "") -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return (f'<section id="{esc(anchor)}" class="section {esc(cls)}"><h2>{esc(title)}</h2>'
            f"{lead_html}{content}</section>")


def card(title: str, content: str, cls: str = "", extra_head: str = "") -> str:
    head = f'<div class="card-head"><h3>{title}</h3>{extra_head}</div>' if title else ""
    return f'<div class="card {esc(cls)}">{head}{content}</div>'
