"""The report: one HTML page of a run, with an interactive explorer of every galaxy.

:func:`build_report` reads whatever the run directory holds and writes
``RUN/report.html``. Each section appears only when its inputs exist (the
stages fill a run over time): the data (counts, quality flags, labels, a random
mosaic), the model (training curves, reconstructions), the clusters of the
primary clustering (sizes, exemplars, label mix, anomaly), the comparisons
(ARI / AMI, contingency tables, the nuisance audit), the strangest galaxies,
and any other figure of ``RUN/figures``. Every figure is also saved as a PNG
under ``RUN/figures/`` (``report_*.png``).

The explorer is a WebGL map (Canvas 2D where WebGL is unavailable) of every
galaxy on each 2-D reduction, coloured by clustering, label or anomaly score;
hovering shows the galaxy's thumbnail and catalogue row, clicking its nearest
neighbours in the latent space, and a box or lasso selection downloads as a
CSV of ids. Thumbnails are packed in sprite sheets, inlined when small enough
(``report.inline_limit_mb``), else written beside the page in
``RUN/report_files/``. Above ``report.inline_points`` galaxies the explorer's
data and the map's thumbnails are written beside the page as well and loaded
as the page needs them (:mod:`~morphospace.report.beside`), so a map of a
million galaxies opens in seconds. Nothing on the page reaches the network.

How it is built: :mod:`~morphospace.report.collect` reads the run,
:mod:`~morphospace.report.sections` builds one section each from the Jinja2
templates of ``report/templates`` (autoescaped: any id, label or file name is
shown as text), :mod:`~morphospace.report.figures` and
:mod:`~morphospace.report.grids` draw the figures, and
:mod:`~morphospace.report.html` assembles the page with its stylesheet, its
scripts (``report/assets``) and the explorer's data
(:mod:`~morphospace.report.explorer`).

Examples
--------
>>> from morphospace.config import Config
>>> from morphospace.run import RunDir
>>> build_report(RunDir("runs/demo"), Config())  # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ..analysis.cluster import clustering_interrupted
from ..config import Config
from ..errors import UserError
from ..progress import Timer
from ..run import RunDir, write_text
from ..run.provenance import read_record
from .collect import RunContents
from .context import PREFIX, ReportContext, Section, SpriteBook
from .beside import GalleryBook, write_beside
from .explorer import choose_points, explorer_arrays, inline
from .findings import key_findings
from .html import page, render
from .missing import missing_notice
from .sections import BUILDERS, other_figures
from .sprites import SpriteSheets, thumbnails, write_sheets

__all__ = ["build_report"]

log = logging.getLogger("morphospace")

ASSET_DIR = "report_files"  # sprite sheets too large to inline live here, beside report.html


def build_report(run: RunDir | str | Path, cfg: Config | None = None) -> Path:
    """Write ``RUN/report.html`` from whatever the run holds; return its path.

    Parameters
    ----------
    run : RunDir or path
        The run directory. It must hold at least the cube and the catalogue
        (``morphospace ingest``).
    cfg : Config, optional
        Uses ``report.thumb_size``, ``report.max_points``, ``report.gallery_size``,
        ``report.thumb_format``, ``report.thumb_quality``, ``report.inline_limit_mb``,
        ``report.neighbours``, ``report.seed``, ``report.inline_points``,
        ``report.shard_points``, ``report.large_thumb_size`` and ``data.truth_label``.

    Returns
    -------
    Path
        ``RUN/report.html``.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    cfg = cfg or Config()
    rc = cfg.report
    if rc.thumb_size < 8 or rc.thumb_size > 256:
        raise UserError(f"report.thumb_size must be between 8 and 256 pixels, got {rc.thumb_size}")
    if not 1 <= rc.thumb_quality <= 100:
        raise UserError(f"report.thumb_quality must be between 1 and 100, got {rc.thumb_quality}")
    if rc.thumb_format not in ("webp", "jpeg"):
        raise UserError(f"report.thumb_format must be webp or jpeg, got {rc.thumb_format!r}")
    contents = RunContents(run, cfg.data.truth_label)
    if contents.cube is None or contents.catalogue is None:
        raise UserError(f"nothing to report in {run.path}: no cube and catalogue (run `morphospace ingest` first)")
    if contents.n == 0:
        raise UserError(f"nothing to report in {run.path}: the cube is empty (every galaxy was flagged at ingest)")

    t0 = time.perf_counter()
    points = choose_points(contents.n, rc.max_points, rc.seed)
    beside = len(points) > rc.inline_points  # the explorer's data and map thumbnails go beside the page
    book = GalleryBook(points) if beside else SpriteBook(points)
    ctx = ReportContext(run=run, contents=contents, book=book, cfg=cfg, seed=rc.seed)
    # the files beside the page are made in a folder of their own and swapped in with the page: made in
    # place, a report killed or failed half way left the earlier page without its files
    asset_dir = run.path / f".{ASSET_DIR}.partial"
    for left in (asset_dir, run.path / f".{ASSET_DIR}.previous"):  # of a report killed on the way
        shutil.rmtree(left, ignore_errors=True)
    try:
        with Timer("report: explorer data"):
            arrays = explorer_arrays(contents, points, k=rc.neighbours, seed=rc.seed)
            if beside:
                explorer = write_beside(arrays, asset_dir, ASSET_DIR, shard=rc.shard_points)
            else:
                explorer = inline(arrays)
            del arrays
        if beside:
            tile = min(rc.thumb_size, rc.large_thumb_size)
            with Timer(f"report: {len(points)} map thumbnails beside the page"):
                desc = write_sheets(contents.cube, points, asset_dir, tile, rc.thumb_format, rc.thumb_quality)
            for s in desc["sheets"]:
                s["url"] = f"{ASSET_DIR}/{s['url']}"
            explorer["thumbs"] = desc
            log.info("report: explorer data (%.1f MB) and %d map sprite sheets (%.1f MB) beside the page in %s",
                     sum(f["bytes"] for f in explorer["lazy"]["files"].values()) / 1e6, len(desc["sheets"]),
                     desc["bytes"] / 1e6, run.path / ASSET_DIR)
        built: list[Section] = []
        for builder in BUILDERS:
            with Timer(f"report: {builder.__name__.replace('_section', '')}"):
                out = builder(ctx)
            if out is not None:
                built.append(out)
        other = other_figures(ctx)
        if other is not None:
            built.append(other)

        with Timer(f"report: {len(book.rows)} thumbnails"):
            thumbs = thumbnails(contents.cube, book.rows, rc.thumb_size)
            sheets = SpriteSheets(tile=rc.thumb_size, fmt=rc.thumb_format, quality=rc.thumb_quality).fit(thumbs)
        if sheets.nbytes <= rc.inline_limit_mb * 1e6:
            urls = [s.data_uri() for s in sheets.sheets_]
        else:
            paths = sheets.write(asset_dir)
            urls = [f"{ASSET_DIR}/{p.name}" for p in paths]
            log.info("report: %d sprite sheets (%.1f MB) written beside the page in %s", len(paths),
                     sheets.nbytes / 1e6, run.path / ASSET_DIR)

        _remove_stale_figures(run, ctx.made)
        sections = [explorer_section(explorer, sampled_maps(run))] + built
        data = {"explorer": explorer, "sprites": sheets.describe(urls)}
        summary = contents.summary or {}
        primary = contents.primary
        subtitle = " · ".join(filter(None, [
            f"run {run.path.resolve().name}",
            f"{contents.n:,} galaxies",
            summary.get("layout") and f"{summary['layout']} survey",
            primary and (primary.clusters or primary.empty) and f"{primary.count_text()} ({primary.name})",
            time.strftime("%Y-%m-%d %H:%M"),
        ]))
        notices = _notices(run, contents)
        text = page("Galaxy morphospace", subtitle, [(s.anchor, s.label) for s in sections], [s.html for s in sections],
                    data, frames=beside, notices=notices, findings=key_findings(contents))
        _publish(run, text, asset_dir)
    except BaseException:  # what it made beside the page goes with it
        shutil.rmtree(asset_dir, ignore_errors=True)
        raise
    log.info("report: %s (%.1f MB) in %.1f s", run.report, len(text.encode("utf-8", "replace")) / 1e6,
             time.perf_counter() - t0)
    return run.report


