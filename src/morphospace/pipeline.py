"""The stages of a run, in data-flow order, each reading what the previous wrote.

ingest -> cube + catalogue -> model (train) -> embedding (embed) -> reductions ->
clusterings -> comparisons (+ nuisance audit) -> report

Every stage takes a :class:`~morphospace.run.RunDir` and a resolved
:class:`~morphospace.config.Config`, so any stage can be re-run alone on an existing
run. :func:`run_all` runs them in order (``morphospace run``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import Config, apply_overrides, dumps_config
from .errors import MissingFile, UserError
from .progress import Timer
from .run import RunDir, write_text

log = logging.getLogger("morphospace")


def default_survey_dir(cfg: Config) -> Path:
    """Where the built-in synthetic survey for ``cfg`` is cached (re-used across runs)."""
    from .data import synth

    base = Path(os.environ.get("MORPHOSPACE_CACHE", Path.home() / ".cache" / "morphospace"))
    return base / f"synth-v{synth.GENERATOR_VERSION}-n{cfg.data.synth_n}-seed{cfg.data.synth_seed}"


def stage_synth(out: Path, n: int, seed: int, workers: int, size: int | None = None) -> Path:
    """Render the built-in synthetic survey into ``out`` (``morphospace synth``).

    Parameters
    ----------
    out : Path
        Folder to write (``images/`` and ``catalogue.csv``).
    n : int
        Number of galaxies.
    seed : int
        Survey seed (same seed, same bytes).
    workers : int
        Rendering processes.
    size : int, optional
        Frame side in pixels (default: :func:`~morphospace.data.synth.make_survey`'s).

    Returns
    -------
    Path
        The survey folder.
    """
    from .data.synth import make_survey

    kwargs = {"size": size} if size else {}
    with Timer(f"rendering {n} synthetic galaxies"):
        return Path(make_survey(out, n=n, seed=seed, workers=workers, **kwargs))


def ensure_survey(cfg: Config) -> Path:
    """The data path of a run: the user's, or the built-in synthetic survey (made once)."""
    if cfg.data.path:
        return Path(cfg.data.path)
    out = default_survey_dir(cfg)
    if not (out / "catalogue.csv").is_file():
        log.info("no data given: using the built-in synthetic survey (%d galaxies, seed %d) in %s",
                 cfg.data.synth_n, cfg.data.synth_seed, out)
        stage_synth(out, cfg.data.synth_n, cfg.data.synth_seed, cfg.ingest.workers)
    return out


def check_data(cfg: Config, out: str | Path | None = None) -> None:
    """Before a run at ``out`` is made: its data must be there (else :class:`MissingFile`) and must not
    be ``out`` itself, whose own files would be read as galaxies (else ``UserError``)."""
    if not cfg.data.path:
        return
    if not Path(cfg.data.path).exists():
        raise MissingFile(f"data not found: {cfg.data.path}")
    if out is not None and Path(cfg.data.path).resolve() == Path(out).resolve():
        raise UserError(f"the run's folder {out} is the data folder: a run there would read its own files as "
                        "galaxies; give the run a folder of its own")


def save_config(run: RunDir, cfg: Config) -> None:
    """Write the resolved ``cfg`` to ``RUN/config.toml``, where later stages read it back.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    write_text(run.config, dumps_config(cfg))


def stage_ingest(run: RunDir, cfg: Config) -> dict:
    """Ingest the configured survey (or the built-in synthetic one, made once) into the run, and
    with ``ingest.mask_neighbours`` mask the neighbours in its cube on the ingest's workers.

    Parameters
    ----------
    run : RunDir
    cfg : Config

    Returns
    -------
    dict
        The ingest summary, also written to ``ingest_summary.json``.
    """
    summary = _read_survey(run, cfg)
    _mask_if_asked(run, cfg)
    return summary


def _read_survey(run: RunDir, cfg: Config) -> dict:
    from .data.ingest import ingest

    data = ensure_survey(cfg)
    with Timer("ingest"):
        return ingest(data, run, cfg)


def _mask_if_asked(run: RunDir, cfg: Config) -> None:
    from .image.masking import masked_cube

    if cfg.ingest.mask_neighbours:
        with Timer("neighbour masking"):
            masked_cube(run, workers=cfg.ingest.workers)


@contextmanager
def removed_on_failure(run: RunDir, created: bool) -> Iterator[None]:
    """Whatever stops the block (an error, Ctrl-C) takes away the run's folder if this command ``created`` it."""
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(run.path, ignore_errors=True)
        raise


def ingest_run(run: RunDir, cfg: Config, created: bool) -> dict:
    """The ingest a user asks for by name (``morphospace ingest``, ``ms.ingest``): the survey is
    read first and the settings saved as soon as it is in, so that an ingest refused or stopped on
    the way (an unknown layout, a missing id column, no usable galaxy, Ctrl-C) leaves an existing
    run's settings as they were and takes away a folder it ``created`` itself. The neighbour
    masking comes after: a failure there keeps the ingest, whose cube the training masks anyway."""
    with removed_on_failure(run, created):
        summary = _read_survey(run, cfg)
    save_config(run, cfg)
    from .analysis.labels import check_label_settings

    try:  # the ingest reads no label setting; the stages that do refuse it
        check_label_settings(run, cfg)
    except UserError as exc:
        log.warning("%s: every later stage (train, embed, reduce, ...) refuses it until it is set right "
                    "(--set data.truth_label=...)", exc)
    _mask_if_asked(run, cfg)
    return summary


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
        return
    from .vade.train import train_run

    train_run(run, cfg, resume=resume)


def stage_embed(run: RunDir, cfg: Config) -> None:
    """Write the pixel-PCA baseline embedding and, with ``model.kind = "vade"``, the trained model's.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    from lightning.pytorch.utilities import rank_zero_only

    from .analysis.pixels import pixel_pca_run

    if cfg.model.kind == "vade":
        from .vade.embed import embed_run

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
    from .analysis.anomaly import ANOMALY_FILE, META_FILE, anomaly_run

    if "form" not in run.embeddings():
        for name in (ANOMALY_FILE, META_FILE):
            (run.path / name).unlink(missing_ok=True)
        return
    with Timer("anomaly score on the form embedding"):
        anomaly_run(run, random_state=cfg.cluster.seed)


def primary_embedding(run: RunDir, cfg: Config) -> str:
    """The embedding a run is about: CNN features, else the form embedding, else the VaDE latent space, else pixels."""
    from .vade.io import model_file

    available = run.embeddings()
    try:  # the run's trained model is the form model: its embedding is the one to use
        expected = model_file(run).is_file() and _trained_preset(model_file(run)) == "form"
    except (OSError, ValueError, AttributeError):
        expected = False
    for name in ("features", "form", "vade", "pixels_pca"):
        if name in available:
            if expected and name in ("vade", "pixels_pca") and "form" not in available:  # deleted, or a killed embed
                log.warning("embeddings/form.npy is missing from %s: this stage uses '%s' instead; run `morphospace "
                            "embed` to make it", run.path, name)
            return name
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
    from .analysis.reduce import reduce_run

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
    from .analysis.cluster import cluster_run

    with Timer("clusterings"):
        cluster_run(run, cfg)


def stage_compare(run: RunDir, cfg: Config) -> None:
    """Score the clusterings against each other and the labels, audit them against nuisances,
    and draw the study's figures (maps, k-selection curves, cluster galleries).

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    from .analysis.compare import compare_run
    from .analysis.nuisance import audit_run

    with Timer("comparisons"):
        compare_run(run, cfg)
    with Timer("nuisance audit"):
        audit_run(run, cfg)
    from .study.figures import write_study_figures

    with Timer("maps, k-selection curves and cluster galleries"):
        write_study_figures(run, cfg)


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
    from .report import build_report

    with Timer("report"):
        return build_report(run, cfg)


def run_all(run: RunDir, cfg: Config, created: bool = False) -> Path:
    """Every stage in order; returns the path of the report. A run refused before its training (a
    truth label not in the catalogue) takes away a folder it ``created``."""
    from .analysis.labels import check_label_settings
    from .vade.fitting import one_process_devices

    cfg = one_process_devices(cfg, "`morphospace run`")
    check_data(cfg)
    with removed_on_failure(run, created):
        save_config(run, cfg)
        stage_ingest(run, cfg)
        check_label_settings(run, cfg)
    stage_train(run, cfg)
    stage_embed(run, cfg)
    stage_reduce(run, cfg)
    stage_cluster(run, cfg)
    stage_compare(run, cfg)
    return stage_report(run, cfg)


def stage_generate(run: RunDir, cfg: Config, component: int, n: int, out: Path, temperature: float = 0.5,
                   reject_below: float | None = None, seed: int = 0) -> Path:
    """Sample ``n`` galaxies of mixture component ``component``; write PNG + FITS into ``out``."""
    from .vade.embed import generate, write_generated

    images = generate(run, component, n, temperature=temperature, reject_below=reject_below, seed=seed)
    write_generated(images, out, prefix=f"component{component}",
                    draw={"comp": component, "temp": float(temperature), "seed": int(seed),
                          "rej": None if reject_below is None else float(reject_below)})
    return out


def stage_import_astrovader(run: RunDir, cfg: Config, weights: Path) -> Path:
    """Build the published AstroVaDEr as this run's model (use with the ``astrovader`` preset)."""
    from .api import import_astrovader
    from .vade.io import model_file

    if not weights.is_file():
        raise UserError(f"weights file not found: {weights}")
    if model_file(run).is_file():  # a trained model and what was derived from it: not replaced unasked
        raise UserError(f"{run.path} already holds a trained model ({model_file(run)}): import into a "
                        "new run, then ingest your galaxies into it with --preset astrovader")
    cfg = apply_overrides(cfg, {"preprocess.preset": "astrovader", "model.preset": "astrovader"})
    save_config(run, cfg)
    return import_astrovader(run, weights)


def _trained_preset(path: Path) -> str:
    import json

    hp = path.parent / "hparams.json"
    return json.loads(hp.read_text()).get("preset", "") if hp.is_file() else ""


def run_study(run: RunDir, cfg: Config, created: bool = False) -> Path:
    """The CNN feature study: ingest, fine-tune, features, reductions, clusterings, comparisons, report.

    ``study.backbone = "vade"`` puts the VaDE encoder's ``z_mean`` through the same study: the
    run's trained VaDE if it has one, otherwise one trained here from the ``model`` and
    ``train`` settings (no labels used); its own clusters are compared too.
    ``study.backbone = "ssl"`` does the same with the self-supervised form embedding (the
    form-first VaDE's input, trained here if the run has none).

    A study refused up to its first training (its labels, once the survey is in) takes away a
    folder it ``created``.
    """
    from .nets.backbones import BACKBONES
    from .vade.io import model_dir, model_file

    known = [*BACKBONES, "vade", "ssl"]
    if cfg.study.backbone not in known:  # before anything is written
        raise UserError(f"unknown backbone '{cfg.study.backbone}' (known: {', '.join(known)})")
    check_data(cfg)
    from .analysis.labels import check_label_settings
    from .study.features import fine_tuning_labels, study_truth

    with removed_on_failure(run, created):
        save_config(run, cfg)
        stage_ingest(run, cfg)
        check_label_settings(run, cfg)
        if cfg.study.mode != "frozen" and cfg.study.backbone not in ("vade", "ssl"):
            fine_tuning_labels(run.cube_catalogue(), cfg)  # a typo: one line before the training, not after it
        cfg = study_truth(run, cfg, save_config)
    if cfg.study.backbone in ("vade", "ssl"):
        if cfg.study.backbone == "ssl":  # the self-supervised encoder is the form-first VaDE's
            cfg = apply_overrides(cfg, {"model.preset": "form"})
        trained = model_file(run)
        if trained.is_file() and (cfg.study.backbone == "vade" or _trained_preset(trained) == "form"):
            log.info("study of the %s encoder: using the trained model in %s", cfg.study.backbone, model_dir(run))
        else:
            stage_train(run, apply_overrides(cfg, {"model.kind": "vade"}))
        from .vade.embed import embed_run

        embed_run(run, cfg)
        stage_anomaly(run, cfg)
        embedding = "vade" if cfg.study.backbone == "vade" else "form"
    else:
        from .study.features import study_features_run

        with Timer(f"features of {cfg.study.backbone} ({cfg.study.mode})"):
            study_features_run(run, cfg)
        embedding = "features"
    stage_reduce(run, cfg, embedding=embedding)
    stage_cluster(run, cfg)
    stage_compare(run, cfg)
    return stage_report(run, cfg)


def embed_image(run: RunDir, path: str | Path, embedding: str):
    """One new image file, preprocessed and embedded like the run's galaxies (``morphospace similar --image``).

    The file goes through the ingest's own path with the recipe the run's cube was made with
    (:func:`~morphospace.data.ingest.preprocess_file`), then through what made the run's
    ``embedding``: the trained form embedder or VaDE (:mod:`morphospace.vade.query`), or the
    pixel PCA (:func:`~morphospace.analysis.similar.pixel_pca_rows`).

    Parameters
    ----------
    run : RunDir
    path : str or Path
        A JPEG/PNG/TIFF or FITS image.
    embedding : str
        ``form``, ``vade`` or ``pixels_pca`` (one the run has).

    Returns
    -------
    row : ndarray, shape (C, S, S)
        The image as a cube row.
    vector : ndarray, shape (D,)
        Its embedding.

    Raises
    ------
    UserError
        For an embedding that cannot embed a new image (the message names those that can), or
        a file the ingest would not take (one line: what was wrong).
    """
    import numpy as np

    from .analysis.similar import pixel_pca_rows
    from .data.ingest import PreprocessSpec, preprocess_file
    from .vade.query import MODEL_EMBEDDINGS, embed_rows

    can = [e for e in (*MODEL_EMBEDDINGS, "pixels_pca") if e in run.embeddings()]
    if embedding not in run.embeddings():  # one it could embed, were it there: said as --id says it
        run.read_embedding(embedding)
    if embedding not in can:
        raise UserError(f"the '{embedding}' embedding cannot embed a new image; in {run.path} these can: "
                        f"{', '.join(can) or 'none (run `morphospace embed` first)'}")
    row, _ = preprocess_file(path, PreprocessSpec.of_run(run.ingest_summary, run.config))
    # rounded as the cube stores its rows (float16 by default), so a galaxy's own file is its row
    row = row.astype(run.read_cube().dtype).astype(np.float32)
    rows = row[None]
    vector = pixel_pca_rows(run, rows) if embedding == "pixels_pca" else embed_rows(run, rows, embedding)
    return row, vector[0]
