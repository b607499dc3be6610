"""A job of several processes that each run the whole command: those Lightning's own launcher
starts from it (``morphospace train RUN --devices 2``: the command again, as rank 1) and those
``srun`` or ``torchrun`` start. Two things left them running:

- **SIGTERM** (``kill``, a scheduler's time limit): Lightning's handler forwards the signal to the
  processes it started, then broadcasts from inside the handler, a collective that the others,
  elsewhere in their step, never join. A two-process training on a CPU sent one ``kill`` was still
  running ten minutes later, both processes waiting. Once a trainer of several processes has
  installed its handler, :class:`StopOnSigterm` puts one without collectives in its place: each
  process raises :class:`~morphospace.errors.Terminated` (status 143; the last epoch's checkpoint is
  on disk for ``--resume``), the trainer that started the others first ends them (SIGKILL: one
  waiting inside a collective would not see a softer signal; those a command's first trainer
  started end with the command's process). The others learn of a stop from its note in the run
  (:mod:`morphospace.run.job`) or from their closed connection.
- **the first process killed outright** (``kill -9``, the out-of-memory killer): the processes it
  had started waited for it in torch's rendezvous until its timeout, half an hour. They now end
  with it (:func:`morphospace.run.job.follow_launcher`; Linux's parent-death signal).
"""

from __future__ import annotations

import signal
import threading
from contextlib import suppress

import lightning.pytorch as pl

from ..errors import Terminated
from .spawn import spawns

__all__ = ["StopOnSigterm", "with_job_signals"]


class StopOnSigterm(pl.Callback):
    """In a trainer of several processes started otherwise than by spawning: SIGTERM ends the
    processes this trainer started, if any, and raises :class:`Terminated`, with no collective in
    the handler.

    Lightning installs its own handler when the trainer starts its stage (after ``on_fit_start``)
    and puts the earlier one back at teardown; this replaces it at the first hook after that."""

    def _take_over(self, trainer) -> None:
        if trainer.world_size < 2 or spawns(trainer) or threading.current_thread() is not threading.main_thread():
            return  # one process: Lightning's own ends the epoch cleanly; spawned workers end with their parent
        started = list(getattr(trainer.strategy.launcher, "procs", None) or [])

        def stop(_signum, _frame):
            for proc in started:
                with suppress(OSError):
                    proc.kill()
            raise Terminated()

        signal.signal(signal.SIGTERM, stop)

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._take_over(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._take_over(trainer)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._take_over(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.training:  # within a fit, the train start took over already
            self._take_over(trainer)


def with_job_signals(trainer_kwargs: dict) -> dict:
    """``pl.Trainer`` keyword arguments with :class:`StopOnSigterm` among the callbacks."""
    return dict(trainer_kwargs, callbacks=[*(trainer_kwargs.get("callbacks") or []), StopOnSigterm()])
