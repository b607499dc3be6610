"""``morphospace similar RUN --id ID``: the galaxies most like one galaxy of a run."""

from __future__ import annotations

from ..errors import UserError
from .options import common, stage

NAME = "similar"


def add_parser(sub) -> None:
    """Add the ``similar`` sub-command to ``sub``."""
    p = stage(sub, NAME, "the galaxies most like one galaxy, from an embedding's nearest-neighbour index",
              "morphospace similar runs/gz1 --id 587722981736120347 --k 10")
    p.add_argument("--id", required=True, dest="galaxy_id", help="the galaxy's id (the catalogue's id column)")
    p.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--embedding", default=None, help="which embedding (default: the run's primary one)")
    common(p, config=False)


def run(args, run) -> int:
    """Print the neighbours of ``args.galaxy_id`` and the gallery's path."""
    from ..analysis.similar import similar_run
    from ..pipeline import primary_embedding

    if args.k < 1:
        raise UserError(f"--k must be at least 1, got {args.k}")
    table, gallery = similar_run(run, args.galaxy_id, args.embedding or primary_embedding(run, None), args.k)
    print(table.to_string(index=False))
    print(f"gallery: {gallery}")
    return 0
