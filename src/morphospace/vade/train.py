"""Training the VaDE with Lightning: phases, guards, checkpoints, resume, multi-GPU.

:func:`train_run` trains a run's model from its configuration. The pieces: the
hyper-parameters and schedules (:mod:`.hparams`), the mixture initialisation (:mod:`.mixture`),
the Lightning module and loop (:mod:`.fitting`), and for the form-first VaDE its three
trainings (:mod:`.form_train`).

Phases
------
1. **Pretraining** (epochs ``[0, pretrain_epochs)``): a plain VAE (reconstruction + KL to
   N(0, I)); the mixture is not used.
2. **Mixture initialisation** (start of epoch ``pretrain_epochs``): every galaxy is encoded to
   ``z_mean``; with ``model.align_latent`` the latent axes are turned to the principal axes of
   ``z_mean`` (:meth:`VaDE.rotate_latent`: decoded images unchanged) so that a diagonal mixture
   fits the correlated VAE latent; if ``model.n_components = 0`` the number of components K is chosen from the data
   alone by the BIC of diagonal Gaussian mixtures for K in ``[model.k_min, model.k_max]``; then
   K-Means(K) and a diagonal GaussianMixture started at the K-Means centres, whose weights, means
   and variances are loaded into the prior (actually applied, unlike the published code). The
   optimiser state is reset.
3. **Joint training**: reconstruction + w * KL(q(z, c | x) || p(z, c)) (see
   :mod:`morphospace.vade.model`). ``default`` keeps w = 1; ``astrovader`` uses the published
   five 50-epoch cycles w = 0.3 (a^3 + 1), a ramping 0 -> 1 over 25 epochs then held 25.

After every joint epoch a guard looks at the mixture: a component with weight below
``model.min_weight`` or with no galaxy assigned during the epoch (empty), and one whose variance
reached the clamp (exploding), is re-initialised by splitting the most populated component
along its widest axis; all galaxies in one component (collapse) is reported. Each event is a
warning on the ``morphospace`` logger (which the command line also writes to ``RUN/log.txt``).

Reproducibility
---------------
All randomness of a training step (augmentation, reparameterisation noise) comes from a
generator seeded by ``(seed, global step, rank)``, and the data order from a
``DistributedSampler`` seeded by ``(seed, epoch)``, so a run is a pure function of its seed and
its checkpoint: ``train_run(..., resume=True)`` continues a killed run from
``RUN/models/vade/last.ckpt`` (written after every epoch, with the phase state and the RNG
states) and ends with the same weights and labels as an uninterrupted run (tested on CPU).

Multi-GPU and multi-node (SLURM)
--------------------------------
``train.devices``, ``train.num_nodes``, ``train.strategy`` (e.g. ``ddp``), ``train.precision``
and ``train.accelerator`` go to the Lightning ``Trainer``. Under SLURM, Lightning detects the
allocation (``SLURMEnvironment``) when the tasks are started by ``srun``, one task per device::

    #!/bin/bash
    #SBATCH --job-name=morphospace
    #SBATCH --nodes=2
    #SBATCH --ntasks-per-node=4          # = --devices
    #SBATCH --gpus-per-node=4
    #SBATCH --cpus-per-task=8
    #SBATCH --time=12:00:00
    #SBATCH --signal=SIGUSR1@120         # Lightning saves and requeues before the time limit
    #SBATCH --requeue
    RESUME=""
    [ -f runs/gz2/models/vade/last.ckpt ] && RESUME="--resume"
    srun morphospace train runs/gz2 --accelerator gpu --devices 4 --num-nodes 2 \\
         --strategy ddp --precision bf16-mixed $RESUME

The batch size is per device (the effective batch is ``batch_size * devices * num_nodes``).
Every rank runs :func:`train_run`; only rank 0 writes the final model, so a caller must stop
after training on the other ranks (``TrainResult.global_rank != 0``).
"""

from __future__ import annotations

import logging

