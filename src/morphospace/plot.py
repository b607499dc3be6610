"""Figures for a notebook: each function returns a :class:`matplotlib.figure.Figure`.

Nothing here touches pyplot or the matplotlib backend, so a notebook's inline backend (or a
script's) is left as it was; show a figure by leaving it as a cell's value or with
``fig.savefig(...)``.

>>> import morphospace as ms
>>> ms.plot.reconstructions(model, run.cube[:8])   # doctest: +SKIP
>>> ms.plot.latent_map(xy, km.labels_)             # doctest: +SKIP

``model`` is a fitted :class:`morphospace.VaDE`, or what :func:`morphospace.load_model` returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .analysis.inputs import whole_number
from .analysis.labels import missing_mask
from .image.display import figure_text

__all__ = ["reconstructions", "generated", "component_means", "clusters", "latent_map"]

# panels in a row: more are too small to see, and each is a matplotlib axes (a million of them
# took minutes and gigabytes before the figure failed)
MAX_PER_ROW = 100
MAX_LEGEND = 30  # classes a map names; beyond, the largest are named


def _resolve(model: Any):
    """``(api_model, torch_module)`` of a fitted estimator or a loaded model."""
    # morphospace's VaDE not fitted yet: as its own methods say (another library's estimator is no model)
    # (the VaDE only: a fitted PCA or clusterer is no model either, said below)
    if type(model).__name__ == "VaDE" and type(model).__module__.startswith("morphospace.") \
            and not hasattr(model, "model_"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"this {type(model).__name__} is not fitted yet: call fit first")
    api = getattr(model, "model_", model)
    if not hasattr(api, "vade"):
        raise TypeError(f"expected a fitted morphospace.VaDE or a loaded model, got {type(model).__name__}")
    return api, api.vade


class _AsSeen:
    """Rows of ``images`` as the model sees them (its input transform, e.g. neighbours masked),
    prepared only when read: a figure reads the few rows it draws, never the whole (memory-mapped)
    cube, and each row is prepared once."""

    def __init__(self, api, images):
        self.api, self.rows = api, api._rows(images)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows) -> np.ndarray:
        return self.api._images(self.rows[rows])


def reconstructions(model: Any, images: Any, n: int = 8, seed: int = 0):
    """Originals (as the model sees them), reconstructions and residuals of up to ``n`` images.

    Parameters
    ----------
    model : VaDE or VaDEModel
    images : array (N, C, H, W)
        Preprocessed like the run's cube (a memory-mapped cube is read only where drawn).
    n, seed : int
        How many images, and which (a seeded draw when there are more than ``n``).

    Returns
    -------
    matplotlib.figure.Figure
        Three rows of ``min(n, N)`` panels.
    """
    from .vade.figures import fig_reconstructions

    api, module = _resolve(model)
    # the model's own input transform (e.g. neighbours masked), as in `morphospace embed`
    return fig_reconstructions(module, _AsSeen(api, images), None, n=whole_number(n, "n", 1, MAX_PER_ROW),
                               seed=whole_number(seed, "seed", 0, 2**63 - 1))


def generated(model: Any, n: int = 8, temperature: float = 0.5, seed: int = 0):
    """``n`` synthetic galaxies of every mixture component, one row per component (component ``k``
    drawn with seed ``seed + k``), at ``temperature`` (the scale of each component's variance)."""
    from .vade.figures import fig_generated

    _, module = _resolve(model)
    return fig_generated(module, n=whole_number(n, "n", 1, MAX_PER_ROW), temperature=temperature,
                         seed=whole_number(seed, "seed", 0, 2**63 - 1))


def component_means(model: Any):
    """Each component's mean decoded into an image, with its weight."""
    from .vade.figures import fig_component_means

    _, module = _resolve(model)
    return fig_component_means(module)


def clusters(model: Any, images: Any, per_row: int = 10):
    """One row per component: its ``per_row`` images most probably in it, most probable first; the
    counts are ``model.predict(images)``'s."""
    from .vade.figures import fig_clusters

    api, module = _resolve(model)
    seen = _AsSeen(api, images)
    per_row = whole_number(per_row, "per_row", 1, MAX_PER_ROW)
    return fig_clusters(module, seen, {"proba": api.predict_proba(seen.rows)}, per_row=per_row)


def latent_map(xy: Any, labels: Any = None, title: str = "", size: float = 4.0):
    """A 2-d map (e.g. t-SNE or UMAP coordinates), coloured by ``labels`` when given.

    Parameters
    ----------
    xy : array (N, 2)
    labels : array (N,), optional
        Clusters or classes; -1 (noise) and missing values (no label) are drawn grey.
    title : str
    size : float
        Figure height in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"expected N x 2 coordinates, got shape {xy.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(size) and size > 0):
        raise ValueError(f"size is the figure's height in inches: a positive number, got {size!r}")
    fig = Figure(figsize=(size * 1.25, size))
    ax = fig.subplots()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, c="0.3", lw=0)
    else:
        import pandas as pd

        labels = np.asarray(labels, dtype=object)
        if labels.ndim == 2 and labels.shape[1] == 1:  # a one-column table or an N x 1 array
            labels = labels[:, 0]
        if labels.ndim != 1 or len(labels) != len(xy):
            raise ValueError(f"expected one label per point ({len(xy)}), got shape {labels.shape}")
        # a catalogue column with missing values (pandas' NA, NaN, None, "" or "NA", as the package reads
        # them): those galaxies have no label ("" was a class of its own)
        labels = np.where(missing_mask(labels), None, labels)
        codes, values = pd.factorize(labels, use_na_sentinel=True)
        noise = [i for i, v in enumerate(values) if not isinstance(v, (bool, str)) and v == -1]
        for mask, colour, name in ((codes == -1, "0.85", "no label"), (np.isin(codes, noise), "0.75", "noise")):
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=3, c=colour, lw=0, label=figure_text(f"{name} ({int(mask.sum())})"))
        shown = sorted((i for i in range(len(values)) if i not in noise), key=lambda i: str(values[i]))
        cmap = _colours(len(shown))
        counts = np.bincount(codes[codes >= 0], minlength=len(values))
        if len(shown) <= MAX_LEGEND:
            for colour, i in zip(cmap, shown):
                sel = codes == i
                ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=colour, lw=0,
                           label=figure_text(f"{values[i]} ({int(counts[i])})"))
        else:  # thousands of classes (an id column): one scatter, the largest named (a call each took minutes)
            colour_of = np.zeros((len(values), 4))
            colour_of[shown] = cmap
            sel = (codes >= 0) & ~np.isin(codes, noise)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, c=colour_of[codes[sel]], lw=0)
            for i in sorted(shown, key=lambda i: -counts[i])[:MAX_LEGEND - 1]:
                ax.scatter([], [], s=4, color=colour_of[i], label=figure_text(f"{values[i]} ({int(counts[i])})"))
            ax.scatter([], [], s=0, label=f"... {len(shown) - MAX_LEGEND + 1:,} classes more")
        ax.legend(fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(figure_text(title), fontsize=10)
    fig.tight_layout()
    return fig


def _colours(n: int) -> list:
    from matplotlib import colormaps

    if n > 20:  # more classes than a qualitative map has colours: as many hues, none repeated (one call)
        return [tuple(c) for c in colormaps["turbo"](np.linspace(0.0, 1.0, n))]
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i) for i in range(max(n, 1))]
