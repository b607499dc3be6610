"""``morphospace similar RUN --id ID | --image FILE``: the galaxies most like one galaxy, or like a new image."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError
from .options import common, printable, stage

log = logging.getLogger("morphospace")

NAME = "similar"


def add_parser(sub) -> None:
    """Add the ``similar`` sub-command to ``sub``."""
    p = stage(sub, NAME, "the galaxies most like one galaxy of the run, or like a new image, from an "
              "embedding's nearest-neighbour index",
              "morphospace similar runs/gz1 --id 587722981736120347 --k 10\n"
              "  morphospace similar runs/gz1 --image my_galaxy.jpg --embedding form")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="galaxy_id", help="a galaxy of the run (the catalogue's id column)")
    which.add_argument("--image", metavar="FILE",
                       help="a new image (JPEG/PNG/TIFF/FITS), preprocessed and embedded like the run's galaxies "
                            "(embeddings form, vade or pixels_pca)")
    p.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--embedding", default=None, help="which embedding (default: the run's primary one)")
    common(p, config=False)


def run(args, run) -> int:
    """Print the neighbours of ``args.galaxy_id`` (or of ``args.image``) and the gallery's path."""
    from ..analysis.similar import similar_run, similar_to_image
    from ..pipeline import embed_image, primary_embedding

    if args.k < 1:
        raise UserError(f"--k must be at least 1, got {args.k}")
    embedding = args.embedding or primary_embedding(run, None)
    if embedding in ("form", "vade"):
        from ..vade.io import embeddings_outdated

        if (why := embeddings_outdated(run)) is not None:  # the neighbours of the model before, given as the run's
            log.warning("the '%s' embedding searched is not that of the run's model: %s (run `morphospace embed %s`, "
                        "then this again)", embedding, why, run.path)
    if args.image is not None:
        row, vector = embed_image(run, Path(args.image), embedding)
        table, gallery = similar_to_image(run, vector, row, embedding, args.k, query=printable(Path(args.image).name),
                                          source=str(Path(args.image).resolve()))
    else:
        table, gallery = similar_run(run, args.galaxy_id, embedding, args.k)
    print(table.to_string(index=False))
    print(f"gallery: {gallery}")
    return 0
