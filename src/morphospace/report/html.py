"""The report's HTML: Jinja2 templates, embedded data and scripts, and the views the templates draw.

The page is rendered from the templates of ``morphospace/report/templates``
(package data) by a Jinja2 environment with autoescaping on: everything that
comes from the user's data (ids, file names, label values, column names,
cluster names) is HTML-escaped, quotes included, wherever a template prints it.
Data embedded as JSON in ``<script type="application/json">`` goes through
:func:`json_for_script`, which writes ``<``, ``>``, ``&``, U+2028 and U+2029 as
``\\uXXXX`` escapes, so a string can never close the ``<script>`` element that
holds it (not even ``</script>``). The page carries a Content-Security-Policy
that allows only its own inline scripts (by hash), inline styles and images
from ``data:`` URIs or files beside the page (and, for a map too large to
inline, sandboxed frames of the data files beside it): even a bug in the
escaping could not run a script or reach the network.

The templates draw plain data: the views of :mod:`morphospace.report.views`
(figures, tables, thumbnails) and strings. The explorer's script is split by concept into ``assets/explorer/*.js``
(:data:`EXPLORER_PARTS`), inlined in order into one closure: one ``<script>``,
one hash.

Examples
--------
>>> json_for_script({"id": "</script><b>"})
'{"id":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
>>> render_string("<p>{{ gid }}</p>", gid="<img src=x>")
Markup('<p>&lt;img src=x&gt;</p>')
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup


__all__ = ["EXPLORER_PARTS", "environment", "render", "render_string", "json_for_script", "asset",
           "explorer_script", "data_uri", "page"]

# the explorer's script, by concept, in the order it is inlined (one closure: later parts use earlier ones)
EXPLORER_PARTS = ("data.js", "loader.js", "render.js", "panels.js", "labels.js", "search.js", "interaction.js")
SCRIPTS = ("report.js", "explorer")  # "explorer": the parts above, as one script


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment of the report's templates.

    Returns
    -------
    jinja2.Environment
        Templates loaded from the package (``morphospace.report/templates``),
        autoescaped (``.html`` templates and strings), strict about undefined
        names, with the filter ``thousands`` (``12345`` -> ``12,345``).
    """
    env = Environment(loader=PackageLoader("morphospace.report", "templates"),
                      autoescape=select_autoescape(("html",), default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["thousands"] = lambda v: f"{int(v):,}"
    return env


def render(template: str, **context: Any) -> Markup:
    """Render a template of the report.

    Parameters
    ----------
    template : str
        A file name under ``templates/`` (e.g. ``"data.html"``).
    **context
        The template's variables.

    Returns
    -------
    markupsafe.Markup
        The HTML, marked safe so another template includes it as it is.
    """
    return Markup(environment().get_template(template).render(**context))


def render_string(source: str, **context: Any) -> Markup:
    """Render a template given as a string, in the report's (autoescaping) environment.

    Parameters
    ----------
    source : str
        Jinja2 template text.
    **context
        The template's variables.

    Returns
    -------
    markupsafe.Markup
    """
    return Markup(environment().from_string(source).render(**context))


def json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``.

    Parameters
    ----------
    obj : object
        JSON-serialisable data; numpy scalars and arrays are converted, NaN
        is refused.

    Returns
    -------
    str
        Compact JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 written as
        ``\\uXXXX`` escapes: ``JSON.parse`` reads the same data, and no
        ``</script>`` (nor ``<!--``) can appear in the text.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def asset(name: str) -> str:
    """Text of a file of ``morphospace/report/assets`` (e.g. ``"report.css"``, ``"explorer/data.js"``).

    Parameters
    ----------
    name : str
        The file's path under ``assets/``.

    Returns
    -------
    str
    """
    return resources.files("morphospace.report").joinpath("assets", *name.split("/")).read_text(encoding="utf-8")


def explorer_script() -> str:
    """The explorer's script: :data:`EXPLORER_PARTS` inlined in order into one strict-mode closure.

    Returns
    -------
    str
        JavaScript. The parts share the closure's scope (its variables and
        functions), and nothing but ``window.morphospaceExplorer`` leaks out.
    """
    parts = "\n".join(asset(f"explorer/{name}").rstrip() for name in EXPLORER_PARTS)
    return ("/* morphospace explorer: assets/explorer/" + ", ".join(EXPLORER_PARTS) + " in one closure */\n"
            "(function () {\n  'use strict';\n" + parts + "\n})();\n")


def _script(name: str) -> str:
    text = explorer_script() if name == "explorer" else asset(name)
    if "</script" in text.lower() or "<!--" in text:
        raise ValueError(f"the script {name} cannot be inlined: it holds '</script' or '<!--'")
    return text


def data_uri(data: bytes, mime: str) -> str:
    """A ``data:`` URI of bytes (base64).

    Parameters
    ----------
    data : bytes
    mime : str
        Its media type, e.g. ``"image/png"``.

    Returns
    -------
    str
    """
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# --- the page --------------------------------------------------------------------------------

def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: Sequence[str], data: dict,
         scripts: Sequence[str] = SCRIPTS, frames: bool = False, notices: Sequence[str] = (),
         findings: Sequence[tuple[str, str, str]] = ()) -> str:
    """The whole document: head (CSS, CSP), sticky nav, sections, embedded data and scripts.

    Parameters
    ----------
    title, subtitle : str
        The page's heading and the line under it.
    nav : list of (str, str)
        ``(anchor, label)`` of each section, in order.
    body : sequence of markupsafe.Markup
        The sections' HTML (:func:`render` output), in order; plain strings
        would be escaped, as text.
    data : dict
        Embedded as JSON (``<script type="application/json"
        id="morphospace-data">``), read by the scripts.
    scripts : sequence of str
        Inline scripts, in order: asset names, ``"explorer"`` for
        :func:`explorer_script`.
    frames : bool
        True: the page may load local documents in (sandboxed) frames, the
        explorer's data beside the page (:mod:`~morphospace.report.beside`).
        Scripts are still only the inline ones, by hash.
    notices : sequence of str
        Plain-text warnings shown under the heading (e.g. results older than the run's model).
    findings : sequence of (str, str, str)
        ``(value, label, hint)`` tiles under the heading: what the run found
        (:func:`~morphospace.report.findings.key_findings`).

    Returns
    -------
    str
        A self-contained HTML document: nothing in it reaches the network.
    """
    js = [_script(name) for name in scripts]
    csp = ("default-src 'none'; img-src data: blob: file: 'self'; style-src 'unsafe-inline'; "
           "script-src " + " ".join(f"'sha256-{_sha256(s)}'" for s in js) + "; "
           + ("frame-src 'self' file:; " if frames else "") +
           "connect-src 'none'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")
    css = asset("report.css")
    if "</style" in css.lower():
        raise ValueError("report.css cannot be inlined: it holds '</style'")
    return environment().get_template("page.html").render(
        title=title, subtitle=subtitle, nav=nav, body=list(body), csp=csp, css=Markup(css), notices=list(notices),
        findings=list(findings),
        data_json=Markup(json_for_script(data)), scripts=[Markup(s) for s in js])