def _notices(run: RunDir, contents: RunContents) -> list[str]:
    """The lines at the page's top on what it leaves out or shows out of date, each logged too."""
    notices = []
    if contents.stale_model:  # the clusters, embeddings and figures below are an earlier model's
        notices.append(f"The model's clusters, embeddings and figures on this page are out of date: "
                       f"{contents.stale_model}. Run `morphospace embed RUN` and the later stages "
                       "(or `morphospace run`), then the report again.")
        log.warning("report: %s", notices[-1])
    elif contents.model_not_embedded:
        notices.append("The run has a trained model whose results are not here yet: run `morphospace embed RUN` "
                       "and the later stages (or `morphospace run`), then the report again.")
        log.info("report: %s", notices[-1])
    missing = missing_notice(run, contents)
    if missing:  # figures/ (or some of it) deleted by hand: what is gone and the stage that makes it again
        notices.append(missing)
        log.warning("report: %s", missing)
    if clustering_interrupted(run):
        notices.append("The last `morphospace cluster` did not finish: some clusterings on this page are its and "
                       "the others the run's before, compared as one set. Run `morphospace cluster RUN`, then "
                       "`morphospace compare RUN` and the report again.")
        log.warning("report: %s", notices[-1])
    if contents.stale_results:
        stale = contents.stale_results
        shown = "; ".join(f"{k} ({v})" for k, v in list(stale.items())[:4]) + ("; ..." if len(stale) > 4 else "")
        notices.append(f"Made from an earlier embedding or map, and so left out of this page ({len(stale)}): {shown}. "
                       "Run `morphospace reduce RUN` and `morphospace cluster RUN`, then `morphospace compare RUN` "
                       "(or `morphospace run`) and the report again.")
        log.warning("report: %s", notices[-1])
    if contents.unusable_maps:
        notices.append(f"{', '.join(contents.unusable_maps)}: NaN or infinite coordinates, so left out of the explorer "
                       "(`morphospace reduce RUN` makes the maps again).")
        log.warning("report: %s", notices[-1])
    missing = run.missing_clusterings()
    if missing:
        notices.append(f"{len(missing)} clustering file{'s are' if len(missing) > 1 else ' is'} missing and left "
                       "out of this page: " + ", ".join(f"clusterings/{m}.parquet (`morphospace "
                                                        f"{run.stage_making_clustering(m)} RUN` makes it again)"
                                                        for m in missing) + ".")
        log.warning("report: %s", notices[-1])
    return notices


