"""Where morphospace keeps what it may reuse across runs: the built-in synthetic survey, and the
caches of the libraries it drives.

numba (through umap-learn and the pynndescent it imports) caches its compiled functions beside their source by
default, in the installed packages, and torch's inductor makes a folder in the temporary
directory on import: neither belongs there. :func:`route_library_caches`, called when
``morphospace`` is imported, sends both to :func:`cache_root` unless the user has set where
they go (``NUMBA_CACHE_DIR``, ``TORCHINDUCTOR_CACHE_DIR``). Framework-free: nothing here
imports numba or torch.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "route_library_caches"]


def cache_root() -> Path:
    """``$MORPHOSPACE_CACHE``, else ``$XDG_CACHE_HOME/morphospace``, else ``~/.cache/morphospace``.

    Returns
    -------
    Path
        Not created here.
    """
    if os.environ.get("MORPHOSPACE_CACHE"):
        return Path(os.environ["MORPHOSPACE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "morphospace"


def route_library_caches() -> None:
    """Point numba's and torch inductor's caches into :func:`cache_root` where the user has not set
    them (in this process's environment, before either library is imported)."""
    try:
        root = cache_root()
    except RuntimeError:  # no home directory to resolve: the libraries' own defaults stay
        return
    os.environ.setdefault("NUMBA_CACHE_DIR", str(root / "numba"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "torchinductor"))
