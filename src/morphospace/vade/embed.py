"""Per-galaxy outputs of a trained VaDE, its figures, and synthetic galaxies.

:func:`embed_run` writes

``RUN/vade_galaxies.parquet``
    one row per galaxy of the cube, keyed by ``id``: ``z_mean_<d>``, ``z_log_var_<d>``
    (q(z | x)), ``prob_<k>`` (q(c = k | x), the closed-form responsibilities), ``label`` (the
    most probable component), ``label_prob`` (its probability), ``recon_error`` (the
    reconstruction error of ``decode(z_mean)``: weighted mean squared error per pixel, with the
    model's radial weight and, for a flip-invariant model, the best-matching flip),
    ``log_likelihood`` (``log p(z_mean)`` under the mixture prior, in nats) and ``anomaly``
    (``-log_likelihood``: large for galaxies in no component's core; rank by it to find oddities);
``RUN/embeddings/vade.npy``
    ``z_mean`` in cube order (float32), with ``vade.json`` saying what produced it;
``RUN/clusterings/vade.parquet``
    the VaDE's own clustering (label and ``prob_<k>``);
``RUN/figures/vade_*.png``
    ``vade_reconstructions``, ``vade_clusters``, ``vade_component_means``, ``vade_generated``,
    ``vade_interpolation``, ``vade_training_curves`` (:mod:`morphospace.vade.figures`).

:func:`generate` samples a component of a run's model (``N(mu_k, t var_k)``, decoded) and
:func:`write_generated` writes the images as PNG and FITS (``morphospace generate``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import UserError
from ..image.display import display_image
from ..nets.batches import INFERENCE_BATCH
from ..nets.predict import predict_rows
from ..progress import Timer
from ..run import RunDir, read_cached_npy, write_json, write_npy, write_table
from .figures import write_figures
from .fitting import device_kwargs
from .io import CLUSTERS_FILE, EMBED_UNDERWAY, cluster_groups, fingerprint, load_vade, model_dir, model_file

log = logging.getLogger("morphospace")

TABLE_NAME = "vade_galaxies.parquet"
FORM_EMBEDDING = "form_embedding.npy"  # written by form_train beside the model: every galaxy's form embedding
FORM_EMBEDDING_SOURCE = "form_embedding.json"  # the cube it was computed from (sizes, modification times)


def cube_signature(run: RunDir) -> dict:
    """What identifies the images a form embedding was computed from: the cube and its masked copy
    (a new ingest or new masking settings rewrite them)."""
    from ..image.masking import MASKED_CUBE

    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in (run.cube, run.path / MASKED_CUBE)
            if p.is_file()}


# --- encoding -------------------------------------------------------------------------------

class _Encoder(nn.Module):
    """A VaDE's per-galaxy outputs for a batch of images (and their form embedding, if computed)."""

    def __init__(self, model, channels: int):
        super().__init__()
        self.model = model
        # sum over pixels of the weights: turns the model's weighted sum into a weighted mean
        self.w_total = float(model.pixel_weight.sum()) * channels

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        model = self.model
        target, mu, log_var = model.encode_with_target(x, e)
        x_hat = model.decode(mu)
        # the model's own error, back in plain units: weighted mean of (x - x_hat)^2
        err = model.reconstruction_error(target, x_hat) * (2 * model.recon_sigma**2) / self.w_total
        return (mu, log_var, model.prior.log_responsibilities(mu, log_var).exp(), err, model.prior.log_prob(mu))


