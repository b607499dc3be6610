"""The ``morphospace`` command line: one sub-command per stage, and ``run`` for all.

User mistakes print one line and exit with status 2; ``--quiet`` silences progress
bars; every stage run on a run directory appends to its ``log.txt``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from . import __version__
from .config import Config, apply_overrides, load_config
from .errors import UserError
from .progress import set_quiet
from .run import RunDir, release_locks

log = logging.getLogger("morphospace")

EPILOG = """\
examples:
  morphospace run                                  # the whole pipeline on the built-in synthetic survey
  morphospace run --data ../shared/data/sdss-gz1 --out runs/gz1
  morphospace synth --n 2000 --seed 0 --out mock
  morphospace ingest ../shared/data/sdss-gz1 --out runs/gz1 --workers 2
  morphospace export runs/gz1 --out results.fits

Every stage that takes RUN reads what earlier stages wrote there, so any stage can
be re-run alone. Configuration: --config FILE (TOML), then --set section.key=value.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"morphospace: error: {message} (see --help)\n")


def _common(p: argparse.ArgumentParser, config: bool = True) -> None:
    if config:
        p.add_argument("--config", metavar="FILE", help="TOML configuration file")
        p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                       help="override one configuration key, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def _stage(sub, name: str, help_: str, example: str, run_arg: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if run_arg:
        p.add_argument("run", metavar="RUN", help="the run directory")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``morphospace`` argument parser: one sub-command per stage, and ``run`` for all.

    Returns
    -------
    argparse.ArgumentParser
        Its usage errors print one line and exit with status 2.
    """
    parser = _Parser(prog="morphospace", description="Unsupervised galaxy morphology: cluster, compare, generate, report.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"morphospace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="STAGE", parser_class=_Parser)

    p = _stage(sub, "run", "run every stage in order, from a config", "morphospace run --data ../shared/data/sdss-gz1 --out runs/gz1", run_arg=False)
    p.add_argument("--data", metavar="PATH", help="survey to read (default: the built-in synthetic survey)")
    p.add_argument("--out", metavar="RUN", default="runs/default", help="run directory (default: runs/default)")
    p.add_argument("--model", choices=["vade", "pca"], help="representation learner (default from config: vade)")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--seed", type=int, help="random seed of training and clustering")
    p.add_argument("--workers", type=int, help="ingest worker processes")
    _common(p)

    p = _stage(sub, "synth", "render the built-in synthetic survey (GalSim)", "morphospace synth --n 2000 --seed 0 --out mock", run_arg=False)
    p.add_argument("--n", type=int, default=2000, help="number of galaxies (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (images/ + catalogue.csv)")
    p.add_argument("--size", type=int, help="frame side in pixels")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    _common(p, config=False)

    p = _stage(sub, "ingest", "read a survey into a run: image cube + catalogue with quality flags",
               "morphospace ingest ../shared/data/sdss-gz1 --out runs/gz1 --workers 2", run_arg=False)
    p.add_argument("data", metavar="DATA", help="survey folder or Galaxy10 .h5 file")
    p.add_argument("--out", metavar="RUN", required=True, help="run directory")
    p.add_argument("--layout", help="force a layout: folder, sdss-gz1, kaggle-gz2, galaxy10, fits, synthetic")
    p.add_argument("--catalogue", metavar="CSV", help="catalogue CSV for a folder of images")
    p.add_argument("--id-column", help="catalogue id column")
    p.add_argument("--file-column", help="catalogue file column")
    p.add_argument("--workers", type=int, help="worker processes")
    p.add_argument("--preset", choices=["default", "astrovader"], help="preprocessing preset")
    p.add_argument("--size", type=int, help="output image side (64 or 128)")
    p.add_argument("--colour", choices=["rgb", "grey"], help="3-band colour or grey")
    p.add_argument("--strict", action="store_true", help="turn every quality flag into an error")
    _common(p)

    p = _stage(sub, "train", "train the representation model (VaDE) of a run", "morphospace train runs/gz1 --epochs 30")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--devices", type=int, help="devices per node (e.g. GPUs)")
    p.add_argument("--num-nodes", type=int, help="nodes (multi-node DDP, e.g. under SLURM)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    p.add_argument("--accelerator", help="cpu, gpu or auto")
    p.add_argument("--precision", help="e.g. 32-true, bf16-mixed, 16-mixed")
    _common(p)

    p = _stage(sub, "embed", "per-galaxy embeddings (pixel PCA baseline + the model's latent space)", "morphospace embed runs/gz1")
    _common(p)
    p = _stage(sub, "reduce", "PCA / LDA / t-SNE / UMAP of an embedding", "morphospace reduce runs/gz1 --embedding vade")
    p.add_argument("--embedding", help="embedding to reduce (default: the run's primary one)")
    _common(p)
    p = _stage(sub, "cluster", "K-Means / DBSCAN / HDBSCAN / GMM on every representation", "morphospace cluster runs/gz1")
    _common(p)
    p = _stage(sub, "compare", "ARI / AMI / ... of every clustering against every other and the labels, and the nuisance audit", "morphospace compare runs/gz1")
    _common(p)
    p = _stage(sub, "generate", "sample synthetic galaxies from one mixture component", "morphospace generate runs/gz1 --component 2 --n 64 --out gen")
    p.add_argument("--component", type=int, required=True, help="mixture component k")
    p.add_argument("--n", type=int, default=64, help="number of galaxies (default 64)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (PNG and FITS)")
    p.add_argument("--temperature", type=float, default=0.5, help="variance scale t of N(mu_k, t var_k) (default 0.5)")
    p.add_argument("--reject-below", type=float, help="keep only samples with q(k|z) above this")
    p.add_argument("--seed", type=int, default=0)
    _common(p)
    p = _stage(sub, "report", "write RUN/report.html (self-contained, with the explorer)", "morphospace report runs/gz1")
    _common(p)
    p = _stage(sub, "export", "write the results catalogue (.csv, .parquet or .fits)", "morphospace export runs/gz1 --out results.fits")
    p.add_argument("--out", metavar="FILE", required=True)
    _common(p, config=False)

    p = _stage(sub, "similar", "the galaxies most like one galaxy, from an embedding's nearest-neighbour index",
               "morphospace similar runs/gz1 --id 587722981736120347 --k 10")
    p.add_argument("--id", required=True, dest="galaxy_id", help="the galaxy's id (the catalogue's id column)")
    p.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--embedding", default=None, help="which embedding (default: the run's primary one)")
    _common(p, config=False)

    p = _stage(sub, "study", "the CNN feature study: fine-tune, features, reductions, clusterings, comparisons, report",
               "morphospace study --data ../shared/data/sdss-gz1 --backbone efficientnet-lite0 --labels morph3", run_arg=False)
    p.add_argument("--data", metavar="PATH", help="survey (default: the built-in synthetic survey)")
    p.add_argument("--out", metavar="RUN", default="runs/study")
    p.add_argument("--backbone", help="efficientnet-lite0 (default), resnet18, resnet34, small, vade (the VaDE encoder) or ssl (the self-supervised form embedding)")
    p.add_argument("--labels", help="catalogue label column to fine-tune on")
    p.add_argument("--mode", choices=["finetune", "frozen"])
    p.add_argument("--epochs", type=int)
    _common(p)

    p = _stage(sub, "import-astrovader", "build the published AstroVaDEr model from its Keras weights",
               "morphospace import-astrovader ../shared/peers/astrovader/saved_weights.h5 --out runs/astrovader", run_arg=False)
    p.add_argument("weights", metavar="H5", help="the published saved_weights.h5")
    p.add_argument("--out", metavar="RUN", required=True)
    _common(p)
    return parser


def _setup_logging(quiet: bool, run: RunDir | None) -> None:
    root = logging.getLogger("morphospace")
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(lambda record: not getattr(record, "banner", False))
    root.addHandler(console)
    if run is not None:
        fh = logging.FileHandler(run.log)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(fh)
    root.propagate = False


def _config_for(args, run: RunDir | None) -> Config:
    """Config of a stage: the run's saved config, then --config, then --set and options."""
    path = getattr(args, "config", None)
    if path:
        cfg = load_config(path)
    elif run is not None and run.config.exists():
        cfg = load_config(run.config)
    else:
        cfg = Config()
    return apply_overrides(cfg, getattr(args, "overrides", []) or [])


