"""morphospace: unsupervised galaxy morphology with generative models and CNN feature studies.

Layout
------
Folders follow the data flow, and imports only run downwards: a module imports from its own
folder and from the layers below it, never from a layer above nor from a sibling of its own
layer (``tests/test_layout.py`` checks every import, those inside functions included, and
that there is no import cycle). From the top:

1. ``__main__.py`` -> ``cli/``: the command line (the stages in ``parser``; other commands, one module each);
2. this ``__init__``: the notebook API, names re-exported from the layers below;
3. ``runs.py``: a run directory as Python objects (:class:`Run`) and :func:`ingest`;
4. ``pipeline/``: the stages of a run, in order;
5. ``api.py`` (the VaDE as a scikit-learn estimator),
   ``plot.py`` (figures for a notebook), ``export.py`` (the results catalogue),
   ``study/`` (the CNN feature study), ``report/`` (the HTML report);
6. ``vade/`` (the generative clustering model: training, embedding, generation, its file,
   a trained model behind numpy)
   and ``analysis/`` (reductions, clusterings, comparisons, probes, the nuisance audit):
   siblings, neither imports the other;
7. ``ssl/``: the self-supervised form encoder, below the VaDE that clusters its embedding;
8. ``data/`` (surveys in, cube + catalogue out), ``image/`` (pixel helpers: sources,
   masking, geometry, display), ``nets/`` (CNN backbones, a network over a cube in batches);
9. ``config/`` (the configuration), ``run/`` (the run directory);
10. ``errors.py`` (one-line errors), ``progress.py`` (progress bars, timers, quiet mode),
    ``caches.py`` (where the synthetic survey and the libraries' caches go), ``orphans.py``
    (worker processes that end with their parent);
11. ``script_guard.py``: spawned worker processes and the calling script, which they import again.
"""

from .caches import route_library_caches

__version__ = "0.1.0"

route_library_caches()  # numba's compiled functions not into the installed packages (see caches.py)

# The notebook API, imported on first use so that `import morphospace` stays instant:
#   run = ms.ingest(path, run="runs/x"); ms.Run("runs/x").clusterings[...]
#   model = ms.VaDE(random_state=0).fit(run.cube); model.transform / predict_proba / sample
#   ms.TSNE, ms.UMAP, ms.PCA, ms.LDA (reducers); ms.KMeansSelect, ms.GMMSelect, ms.DBSCAN,
#   ms.HDBSCAN (clusterers); ms.compare(a, b); ms.linear_probe(x, y); ms.plot.<figure>(...)
#   ms.SimilarityIndex (more like this), ms.FewLabelClassifier (few labels, suggest), ms.FormAnomaly
_EXPORTS = {
    "ingest": ("runs", "ingest"), "Run": ("runs", "Run"),
    "VaDE": ("api", "VaDE"), "VaDEModel": ("vade.numpy_model", "VaDEModel"),
    "load_model": ("vade.numpy_model", "load_model"), "import_astrovader": ("api", "import_astrovader"),
    "compare": ("analysis.agreement", "compare"),
    "PCA": ("analysis.reduce", "PCAReducer"), "LDA": ("analysis.reduce", "LDAReducer"),
    "TSNE": ("analysis.reduce", "TSNEReducer"), "UMAP": ("analysis.reduce", "UMAPReducer"),
    "KMeansSelect": ("analysis.cluster", "KMeansSelect"), "GMMSelect": ("analysis.cluster", "GMMSelect"),
    "DBSCAN": ("analysis.cluster", "DBSCANAuto"), "HDBSCAN": ("analysis.cluster", "HDBSCANClusterer"),
    "ComponentMerger": ("vade.merge", "ComponentMerger"), "linear_probe": ("analysis.probe", "linear_probe"),
    "SimilarityIndex": ("analysis.neighbour_index", "SimilarityIndex"),
    "FewLabelClassifier": ("analysis.classify", "FewLabelClassifier"),
    "FormAnomaly": ("analysis.anomaly", "FormAnomaly"),
    "plot": ("plot", None),
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'morphospace' has no attribute {name!r}")
    from importlib import import_module

    module, attr = _EXPORTS[name]
    mod = import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = ["__version__", *_EXPORTS]