def encode_cube(model, cube: np.ndarray, batch_size: int = INFERENCE_BATCH, desc: str = "VaDE encode",
                embedding: np.ndarray | None = None, trainer_kwargs: dict | None = None,
                work_dir: Path | None = None, loader_workers: int = 0, first_only: bool = False) -> dict[str, np.ndarray] | None:
    """Run a VaDE over a cube (N, C, H, W) in batches, on one process or several.

    ``embedding``: for the ``form`` preset, the galaxies' form embedding already computed in
    training (row for row with ``cube``), which spares the CNN a second pass.
    ``trainer_kwargs`` (``devices``, ``num_nodes``, ``strategy`` ...), ``work_dir`` and
    ``loader_workers``: see :func:`morphospace.nets.predict.predict_rows`; ``first_only``: only
    the first of several processes gathers the result, the others return None.

    Returns
    -------
    dict of ndarray, or None
        ``z_mean``, ``z_log_var`` (N, D); ``proba`` (N, K); ``recon_error``, ``log_likelihood`` (N,).
    """
    model.eval()
    out = predict_rows(_Encoder(model, cube.shape[1]), cube, batch_size, extra=embedding,
                       trainer_kwargs=trainer_kwargs, work_dir=work_dir, desc=desc, loader_workers=loader_workers,
                       first_only=first_only)
    if out is None:
        return None
    keys = ("z_mean", "z_log_var", "proba", "recon_error", "log_likelihood")
    return {k: v.astype(np.float32 if k != "proba" else np.float64) for k, v in zip(keys, out)}


def galaxy_table(ids: np.ndarray, enc: dict[str, np.ndarray]) -> pd.DataFrame:
    """The per-galaxy table of :func:`embed_run` from :func:`encode_cube`'s output."""
    cols: dict[str, Any] = {"id": np.asarray(ids).astype(str)}
    d = enc["z_mean"].shape[1]
    for i in range(d):
        cols[f"z_mean_{i}"] = enc["z_mean"][:, i]
    for i in range(d):
        cols[f"z_log_var_{i}"] = enc["z_log_var"][:, i]
    proba = enc["proba"]
    for k in range(proba.shape[1]):
        cols[f"prob_{k}"] = proba[:, k].astype(np.float32)
    cols["label"] = proba.argmax(1).astype(np.int64)
    cols["label_prob"] = proba.max(1).astype(np.float32)
    cols["recon_error"] = enc["recon_error"]
    cols["log_likelihood"] = enc["log_likelihood"]
    cols["anomaly"] = -enc["log_likelihood"]
    return pd.DataFrame(cols)


def model_input(run: RunDir, hp: dict[str, Any]) -> np.ndarray:
    """The images the VaDE takes (memory-mapped): the cube, with neighbours masked if it was trained so."""
    from ..image.masking import model_input_path

    return np.load(model_input_path(run, hp), mmap_mode="r")


