"""morphospace: unsupervised galaxy morphology with generative models and CNN feature studies.

Layout
------
Folders follow the data flow, and imports only run downwards: a module imports from its own
folder and from the layers below it, never from a layer above nor from a sibling of its own
layer (``tests/test_layout.py`` checks every import, those inside functions included, and
that there is no import cycle). From the top:

1. ``__main__.py`` -> ``cli.py``: the command line;
2. ``pipeline.py``: the stages of a run, in order (beside it this ``__init__``, whose
   :func:`load_model` defers to ``api.py``);
3. ``api.py`` (a trained model behind numpy), ``export.py`` (the results catalogue),
   ``study/`` (the CNN feature study), ``report/`` (the HTML report);
4. ``vade/`` (the generative clustering model: training, embedding, generation, its file)
   and ``analysis/`` (reductions, clusterings, comparisons, probes, the nuisance audit):
   siblings, neither imports the other;
5. ``ssl/``: the self-supervised form encoder, below the VaDE that clusters its embedding;
6. ``data/`` (surveys in, cube + catalogue out), ``image/`` (pixel helpers: sources,
   masking, geometry, display), ``nets/`` (CNN backbones, a network over a cube in batches);
7. ``config/`` (the configuration), ``run/`` (the run directory);
8. ``errors.py`` (one-line errors), ``progress.py`` (progress bars, timers, quiet mode).
"""

__version__ = "0.1.0"


def load_model(run):
    """Load the trained (or imported) model of a run; see :mod:`morphospace.api`."""
    from .api import load_model as _load

    return _load(run)


__all__ = ["__version__", "load_model"]
