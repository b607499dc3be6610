"""A view bank being filled on disk, block by block, kept across a kill so that ``--resume`` goes on.

The bank is the longest part of a form training (about 60% of it on a CPU, 77 kB a galaxy: 77 GB at
10^6), and its blocks are deterministic (a nuisance view depends on the seed, the view and the
block's first row: :mod:`morphospace.ssl.bank`). A training killed while it filled the bank left a
temporary file that the run's next writer removed, and ``train --resume`` said "nothing to resume":
a requeued job started over. Now the bank fills ``view_bank.filling.npy`` beside a note of how many
blocks are done (written atomically at most every :data:`NOTE_EVERY` seconds, after the map is
flushed); a resume whose key (the settings the training began with, the bank's shape) matches the
note fills only the blocks after them. Through Lightning (GPUs, several processes) every process
reads the note, the blocks left go in rounds (:data:`~morphospace.ssl.bank.ROUNDS`,
:data:`~morphospace.ssl.bank.ROUND_BLOCKS`), and the first process alone writes the file and
notes each round once it has gathered it. A plain ``train`` clears the model's folder, and the
file with it.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..run.writes import new_npy_map, write_json
from .augment import NuisanceAugment
from .bank import BLOCK, view_bank
from .embedder import TrunkTaps

__all__ = ["filled_bank", "discard_left", "FillingBank", "FILLING", "FILLING_NOTE", "NOTE_EVERY"]

log = logging.getLogger("morphospace")

FILLING = "view_bank.filling.npy"
FILLING_NOTE = "view_bank.filling.json"
NOTE_EVERY = 10.0  # seconds between notes: a kill loses at most this much of the bank's work
# the errors of a file system that refuses to hold more (a full disk, a quota, a file-size limit): a
# bank kept would only fill it more; any other OSError (a closed output pipe: a `| tee` a scheduler
# killed, EPIPE from the progress bar; a read error of the cube) keeps the blocks done
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class FillingBank:
    """The view bank of ``folder`` being filled: its first ``blocks_done`` blocks are whole.

    Parameters
    ----------
    folder : Path
        The SSL head's folder (``models/vade/ssl``).
    shape : tuple
        The bank's shape (V, N, F).
    block : int
        Galaxies a block holds (the note counts blocks).
    key : dict
        What the bank is made from that its shape does not say (the settings the training began
        with); a note of another key is not gone on with.
    resume : bool
        Go on with a bank a killed training left (else any is removed).
    writer : bool
        This process writes the bank and its note (one writer); another only reads how many
        blocks are done, and leaves the files alone.
    """

    def __init__(self, folder: Path, shape: tuple, block: int, key: dict, resume: bool, writer: bool = True):
        self.path, self.note = Path(folder) / FILLING, Path(folder) / FILLING_NOTE
        self.shape, self.block, self.key = tuple(int(s) for s in shape), int(block), key
        self.n_blocks = -(-self.shape[1] // self.block)
        self.writer = writer
        self.blocks_done = self._left_done() if resume else 0
        if not self.blocks_done and writer:
            self.discard()
        self._noted = time.monotonic()
        self.bank: np.ndarray | None = None

    def _left_done(self) -> int:
        """Blocks a killed training's bank holds whole, where it is this training's; else 0."""
        try:
            note = json.loads(self.note.read_text())
            ours = note.get("key") == self.key and tuple(note.get("shape", ())) == self.shape
            done = min(int(note["blocks"]), self.n_blocks) if ours else 0
            if done and tuple(np.load(self.path, mmap_mode="r").shape) != self.shape:
                done = 0
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 0
        return max(done, 0)

    def open(self) -> np.ndarray:
        """The bank's map, for writing: the one left where blocks are done, else a new file."""
        if self.blocks_done:
            self.bank = np.load(self.path, mmap_mode="r+")
        else:
            self.bank = new_npy_map(self.path, np.float32, self.shape)
            # noted at once: a kill before the first timed note leaves a bank a resume knows (and goes on
            # with, from its first block), not a file as large as the bank that nothing removes
            self.done(0, now=True)
        return self.bank

    def done(self, blocks: int, now: bool = False) -> None:
        """``blocks`` blocks are filled: noted (after the map is flushed) where :data:`NOTE_EVERY`
        seconds have passed since the last note, or ``now``."""
        if self.bank is None or not (now or time.monotonic() - self._noted >= NOTE_EVERY):
            return
        self.bank.flush()
        write_json(self.note, {"blocks": int(blocks), "shape": list(self.shape), "key": self.key})
        self._noted = time.monotonic()

    def finish(self, final: Path) -> None:
        """The whole bank renamed to ``final``; the note removed."""
        (self.bank if self.bank is not None else self.open()).flush()  # opened: every block was done before
        self.bank = None
        self.path.replace(final)
        self.note.unlink(missing_ok=True)

    def keep(self, blocks: int) -> None:
        """Stopped (a Ctrl-C, a SIGTERM, an error): the blocks done noted, for a resume to go on with."""
        if not self.writer or (self.bank is None and not self.blocks_done):
            return
        try:  # (a resume through Lightning stopped before its first round opened the bank notes nothing:
            self.done(blocks, now=True)  # its file and note stand as the last stop left them)
        except OSError:  # the note cannot be written: nothing to go on from
            self.discard()
            return
        size = self.path.stat().st_size
        log.warning("view bank kept: %d of %d blocks done (%s, %s); `morphospace train RUN --resume` goes on from "
                    "there, a plain `train` (or `run`) removes it", blocks, self.n_blocks,
                    f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB", self.path)

    def discard(self) -> None:
        """The bank and its note removed (a full disk: a kept bank would only fill it more), by the writer."""
        self.bank = None
        if self.writer:
            discard_left(self.path.parent)


def discard_left(folder: Path) -> None:
    """A bank a stopped training left in ``folder`` removed: the bank was made otherwise (through
    Lightning, which starts it afresh) or read whole, and nothing else would remove it."""
    (Path(folder) / FILLING).unlink(missing_ok=True)
    (Path(folder) / FILLING_NOTE).unlink(missing_ok=True)


def filled_bank(trunk: TrunkTaps, cube, out_dir: Path, shape: tuple, key: dict, aug_views: int, seed: int,
                 augment: NuisanceAugment, resume: bool, trainer_kwargs: dict | None = None,
                 loader_workers: int = 0) -> np.ndarray:
    """The view bank filled into ``out_dir/view_bank.npy`` (memory-mapped), going on from the blocks
    a killed training left where ``resume`` and its ``key`` are this one's; stopped, the blocks done
    are kept for a resume (a full disk: removed). With ``trainer_kwargs`` that go through Lightning
    (:func:`~morphospace.nets.predict.uses_trainer`) every process of the job calls it, the first
    writes the bank, and every one returns it once it is in place."""
    from ..nets.predict import barrier, uses_trainer
    from ..run.lock import launched_as_later_rank

    lightning = uses_trainer(trainer_kwargs)
    writer = not (lightning and launched_as_later_rank())
    filling = FillingBank(out_dir, shape, BLOCK, key, resume, writer=writer)
    if filling.blocks_done and writer:
        log.info("resuming the view bank: %d of %d blocks done", filling.blocks_done, filling.n_blocks)
    done = [filling.blocks_done]

    def noted(blocks: int) -> None:
        done[0] = blocks
        filling.done(blocks, now=lightning)  # a round through Lightning is long: each is noted

    try:
        if filling.blocks_done < filling.n_blocks:
            # through Lightning the file is made by the first process, once every process has passed
            # the first round's shared prediction (and so once the first has cleared the model folder)
            out = filling.open if lightning else filling.open()  # a full disk refuses the reservation: an OSError
            view_bank(trunk, cube, aug_views, seed, augment=augment, out=out, first_block=filling.blocks_done,
                      on_block=noted, trainer_kwargs=trainer_kwargs, work_dir=out_dir / "bank_shares",
                      loader_workers=loader_workers, first_only=True)  # into the filling's map (its own: finish flushes it)
    except OSError as exc:  # a full disk: the bank would only fill it more
        if exc.errno in DISK_FULL or (filling.bank is None and not filling.blocks_done):
            filling.discard()  # a full disk, or the new bank's reservation refused
        else:  # a closed output pipe, a read error: the work done stays for --resume
            filling.keep(done[0])
        raise
    except BaseException:  # Ctrl-C, SIGTERM (a requeued job), an error: the work done stays for --resume
        filling.keep(done[0])
        raise
    if writer:
        filling.finish(out_dir / "view_bank.npy")
    if lightning:
        barrier()  # the bank is in place before any process reads it
    return np.load(out_dir / "view_bank.npy", mmap_mode="r")