def embed_run(run: RunDir, cfg) -> pd.DataFrame:
    """Encode every galaxy of a run with its trained VaDE; write the table, embedding, clustering, figures."""
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    model, hp, extra = load_vade(model_file(run))
    made_by = fingerprint(hp, model.state_dict())  # of the model read, whatever replaces the file meanwhile
    # checked before the masked copy is (re)made for a model that cannot use it
    shape = tuple(run.read_cube().shape[1:])
    if shape != (hp["channels"], hp["image_size"], hp["image_size"]):
        imported = run.imported_model() is not None  # not retrained: the cube is made for it
        remedy = ("ingest the survey with --preset astrovader, which makes the cube the imported model takes"
                  if imported else "retrain (`morphospace train`)")
        raise UserError(f"the {'imported' if imported else 'trained'} VaDE expects "
                        f"{hp['channels']} x {hp['image_size']} x {hp['image_size']} images, the cube has {shape}: "
                        f"{remedy}")
    cube = model_input(run, hp)
    ids = run.cube_ids()
    if len(ids) != len(cube):
        raise UserError(f"catalogue lists {len(ids)} galaxies in the cube but cube.npy has {len(cube)} rows")
    embedding = None
    cached = model_dir(run) / FORM_EMBEDDING
    if hp["preset"] == "form" and cached.is_file():
        source = model_dir(run) / FORM_EMBEDDING_SOURCE
        try:
            record = json.loads(source.read_text()) if source.is_file() else None
            if isinstance(record, dict) and "cube" not in record:
                record = {"cube": record}  # recorded before the training's mark was
            same_cube = isinstance(record, dict) and record["cube"] == cube_signature(run) \
                and record.get("training") == extra.get("training")  # this model's training's, not another's
        except (OSError, ValueError):
            same_cube = False  # a damaged record: computed again
        if same_cube:
            # computed in training: no second pass through the CNN (unless the file is damaged)
            embedding = read_cached_npy(cached)
            if embedding is not None and (embedding.ndim != 2 or len(embedding) != len(cube)):
                embedding = None
    devices = device_kwargs(cfg)
    if hp["preset"] == "form" and embedding is None:
        # not the training's cube (a new ingest, other masking): the trunk sees every galaxy again
        log.info("no form embedding from training for this cube (a new ingest, other masking, or a model older "
                 "than the record of its cube): computed again")
        with Timer(f"form embedding of {len(cube)} galaxies"):
            embedding = predict_rows(model.embedder.eval(), cube, INFERENCE_BATCH, trainer_kwargs=devices,
                                     work_dir=model_dir(run) / "predict_shares", desc="form embedding",
                                     loader_workers=cfg.train.loader_processes())
    with Timer(f"VaDE embedding of {len(cube)} galaxies"):
        enc = encode_cube(model, cube, embedding=embedding, trainer_kwargs=devices, first_only=True,
                          work_dir=model_dir(run) / "predict_shares", loader_workers=cfg.train.loader_processes())
    if enc is None:
        return None  # several processes embedded the cube; only the first gathers and writes
    # until its last file is written the run's embedding is marked unfinished: killed half way, an
    # embed left the earlier model's clusters beside this one's table, both read as this model's
    note = run.embedding_path("vade").with_suffix(".json")
    write_json(note, {"name": "vade", "model_fingerprint": None, EMBED_UNDERWAY: True})
    table = galaxy_table(ids, enc)
    cluster_proba = enc["proba"]
    if cfg.model.merge_components and enc["proba"].shape[1] > 2:
        from .merge import ComponentMerger

        merger = ComponentMerger(elbow_on=cfg.model.merge_elbow_on).fit(enc["proba"])
        cluster_proba = merger.transform(enc["proba"])
        enc["groups"] = merger.groups_
        write_json(model_dir(run) / CLUSTERS_FILE,
                   {"what": "mixture components merged into clusters by entropy (Baudry et al. 2010)",
                    "n_clusters": merger.n_clusters_, "groups": merger.groups_, "elbow_on": merger.elbow_on,
                    "entropy_path": merger.entropy_path_, "merged_path": merger.merged_path_,
                    "model_fingerprint": made_by})
        log.info("VaDE: %d mixture components merged into %d clusters by entropy: %s", enc["proba"].shape[1],
                 merger.n_clusters_, merger.groups_)
    else:  # no merge: the clusters are the components, not an earlier embedding's merge
        (model_dir(run) / CLUSTERS_FILE).unlink(missing_ok=True)
    table["cluster"] = cluster_proba.argmax(1).astype(np.int64)
    table["cluster_prob"] = cluster_proba.max(1).astype(np.float32)
    write_table(run.path / TABLE_NAME, table)
    write_npy(run.embedding_path("vade"), enc["z_mean"].astype(np.float32))
    if embedding is None:  # a form model's embedding, left by the model this one replaced: not this model's
        from ..run.provenance import made_from
        from ..run.set_aside import set_aside

        # with its maps, their clusterings and k-selection tables: left, they were clustered, compared,
        # reported and exported again as the run's. Set aside, as reduce sets aside what was made from
        # an embedding gone, not deleted
        set_aside(run, [run.embedding_path("form"), run.embedding_path("form").with_suffix(".json")]
                  + made_from(run, ["form"]), "the form embedding of a model no longer the run's and what was made "
                  "from it", log)
    if embedding is not None:
        views = int(hp["form"].get("embed_views") or 8)  # as the saved model resolved it (auto: 8, or 4 on a sample)
        write_npy(run.embedding_path("form"), np.asarray(embedding, dtype=np.float32))
        write_json(run.embedding_path("form").with_suffix(".json"),
                   {"name": "form", "what": "form embedding (self-supervised head on the CNN trunk, averaged over "
                    f"{views} dihedral views) that the VaDE clusters", "dim": int(embedding.shape[1]),
                    "embed_views": views,
                    "trunk": hp["form"]["backbone"]})
    run.write_clustering("vade", ids, table["cluster"].to_numpy(), cluster_proba)
    if cluster_proba is not enc["proba"]:
        run.write_clustering("vade_components", ids, table["label"].to_numpy(), enc["proba"])
    else:
        (run.path / "clusterings" / "vade_components.parquet").unlink(missing_ok=True)
    write_json(note, {"name": "vade", "what": "VaDE z_mean (mean of q(z|x))", "preset": hp["preset"],
                      "latent_dim": hp["latent_dim"], "n_components": int(enc["proba"].shape[1]),
                      "model": str(model_file(run)), "model_fingerprint": made_by,
                      "components_merged": "groups" in enc})  # whether the run's clusters are in clusters.json
    counts = np.bincount(table["cluster"], minlength=cluster_proba.shape[1])
    log.info("VaDE clusters (%d, from K = %d components): sizes %s", cluster_proba.shape[1], enc["proba"].shape[1],
             counts.tolist())
    with Timer("VaDE figures"):
        write_figures(run, model, cube, enc, cfg)
    return table


