"""The Lightning side of VaDE training: data, the phased module, checkpoints, :func:`fit_vade`.

:class:`VaDEModule` runs the phases described in :mod:`morphospace.vade.train` (pretraining,
mixture initialisation, joint training) with the guards on the mixture and the checkpointed
state that makes ``--resume`` exact; :class:`CubeDataModule` serves the (memory-mapped) cube
in a seeded order, sharded under DDP. :func:`fit_vade` fits one to the rows of an ``.npy``
(the cube, its neighbour-masked copy, or the form embedding of the form-first VaDE).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ..config import Config, apply_overrides
from ..data.sample import sample_rows
from ..errors import UserError, first_line
from ..nets.checkpoints import resumed_from
from ..nets.launched import ctrl_c_raised, fit_kwargs
from ..nets.loss_logs import loss_loggers
from ..nets.spawn import spawned_workers
from ..progress import quiet_lightning, with_bars
from ..run import RunDir, file_stamp, launched_as_later_rank, write_json
from ..run.set_aside import move_into
from ..ssl.bank_file import FILLING_NOTE
from .data import CubeDataModule
from .hparams import with_earlier_form
from .io import CLUSTERS_FILE, SET_ASIDE_NOTE, model_dir
from .module import VaDEModule

__all__ = ["TrainResult", "check_resumable", "fit_vade", "prepare_model_dir", "resume_checkpoint", "training_rows",
           "one_process_devices", "write_training_summary", "LAST_CHECKPOINT"]

log = logging.getLogger("morphospace")

LAST_CHECKPOINT = "last.ckpt"
TRAINING_BEGAN = "training_began.json"  # the settings a training began with, which a resume goes on with
# per-epoch means written to the logs (the first five in every phase, the others when joint)
@dataclass
class TrainResult:
    """What :func:`train_run` did. Only ``global_rank == 0`` wrote the model."""

    model_path: Path
    global_rank: int
    epochs: int
    n_components: int
    events: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _clear_previous(run: RunDir, mdir: Path) -> None:
    # everything the folder holds came from the previous model (its checkpoints, embedding, merged
    # clusters, shares of a killed job): none of it may outlive a new training cut short. The trained
    # model itself, and what says what it is, is set aside rather than deleted: a new training
    # stopped half way (Ctrl-C during its view bank) left neither model
    if (mdir / "model.pt").is_file():
        kept, dest = _model_set_aside(run, mdir, "train")
        log.info("the previous model (%s) is set aside in %s while a new one trains (delete it when you no "
                 "longer need it)", ", ".join(p.name for p in kept), dest.relative_to(run.path))
    if (mdir / "ssl" / FILLING_NOTE).is_file():  # `run` as well as `train`: the work kept is not lost without a word
        log.info("the view bank a stopped training left is removed: this training starts afresh "
                 "(`morphospace train RUN --resume` goes on with it)")
    for p in mdir.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _model_set_aside(run: RunDir, mdir: Path, by: str) -> tuple[list[Path], Path]:
    """The trained model in ``mdir`` and what says what it is, moved to ``superseded/<time>/``; returns
    the files moved and the folder they went to."""
    kept = [mdir / name for name in ("model.pt", "hparams.json", CLUSTERS_FILE, "training.json", "imported.json")
            if (mdir / name).is_file()]
    dest = run.new_superseded_folder()
    move_into(run.path, kept, dest)
    dest = dest / mdir.relative_to(run.path)
    # which cube it was trained for: a run left without a model points to it only for that cube
    # (an ingest of other galaxies sets models aside into superseded/ too)
    write_json(dest / SET_ASIDE_NOTE, {"by": by, "cube": file_stamp(run.cube) if run.cube.is_file() else None})
    return kept, dest


def comparable_hparams(hp: dict[str, Any]) -> dict[str, Any]:
    """``hp`` without what may change on resume (more epochs; other devices, said: the steps then
    differ), a form model's nuisance views as it trained with them (one saved before their settings
    were recorded drew 0.9-1.1 on the stretched pixels: resumed now, its views would be drawn
    otherwise; :data:`~morphospace.vade.hparams.EARLIER_FORM`)."""
    out = {k: v for k, v in hp.items() if k not in ("epochs", "processes")}
    if isinstance(out.get("form"), dict):
        out["form"] = with_earlier_form(out["form"])
    return out


def hparam_changes(key: str, before: Any, now: Any) -> list[str]:
    """``"key before -> now"`` per changed setting, a section's (the form model's) by its own keys
    (it said "(form)" for any of them)."""
    if isinstance(before, dict) and isinstance(now, dict):  # a key new since the training began: no change
        return [c for k in sorted(set(before) | set(now)) if k in before and before.get(k) != now.get(k)
                for c in hparam_changes(f"{key}.{k}", before.get(k), now.get(k))]
    return [f"{key} {before!r} -> {now!r}"]


def resume_checkpoint(hp: dict[str, Any]) -> str:
    """The checkpoint (relative to the model folder) a resume of a training with ``hp`` continues:
    the form model's first stage's, its SSL head's (a linear core has none of its own, it is
    refitted; an MLP core's is written only once the head is trained: a run killed before it
    resumes the head)."""
    return "ssl/last.ckpt" if hp.get("preset") == "form" else LAST_CHECKPOINT


def check_resumable(run: RunDir, hp: dict[str, Any], checkpoint: str | None = None, say: bool = True) -> None:
    """A one-line :class:`UserError` unless the run's last training can be resumed with ``hp``:
    its checkpoint is there and whole, and no setting but the epochs changed. The command line
    calls it before it saves the configuration, so that a refused value never reaches it (``say``
    False: the training's own check, which follows, says what it accepts but warns of)."""
    mdir = model_dir(run)
    relink_last(mdir)
    last = mdir / (checkpoint or resume_checkpoint(hp))
    # killed while it filled its view bank (before any checkpoint), a form training goes on with the bank
    bank_left = hp.get("preset") == "form" and (mdir / "ssl" / FILLING_NOTE).is_file()
    if not last.is_file() and not bank_left:
        raise UserError(f"nothing to resume: {last} not found (train without --resume first)")
    # a later stage's checkpoint (an MLP core's) is resumed from too where the run got that far
    for ckpt in dict.fromkeys([last, mdir / LAST_CHECKPOINT]):
        if not ckpt.is_file() and bank_left:
            continue
        if ckpt != last and not ckpt.is_file():
            continue
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain tensors and lists (on_save_checkpoint)
        except Exception as exc:  # a checkpoint cut short by a full disk or a kill mid-write
            raise UserError(f"{ckpt} is damaged ({first_line(exc)[:160]}): train again without --resume") from None
        done = int(state.get("epoch", -1)) + 1 if isinstance(state, dict) else 0
        if ckpt == mdir / LAST_CHECKPOINT and done > int(hp["epochs"]):  # Lightning's traceback, the settings saved
            raise UserError(f"cannot resume: the training has done {done} epochs, more than the {hp['epochs']} asked "
                            f"for: give at least {done} (train.epochs), or train again without --resume")
    # the stopped training's own record of its settings: hparams.json is the model's, and a model put back
    # by hand from superseded/ (as the missing-model message says) brought another training's
    record = mdir / TRAINING_BEGAN if (mdir / TRAINING_BEGAN).is_file() else mdir / "hparams.json"
    try:
        saved = json.loads(record.read_text()) if record.is_file() else None
        if saved is not None and not isinstance(saved, dict):
            raise ValueError("not a table of settings")
    except (OSError, ValueError) as exc:  # what the training began with cannot be told: no resume on it
        raise UserError(f"{record} is damaged ({first_line(exc)[:160]}): the settings the training "
                        "began with are unknown; train again without --resume") from None
    if saved is not None:
        old, now = comparable_hparams(saved), comparable_hparams(hp)
        # a setting a run saved before it was recorded (train.sample) cannot be told apart: not a change
        diff = sorted(k for k in set(old) | set(now) if old.get(k, now.get(k)) != now.get(k))
        changes = [change for k in diff for change in hparam_changes(k, old.get(k), now.get(k))]
        if changes:
            raise UserError(f"cannot resume: settings changed since the training began ({'; '.join(changes[:4])}"
                            f"{'; ...' if len(changes) > 4 else ''}): set them back to resume, or train again "
                            "without --resume")
        before, now = saved.get("processes"), hp.get("processes")
        if say and before is not None and now is not None and before != now:
            log.warning("resuming on %d processes a training begun on %d: it continues from its checkpoint, but "
                        "with another global batch and split of the galaxies it will not end where an "
                        "uninterrupted run would", now, before)


def prepare_model_dir(run: RunDir, cfg: Config, hp: dict[str, Any], resume: bool,
                      checkpoint: str = LAST_CHECKPOINT) -> Path:
    """``RUN/models/vade/``: checked against ``hp`` for a resume, else cleared; ``hparams.json`` written.

    ``checkpoint`` (relative to the model directory) is the one a resume continues from.
    """
    mdir = model_dir(run)
    if resume:
        check_resumable(run, hp, checkpoint)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    # One writer: a distributed job's later processes start either together with the first (srun,
    # torchrun) or once it reaches its first collective (Lightning's own launcher), its view bank
    # already being written; only the first clears the folder and writes into it.
    if not launched_as_later_rank():
        if not resume:
            _clear_previous(run, mdir)
            write_json(mdir / TRAINING_BEGAN, hp)
        else:
            _set_aside_another_training_s_model(run, mdir)
        write_json(mdir / "hparams.json", hp)
    return mdir


def _set_aside_another_training_s_model(run: RunDir, mdir: Path) -> None:
    """A resume goes on with the stopped training; a finished model beside its checkpoints that another
    training made (put back by hand from superseded/) is set aside again, not overwritten when this
    one ends (it was lost)."""
    try:
        began = json.loads((mdir / TRAINING_BEGAN).read_text())
        model = json.loads((mdir / "hparams.json").read_text())
    except (OSError, ValueError):
        return  # a training begun before its record was kept, or no model: nothing to tell apart
    if not (mdir / "model.pt").is_file() or not isinstance(model, dict) or not isinstance(began, dict) \
            or not hparam_changes("settings", comparable_hparams(began), comparable_hparams(model)):
        return
    _, dest = _model_set_aside(run, mdir, "train --resume")
    log.warning("the model in %s is not the stopped training's (other settings): set aside in %s while the training "
                "goes on (delete it when you no longer need it)", mdir.relative_to(run.path), dest.relative_to(run.path))


def device_kwargs(cfg: Config) -> dict[str, Any]:
    """The Lightning Trainer's hardware settings from ``[train]``: accelerator, devices, nodes,
    strategy and precision (for training and for :func:`~morphospace.nets.predict.predict_rows`)."""
    t = cfg.train
    on_cpu = t.accelerator == "cpu" or (t.accelerator == "auto" and not torch.cuda.is_available()
                                        and not torch.backends.mps.is_available())
    if on_cpu and t.precision in ("16-mixed", "16") and t.precision not in _SAID_PRECISION:
        # Lightning's own warning of it is a library warning, which --quiet keeps off the console
        _SAID_PRECISION.add(t.precision)
        log.warning("train.precision = %s: a CPU has no float16 arithmetic; Lightning uses bf16-mixed "
                    "instead (set train.precision = bf16-mixed, or 32-true, to say so)", t.precision)
    return dict(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                precision=t.precision)


_SAID_PRECISION: set[str] = set()  # warned once a process


_IN_PROCESS_STARTS = ("spawn", "fork", "notebook")  # strategies whose processes start from this one


def one_process_devices(cfg: Config, caller: str) -> Config:
    """``cfg`` fit for a ``caller`` that runs every stage in one process (``morphospace run``, a
    notebook's ``VaDE.fit``): several devices are started from it when ``strategy = "auto"``
    (``ddp_spawn``; ``ddp_notebook`` in an interactive session, where Lightning allows forking
    only); several nodes, or a launcher that starts the whole program again in each process
    (``ddp``: the script would run twice, in two temporary runs), raise a ``UserError`` naming
    ``morphospace train`` and ``embed``, which take them."""
    t = cfg.train
    if t.devices == 1 and t.num_nodes == 1:
        return cfg
    if t.num_nodes == 1 and t.strategy == "auto":
        interactive = hasattr(sys, "ps1") or bool(sys.flags.interactive)  # Lightning's own test
        strategy = "ddp_notebook" if interactive else "ddp_spawn"
        log.info("several devices: training and embedding start them from this process (%s)", strategy)
        return apply_overrides(cfg, {"train.strategy": strategy})
    if t.num_nodes == 1 and any(word in t.strategy for word in _IN_PROCESS_STARTS):
        return cfg
    raise UserError(f"{caller} runs every stage in one process: with train.num_nodes = {t.num_nodes} "
                    f"and train.strategy = {t.strategy!r}, run `morphospace train` and `embed` with --devices, "
                    f"--num-nodes and --strategy instead (one task per device under srun), then the other stages")


def check_accelerator(cfg: Config, trains_a_network: bool | None = None) -> None:
    """A ``UserError`` unless this machine has the ``train.accelerator`` asked for ("gpu" on a machine
    without one failed inside Lightning, after the settings were saved and the run's model cleared).
    ``trains_a_network`` (default: ``model.kind = "vade"``; a pixel-PCA run trains none, a study
    always fine-tunes or embeds with one): whether the command will use it at all."""
    name = cfg.train.accelerator
    uses = cfg.model.kind == "vade" if trains_a_network is None else trains_a_network
    if not uses:
        return
    import importlib.util
    import os

    from lightning.pytorch.accelerators import AcceleratorRegistry, CUDAAccelerator, MPSAccelerator

    if name not in ("auto", "cpu"):
        found = (CUDAAccelerator.is_available() or MPSAccelerator.is_available() if name == "gpu"
                 else AcceleratorRegistry[name]["accelerator"].is_available())
        if not found:
            raise UserError(f"train.accelerator = '{name}', but this machine has no such device that PyTorch can use: "
                            "give 'cpu', or 'auto' to take what there is")
    # what Lightning refused only once the fit began, a traceback after the earlier model was set aside
    gpu = name not in ("cpu",) and CUDAAccelerator.is_available()
    strategy, precision = cfg.train.strategy, cfg.train.precision
    if precision in ("16-true", "bf16-true", "64-true", "64", "transformer-engine", "transformer-engine-float16"):
        raise UserError(f"train.precision = '{precision}' is not one the models take (they are fed float32 images): "
                        "give '32-true', or 'bf16-mixed' / '16-mixed' for mixed precision")
    if strategy.startswith("fsdp") and not gpu:
        raise UserError(f"train.strategy = '{strategy}' needs GPUs: give 'auto' or 'ddp' on a CPU")
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"train.strategy = '{strategy}' needs the deepspeed package, which is not installed: give "
                        "'auto' or 'ddp'")
    # a task of a launcher (srun's, torchrun's, MPI's), not merely a batch job's shell (SLURM_JOB_ID)
    launcher = ("SLURM_PROCID", "MASTER_ADDR", "TORCHELASTIC_RUN_ID", "NODE_RANK", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE",
                "PMI_SIZE")
    if cfg.train.num_nodes > 1 and not any(os.environ.get(v) for v in launcher):
        # it waited for ever for nodes no launcher started, and a later stage read the saved setting
        raise UserError(f"train.num_nodes = {cfg.train.num_nodes}, but no launcher started this process on several "
                        "nodes (no SLURM job, torchrun or MASTER_ADDR): start it with srun or torchrun (the "
                        "README's SLURM recipe), or give --num-nodes 1")


