"""``torch.save`` failures said as what they are (torch only: the model files' readers do not import Lightning)."""

from __future__ import annotations

import errno
from contextlib import contextmanager
from pathlib import Path

__all__ = ["written_by_torch"]


@contextmanager
def written_by_torch(path: str | Path):
    """Around a ``torch.save`` to ``path``: its write failing (a full disk) is torch's RuntimeError
    ("[enforce fail at inline_container.cc] unexpected pos"), a traceback on the command line; an
    OSError naming the file here, which the command line says in one line."""
    try:
        yield
    except RuntimeError as exc:
        if "inline_container" not in str(exc) and "PytorchStreamWriter" not in str(exc):
            raise
        raise OSError(errno.EIO, "the write failed (a full disk?)", str(path)) from None
