"""What a trained model does outside the run's flow: synthetic galaxies of a component, the
published AstroVaDEr imported as a run's model, one new image embedded like the run's galaxies."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from ..config import Config, apply_overrides
from ..errors import UserError
from ..run import RunDir
from .survey import save_config

log = logging.getLogger("morphospace")


def stage_generate(run: RunDir, cfg: Config, component: int | None, n: int, out: Path, temperature: float = 0.5,
                   reject_below: float | None = None, seed: int = 0, cluster: int | None = None) -> Path:
    """Sample ``n`` galaxies of mixture component ``component``, or of ``cluster`` of the run's own
    clusters (its components merged, ``models/vade/clusters.json``; without a merge a cluster is a
    component); write PNG + FITS into ``out``."""
    from ..vade.embed import generate, generate_cluster, write_generated

    draw = {"temp": float(temperature), "seed": int(seed), "rej": None if reject_below is None else float(reject_below)}
    if cluster is None:
        images = generate(run, component, n, temperature=temperature, reject_below=reject_below, seed=seed)
        write_generated(images, out, prefix=f"component{component}", draw={"comp": component, **draw})
        return out
    images, members = generate_cluster(run, cluster, n, temperature=temperature, reject_below=reject_below, seed=seed)
    write_generated(images, out, prefix=f"cluster{cluster}", draw={"clus": cluster, "comps": ",".join(map(str, members)),
                                                                   **draw})
    return out


def stage_import_astrovader(run: RunDir, cfg: Config, weights: Path) -> Path:
    """Build the published AstroVaDEr as this run's model (use with the ``astrovader`` preset)."""
    from ..config import ModelConfig
    from ..nets.weights import existing_weights_file
    from ..vade.keras_import import astrovader_model, check_no_model, import_astrovader

    existing_weights_file(weights)
    check_no_model(run)  # a trained model and what was derived from it, or a training's files: not replaced
    built = astrovader_model(weights)
    hp = built[1]
    # the run's configuration says what its model is: the weights decide, and a setting they
    # contradict (given now, or saved by an earlier command) is said, not kept
    for key in ("latent_dim", "n_components"):
        had = getattr(cfg.model, key)
        if had != hp[key] and had != getattr(ModelConfig(), key):
            log.warning("model.%s = %s in the settings, but the imported model has %s: saved as %s",
                        key, had, hp[key], hp[key])
    model = {"model.preset": "astrovader", "model.latent_dim": int(hp["latent_dim"]),
             "model.n_components": int(hp["n_components"])}
    # a run without galaxies yet gets the preprocessing the model takes, for its ingest; one that holds
    # them keeps the settings its cube was made with (said below where the model cannot take it)
    cfg = apply_overrides(cfg, model if run.cube.is_file() else {"preprocess.preset": "astrovader", **model})
    save_config(run, cfg)
    path = import_astrovader(run, weights, built)  # which logs what it imported
    takes = (int(hp["channels"]), int(hp["image_size"]), int(hp["image_size"]))
    if run.cube.is_file():  # a run that already holds galaxies: its cube may not be what the model takes
        try:
            shape = tuple(run.read_cube().shape[1:])
        except UserError:
            shape = None
        if shape is not None and shape != takes:
            log.warning("the run's cube holds %s images and the imported model takes %s: ingest the galaxies again "
                        "with --preset astrovader before `morphospace embed`", " x ".join(map(str, shape)),
                        " x ".join(map(str, takes)))
    return path


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

    from ..analysis.similar import pixel_pca_rows
    from ..data.ingest import PreprocessSpec, preprocess_file
    from ..vade.query import MODEL_EMBEDDINGS, embed_rows

    can = [e for e in (*MODEL_EMBEDDINGS, "pixels_pca") if e in run.embeddings()]
    if embedding not in run.embeddings():  # one it could embed, were it there: said as --id says it
        run.read_embedding(embedding)
    if embedding not in can:
        raise UserError(f"the '{embedding}' embedding cannot embed a new image; in {run.path} these can: "
                        f"{', '.join(can) or 'none (run `morphospace embed` first)'}")
    if embedding in MODEL_EMBEDDINGS:  # the query through today's model, searched among an earlier one's codes
        from ..vade.io import embeddings_outdated

        why = embeddings_outdated(run)
        if why is not None:
            raise UserError(f"the run's '{embedding}' embedding is not its model's ({why}): a new image would be "
                            f"compared with another model's codes; run `morphospace embed {shlex.quote(str(run.path))}` first")
    row, flags = preprocess_file(path, PreprocessSpec.of_run(run.ingest_summary, run.config))
    if "fewer_bands" in flags:  # kept, as the ingest keeps such a galaxy, but said: colour is lost
        log.warning("%s has fewer bands than the run's colour cube: its band is repeated in each colour, and "
                    "its neighbours may follow the colour it lacks more than its form", path)
    if "depth_reduced" in flags:
        log.warning("%s is a 16-bit colour image, read at 8 bits per band (Pillow's limit)", path)
    # rounded as the cube stores its rows (float16 by default), so a galaxy's own file is its row
    row = row.astype(run.read_cube().dtype).astype(np.float32)
    rows = row[None]
    vector = pixel_pca_rows(run, rows) if embedding == "pixels_pca" else embed_rows(run, rows, embedding)
    return row, vector[0]
