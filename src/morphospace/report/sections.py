"""The sections of the report, each built only when its inputs exist in the run.

Every builder takes the :class:`ReportContext` (the run's contents, the sprite
book of thumbnails, the figures made so far) and returns ``(nav label, html)``
or None. Builders save each of their figures under ``RUN/figures/`` (names
starting ``report_``) and record in the context which existing figures they
placed, so :func:`other_figures` can show every remaining PNG.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..run import RunDir
from . import figures as F
from .collect import MISSING, Clustering, RunContents
from .html import (card, category_colours, data_uri, esc, figure, image_thumb, mix_bar, section, stat, table,
                   thumb)
from .sprites import image_file_thumbnail, thumbnails, to_uint8

log = logging.getLogger("morphospace")

PREFIX = "report_"  # figures this module makes (re-made, never shown as "other figures")


class SpriteBook:
    """Cube rows that get a thumbnail: the explorer's points first, then any row a gallery needs."""

    def __init__(self, points: np.ndarray):
        self.rows: list[int] = [int(r) for r in points]
        self.n_points = len(self.rows)
        self._index = {r: i for i, r in enumerate(self.rows)}

    def sprite(self, row: int) -> int:
        row = int(row)
        if row not in self._index:
            self._index[row] = len(self.rows)
            self.rows.append(row)
        return self._index[row]

    def point(self, row: int) -> int:
        """Index of ``row`` on the explorer's map, or -1 when it is not shown there."""
        i = self._index.get(int(row), -1)
        return i if 0 <= i < self.n_points else -1


@dataclass
class ReportContext:
    run: RunDir
    contents: RunContents
    book: SpriteBook
    cfg: object
    made: set[str] = field(default_factory=set)  # figure file names this report wrote
    placed: set[str] = field(default_factory=set)  # existing figure file names shown somewhere
    seed: int = 0

    def fig_path(self, name: str) -> Path:
        path = self.run.figure_path(PREFIX + name)
        self.made.add(path.name)
        return path

    def existing_figure(self, name: str) -> Path | None:
        p = self.run.path / "figures" / name
        if p.exists():
            self.placed.add(p.name)
            return p
        return None

    def thumb(self, row: int, caption: str = "", extra: str = "", size: str = "") -> str:
        row = int(row)
        return thumb(self.book.sprite(row), self.book.point(row), str(self.contents.ids[row]), caption, extra, size)


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


# --- the data -----------------------------------------------------------------------------------

def _flag_rows(ctx: ReportContext) -> pd.DataFrame:
    """One row per raised flag: flag, meaning, count, excluded, examples (ids), thumbnails (paths)."""
    summary = ctx.contents.summary or {}
    cat = ctx.contents.catalogue
    rows = []
    flags = summary.get("flags") if isinstance(summary.get("flags"), dict) else {}
    for name, info in flags.items():
        info = info if isinstance(info, dict) else {}
        count = int(info.get("count", 0) or 0)
        examples = [str(x) for x in (info.get("examples") or [])]
        if cat is not None and not examples and f"flag_{name}" in cat.columns:
            examples = cat.loc[cat[f"flag_{name}"].fillna(False).astype(bool), "id"].head(5).tolist()
        rows.append({"flag": str(name), "meaning": str(info.get("meaning", "")), "count": count,
                     "excluded": bool(info.get("excluded", False)), "examples": examples,
                     "thumbnails": [str(t) for t in (info.get("thumbnails") or [])]})
    if not rows and cat is not None:
        for col in ctx.contents.flag_columns:
            hit = cat[col].fillna(False).astype(bool)
            if hit.any():
                excluded = bool((cat.loc[hit, "cube_index"] < 0).all()) if "cube_index" in cat else False
                rows.append({"flag": col[5:], "meaning": "", "count": int(hit.sum()), "excluded": excluded,
                             "examples": cat.loc[hit, "id"].head(5).tolist(), "thumbnails": []})
    return pd.DataFrame(rows, columns=["flag", "meaning", "count", "excluded", "examples", "thumbnails"])


