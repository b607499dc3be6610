"""Training the form-first VaDE of a run: embedding, mixture, image decoder.

1. **Form embedding** (:func:`morphospace.ssl.training.fit_embedder`): the neighbour-masked cube
   through the CNN trunk, the self-supervised head trained on the view bank;
2. **the VaDE core** on the standardised embedding: by default (``form.core = "linear"``) the
   linear core of :mod:`morphospace.vade.linear_core` (probabilistic PCA and a full-covariance
   mixture prior by EM: the closed-form optimum of a linear VaDE, stable across seeds); with
   ``form.core = "mlp"`` an MLP VaDE (:func:`morphospace.vade.fitting.fit_vade`, the same
   Lightning loop, phases, guards, checkpoints and DDP as the pixel VaDE);
3. **the image decoder** (:func:`morphospace.vade.form_decoder.fit_image_decoder`) on the core's
   codes.

The three are saved together as one :class:`~morphospace.vade.form_model.FormVaDE` in
``RUN/models/vade/model.pt``; ``form_embedding.npy`` beside it holds every galaxy's
embedding so that ``morphospace embed`` does not put the cube through the CNN again.
``--resume`` continues the head (and an MLP core) from their last checkpoints (the view bank
is kept until the model is saved, then removed unless ``train.keep_view_bank``) and refits the
linear core and the decoder; a training that finished (its model records the checkpoints as they
are: :mod:`morphospace.vade.completion`) is not resumed: :func:`~morphospace.vade.train.train_run`
says so and returns its model.

Above ``train.sample`` galaxies, all three train on a reproducible sample of that many; the
trained embedder then embeds the other galaxies and the core encodes every one.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from ..config import Config
from ..data.ingest.spec import PreprocessSpec
from ..errors import UserError
from ..image.masking import masked_cube
from ..nets.batches import INFERENCE_BATCH, RowView
from ..nets.predict import barrier, predict_rows
from ..run import RunDir, write_json, write_npy
from ..ssl.augment import NuisanceAugment
from ..ssl.embedder import build_trunk
from ..ssl.training import fit_embedder
from .embed import FORM_EMBEDDING, FORM_EMBEDDING_SOURCE, cube_signature
from .fitting import (TrainResult, device_kwargs, fit_vade, prepare_model_dir, resume_checkpoint, training_rows,
                      write_training_summary)
from .form_decoder import fit_image_decoder
from .form_model import FormVaDE, core_hparams
from .hparams import with_earlier_form
from .completion import began_mark, checkpoint_marks
from .io import MODEL_FILE, save_model
from .linear_core import fit_linear_core
from .merge import ComponentMerger

__all__ = ["train_form_run", "decoder_trainer_kwargs", "FORM_EMBEDDING", "FORM_INPUT"]

log = logging.getLogger("morphospace")

FORM_INPUT = "form_input.npy"  # standardised: what the core VaDE reads


def decoder_trainer_kwargs(cfg: Config, precision: str) -> dict:
    """The image decoder's Trainer settings: the run's (:func:`~morphospace.vade.fitting.device_kwargs`),
    in bfloat16 autocast (Lightning's ``bf16-mixed``) on a CPU whose trunk runs in bfloat16.

    Parameters
    ----------
    cfg : Config
    precision : {'32', 'bf16'}
        The trunk's resolved precision (``form.precision``).

    Returns
    -------
    dict

    Notes
    -----
    Only where ``train.precision`` is left at ``32-true`` and the accelerator is the CPU: a
    precision the user set, or a GPU's, is kept. The weights stay float32 (autocast). On
    sdss-gz1 (``benchmarks/bench_form_decoder.py``) the held-out error is the same to 1e-4 of
    itself in 0.70x the time.
    """
    kw = device_kwargs(cfg)
    if precision == "bf16" and cfg.train.accelerator == "cpu" and cfg.train.precision in ("32-true", "32"):
        kw["precision"] = "bf16-mixed"
    return kw


def _cube_spec(run: RunDir) -> PreprocessSpec | None:
    """How the run's cube was made, or None for a cube no ingest made (written from arrays)."""
    if not run.ingest_summary.is_file():
        return None
    try:
        return PreprocessSpec.of_run(run.ingest_summary, run.config)
    except UserError:  # a summary that does not describe a preprocessing
        return None


def train_form_run(run: RunDir, cfg: Config, hp: dict[str, Any], resume: bool = False, callbacks: list | None = None):
    """Train the form-first VaDE of ``run`` with hyper-parameters ``hp`` (``resolve_hparams``)."""
    f = with_earlier_form(hp["form"])  # an earlier model resumed: its own views
    # the light views need the stretch the cube was made with (the settings stay as given, so that a
    # resume of this training compares like with like)
    spec = _cube_spec(run)
    light = bool(f["aug_light"]) and spec is not None
    if f["aug_light"] and not light:
        log.info("form.aug_light: %s has no ingest summary that says how its cube was stretched: the "
                 "nuisance views are made on its pixels (as with form.aug_light = false)", run.path)
    # a linear core has no checkpoint of its own (it is refitted): a resume continues the SSL head
    mdir = prepare_model_dir(run, cfg, hp, resume, checkpoint=resume_checkpoint(hp))
    cube = masked_cube(run, workers=cfg.ingest.workers)  # the form model always reads neighbour-masked cutouts
    rows = training_rows(len(cube), cfg)
    train_cube = cube if rows is None else RowView(cube, rows)
    # auto: outside the training sample the trunk's passes over every galaxy dominate a CPU run,
    # so large runs average the 4 quarter turns (the closest 4 of the 8 views: README)
    views = f.get("embed_views") or (8 if rows is None else 4)
    hp = {**hp, "form": {**f, "embed_views": views}}  # the saved model embeds new images the same way
    f = hp["form"]
    t0 = time.perf_counter()
    heads = f.get("heads", 1)
    log.info("form embedding: %s trunk at %d px%s, %d dihedral + %d nuisance views (made on the %s), %d SSL epochs "
             "(%s)%s, embedding averaged over %d dihedral views%s",
             f["backbone"], f["input_size"], f", images sharpened (a = {f['sharpen']:g})" if f.get("sharpen") else "",
             8, f["aug_views"], "galaxy's light" if light else "stretched pixels", f["ssl_epochs"], f["loss"], f" of {heads} heads" if heads > 1 else "", views,
             "" if rows is None else f"; trained on a random sample of {len(rows)} of the {len(cube)} galaxies (train.sample)")
    if f["backbone"] == "small" and not f["train_trunk"] and not f.get("weights"):
        log.warning("form.backbone = 'small' has no pretrained weights and form.train_trunk is false: the "
                    "embedding is a random CNN's features (set form.train_trunk = true, or form.weights = PATH)")
    trunk = build_trunk(f["backbone"], f["input_size"], precision=f["precision"], weights=f.get("weights"),
                        sharpen=f.get("sharpen", 0.0), seed=hp["seed"])
    embedder, emb, info = fit_embedder(
        trunk, train_cube, mdir / "ssl", dim=f["dim"], aug_views=f["aug_views"], epochs=f["ssl_epochs"],
        loss=f["loss"], temperature=f["temperature"], seed=hp["seed"], train_trunk=f["train_trunk"],
        trainer_kwargs=device_kwargs(cfg), resume=resume, loader_workers=cfg.train.loader_processes(), views=views,
        trunk_lr_scale=f.get("trunk_lr_scale", 1.0), heads=heads,
        augment=NuisanceAugment(scale=tuple(f["aug_scale"]), light=light,
                                **({"normalise": spec.normalise, "softening": spec.softening} if spec else {})),
        bank_key={"began": began_mark(mdir)})  # a bank a kill left is gone on with for this training only
    if rows is not None:
        emb = _embed_the_rest(embedder, cube, rows, emb, INFERENCE_BATCH, device_kwargs(cfg), mdir / "predict_shares",
                              loader_workers=cfg.train.loader_processes())
        info["train_sample"] = len(rows)
    t_embed = time.perf_counter() - t0
    mean, std = emb.mean(0), emb.std(0) + 1e-6
    standardised = ((emb - mean) / std).astype(np.float32)
    # this training's mark, in the embedding's record and in the model: embed reuses the embedding only for
    # the model trained with it (a training killed after writing it, its predecessor's model.pt put back
    # by hand, had the old model embedded with the new training's embedding, without a word)
    training = os.urandom(8).hex()
    if rank_zero_only.rank == 0:  # one writer; an MLP core's later processes read the input file
        write_npy(mdir / FORM_EMBEDDING, emb)
        write_json(mdir / FORM_EMBEDDING_SOURCE, {"cube": cube_signature(run), "training": training})
        write_npy(mdir / FORM_INPUT, standardised)
    barrier()

    if f["core"] == "linear":
        t1 = time.perf_counter()
        merger = ComponentMerger(elbow_on=f["core_merge"]) if f["core_merge"] != "none" else None
        core, core_info = fit_linear_core(standardised if rows is None else standardised[rows], hp["latent_dim"],
                                          hp["k_min"], hp["k_max"], hp["seed"], n_components=hp["n_components"],
                                          fits=f.get("core_fits", 1), merger=merger)
        t_core, module, events, init = time.perf_counter() - t1, None, [], {"linear": core_info}
        hp = {**hp, "form": {**f, "n_components": core_info["n_components"]}}  # shapes the saved model
        log.info("linear core: %d principal axes (%.0f%% of the variance), K = %d by BIC%s",
                 hp["latent_dim"], 100 * core_info["explained_variance"], core_info["n_components"],
                 "" if "fit_chosen" not in core_info else
                 f"; of {len(core_info['fit_seeds'])} EM fits, fit {core_info['fit_chosen']} kept, its clusters "
                 f"agreeing best with the others' (mean ARI {max(core_info['fit_agreement']):.2f}; "
                 f"the least typical fit's {min(core_info['fit_agreement']):.2f})")
    else:
        module, trainer, t_core = fit_vade(core_hparams(hp), mdir / FORM_INPUT, mdir, cfg, resume, callbacks, rows=rows)
        core, events, init = module.model, module.events, module.init_info
    core.eval()
    with torch.no_grad():
        mu, log_var = core.encode(torch.from_numpy(standardised))
    t1 = time.perf_counter()
    mu, log_var = (mu.numpy(), log_var.numpy()) if rows is None else (mu.numpy()[rows], log_var.numpy()[rows])
    decoder = fit_image_decoder(mu, log_var, train_cube, widths=tuple(hp["widths"]),
                                epochs=f["decoder_epochs"], batch_size=f["decoder_batch_size"], lr=f["decoder_lr"],
                                seed=hp["seed"], radial_inner=f["image_radial_inner"],
                                radial_width=f["image_radial_width"], weight_floor=f["decoder_weight_floor"],
                                upsample=f["decoder_upsample"],
                                trainer_kwargs=decoder_trainer_kwargs(cfg, f["precision"]),
                                loader_workers=cfg.train.loader_processes(), out_dir=mdir)
    rank = rank_zero_only.rank  # set by Lightning's strategy: only rank 0 writes
    t_dec = time.perf_counter() - t1
    model = FormVaDE(embedder, core, decoder, hp["image_size"], recon_sigma=f["image_recon_sigma"],
                     radial_inner=f["image_radial_inner"], radial_width=f["image_radial_width"])
    model.emb_mean.copy_(torch.from_numpy(mean))
    model.emb_std.copy_(torch.from_numpy(std))
    seconds = time.perf_counter() - t0
    k = core.prior.n_components
    result = TrainResult(model_path=mdir / MODEL_FILE, global_rank=rank, epochs=hp["epochs"],
                         n_components=k, events=events, seconds=seconds)
    if rank == 0:
        # the summary first: a model saved is a training complete (completion.py), its summary written
        parts = {"embedding": t_embed, "vade": t_core, "image_decoder": t_dec}
        if module is not None:
            write_training_summary(mdir, module, hp, seconds, len(train_cube), form=info, seconds_by_part=parts,
                                   train_sample=info.get("train_sample"))
        else:
            # the linear core is fitted in closed form: its epochs are none (train.epochs trains nothing),
            # those of the SSL head and the image decoder are theirs
            write_json(mdir / "training.json", {"seconds": seconds, "epochs": None, "n_components": k,
                                                "ssl_epochs": hp["form"]["ssl_epochs"],
                                                "decoder_epochs": hp["form"]["decoder_epochs"],
                                                "init": init, "events": events, "n_images": len(train_cube),
                                                "train_sample": info.get("train_sample"), "form": info,
                                                "seconds_by_part": parts})
            log.info("form VaDE trained (linear core): K = %d, %.1f s; model in %s", k, seconds, mdir)
        save_model(model, hp, mdir / MODEL_FILE, extra={"init": init, "events": events, "form": info,
                                                        "training": training, "checkpoints": checkpoint_marks(mdir, hp)})
        if not cfg.train.keep_view_bank:
            remove_view_bank(mdir / "ssl" / "view_bank.npy")
    return result


def remove_view_bank(path) -> None:
    """The view bank of a saved model removed: it served the heads' training and a resume of it, and
    holds 77 kB a galaxy (``train.keep_view_bank`` keeps it)."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:  # a bank that cannot go costs disk, not the model
        log.warning("the view bank %s could not be removed (%s); it may be deleted by hand", path, exc)
        return
    log.info("view bank removed (%.0f MB; train.keep_view_bank = true keeps it)", size / 1e6)


def _embed_the_rest(embedder, cube, rows: np.ndarray, emb_rows: np.ndarray, batch_size: int,
                    trainer_kwargs: dict, work_dir, loader_workers: int = 0) -> np.ndarray:
    """The form embedding of every galaxy: ``emb_rows`` (from training) for ``rows``, the trained
    embedder's output for the others (on as many processes as training had)."""
    rest = np.setdiff1d(np.arange(len(cube)), rows)
    emb = np.empty((len(cube), emb_rows.shape[1]), dtype=np.float32)
    emb[rows] = emb_rows
    embedder.eval()

    def place(index: np.ndarray, out: np.ndarray) -> None:
        emb[rest[index]] = out

    predict_rows(embedder, RowView(cube, rest), batch_size, trainer_kwargs=trainer_kwargs, work_dir=work_dir,
                 desc="form embedding of the rest", loader_workers=loader_workers, into=place)
    return emb