def training_rows(n: int, cfg: Config) -> np.ndarray | None:
    """The rows a model trains on: a reproducible sample of ``cfg.train.sample`` of the ``n``
    galaxies (drawn with ``cfg.train.seed``, so a resumed run draws the same), or None for all."""
    return sample_rows(n, cfg.train.sample, cfg.train.seed)


def write_training_summary(mdir: Path, module: VaDEModule, hp: dict[str, Any], seconds: float, n_images: int,
                           **more: Any) -> None:
    """``training.json`` beside the model, and one log line."""
    k = module.model.prior.n_components
    write_json(mdir / "training.json", {"seconds": seconds, "epochs": hp["epochs"], "n_components": k,
                                        "init": module.init_info, "events": module.events, "n_images": n_images,
                                        **more})
    log.info("VaDE trained: %d epochs, K = %d, %.1f s; model in %s", hp["epochs"], k, seconds, mdir)


def relink_last(mdir: Path) -> None:
    """``last.ckpt`` put back as the link to the newest ``epochNNN.ckpt`` where it is missing or points
    at nothing: Lightning removes the link and the previous epoch's file before it links the new one,
    and a training killed in between left a whole checkpoint that ``--resume`` said was not there."""
    last = mdir / LAST_CHECKPOINT
    if last.is_file() or not mdir.is_dir():
        return
    epochs = sorted(mdir.glob("epoch[0-9][0-9][0-9]*.ckpt"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if epochs:
        last.unlink(missing_ok=True)  # a link to a file no longer there
        try:
            last.symlink_to(epochs[-1].name)
        except FileExistsError:  # another task of the job relinked it meanwhile
            pass


def fit_vade(hp: dict[str, Any], input_path: Path, mdir: Path, cfg: Config, resume: bool = False,
             callbacks: list | None = None, rows: np.ndarray | None = None) -> tuple[VaDEModule, pl.Trainer, float]:
    """Fit a :class:`VaDEModule` to the rows of ``input_path`` (an .npy; only ``rows`` of it when
    given): checkpoints and logs in ``mdir``."""
    pl.seed_everything(hp["seed"], workers=True, verbose=False)
    last = mdir / LAST_CHECKPOINT
    if resume:
        relink_last(mdir)
    module = VaDEModule(**hp)
    data = CubeDataModule(input_path, hp["batch_size"], hp["seed"], rows=rows, workers=cfg.train.loader_processes())
    loggers = loss_loggers(mdir)
    # keep the newest epoch's checkpoint (monitor=None, top-1) and last.ckpt linking to it
    ckpt = ModelCheckpoint(dirpath=str(mdir), filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                           save_top_k=1, save_last="link", every_n_epochs=1, save_on_train_epoch_end=True,
                           enable_version_counter=False)
    t0 = time.perf_counter()
    with quiet_lightning():
        trainer = pl.Trainer(**with_bars(fit_kwargs(dict(
            max_epochs=hp["epochs"], **device_kwargs(cfg),
            logger=loggers, callbacks=[ckpt] + list(callbacks or []), default_root_dir=str(mdir),
            gradient_clip_val=hp["grad_clip"] or None, deterministic=cfg.train.accelerator == "cpu",
            use_distributed_sampler=False, enable_model_summary=False,
            log_every_n_steps=1, num_sanity_val_steps=0,
        ))))
        with spawned_workers(trainer, mdir / "spawn"), ctrl_c_raised():
            # a form model killed before its MLP core started resumes the core from its start
            trainer.fit(module, datamodule=data,
                        ckpt_path=resumed_from(last, "the training", hp["epochs"]) if resume else None)
    return module, trainer, time.perf_counter() - t0