def _flag_example(ctx: ReportContext, gid: str, thumb_path: str | None) -> str:
    """A thumbnail of a flagged galaxy: from the cube, a thumbnail file, or its source file."""
    row = int(ctx.contents.rows_of([gid])[0])
    if row >= 0:
        return ctx.thumb(row)
    candidates = []
    if thumb_path:
        p = Path(thumb_path)
        candidates.append(p if p.is_absolute() else ctx.run.path / p)
    cat = ctx.contents.catalogue
    if cat is not None and "source" in cat.columns:
        src = cat.loc[cat["id"] == gid, "source"]
        if len(src) and isinstance(src.iloc[0], str) and "#" not in src.iloc[0]:
            candidates.append(Path(src.iloc[0]))
    for p in candidates:
        if p.is_file():
            data = image_file_thumbnail(p, 96)
            if data is not None:
                return image_thumb(data_uri(data, "image/jpeg"), gid)
    return image_thumb(None, gid)


def data_section(ctx: ReportContext) -> tuple[str, str] | None:
    c = ctx.contents
    summary = c.summary or {}
    cat = c.catalogue
    n_records = int(summary.get("n_records", len(cat) if cat is not None else c.n))
    shape = c.cube.shape
    stats = [stat("galaxies listed", f"{n_records:,}"),
             stat("in the cube", f"{c.n:,}", _pct(c.n, n_records) + " of those listed"),
             stat("left out", f"{n_records - c.n:,}", "quality flags"),
             stat("image", f"{shape[2]}\u00d7{shape[3]} px", f"{shape[1]} channel{'s' if shape[1] > 1 else ''}")]
    if summary.get("layout"):
        stats.append(stat("layout", summary["layout"]))
    parts = [f'<div class="stats">{"".join(stats)}</div>']
    if summary.get("source"):
        parts.append(f'<p class="muted small">Source: <code>{esc(summary["source"])}</code></p>')

    flags = _flag_rows(ctx)
    if len(flags):
        path = F.flags_figure(flags, ctx.fig_path("flags"))
        rows = []
        for r in flags.itertuples(index=False):
            ex = "".join(_flag_example(ctx, gid, r.thumbnails[j] if j < len(r.thumbnails) else None)
                         for j, gid in enumerate(r.examples[:5]))
            status = ('<span class="pill bad">kept out</span>' if r.excluded
                      else '<span class="pill warn">kept</span>')
            rows.append(f"<tr><th><code>{esc(r.flag)}</code><div class='muted small'>{esc(r.meaning)}</div></th>"
                        f"<td class='num'>{r.count:,}</td><td>{status}</td><td><div class='thumbs small'>{ex}</div></td></tr>")
        flag_table = ('<div class="table-wrap"><table class="flags"><thead><tr><th>flag</th><th>galaxies</th>'
                      f'<th></th><th>examples</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
        parts.append(card("Quality flags", f'<div class="grid2">{figure(path, "Galaxies per quality flag.")}'
                          f"{flag_table}</div>"))
    else:
        parts.append(card("Quality flags", '<p class="good">No galaxy was flagged at ingest.</p>'))

    label_cols = c.label_columns[:3]
    if label_cols:
        counts = {}
        for col in label_cols:
            vals = pd.Series(c.labels(col), dtype=object).fillna("(missing)")
            vc = vals.astype(str).value_counts()
            order = [str(k) for k in _natural(vc.index) if k != "(missing)"] + (["(missing)"] if "(missing)" in vc else [])
            counts[col] = vc.reindex(order)
        path = F.labels_figure(counts, ctx.fig_path("labels"))
        truth = f" The truth label for comparisons is <code>{esc(c.truth)}</code>." if c.truth else ""
        parts.append(card("Labels", f'<p class="muted">Galaxies of the cube per label value.{truth}</p>'
                          + figure(path, "Label distribution.")))

    rng = np.random.default_rng(ctx.seed)
    k = min(48, c.n)
    rows = np.sort(rng.choice(c.n, size=k, replace=False))
    images = to_uint8(np.asarray(c.cube[rows]))
    path = F.mosaic_figure(images, ctx.fig_path("mosaic"), cols=12)
    parts.append(card("A random sample", '<p class="muted">Galaxies drawn at random from the cube, as the models see '
                      "them (after preprocessing).</p>" + figure(path, f"{k} random galaxies.", wide=True)))
    lead = "What went in: how many galaxies were read, which were flagged and why, and what they look like."
    return "Data", section("data", "The data", esc(lead), "".join(parts))


def _natural(values) -> list:
    def key(v):
        try:
            return (0, float(v), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(v))

    return sorted(values, key=key)


# --- the model ----------------------------------------------------------------------------------

def model_section(ctx: ReportContext) -> tuple[str, str] | None:
    c = ctx.contents
    parts = []
    for model, files in c.metrics_files().items():
        logs = []
        for f in files:
            try:
                logs.append((f.parent.parent.name if f.parent.name.startswith("version_") else f.parent.name,
                             pd.read_csv(f)))
            except Exception as exc:
                log.warning("report: %s unreadable (%s)", f, exc)
        if not logs:
            continue
        path = F.training_figure(logs, ctx.fig_path(f"training_{_slug(model)}"))
        if path is not None:
            rel = ", ".join(str(f.relative_to(ctx.run.path)) for f in files)
            parts.append(card(f"Training of <code>{esc(model)}</code>",
                              figure(path, f"Training curves from {rel}.", wide=True)))
    recon = [p for p in c.figures() if re.search(r"reconstruction", p.stem)]
    for p in recon:
        ctx.placed.add(p.name)
        parts.append(card("Reconstructions", '<p class="muted">Input galaxies and what the model makes of them.</p>'
                          + figure(p, "Reconstructions.", wide=True)))
    generated = [p for p in c.figures() if p.stem.startswith("vade_generated") and _cluster_of_figure(p) is None]
    for p in generated:
        ctx.placed.add(p.name)
        parts.append(card("Generated galaxies", '<p class="muted">Galaxies drawn from the latent mixture.</p>'
                          + figure(p, "Generated galaxies.", wide=True)))
    if not parts:
        return None
    return "Model", section("model", "The model", "How training went and what the model reconstructs.", "".join(parts))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _cluster_of_figure(p: Path) -> int | None:
    """Cluster number of a per-cluster figure such as ``vade_generated_3.png`` / ``vade_generated_cluster3.png``."""
    m = re.fullmatch(r"vade_generated[_-]?(?:cluster|c|k)?[_-]?(\d+)", p.stem)
    return int(m.group(1)) if m else None


# --- the clusters -------------------------------------------------------------------------------

def exemplars(ctx: ReportContext, cl: Clustering, k: int, n: int) -> tuple[list[int], str]:
    """Up to ``n`` cube rows that represent cluster ``k``, and how they were chosen."""
    members = np.flatnonzero(cl.labels == k)
    if len(members) == 0:
        return [], ""
    if cl.probs is not None and 0 <= k < cl.probs.shape[1] and np.isfinite(cl.probs[members, k]).any():
        p = np.nan_to_num(cl.probs[members, k], nan=-1.0)
        return members[np.argsort(-p, kind="stable")[:n]].tolist(), "most probable members"
    X = _representation(ctx, cl)
    if X is not None and k >= 0:
        centre = X[members].mean(axis=0)
        d = np.linalg.norm(X[members] - centre, axis=1)
        return members[np.argsort(d, kind="stable")[:n]].tolist(), "members nearest the cluster centre"
    rng = np.random.default_rng(ctx.seed + k + 1)
    return rng.choice(members, size=min(n, len(members)), replace=False).tolist(), "random members"


def _representation(ctx: ReportContext, cl: Clustering) -> np.ndarray | None:
    c = ctx.contents
    rep = cl.meta.get("representation")
    if rep is None:
        m = re.match(r"[a-z]+\d*_(.+)$", cl.name)
        rep = m.group(1) if m else (cl.name if cl.name in c.embeddings else None)
    try:
        if rep in c.embeddings:
            return c.embedding(rep)
        if rep is not None and ctx.run.reduction_path(rep).exists():
            arr = np.load(ctx.run.reduction_path(rep))
            if len(arr) == c.n:
                return np.asarray(arr, dtype=np.float32)
    except Exception:
        pass
    return None


def cluster_section(ctx: ReportContext) -> tuple[str, str] | None:
    c = ctx.contents
    cl = c.primary
    if cl is None:
        return None
    clusters = cl.clusters
    covered = cl.labels != MISSING
    total = int(covered.sum())
    names = ["noise" if k < 0 else str(k) for k in clusters]
    sizes = [int((cl.labels == k).sum()) for k in clusters]
    cols = [F.colour(k) for k in clusters]
    anomaly = c.anomaly
    truth = c.truth
    truth_vals = pd.Series(c.labels(truth), dtype=object).fillna("(missing)").astype(str) if truth else None
    truth_order = ([str(v) for v in _natural(truth_vals.unique()) if v != "(missing)"]
                   + (["(missing)"] if truth_vals is not None and (truth_vals == "(missing)").any() else [])
                   ) if truth else []
    truth_colours = category_colours(truth_order)

    if cl.name == "vade":
        why = "the VaDE's own clustering: each galaxy goes to the mixture component most likely to have made it"
    elif cl.name.startswith("kmeans"):
        why = "K-Means at the number of clusters with the best silhouette"
    else:
        why = "the first clustering of the run"
    rep = cl.meta.get("representation")
    head = (f'<p class="lead">Clustering <code>{esc(cl.name)}</code> ({esc(why)}'
            f'{", on " + "<code>" + esc(rep) + "</code>" if rep else ""}): '
            f"{sum(1 for k in clusters if k >= 0)} clusters over {total:,} galaxies"
            f'{f", {sizes[-1]:,} noise" if clusters and clusters[-1] < 0 else ""}. Click a thumbnail to find it on the map.</p>')

    figs = [figure(F.cluster_sizes_figure(names, sizes, cols, ctx.fig_path("cluster_sizes"),
                                          f"Galaxies per cluster of {cl.name}"), "Cluster sizes.")]
    if truth:
        mix = pd.crosstab(pd.Series(cl.labels[covered]).map(lambda v: "noise" if v < 0 else str(v)),
                          truth_vals[covered].to_numpy()).reindex(index=names, columns=truth_order, fill_value=0)
        figs.append(figure(F.label_mix_figure(mix, ctx.fig_path("cluster_label_mix"),
                                              f"{truth} within each cluster"), f"Label mix ({truth})."))
    if anomaly is not None:
        groups = [(nm, col, anomaly[1][cl.labels == k]) for nm, col, k in zip(names, cols, clusters)]
        figs.append(figure(F.anomaly_by_cluster_figure(groups, ctx.fig_path("cluster_anomaly"), anomaly[0]),
                           "Anomaly score by cluster."))

    per_cluster_generated = {}
    for p in c.figures():
        k = _cluster_of_figure(p)
        if k is not None:
            per_cluster_generated[k] = p

    n_ex = max(1, int(getattr(ctx.cfg.report, "gallery_size", 16)))
    cards, gallery_rows = [], []
    how_chosen = ""
    for name, size, col, k in zip(names, sizes, cols, clusters):
        rows, how = exemplars(ctx, cl, k, n_ex)
        how_chosen = how_chosen or how
        meta = [f"{size:,} galaxies", _pct(size, total)]
        if anomaly is not None:
            vals = anomaly[1][cl.labels == k]
            if np.isfinite(vals).any():
                meta.append(f"mean anomaly {_fmt(float(np.nanmean(vals)))}")
        body = f'<div class="thumbs">{"".join(ctx.thumb(r) for r in rows)}</div>'
        if truth:
            vc = truth_vals[cl.labels == k].value_counts()
            body += mix_bar([(lab, int(vc.get(lab, 0)), truth_colours[lab]) for lab in truth_order])
        if k in per_cluster_generated:
            p = per_cluster_generated[k]
            ctx.placed.add(p.name)
            body += f'<div class="generated"><div class="muted small">generated by the model for this cluster</div>{figure(p)}</div>'
        title = (f'<span class="dot" style="background:{col}"></span>'
                 f'{"Noise" if k < 0 else "Cluster " + esc(name)}')
        cards.append(card(title, body, cls="cluster", extra_head=f'<span class="muted small">{esc(" · ".join(meta))}</span>'))
        if rows:
            gallery_rows.append((("noise" if k < 0 else f"cluster {name}") + f" ({size})", col,
                                 thumbnails(c.cube, rows, min(64, c.cube.shape[2]), desc="gallery")))
    if gallery_rows:
        # the galleries as one PNG as well (the page shows them from the sprite sheets)
        F.gallery_figure(gallery_rows, ctx.fig_path("cluster_gallery"), n_ex)
    note = (f'<p class="muted small">Thumbnails: {esc(how_chosen)}; the label bar shows <code>{esc(truth)}</code>. '
            f"All galleries are also saved as figures/{PREFIX}cluster_gallery.png.</p>" if truth else
            f'<p class="muted small">Thumbnails: {esc(how_chosen)}.</p>')
    content = (head + f'<div class="figrow">{"".join(figs)}</div>' + note
               + f'<div class="clusters">{"".join(cards)}</div>')
    return "Clusters", section("clusters", "The clusters", "", content)


# --- the comparisons ----------------------------------------------------------------------------

def _read_matrix(path: Path) -> pd.DataFrame | None:
    try:
        t = pd.read_csv(path)
    except Exception as exc:
        log.warning("report: %s unreadable (%s)", path, exc)
        return None
    if t.empty or t.shape[1] < 2:
        return None
    return t.set_index(t.columns[0])


def probe_card(path: Path | None) -> str:
    """The linear probes of the run's embeddings: balanced accuracy by labelled fraction."""
    if path is None:
        return ""
    try:
        t = pd.read_csv(path)
        wide = t.pivot_table(index="embedding", columns="fraction", values="balanced_accuracy")
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return ""
    if wide.empty:
        return ""
    wide.columns = [f"{100 * f:g}% of labels" for f in wide.columns]
    wide = wide.sort_values(wide.columns[min(1, len(wide.columns) - 1)], ascending=False).reset_index()
    chance = float(t["chance"].iloc[0]) if "chance" in t else float("nan")
    label = str(t["label"].iloc[0]) if "label" in t else "the labels"
    return card("Linear probes", f'<p class="muted small">How much of <code>{esc(label)}</code> a straight line can '
                "read from each embedding: a logistic regression trained on a small labelled fraction of the "
                "galaxies, balanced accuracy on the rest (the mean recall over classes; chance "
                f"{_fmt(chance)}). The field's standard measure of a representation; the labels score it, they "
                "train nothing upstream.</p>" + table(wide, heat=True, heat_range=(chance if np.isfinite(chance) else 0.0, 1.0)))


def comparison_section(ctx: ReportContext) -> tuple[str, str] | None:
    c = ctx.contents
    parts = []
    matrices = {}
    for m, title in (("ari", "Adjusted Rand index"), ("ami", "Adjusted mutual information")):
        csv = c.comparison(f"{m}.csv")
        mat = _read_matrix(csv) if csv else None
        if mat is not None:
            matrices[m] = mat
        fig = ctx.existing_figure(f"{m}_matrix.png")
        if fig is None and mat is not None:
            fig = F.heatmap_figure(mat.apply(pd.to_numeric, errors="coerce"), ctx.fig_path(m), title)
        if fig is not None:
            parts.append(figure(fig, f"{title} between every pair of clusterings and labels.", wide=True))
    truth_table = ""
    truth = c.truth
    if truth and matrices and all(truth in mat.columns for mat in matrices.values()):
        rows = []
        for name in next(iter(matrices.values())).index:
            if name == truth or name not in {cc.name for cc in c.clusterings}:
                continue
            rows.append({"clustering": name, **{m.upper(): pd.to_numeric(mat.loc[name, truth], errors="coerce")
                                                 for m, mat in matrices.items() if name in mat.index}})
        if rows:
            best = pd.DataFrame(rows)
            key = "AMI" if "AMI" in best else best.columns[1]
            best = best.sort_values(key, ascending=False).head(15)
            truth_table = card(f"Agreement with <code>{esc(truth)}</code>",
                               '<p class="muted small">Clusterings ranked by how well they recover the truth label '
                               "(1 = the same partition, 0 = chance).</p>"
                               + table(best, heat=True, heat_range=(0.0, 1.0)))
    blocks = []
    if parts:
        blocks.append(card("Agreement matrices", f'<div class="figrow">{"".join(parts)}</div>'))
    if truth_table:
        blocks.append(truth_table)

    probe = probe_card(c.comparison("linear_probe.csv"))
    if probe:
        blocks.append(probe)

    conts = sorted((c.path / "comparisons").glob("contingency_*.csv")) if (c.path / "comparisons").is_dir() else []
    if conts:
        primary = c.primary.name if c.primary else None
        conts.sort(key=lambda p: (0 if primary and p.stem.startswith(f"contingency_{primary}__") else 1, p.name))
        items = []
        for j, p in enumerate(conts):
            t = _read_matrix(p)
            if t is None:
                continue
            t = t.reset_index()
            label = p.stem[len("contingency_"):].replace("__", " \u00d7 ")
            numeric = t.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
            hi = float(np.nanmax(numeric.to_numpy())) if numeric.size else 1.0
            body = table(t, heat=True, heat_range=(0.0, hi if np.isfinite(hi) and hi > 0 else 1.0), cls="contingency")
            items.append(f'<details{" open" if j == 0 else ""}><summary>{esc(label)}</summary>{body}</details>')
        if items:
            blocks.append(card("Contingency tables", '<p class="muted small">Galaxies per cluster (rows) and '
                               "truth class (columns).</p>" + "".join(items)))

    audit_csv = c.comparison("nuisance_audit.csv")
    audit_fig = ctx.existing_figure("nuisance_audit.png")
    if audit_csv or audit_fig:
        content = ('<p class="muted small">Adjusted mutual information between each clustering and how a galaxy is '
                   "seen (orientation, companions, quality flags). High values mean the clusters follow the viewing "
                   "conditions instead of the form: lower is better.</p>")
        audit = _read_matrix(audit_csv) if audit_csv else None
        if audit_fig is None and audit is not None and audit.shape[1] > 0:
            audit_fig = F.heatmap_figure(audit.apply(pd.to_numeric, errors="coerce"), ctx.fig_path("nuisance_audit"),
                                         "AMI with nuisances (lower is better)", vmin=0.0)
        if audit_fig is not None:
            content += figure(audit_fig, "Nuisance audit.", wide=True)
        if audit is not None:
            vals = audit.apply(pd.to_numeric, errors="coerce")
            hi = float(np.nanmax(vals.to_numpy())) if vals.size and np.isfinite(vals.to_numpy()).any() else 0.2
            content += f"<details><summary>the numbers</summary>{table(audit.reset_index(), heat=True, heat_range=(0.0, max(0.2, hi)))}</details>"
        blocks.append(card("Nuisance audit", content))
    if not blocks:
        return None
    return "Comparisons", section("comparisons", "The comparisons",
                                  "How the clusterings agree with each other, with the labels and with the viewing "
                                  "conditions.", "".join(blocks))


# --- the strangest galaxies -----------------------------------------------------------------

def strangest_section(ctx: ReportContext, n: int = 24) -> tuple[str, str] | None:
    c = ctx.contents
    if c.anomaly is None:
        return None
    what, score = c.anomaly
    finite = np.flatnonzero(np.isfinite(score))
    top = finite[np.argsort(-score[finite], kind="stable")[:n]]
    if len(top) == 0:
        return None
    hist = F.anomaly_histogram(score, float(score[top[-1]]), ctx.fig_path("anomaly_histogram"), what)
    F.mosaic_figure(to_uint8(np.asarray(c.cube[np.sort(top)]))[np.argsort(np.argsort(top))], ctx.fig_path("strangest"),
                    cols=8)
    truth = c.truth
    truth_vals = c.labels(truth) if truth else None
    primary = c.primary
    cards = []
    for rank, row in enumerate(top, 1):
        bits = [f"#{rank}", f"score {_fmt(float(score[row]))}"]
        if truth_vals is not None and truth_vals[row] is not None:
            bits.append(str(truth_vals[row]))
        if primary is not None and primary.labels[row] != MISSING:
            bits.append("noise" if primary.labels[row] < 0 else f"cluster {primary.labels[row]}")
        cards.append(ctx.thumb(row, caption=" · ".join(bits), size="big"))
    content = (f'<div class="grid2 narrow-first">{figure(hist, "Where the strangest sit in the distribution.")}'
               f'<p class="muted">The {len(top)} galaxies the model finds least likely ({esc(what)}): artefacts, '
               "mergers, rare forms, or preprocessing failures worth a look. The same galaxies are saved as "
               f"figures/{PREFIX}strangest.png.</p></div>"
               f'<div class="thumbs strange">{"".join(cards)}</div>')
    return "Strangest", section("strangest", "The strangest galaxies", "", content)


# --- everything else --------------------------------------------------------------------------

def other_figures(ctx: ReportContext) -> tuple[str, str] | None:
    rest = [p for p in ctx.contents.figures() if p.name not in ctx.placed and not p.name.startswith(PREFIX)]
    if not rest:
        return None
    figs = "".join(figure(p, p.stem.replace("_", " ")) for p in rest)
    return "Other figures", section("other-figures", "Other figures",
                                    "Figures other stages saved in the run that no section above shows.",
                                    f'<div class="figrow">{figs}</div>')
