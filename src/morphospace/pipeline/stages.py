"""The stages of a run after the ingest, in data-flow order, each reading what the previous wrote:
model (train) -> embedding (embed, anomaly scores) -> reductions -> clusterings -> comparisons
-> report; :func:`run_all` runs the whole flow (``morphospace run``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from ..errors import UserError, first_line
from ..progress import Timer
from ..run import RunDir
from .survey import check_data, ingest_checked, mask_if_asked, removed_on_failure

log = logging.getLogger("morphospace")


def stage_train(run: RunDir, cfg: Config, resume: bool = False) -> None:
    """Train the run's VaDE; with ``model.kind = "pca"`` there is nothing to train.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    resume : bool
        Continue from the last checkpoint.
    """
    if cfg.model.kind == "pca":
        log.info("model.kind = pca: no network to train (the pixel-PCA baseline is the embedding)")
        _set_aside_the_model_s_results(run)
        return
    from ..vade.train import train_run

    train_run(run, cfg, resume=resume)


def _set_aside_the_model_s_results(run: RunDir) -> None:
    """A run that holds a trained VaDE, made a pixel-PCA run: the model and what was made with it
    (its embeddings, table, clusterings, figures, anomaly score, and the maps and clusterings of its
    embeddings) go to ``superseded/<time>/``, as a new training sets its predecessor aside (`run
    --model pca` on such a run reduced, clustered and reported the VaDE's results as the run's, its
    config saying pca). A study's CNN, the classes, the pixel PCA's own results and the user's files
    stay; a rename that fails puts back what moved."""
    from ..run.provenance import made_from
    from ..run.set_aside import set_aside
    from ..vade.io import model_dir, model_file

    if not model_file(run).is_file():
        return
    mine = ("vade", "form")  # the model's embeddings
    paths = [model_dir(run), run.path / "vade_galaxies.parquet", run.path / "anomaly.parquet", run.path / "anomaly.json"]
    paths += [p for name in mine for p in run.path.glob(f"embeddings/{name}.*")]
    paths += made_from(run, mine)  # their maps, clusterings and k-selection tables (drawn as current before)
    paths += list(run.path.glob("figures/vade_*"))
    set_aside(run, paths, "model.kind = pca: the run's trained VaDE and what was made with it", log)


def stage_embed(run: RunDir, cfg: Config) -> None:
    """Write the pixel-PCA baseline embedding and, with ``model.kind = "vade"``, the trained model's.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    from lightning.pytorch.utilities import rank_zero_only

    from ..analysis.pixels import pixel_pca_run

    if cfg.model.kind == "vade":
        from ..vade.embed import embed_run

        embed_run(run, cfg)  # first: with several processes (--devices) they all take part
    if rank_zero_only.rank != 0:
        return  # the rest is single-process work, and one process writes
    pixel_pca_run(run, cfg.model.pca_components, fit_sample=cfg.train.sample, seed=cfg.train.seed)
    stage_anomaly(run, cfg)