# --- generation --------------------------------------------------------------------------------

def _as_model(run_or_model):
    from torch import nn

    if isinstance(run_or_model, nn.Module):  # a VaDE or a FormVaDE
        return run_or_model
    if hasattr(run_or_model, "vade"):  # api.VaDEModel
        return run_or_model.vade
    run = run_or_model if isinstance(run_or_model, RunDir) else RunDir(run_or_model)
    return load_vade(model_file(run))[0]


def generate(run_or_model, component: int, n: int, temperature: float = 0.5, reject_below: float | None = None,
             seed: int = 0, max_tries: int = 100) -> np.ndarray:
    """Synthetic galaxies of one mixture component, ``(n, C, H, W)`` float32.

    ``run_or_model``: a :class:`RunDir` or its path (its trained model is loaded), a VaDE or
    FormVaDE, or the object of :func:`morphospace.load_model`. The other parameters are those
    of :meth:`~morphospace.vade.generate.Generative.generate`.
    """
    run = None
    if isinstance(run_or_model, (RunDir, str, Path)):  # a run's model: an empty component is said
        run = run_or_model if isinstance(run_or_model, RunDir) else RunDir(run_or_model)
        model, hp, _ = load_vade(model_file(run))
    else:
        model = _as_model(run_or_model)
    images = model.generate(component, n, temperature=temperature, reject_below=reject_below, seed=seed,
                            max_tries=max_tries)
    if run is not None:
        _say_if_no_galaxy(run, fingerprint(hp, model.state_dict()), "component", int(component), len(images))
    return images


def _say_if_no_galaxy(run: RunDir, made_by: str, what: str, index: int, n: int,
                      members: list[int] | None = None) -> None:
    """A warning where the run's embedding put none of its galaxies in the ``what`` ("cluster" or
    "component") drawn from: a merged cluster of an imported model may hold none of a survey's (an
    AstroVaDEr embed said "sizes [25, 11, 143, 29, 34, 0, 23, 35]"), and its draw was written without a
    word. Said only where the embedding is this model's; nothing where the run has none."""
    try:
        note = json.loads(run.embedding_path("vade").with_suffix(".json").read_text())
    except (OSError, ValueError):
        return
    if not isinstance(note, dict) or note.get(EMBED_UNDERWAY) or note.get("model_fingerprint") != made_by:
        return
    # the components' own labels where the embedding merged them into clusters
    name = "vade_components" if what == "component" and note.get("components_merged") else "vade"
    try:
        labels = run.read_clustering(name)["label"].to_numpy()
    except UserError:
        return
    if len(labels) and not (labels == index).any():
        parts = f" (components {', '.join(map(str, members))})" if members and len(members) > 1 else ""
        log.warning("%s %d%s holds none of the run's %d galaxies (none is most likely in it): the %d drawn show "
                    "what the model's prior holds there, not galaxies of this survey", what, index, parts,
                    len(labels), n)


