"""morphospace: unsupervised galaxy morphology with generative models and CNN feature studies."""

__version__ = "0.1.0"


def load_model(run):
    """Load the trained (or imported) model of a run; see :mod:`morphospace.api`."""
    from .api import load_model as _load

    return _load(run)


__all__ = ["__version__", "load_model"]
