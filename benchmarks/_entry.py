"""How every benchmark script ends: a user's mistake (a run or survey that is not there, a damaged
file, a setting out of range) is one line and status 2, as on the command line; a bug keeps its
traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from morphospace.errors import UserError


def run(main: Callable[[], int | None]) -> None:
    """Call a script's ``main`` and exit with its status."""
    try:
        status = main()
    except (UserError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
