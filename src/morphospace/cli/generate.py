"""``morphospace generate RUN --cluster C | --component K --out DIR``: new galaxies drawn from the run's model."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InvalidArgument, UserError
from ..run import RunDir
from .options import check_out, common, printable, seed, stage

NAME = "generate"
OPTIONS = ("component", "cluster", "n", "temperature", "reject_below", "seed")  # the notebook's names of its options


def add_parser(sub) -> None:
    """Add the ``generate`` sub-command to ``sub``."""
    p = stage(sub, NAME, "sample synthetic galaxies from one of the run's clusters or mixture components",
              "morphospace generate runs/gz1 --cluster 2 --n 64 --out gen")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cluster", type=int, help="one of the run's own clusters, as the report and export number "
                       "them (its mixture components merged; drawn in proportion to their weights)")
    which.add_argument("--component", type=int, help="one mixture component k")
    p.add_argument("--n", type=int, default=64, help="number of galaxies, 1 to 100,000 (default 64)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (PNG and FITS)")
    p.add_argument("--temperature", type=float, default=0.5, help="variance scale t of N(mu_k, t var_k) (default 0.5)")
    p.add_argument("--reject-below", type=float, help="keep only samples whose posterior of the component (or of "
                   "the cluster: its components' summed) is at least this")
    p.add_argument("--seed", type=seed, default=0, help="random seed of the draw (default 0)")
    common(p, config="refused")  # no setting acts on a draw: said in one line, not listed


def refuse_settings(args) -> None:
    """A one-line error for ``--set`` or ``--config``: no setting acts on a draw (``--set
    train.seed=7`` drew what ``--seed 0`` draws, without a word)."""
    if getattr(args, "overrides", None) or getattr(args, "config", None):
        raise UserError("`morphospace generate` takes no settings (--set, --config): the run's trained model and "
                        "the options --n, --seed, --temperature and --reject-below make the draw")


def run(args, run: RunDir, cfg) -> int:
    """Draw ``args.n`` galaxies into ``args.out`` and print where they are."""
    from .. import pipeline

    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UserError(f"--temperature must be a positive number, got {args.temperature}")
    check_out_place(run, check_out(args.out, purpose="the galaxies"))
    if cfg.model.kind == "pca" and (note := run.pixel_pca_note()):
        raise UserError(f"{note}, to draw galaxies from")
    try:
        out = pipeline.stage_generate(run, cfg, args.component, args.n, Path(args.out), args.temperature,
                                      args.reject_below, args.seed, cluster=args.cluster)
    except (InvalidArgument, UserError) as exc:  # the notebook's parameter names, said as this command's options
        text = str(exc)
        option = text.split(" ", 1)[0]
        if option in OPTIONS:
            text = "--" + option.replace("_", "-") + text[len(option):]
        raise UserError(text) from None
    print(f"generated galaxies: {printable(str(out))}")
    return 0


def check_out_place(run: RunDir, out: Path) -> None:
    """A one-line error for a ``--out`` among the run's own files (its root, or a folder or file a
    stage writes): the galaxies went into the run's root beside its cube; in another run's (its
    root or stage folders); or where the run's survey keeps its images (its folder, or its
    ``images``), whose next ingest took them in as observed galaxies."""
    from ..data.ingest.readers import KAGGLE_IMAGES
    from ..run.places import check_run_place, is_run
    from ..run.provenance import survey_read
    from ..run.rundir import RUN_FILES, RUN_FOLDERS

    root, target = run.path.resolve(), out.resolve()
    instead = f"write the galaxies to a folder of their own (e.g. {printable(str(run.path / 'generated'))})"
    if target == root or (target.is_relative_to(root) and target.relative_to(root).parts[0] in RUN_FOLDERS | RUN_FILES):
        raise UserError(f"--out {printable(str(out))} is among the run's own files: {instead}")
    survey = survey_read(run)  # resolved by the ingest: the saved data.path is relative to where it was typed
    # the folders an ingest reads images from: the survey's own, its images/ and Kaggle's images_training_rev1
    if survey and (target == Path(survey) or (target.parent == Path(survey) and target.name in ("images", KAGGLE_IMAGES))):
        raise UserError(f"--out {printable(str(out))} is where the run's survey keeps its images "
                        f"({printable(survey)}): its next ingest would read the galaxies as observed ones; {instead}")
    if target.is_relative_to(root):
        return  # a folder of the user's own inside the run (a run may sit inside its survey's folder)
    if is_run(target):
        raise UserError(f"--out {printable(str(out))} is another run's folder: {instead}")
    check_run_place(out)