from ..config import Config
from ..image.masking import model_input_path
from ..run import RunDir
from .completion import checkpoint_marks, finished_training
from .fitting import (TrainResult, check_resumable, fit_vade, prepare_model_dir, resume_checkpoint, training_rows,
                      write_training_summary)
from .hparams import check_against_cube
from .io import MODEL_FILE, save_model

__all__ = ["train_run"]

log = logging.getLogger("morphospace")


def train_run(run: RunDir, cfg: Config, resume: bool = False, callbacks: list | None = None) -> TrainResult:
    """Train the VaDE of a run; writes ``RUN/models/vade/`` (checkpoints, logs, ``model.pt``).

    Parameters
    ----------
    run : RunDir
        Must hold ``cube.npy``.
    cfg : Config
        ``model`` and ``train`` sections.
    resume : bool
        Continue from ``RUN/models/vade/last.ckpt`` (same configuration; ``train.epochs`` may
        be raised). Without it, any previous training of the run is cleared first.
    callbacks : list, optional
        Extra Lightning callbacks (tests use one to simulate a kill).

    Returns
    -------
    TrainResult
    """
    cube = run.read_cube()
    hp = check_against_cube(cfg, cube)
    if resume:
        check_resumable(run, hp, resume_checkpoint(hp), say=False)  # refused before the line below says done
        if (done := finished_training(run, hp)) is not None:
            log.info("%s", done.line)
            return _finished_result(run, cfg, done)
    if hp["preset"] == "form":
        from .form_train import train_form_run  # the form-first VaDE wraps fit_vade (imported when used)

        return train_form_run(run, cfg, hp, resume=resume, callbacks=callbacks)
    mdir = prepare_model_dir(run, cfg, hp, resume)
    rows = training_rows(len(cube), cfg)
    n_train = len(cube) if rows is None else len(rows)
    log.info("training the VaDE (%s preset) on %d galaxies%s: %d epochs (%d pretraining), %s x %d device(s) x %d node(s)",
             hp["preset"], n_train, "" if rows is None else f" (a random sample of the {len(cube)}: train.sample)",
             hp["epochs"], hp["pretrain_epochs"], cfg.train.accelerator, cfg.train.devices, cfg.train.num_nodes)
    # neighbours masked or not
    module, trainer, seconds = fit_vade(hp, model_input_path(run, hp), mdir, cfg, resume, callbacks, rows=rows)
    result = TrainResult(model_path=mdir / MODEL_FILE, global_rank=trainer.global_rank, epochs=hp["epochs"],
                         n_components=module.model.prior.n_components, events=module.events, seconds=seconds)
    if trainer.is_global_zero:
        # the summary first: a model saved is a training complete (completion.py), its summary written
        write_training_summary(mdir, module, hp, seconds, n_train, train_sample=None if rows is None else n_train)
        save_model(module.model, hp, mdir / MODEL_FILE, extra={"init": module.init_info, "events": module.events,
                                                               "checkpoints": checkpoint_marks(mdir, hp)})
    return result


def _finished_result(run: RunDir, cfg: Config, done) -> TrainResult:
    """What a resume of a complete training returns: its saved model, as its summary describes it. A
    form model's view bank, where a kill came between the model's save and its removal, is removed."""
    import json

    from lightning.pytorch.utilities import rank_zero_only

    from .io import model_dir

    mdir = model_dir(run)
    if done.hparams.get("preset") == "form" and not cfg.train.keep_view_bank and rank_zero_only.rank == 0:
        from .form_train import remove_view_bank

        remove_view_bank(mdir / "ssl" / "view_bank.npy")
    try:
        summary = json.loads((mdir / "training.json").read_text())
    except (OSError, ValueError):  # the summary is a description only
        summary = {}
    summary = summary if isinstance(summary, dict) else {}
    return TrainResult(model_path=mdir / MODEL_FILE, global_rank=rank_zero_only.rank, epochs=done.hparams["epochs"],
                       n_components=int(summary.get("n_components") or 0), events=list(summary.get("events") or []),
                       seconds=0.0)
