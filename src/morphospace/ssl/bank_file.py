"""A view bank being filled on disk, block by block, kept across a kill so that ``--resume`` goes on.

The bank is the longest part of a form training (about 60% of it on a CPU, 77 kB a galaxy: 77 GB at
10^6), and its blocks are deterministic (a nuisance view depends on the seed, the view and the
block's first row: :mod:`morphospace.ssl.bank`). A training killed while it filled the bank left a
temporary file that the run's next writer removed, and ``train --resume`` said "nothing to resume":
a requeued job started over. Now the bank fills ``view_bank.filling.npy`` beside a note of how many
blocks are done (written atomically at most every :data:`NOTE_EVERY` seconds, after the map is
flushed); a resume whose key (the settings the training began with, the bank's shape) matches the
note fills only the blocks after them. A plain ``train`` clears the model's folder, and the file
with it.
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
    """

    def __init__(self, folder: Path, shape: tuple, block: int, key: dict, resume: bool):
        self.path, self.note = Path(folder) / FILLING, Path(folder) / FILLING_NOTE
        self.shape, self.block, self.key = tuple(int(s) for s in shape), int(block), key
        self.n_blocks = -(-self.shape[1] // self.block)
        self.blocks_done = self._left_done() if resume else 0
        if not self.blocks_done:
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
        self.bank.flush()
        self.bank = None
        self.path.replace(final)
        self.note.unlink(missing_ok=True)

    def keep(self, blocks: int) -> None:
        """Stopped (a Ctrl-C, a SIGTERM, an error): the blocks done noted, for a resume to go on with."""
        if self.bank is None:
            return
        try:
            self.done(blocks, now=True)
        except OSError:  # the note cannot be written: nothing to go on from
            self.discard()
            return
        size = self.path.stat().st_size
        log.warning("view bank kept: %d of %d blocks done (%s, %s); `morphospace train RUN --resume` goes on from "
                    "there, a plain `train` (or `run`) removes it", blocks, self.n_blocks,
                    f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB", self.path)

    def discard(self) -> None:
        """The bank and its note removed (a full disk: a kept bank would only fill it more)."""
        self.bank = None
        discard_left(self.path.parent)


def discard_left(folder: Path) -> None:
    """A bank a stopped training left in ``folder`` removed: the bank was made otherwise (through
    Lightning, which starts it afresh) or read whole, and nothing else would remove it."""
    (Path(folder) / FILLING).unlink(missing_ok=True)
    (Path(folder) / FILLING_NOTE).unlink(missing_ok=True)


def filled_bank(trunk: TrunkTaps, cube, out_dir: Path, shape: tuple, key: dict, aug_views: int, seed: int,
                 augment: NuisanceAugment, resume: bool) -> np.ndarray:
    """The view bank filled by this process into ``out_dir/view_bank.npy`` (memory-mapped), going on
    from the blocks a killed training left where ``resume`` and its ``key`` are this one's; stopped,
    the blocks done are kept for a resume (a full disk: removed)."""
    filling = FillingBank(out_dir, shape, BLOCK, key, resume)
    if filling.blocks_done:
        log.info("resuming the view bank: %d of %d blocks done", filling.blocks_done, filling.n_blocks)
    done = [filling.blocks_done]

    def noted(blocks: int) -> None:
        done[0] = blocks
        filling.done(blocks)

    try:
        bank = filling.open()  # a full disk refuses its reservation: an OSError, the file removed below
        view_bank(trunk, cube, aug_views, seed, augment=augment, out=bank, first_block=filling.blocks_done,
                  on_block=noted)
        del bank
    except OSError as exc:  # a full disk: the bank would only fill it more
        if exc.errno in DISK_FULL or filling.bank is None:  # refused its reservation, or the note unwritten
            filling.discard()
        else:  # a closed output pipe, a read error: the work done stays for --resume
            filling.keep(done[0])
        raise
    except BaseException:  # Ctrl-C, SIGTERM (a requeued job), an error: the work done stays for --resume
        filling.keep(done[0])
        raise
    filling.finish(out_dir / "view_bank.npy")
    return np.load(out_dir / "view_bank.npy", mmap_mode="r")
