"""The ``morphospace`` argument parser: the pipeline's stages here, other commands in modules of their own.

A command module (e.g. :mod:`.similar`) has ``NAME``, ``add_parser(sub)`` and ``run(args, run)``;
listing it in ``COMMANDS`` adds it to the parser and to the dispatch of :func:`morphospace.cli.main`.
"""

from __future__ import annotations

import argparse

from .. import __version__
from . import anomalies, classify, generate, similar
from .options import Parser, common, seed, stage

__all__ = ["build_parser", "COMMANDS", "EPILOG"]

# Commands that work on an existing run, each in its own module (stages of the pipeline are below).
COMMANDS = (similar, classify, anomalies)

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



def build_parser() -> argparse.ArgumentParser:
    """The ``morphospace`` argument parser: one sub-command per stage, and ``run`` for all.

    Returns
    -------
    argparse.ArgumentParser
        Its usage errors print one line and exit with status 2.
    """
    parser = Parser(prog="morphospace", description="Unsupervised galaxy morphology: cluster, compare, generate, report.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"morphospace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="STAGE", parser_class=Parser)

    p = stage(sub, "run", "run every stage in order, from a config", "morphospace run --data ../shared/data/sdss-gz1 --out runs/gz1", run_arg=False)
    p.add_argument("--data", metavar="PATH", help="survey to read (default: the built-in synthetic survey)")
    p.add_argument("--out", metavar="RUN", default="runs/default", help="run directory (default: runs/default)")
    p.add_argument("--model", choices=["vade", "pca"], help="representation learner (default from config: vade)")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--seed", type=seed, help="random seed of training and clustering")
    p.add_argument("--workers", type=int, help="ingest worker processes")
    common(p)

    p = stage(sub, "synth", "render the built-in synthetic survey (GalSim)", "morphospace synth --n 2000 --seed 0 --out mock", run_arg=False)
    p.add_argument("--n", type=int, default=2000, help="number of galaxies (default 2000)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (images/ + catalogue.csv)")
    p.add_argument("--size", type=int, help="frame side in pixels, 32 to 2048 (default 128)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    common(p, config=False)

    p = stage(sub, "ingest", "read a survey into a run: image cube + catalogue with quality flags",
               "morphospace ingest ../shared/data/sdss-gz1 --out runs/gz1 --workers 2", run_arg=False)
    p.add_argument("data", metavar="DATA", help="survey folder or Galaxy10 .h5 file")
    p.add_argument("--out", metavar="RUN", required=True, help="run directory")
    p.add_argument("--layout", help="force a layout: folder, sdss-gz1, kaggle-gz2, galaxy10, fits, synthetic "
                   "(default auto: recognised from the files)")
    p.add_argument("--catalogue", metavar="CSV", help="catalogue CSV for a folder of images")
    p.add_argument("--id-column", help="catalogue id column")
    p.add_argument("--file-column", help="catalogue file column")
    p.add_argument("--workers", type=int, help="worker processes (default 2: ingest.workers)")
    p.add_argument("--preset", choices=["default", "astrovader"], help="preprocessing preset")
    p.add_argument("--size", type=int, help="output image side in pixels, 16 to 1024 (default 64; 128 for the "
                                            "astrovader preset)")
    p.add_argument("--colour", choices=["rgb", "grey"], help="3-band colour or grey (default rgb; grey for the "
                   "astrovader preset)")
    p.add_argument("--strict", action="store_true", help="turn every quality flag into an error")
    p.add_argument("--mask-neighbours", action="store_true",
                   help="also build the neighbour-masked cube the model reads (before a distributed train)")
    common(p, example="ingest.workers=4")

    p = stage(sub, "train", "train the representation model (VaDE) of a run", "morphospace train runs/gz1 --epochs 30")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--epochs", type=int, help="training epochs (train.epochs)")
    p.add_argument("--seed", type=seed, help="random seed of the training (train.seed)")
    _devices(p)
    common(p)

    p = stage(sub, "embed", "per-galaxy embeddings (pixel PCA baseline + the model's latent space)",
              "morphospace embed runs/gz1 --accelerator gpu --devices 4 --strategy ddp")
    _devices(p)
    common(p, example="model.pca_components=16")
    p = stage(sub, "reduce", "PCA / LDA / t-SNE / UMAP of an embedding", "morphospace reduce runs/gz1 --embedding vade")
    p.add_argument("--embedding", help="embedding to reduce (default: the run's primary one)")
    common(p, example="cluster.tsne_perplexity=50")
    p = stage(sub, "cluster", "K-Means / DBSCAN / HDBSCAN / GMM on every representation", "morphospace cluster runs/gz1")
    common(p, example="cluster.kmeans_k=[3,4]")
    p = stage(sub, "compare", "ARI / AMI / ... of every clustering against every other and the labels, and the nuisance audit", "morphospace compare runs/gz1")
    common(p, example="cluster.invariance_sample=512")
    generate.add_parser(sub)  # among the stages, in the order they come
    p = stage(sub, "report", "write RUN/report.html (self-contained, with the explorer)", "morphospace report runs/gz1")
    common(p, example="report.thumb_size=96")
    p = stage(sub, "export", "write the results catalogue (.csv, .parquet or .fits)", "morphospace export runs/gz1 --out results.fits")
    p.add_argument("--out", metavar="FILE", required=True, help="the file to write: .csv, .parquet or .fits")
    common(p, config=False)

    p = stage(sub, "study", "the CNN feature study: fine-tune, features, reductions, clusterings, comparisons, report",
               "morphospace study --data ../shared/data/sdss-gz1 --backbone efficientnet-lite0 --labels morph3", run_arg=False)
    p.add_argument("--data", metavar="PATH", help="survey (default: the built-in synthetic survey)")
    p.add_argument("--out", metavar="RUN", default="runs/study", help="run directory (default: runs/study)")
    p.add_argument("--backbone", help="efficientnet-lite0 (default), efficientnet-lite1, efficientnet-lite2, "
                   "resnet18 or resnet34 (with torchvision), small, vade (the VaDE encoder) or ssl (the "
                   "self-supervised form embedding)")
    p.add_argument("--labels", help="catalogue column of classes to fine-tune on (and score against), or vote "
                   "fractions to regress on by a pattern or a comma list, e.g. 'Class1.*'")
    p.add_argument("--mode", choices=["finetune", "frozen"],
                   help="finetune the backbone on the labels (default) or take its features as they are")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs")
    p.add_argument("--seed", type=seed, help="random seed of the fine-tuning and clustering (train.seed, cluster.seed)")
    p.add_argument("--workers", type=int, help="ingest worker processes (ingest.workers)")
    p.add_argument("--resume", action="store_true",
                   help="go on with an interrupted fine-tuning from its last epoch (models/<backbone>/last.ckpt)")
    common(p)

    p = stage(sub, "import-astrovader", "build the published AstroVaDEr model from its Keras weights",
               "morphospace import-astrovader ../shared/peers/astrovader/saved_weights.h5 --out runs/astrovader", run_arg=False)
    p.add_argument("weights", metavar="H5", help="the published saved_weights.h5")
    p.add_argument("--out", metavar="RUN", required=True, help="run directory the model is built in")
    common(p)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _devices(p: argparse.ArgumentParser) -> None:
    """Where a stage runs its network: as Lightning's Trainer takes it (``train.*`` settings)."""
    p.add_argument("--devices", type=int, help="devices per node (e.g. GPUs)")
    p.add_argument("--num-nodes", type=int, help="nodes (multi-node DDP, e.g. under SLURM)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    p.add_argument("--accelerator", help="Lightning accelerator: cpu, gpu, cuda, mps, tpu or auto")
    p.add_argument("--precision", help="e.g. 32-true, bf16-mixed, 16-mixed")