def generate_cluster(run: RunDir, cluster: int, n: int, temperature: float = 0.5,
                     reject_below: float | None = None, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Synthetic galaxies of one of the run's own clusters (its components merged by the embedding,
    :func:`~morphospace.vade.io.cluster_groups`), ``(n, C, H, W)`` float32, and the cluster's
    components (:meth:`~morphospace.vade.generate.Generative.generate_cluster`)."""
    model, hp, _ = load_vade(model_file(run))  # read once: the model and its fingerprint
    made_by = fingerprint(hp, model.state_dict())
    groups = cluster_groups(run, model.prior.n_components, made_by=made_by)
    if isinstance(cluster, bool) or not isinstance(cluster, (int, np.integer)) or not 0 <= cluster < len(groups):
        raise UserError(f"cluster must be in 0..{len(groups) - 1} (the run's {len(groups)} clusters), got {cluster!r}")
    members = groups[int(cluster)]
    images = model.generate_cluster(members, n, temperature=temperature, reject_below=reject_below, seed=seed)
    _say_if_no_galaxy(run, made_by, "cluster", int(cluster), len(images), members)
    return images, members


def write_generated(images: np.ndarray, out_dir: str | Path, prefix: str = "generated",
                    draw: dict[str, Any] | None = None) -> list[Path]:
    """Write each image (N, C, H, W) as ``<prefix>_<i>.png`` (display, clipped to [0, 1]) and ``.fits`` (float values).

    ``draw`` (e.g. component, temperature, seed) goes into each FITS header, as ``MS_<KEY>`` cards.
    The files are written into a hidden folder inside ``out_dir`` and moved into place once all
    are written, after the files of an earlier draw with the same prefix are removed: a folder
    never mixes two draws: one interrupted (Ctrl-C) while it draws keeps the earlier draw whole,
    Ctrl-C while the files move acts once they have moved, and a draw killed outright while they
    move is undone by the next one (:mod:`morphospace.run.file_set`). Returns the
    written paths. Draws into one folder take turns (a hidden lock file in it).
    """
    from ..run.lock import folder_turns

    # absolute: a folder named "~/gg" is such a folder here, and astropy took it for the home folder's
    # gg, where the staging folder was not (a failure half way)
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    # draws into one folder take turns: two at once each removed the other's staging folder as a
    # stale one, and its files, and the folder ended empty while one reported success
    with folder_turns(out):
        return _write_draw(images, out, prefix, draw)


def _write_draw(images: np.ndarray, out: Path, prefix: str, draw: dict[str, Any] | None) -> list[Path]:
    """:func:`write_generated`'s work, under its lock."""
    import shutil
    import tempfile

    from astropy.io import fits
    from PIL import Image

    from ..data.ingest.fits_frames import band_order
    from ..run.file_set import replace_file_set, restore_unfinished

    member = re.compile(rf"{re.escape(prefix)}_\d+\.(png|fits)")

    def is_member(name: str) -> bool:  # this prefix's draw: not `cluster10_0000.png` for cluster1
        return member.fullmatch(name) is not None

    restore_unfinished(out, prefix, is_member)  # a draw killed in its swap: the draw before it, whole
    for stale in out.glob(f".{prefix}.*.partial"):  # of a draw killed outright (a live one holds the lock)
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{prefix}.", suffix=".partial", dir=out))
    try:
        names = []
        width = max(4, len(str(len(images) - 1)))
        for i, img in enumerate(np.asarray(images, dtype=np.float32)):
            stem = f"{prefix}_{i:0{width}d}"
            Image.fromarray(display_image(img)).save(stage / f"{stem}.png", format="PNG")
            # as surveys store a FITS frame: the bottom row first, and of three bands the bluest first (the
            # cube's red, green, blue reversed): a viewer, and the ingest, read the galaxy as the PNG shows it
            bands = img[band_order(len(img))]
            hdu = fits.PrimaryHDU(bands[0, ::-1] if len(bands) == 1 else bands[:, ::-1])
            hdu.header["ORIGIN"] = "morphospace"
            hdu.header["COMMENT"] = "VaDE synthetic galaxy: the decoder's mean image of a code drawn from the prior"
            for key, value in (draw or {}).items():
                hdu.header[f"MS_{key.upper()}"[:8]] = "none" if value is None else value
            hdu.writeto(stage / f"{stem}.fits")
            names += [f"{stem}.png", f"{stem}.fits"]
        paths = replace_file_set(stage, names, out, prefix, is_member)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return paths