def _set(cfg: Config, **dotted) -> Config:
    values = {k.replace("__", "."): v for k, v in dotted.items() if v is not None}
    return apply_overrides(cfg, values) if values else cfg


def main(argv: list[str] | None = None) -> int:
    """Run the command line (the ``morphospace`` entry point).

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success; 2 without a sub-command (the help is printed), on a
        :class:`UserError` or when the file system refuses (each printed as one line);
        130 on Ctrl-C. Usage errors exit with status 2 from the parser itself.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    set_quiet(args.quiet)
    try:
        with _quiet_warnings(args.quiet):
            return _dispatch(args) or 0
    except UserError as exc:
        print(f"morphospace: error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the file system said no: a full disk, a read-only folder, a path that is a file
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"morphospace: error: cannot use{printable(where)}: {printable(exc.strerror or str(exc))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("morphospace: interrupted", file=sys.stderr)
        return 130
    finally:
        release_locks()


def printable(text: str) -> str:
    """``text`` with control characters (newlines, terminal escape codes) shown escaped, so a
    user-supplied string can neither break the one-line error nor drive the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class _quiet_warnings:
    """Under --quiet, Python warnings from libraries (e.g. Pillow's DecompressionBombWarning) stay
    off stderr; they are still written to the run's log."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        import warnings

        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        self.saved = None
        if self.quiet:
            logging.captureWarnings(True)  # to the `py.warnings` logger, which writes the run's log only
            pw = logging.getLogger("py.warnings")
            self.saved = (pw.handlers[:], pw.propagate)
            files = [h for h in logging.getLogger("morphospace").handlers if isinstance(h, logging.FileHandler)]
            pw.handlers = files or [logging.NullHandler()]
            pw.propagate = False
        return self

    def __exit__(self, *exc):
        logging.captureWarnings(False)
        if self.saved is not None:
            pw = logging.getLogger("py.warnings")
            pw.handlers, pw.propagate = self.saved
        self.catch.__exit__(*exc)


def _check_out(out: str | None, what: str = "--out") -> Path:
    if out is None or not str(out).strip():
        raise UserError(f"{what} must name a folder, got an empty path")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {printable(str(path))} is a file, not a folder: choose a folder for the run")
    return path


def _new_run(args, out: str) -> tuple[RunDir, Config]:
    """Create the run directory of a stage that starts a run, with its log and config."""
    _check_out(out)
    run = RunDir(out, create=True)
    _setup_logging(args.quiet, run)
    return run, _config_for(args, None)


def _dispatch(args) -> int | None:
    from . import pipeline

    cmd = args.command
    if cmd == "synth":
        _setup_logging(args.quiet, None)
        if args.n < 1:
            raise UserError("--n must be at least 1")
        out = pipeline.stage_synth(Path(args.out), args.n, args.seed, args.workers, args.size)
        print(f"synthetic survey: {out}")
        return 0
    if cmd == "run":
        run, cfg = _new_run(args, args.out)
        run.acquire_lock()
        cfg = _set(cfg, data__path=args.data, model__kind=args.model, train__epochs=args.epochs,
                   train__seed=args.seed, ingest__workers=args.workers)
        if args.seed is not None:
            cfg = _set(cfg, cluster__seed=args.seed)
        report = pipeline.run_all(run, cfg)
        print(f"report: {Path(report).resolve()}")
        return 0
    if cmd == "ingest":
        run, cfg = _new_run(args, args.out)
        run.acquire_lock()
        cfg = _set(cfg, data__path=str(args.data), data__layout=args.layout, data__catalogue=args.catalogue,
                   data__id_column=args.id_column, data__file_column=args.file_column,
                   ingest__workers=args.workers, preprocess__preset=args.preset, preprocess__size=args.size,
                   preprocess__colour=args.colour, ingest__strict=True if args.strict else None)
        pipeline.save_config(run, cfg)
        summary = pipeline.stage_ingest(run, cfg)
        print(f"ingested {summary['n_in_cube']} of {summary['n_records']} galaxies into {run.path}")
        return 0
    if cmd == "study":
        run, cfg = _new_run(args, args.out)
        run.acquire_lock()
        cfg = _set(cfg, data__path=args.data, study__backbone=args.backbone, study__labels=args.labels,
                   study__mode=args.mode, study__epochs=args.epochs)
        report = pipeline.run_study(run, cfg)
        print(f"report: {Path(report).resolve()}")
        return 0
    if cmd == "import-astrovader":
        run, cfg = _new_run(args, args.out)
        run.acquire_lock()
        pipeline.stage_import_astrovader(run, cfg, Path(args.weights))
        print(f"imported the published AstroVaDEr model into {run.path}")
        return 0

    run = RunDir(args.run)
    if cmd not in ("export",):  # export only reads the run
        run.acquire_lock()
    _setup_logging(args.quiet, run)
    if cmd == "similar":
        from .analysis.similar import similar_run

        if args.k < 1:
            raise UserError(f"--k must be at least 1, got {args.k}")
        table, gallery = similar_run(run, args.galaxy_id, args.embedding or pipeline.primary_embedding(run, None), args.k)
        print(table.to_string(index=False))
        print(f"gallery: {gallery}")
        return 0
    if cmd == "export":
        from .export import export

        out = export(run, args.out)
        print(f"results catalogue: {out}")
        return 0
    cfg = _config_for(args, run)
    if cmd == "train":
        cfg = _set(cfg, train__epochs=args.epochs, train__seed=args.seed, train__devices=args.devices,
                   train__num_nodes=args.num_nodes, train__strategy=args.strategy,
                   train__accelerator=args.accelerator, train__precision=args.precision)
        if cfg.model.kind == "vade":
            from .vade.hparams import check_against_cube

            check_against_cube(cfg, run.read_cube())  # before the config is saved
        pipeline.save_config(run, cfg)
        pipeline.stage_train(run, cfg, resume=args.resume)
    elif cmd == "embed":
        pipeline.stage_embed(run, cfg)
    elif cmd == "reduce":
        pipeline.stage_reduce(run, cfg, embedding=args.embedding)
    elif cmd == "cluster":
        pipeline.stage_cluster(run, cfg)
    elif cmd == "compare":
        pipeline.stage_compare(run, cfg)
    elif cmd == "generate":
        if not (math.isfinite(args.temperature) and args.temperature > 0):
            raise UserError(f"--temperature must be a positive number, got {args.temperature}")
        _check_out(args.out)
        out = pipeline.stage_generate(run, cfg, args.component, args.n, Path(args.out), args.temperature,
                                      args.reject_below, args.seed)
        print(f"generated galaxies: {out}")
    elif cmd == "report":
        report = pipeline.stage_report(run, cfg)
        print(f"report: {Path(report).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