def _publish(run: RunDir, text: str, made: Path) -> None:
    """The new page and the files ``made`` beside it replace the earlier ones as one: the earlier
    folder is put back where the page cannot be written; Ctrl-C and SIGTERM wait for the swap."""
    from ..run.file_set import signals_held

    files, previous = run.path / ASSET_DIR, run.path / f".{ASSET_DIR}.previous"
    with signals_held():
        if files.exists():
            files.rename(previous)
        try:
            if made.exists():
                made.rename(files)
            write_text(run.report, text, errors="replace")  # a run folder named in Latin-1 is shown, not refused
        except BaseException:
            if previous.exists():
                if files.exists():
                    files.rename(made)
                previous.rename(files)
            raise
    shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(made, ignore_errors=True)


def _remove_stale_figures(run: RunDir, made: set[str]) -> None:
    """Drop ``report_*.png`` figures an earlier report made that this one did not (e.g. a removed cluster)."""
    for p in (run.path / "figures").glob(f"{PREFIX}*.png"):
        if p.name not in made:
            p.unlink(missing_ok=True)


def sampled_maps(run: RunDir) -> list[tuple[str, int]]:
    """``(map, fit_sample)`` of every map fitted on a sample (``cluster.map_sample``), from its ``.json``."""
    out = []
    for name in run.reductions():
        try:
            n = int(read_record(run.reduction_path(name).with_suffix(".json")).get("fit_sample") or 0)
        except (ValueError, TypeError):  # damaged by hand: nothing to say of its sample
            continue
        if n:
            out.append((name, n))
    return out


def explorer_section(explorer: dict, sampled: list[tuple[str, int]] = ()) -> Section:
    """The explorer's markup (``templates/explorer.html``); the explorer's script fills it from the embedded data.

    Parameters
    ----------
    explorer : dict
        The explorer's data (:func:`~morphospace.report.explorer.explorer_payload`):
        ``n`` points shown of ``nTotal`` galaxies.
    sampled : list of (str, int)
        Maps fitted on a sample (:func:`sampled_maps`), said in the section's lead.

    Returns
    -------
    Section
    """
    return Section("explorer", "Explorer", render("explorer.html", n=explorer["n"], total=explorer["nTotal"],
                                                   sampled=list(sampled)))