def stage_anomaly(run: RunDir, cfg: Config) -> None:
    """Score every galaxy's strangeness on the form embedding (``RUN/anomaly.parquet``), re-ranked by the run's tags.

    Cheap (exact k-NN below 20,000 galaxies), so it follows every embedding. A run without a
    form embedding gets no such score (and loses a stale one); the report then shows the VaDE's.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    from ..analysis.anomaly import ANOMALY_FILE, META_FILE, anomaly_run

    if "form" not in run.embeddings():
        for name in (ANOMALY_FILE, META_FILE):
            (run.path / name).unlink(missing_ok=True)
        return
    with Timer("anomaly score on the form embedding"):
        anomaly_run(run, random_state=cfg.cluster.seed)


def trained_preset(path: Path) -> str:
    """The ``model.preset`` a trained model at ``path`` was made with ("" without its hparams.json, or
    with one that cannot be read: the model's own loading says what is wrong with it)."""
    import json

    try:
        preset = json.loads((path.parent / "hparams.json").read_text()).get("preset", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return preset if isinstance(preset, str) else ""


def primary_embedding(run: RunDir, cfg: Config) -> str:
    """The embedding a run is about: CNN features, else the form embedding, else the VaDE latent space, else pixels."""
    from ..vade.io import model_file

    available = run.embeddings()
    # the run's trained model is the form model: its embedding is the one to use
    preset = trained_preset(model_file(run)) if model_file(run).is_file() else ""
    expected = preset == "form"
    for name in ("features", "form", "vade", "pixels_pca"):
        if name == "form" and preset not in ("", "form"):
            continue  # an earlier form model's, the run's model being of another preset (it was searched as the run's)
        if name in available:
            if expected and name in ("vade", "pixels_pca") and "form" not in available:  # deleted, or a killed embed
                log.warning("embeddings/form.npy is missing from %s: this stage uses '%s' instead; run `morphospace "
                            "embed` to make it", run.path, name)
            return name
    if "form" in available:  # only the earlier model's left
        raise UserError(f"the form embedding in {run.path} is an earlier model's (the run's model is of the {preset} "
                        f"preset): run `morphospace embed` for the model's, or give --embedding form to use it")
    raise UserError(f"no embedding in {run.path}: run `morphospace embed` (or `study`) first")


def stage_reduce(run: RunDir, cfg: Config, embedding: str | None = None) -> None:
    """Reduce one embedding of the run to 2-D maps.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    embedding : str, optional
        Default: :func:`primary_embedding`.

    Raises
    ------
    UserError
        The run has no embedding.
    """
    from ..analysis.reduce import reduce_run

    embedding = embedding or primary_embedding(run, cfg)
    with Timer(f"reductions of '{embedding}'"):
        reduce_run(run, cfg, embedding=embedding)


def stage_cluster(run: RunDir, cfg: Config) -> None:
    """Cluster every representation of the run with every configured method.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    from ..analysis.cluster import cluster_run

    _say_model_embeddings_outdated(run, "clustered")
    with Timer("clusterings"):
        cluster_run(run, cfg)


def _say_model_embeddings_outdated(run: RunDir, done: str) -> None:
    """A warning where the model's embeddings (``vade``, ``form``) are an earlier model's (trained again,
    not embedded): clustered and compared as the run's without a word, as export and the report say."""
    from ..vade.io import embeddings_outdated

    if {"vade", "form"} & set(run.embeddings()) and (why := embeddings_outdated(run)) is not None:
        log.warning("the model's embeddings %s here (vade, form, and their maps) are not those of the run's model: "
                    "%s (run `morphospace embed %s` to make them again)", done, why, run.path)


def stage_compare(run: RunDir, cfg: Config) -> None:
    """Score the clusterings against each other and the labels, audit them against nuisances,
    and draw the study's figures (maps, k-selection curves, cluster galleries).

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    from ..analysis.cluster import clustering_interrupted
    from ..analysis.compare import compare_run
    from ..analysis.nuisance import audit_run

    if clustering_interrupted(run):
        log.warning("the last `morphospace cluster` did not finish: its clusterings and the run's earlier ones are "
                    "compared as one set; run `morphospace cluster` again for one")

    run.read_cube()  # a cube and catalogue that disagree: one line before any result is rewritten
    _say_model_embeddings_outdated(run, "compared")
    from ..vade.invariance import INVARIANCE_FILE

    # the one place an earlier intervention test's table goes, and first: compare_run records its inputs
    # as complete before the test runs, so the report cannot tell an earlier model's table from this
    # one's; removed here, a compare stopped half way, a test skipped and a test failed leave none
    (run.path / "comparisons" / INVARIANCE_FILE).unlink(missing_ok=True)
    with Timer("comparisons"):
        compare_run(run, cfg)
    with Timer("nuisance audit"):
        audit_run(run, cfg)
    _intervention_test(run, cfg)
    from ..study.figures import write_study_figures

    with Timer("maps, k-selection curves and cluster galleries"):
        write_study_figures(run, cfg)


def _intervention_test(run: RunDir, cfg: Config) -> None:
    """The intervention test of the run's own clusters (``comparisons/invariance.csv``), where the run
    has a trained, embedded VaDE whose embeddings are its own. It only writes the table (atomically, at
    its end): :func:`stage_compare` has removed an earlier one. A test that fails is a warning: the
    comparisons and the figures still stand."""
    from ..vade.invariance import invariance_audit
    from ..vade.io import embeddings_outdated, model_file

    n = cfg.cluster.invariance_sample
    if not n or not model_file(run).is_file() or "vade" not in run.clusterings():
        return  # asked for none, or no model of the run's own to test
    if (why := embeddings_outdated(run)) is not None:
        log.info("intervention test skipped: the run's clusters are not its model's (%s)", why)
        return
    try:
        with Timer("intervention test"):
            invariance_audit(run, n=n, seed=cfg.cluster.seed)
    except Exception as exc:  # noqa: BLE001 - a check beside the results: whatever stops it, they stand
        log.warning("intervention test skipped: %s", first_line(exc))


def stage_report(run: RunDir, cfg: Config) -> Path:
    """Write the run's report.

    Parameters
    ----------
    run : RunDir
    cfg : Config

    Returns
    -------
    Path
        ``RUN/report.html``.
    """
    from ..report import build_report

    with Timer("report"):
        return build_report(run, cfg)


def run_all(run: RunDir, cfg: Config, created: bool = False) -> Path:
    """Every stage in order; returns the path of the report. A run refused before its training (a
    truth label not in the catalogue) takes away a folder it ``created``."""
    from ..analysis.labels import check_label_columns, check_label_settings
    from ..vade.fitting import one_process_devices
    from ..vade.hparams import check_against_cube, check_form_settings

    with removed_on_failure(run, created):  # refused, a run it made leaves no folder behind
        cfg = one_process_devices(cfg, "`morphospace run`")
        check_data(cfg)

    def check(cfg: Config) -> Config:
        check_label_settings(run, cfg)
        if cfg.model.kind == "vade":
            check_against_cube(cfg, run.read_cube(), announce=False)
        return cfg

    def check_catalogue(catalogue, shape: tuple) -> None:  # the same, before a finished run is replaced
        import numpy as np

        check_label_columns(catalogue, cfg)
        if cfg.model.kind == "vade":  # the checks read the cube's shape only
            check_against_cube(cfg, np.broadcast_to(np.zeros((), np.float16), shape), announce=False)

    # refused before the galaxies are in (the trunk's weights file) or after (a truth label not in
    # the catalogue, more components than galaxies): a folder it made is taken away; an existing run
    # keeps its settings where its ingest failed (and so its earlier cube), and takes only those that
    # made its new cube where a later check refused the rest (ingest_checked)
    with removed_on_failure(run, created):
        check_form_settings(cfg)
        ingest_checked(run, cfg, check, check_catalogue)
    mask_if_asked(run, cfg)
    stage_train(run, cfg)
    stage_embed(run, cfg)
    stage_reduce(run, cfg)
    stage_cluster(run, cfg)
    stage_compare(run, cfg)
    return stage_report(run, cfg)
