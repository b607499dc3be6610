"""The figures of a trained VaDE (``RUN/figures/vade_*.png``), drawn by :func:`write_figures`.

``vade_reconstructions``, ``vade_clusters``, ``vade_component_means``, ``vade_generated``,
``vade_interpolation``, ``vade_training_curves``, and one strip of generated galaxies per
cluster (``vade_generated_<k>``) for the report's cluster cards. Each figure function takes
the model, the cube it encoded and :func:`~morphospace.vade.embed.encode_cube`'s output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import UserError
from ..image.display import display_image
from ..run import RunDir, atomic_path
from ..run.rundir import IMPORTED_MARKER
from .io import model_dir

log = logging.getLogger("morphospace")


def _show(ax, img: np.ndarray) -> None:
    ax.imshow(display_image(img), cmap="gray" if img.shape[0] != 3 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(rows: int, cols: int, size: float = 1.1):
    # a bare Figure, not pyplot: library code must leave a notebook's backend and state alone
    from matplotlib.figure import Figure

    height = rows * size + 0.4
    fig = Figure(figsize=(cols * size + 1.0, height))
    # matplotlib leaves 12% of the height above the axes: over a grid of a row per component (10 in
    # tall), an inch of white between the title and the first row; the title needs 0.3 in below its 2%
    fig.subplots_adjust(top=max(0.88, 0.98 - 0.3 / height))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    return fig, axes


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def write_figures(run: RunDir, model, cube: np.ndarray, enc: dict[str, np.ndarray], cfg) -> None:
    """All VaDE figures of a run (each is skipped, with a warning, if it fails)."""
    for name, fn in [("vade_reconstructions", fig_reconstructions), ("vade_clusters", fig_clusters),
                     ("vade_component_means", fig_component_means), ("vade_generated", fig_generated),
                     ("vade_interpolation", fig_interpolation), ("vade_training_curves", fig_training_curves),
                     ("vade_mixture_choice", fig_mixture_choice)]:
        try:
            fig = fn(run=run, model=model, cube=cube, enc=enc, cfg=cfg)
        except UserError as exc:
            log.warning("figure %s skipped: %s", name, exc)
            continue
        if fig is None:  # nothing of the kind to draw for this model
            run.figure_path(name).unlink(missing_ok=True)
            continue
        _save(fig, run.figure_path(name))
    write_generated_strips(run, model, groups=enc.get("groups"))


def write_generated_strips(run: RunDir, model, n: int = 8, temperature: float = 0.5, seed: int = 0,
                           groups: list[list[int]] | None = None) -> None:
    """One strip of generated galaxies per cluster of the ``vade`` clustering, ``vade_generated_<k>.png``,
    for the report's cluster cards. With ``groups`` (merged components) a cluster's galaxies are
    drawn from its components in proportion to their weights; without, a cluster is a component."""
    for old in run.sub("figures").glob("vade_generated_*.png"):
        old.unlink()  # a re-embed with another K must not leave strips of components that are gone
    groups = groups or [[c] for c in range(model.prior.n_components)]
    for c, members in enumerate(groups):
        imgs = model.generate_cluster(members, n, temperature=temperature, seed=seed + c)
        fig, axes = _grid(1, n)
        for j in range(n):
            _show(axes[0, j], imgs[j])
        _save(fig, run.figure_path(f"vade_generated_{c}"))


def fig_reconstructions(model, cube, enc, n: int = 8, seed: int = 0, **_):
    """Originals (as the model sees them) / reconstructions / residuals (diverging, colour bar)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(cube), size=min(n, len(cube)), replace=False))
    x = torch.from_numpy(np.asarray(cube[idx], dtype=np.float32))
    with torch.no_grad():
        target, mu, _ = model.encode_with_target(x)
        x_hat = model.decode(mu)
        target = model.aligned_target(target, x_hat)
    target, x_hat = target.numpy(), x_hat.numpy()
    resid = (target - x_hat).mean(1)
    lim = float(np.percentile(np.abs(resid), 99.5)) or 1e-3
    fig, axes = _grid(3, len(idx))
    for j in range(len(idx)):
        _show(axes[0, j], target[j])
        _show(axes[1, j], x_hat[j])
        im = axes[2, j].imshow(resid[j], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    for i, name in enumerate(["original", "reconstruction", "residual"]):
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.colorbar(im, ax=axes[2, :].tolist(), fraction=0.02, pad=0.01, label="original - reconstruction")
    fig.suptitle("VaDE reconstructions" + (" (canonical orientation)" if model.canonicalise else ""), fontsize=10)
    return fig


def _component_label(c: int, groups: list[list[int]] | None) -> str:
    """A row's name: the component, and the run's cluster it was merged into (the report's numbering
    is the clusters'; a row "6" read as cluster 6 was another group of galaxies)."""
    cluster = next((g for g, members in enumerate(groups or []) if c in members), None)
    return f"comp. {c}" + (f"\n(cluster {cluster})" if cluster is not None else "")


def fig_clusters(model, cube, enc, cfg=None, per_row: int | None = None, **_):
    """A row per mixture component: its most probable members (label = k, sorted by q(k|x)), named
    with the cluster the merge put it in."""
    per_row = per_row or (min(12, cfg.report.gallery_size) if cfg is not None else 10)
    proba = enc["proba"]
    k = proba.shape[1]
    labels = proba.argmax(1)
    fig, axes = _grid(k, per_row)
    for c in range(k):
        members = np.where(labels == c)[0]
        members = members[np.argsort(-proba[members, c])][:per_row]
        if len(members):
            sel = np.sort(members)  # sorted rows read a memory-mapped cube efficiently
            with torch.no_grad():
                shown = model.prepare(torch.from_numpy(np.asarray(cube[sel], dtype=np.float32))).numpy()
            row = {m: i for i, m in enumerate(sel)}
            for j, m in enumerate(members):
                _show(axes[c, j], shown[row[m]])
        axes[c, 0].set_ylabel(f"{_component_label(c, enc.get('groups'))}\nn={int((labels == c).sum())}", fontsize=8,
                              rotation=0, ha="right", va="center")
    fig.suptitle("VaDE mixture components: most probable members", fontsize=10)
    return fig


def fig_component_means(model, enc=None, **_):
    """Decoded component means ``decode(mu_k)``, each titled with its weight and its cluster."""
    k = model.prior.n_components
    with torch.no_grad():
        imgs = model.decode(model.prior.means[:k]).numpy()
        w = model.prior.log_weights[:k].exp().numpy()
    cols = min(k, 8)
    rows = int(np.ceil(k / cols))
    fig, axes = _grid(rows, cols, size=1.4)
    for c in range(k):
        ax = axes[c // cols, c % cols]
        _show(ax, imgs[c])
        ax.set_title(f"{_component_label(c, (enc or {}).get('groups'))}\npi={w[c]:.2f}", fontsize=7)
    fig.suptitle("decoded mixture component means", fontsize=10)
    return fig


def fig_generated(model, n: int = 8, temperature: float = 0.5, seed: int = 0, enc=None, **_):
    """Per component, ``n`` decoded samples of ``N(mu_k, t var_k)``, named with its cluster."""
    k = model.prior.n_components
    fig, axes = _grid(k, n)
    groups = (enc or {}).get("groups")
    for c in range(k):
        imgs = model.generate(c, n, temperature=temperature, seed=(seed + c) % 2**63)  # a seed near 2**63 wraps
        for j in range(n):
            _show(axes[c, j], imgs[j])
        axes[c, 0].set_ylabel(_component_label(c, groups), fontsize=8, rotation=0, ha="right", va="center")
    frame = ", canonical orientation" if getattr(model, "canonicalise", False) else ""
    fig.suptitle(f"generated galaxies per mixture component (the decoder's mean image of codes drawn from the "
                 f"component at t = {temperature} of its variance{frame})", fontsize=9)
    return fig


def _typical_member(model, enc: dict[str, np.ndarray], c: int) -> int:
    """The member of component c nearest its mean (Mahalanobis distance under the component)."""
    labels = enc["proba"].argmax(1)
    members = np.where(labels == c)[0]
    mean = model.prior.means[c].detach().numpy()
    var = model.prior.log_vars[c].exp().detach().numpy()
    d2 = (((enc["z_mean"][members] - mean) ** 2) / var).sum(1)
    return int(members[np.argmin(d2)])


def fig_interpolation(model, cube, enc, steps: int = 10, **_):
    """Decoded straight line in z between typical members of two well-populated, distant components."""
    proba = enc["proba"]
    k = proba.shape[1]
    sizes = np.bincount(proba.argmax(1), minlength=k)
    big = [c for c in range(k) if sizes[c] >= max(1, 0.05 * len(proba))] or [int(np.argmax(sizes))]
    if len(big) < 2:
        a, b = int(np.argmin(enc["log_likelihood"])), int(np.argmax(enc["log_likelihood"]))
    else:
        means = model.prior.means[:k].detach().numpy()
        first = max(big, key=lambda c: sizes[c])
        second = max((c for c in big if c != first), key=lambda c: np.linalg.norm(means[c] - means[first]))
        a, b = _typical_member(model, enc, first), _typical_member(model, enc, second)
    za, zb = enc["z_mean"][a], enc["z_mean"][b]
    t = np.linspace(0, 1, steps)[:, None]
    z = torch.from_numpy(((1 - t) * za + t * zb).astype(np.float32))
    with torch.no_grad():
        imgs = model.decode(z).numpy()
        ends = model.prepare(torch.from_numpy(np.asarray(cube[sorted([a, b])], dtype=np.float32))).numpy()
    if a > b:
        ends = ends[::-1]
    fig, axes = _grid(1, steps + 2)
    _show(axes[0, 0], ends[0])
    axes[0, 0].set_title(f"galaxy {a}", fontsize=7)
    for j in range(steps):
        _show(axes[0, j + 1], imgs[j])
    _show(axes[0, -1], ends[1])
    axes[0, -1].set_title(f"galaxy {b}", fontsize=7)
    fig.suptitle("interpolation in the latent space (decoded), between typical members of two components",
                 fontsize=10)
    return fig


def read_curves(run: RunDir, part: str = "") -> pd.DataFrame:
    """Per-epoch training metrics from every (re)start of the CSV logger, last value per epoch;
    ``part``: of the form model's ``ssl`` head or image ``decoder``."""
    prefix = f"{part}_v" if part else "v"
    files = sorted((p for p in (model_dir(run) / "logs" / "csv").glob(f"{prefix}*/metrics.csv")
                    if p.parent.name[len(prefix):].isdigit()), key=lambda p: int(p.parent.name[len(prefix):]))
    if not files:
        raise UserError("no training logs (RUN/models/vade/logs/csv): was the model trained here?")
    frames = [pd.read_csv(f) for f in files]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["epoch"].notna()]
    df = df.groupby("epoch", as_index=False).last()
    return df.sort_values("epoch")


def fig_training_curves(run: RunDir, model=None, **_):
    """Per-epoch loss terms (from the CSV logs); the dashed line is the mixture initialisation.

    A form model with a linear core fits its mixture in closed form, not by epochs: its curves are
    those of its SSL head and image decoder (:func:`_form_curves`).
    """
    from matplotlib.figure import Figure

    from .linear_core import LinearCore

    if isinstance(getattr(model, "core", None), LinearCore):
        return _form_curves(run)
    if (model_dir(run) / IMPORTED_MARKER).is_file():  # trained elsewhere (the published AstroVaDEr): no curves
        return None
    df = read_curves(run)
    panels = [("loss (negative ELBO as optimised)", ["loss", "neg_elbo"], True),
              ("reconstruction", ["reconstruction"], True),
              ("KL(q(z,c|x) || p(z,c))", ["kl"], False),
              ("pieces of the VaDE KL", ["expected_log_pz_c", "expected_log_pc", "entropy_c", "neg_entropy_z"], False),
              ("clusters", ["largest_fraction", "n_empty", "latent_weight"], False)]
    panels = [p for p in panels if any(c in df and df[c].notna().any() for c in p[1])]
    fig = Figure(figsize=(3.3 * len(panels), 2.9))
    axes = fig.subplots(1, len(panels), squeeze=False)
    joint = df.loc[df["phase"] > 0.5, "epoch"] if "phase" in df else pd.Series(dtype=float)
    for ax, (title, cols, logy) in zip(axes[0], panels):
        for c in cols:
            if c in df and df[c].notna().any():
                ax.plot(df["epoch"], df[c], marker=".", ms=3, lw=1, label=c)
        if len(joint):
            ax.axvline(joint.min() - 0.5, color="grey", ls="--", lw=0.8)
        if logy and (df[cols[0]].dropna() > 0).all():
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(cols) > 1:
            ax.legend(fontsize=6)
    fig.suptitle("VaDE training (dashed: mixture initialised, joint training from there)", fontsize=10)
    fig.tight_layout()
    return fig


def _form_curves(run: RunDir):
    """The form model's two trainings per epoch: the SSL head's contrastive loss and the image
    decoder's error (their CSV logs); None for a model trained before they were logged."""
    from matplotlib.figure import Figure

    panels = []
    for part, column, title in (("ssl", "ssl_loss", "SSL head: contrastive loss (NT-Xent)"),
                                ("decoder", "decoder_mse", "image decoder: mean squared error")):
        try:
            df = read_curves(run, part)
        except UserError:
            continue
        if column in df and df[column].notna().any():
            panels.append((title, df["epoch"], df[column]))
    if not panels:
        return None
    fig = Figure(figsize=(3.6 * len(panels), 2.9))
    for ax, (title, epoch, values) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        ax.plot(epoch, values, marker=".", ms=3, lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("training of the form model (its mixture is fitted in closed form)", fontsize=10)
    fig.tight_layout()
    return fig


def _bic_by_k(info) -> dict[int, float]:
    """The BIC of every K the training tried, wherever its record keeps it (``training.json``'s
    ``init``: the linear core's or the MLP's)."""
    if isinstance(info, dict):
        bic = info.get("bic")
        if isinstance(bic, dict):
            try:
                return {int(k): float(v) for k, v in bic.items()}
            except (TypeError, ValueError):
                return {}
        for value in info.values():
            found = _bic_by_k(value)
            if found:
                return found
    return {}


def mixture_choice(run: RunDir) -> dict:
    """How the run's model came to its clusters, as its records say: ``bic`` (K chosen by the BIC
    over several), ``bic_at_edge`` (the largest K tried, the BIC still falling: the range chose it),
    ``imported`` (the published weights: K as they have it), ``merged`` (components merged into
    clusters, ``clusters.json``)."""
    import json

    from ..run.rundir import IMPORTED_MARKER
    from .io import CLUSTERS_FILE

    try:
        init = json.loads((model_dir(run) / "training.json").read_text()).get("init")
    except (OSError, ValueError, AttributeError):
        init = None
    bic = _bic_by_k(init)
    return {"bic": len(bic) > 1, "bic_at_edge": len(bic) > 1 and min(bic, key=bic.get) == max(bic),
            "imported": (model_dir(run) / IMPORTED_MARKER).is_file(),
            "merged": (model_dir(run) / CLUSTERS_FILE).is_file()}


def fig_mixture_choice(run: RunDir, **_):
    """How the mixture's K and the run's clusters were chosen, without labels: the BIC of every K
    tried (the lowest taken) and the merge path of the components into clusters (the entropy of the
    soft assignment against the galaxies merged so far, and where the elbow stopped it). None where
    the run keeps neither."""
    import json

    from matplotlib.figure import Figure

    from .io import CLUSTERS_FILE

    def read(name: str) -> dict:
        try:
            return json.loads((model_dir(run) / name).read_text())
        except (OSError, ValueError):
            return {}

    bic = _bic_by_k(read("training.json").get("init"))
    merge = read(CLUSTERS_FILE)
    entropy, merged = merge.get("entropy_path") or {}, merge.get("merged_path") or {}
    panels = (["bic"] if len(bic) > 1 else []) + (["merge"] if len(entropy) > 1 else [])
    if not panels:
        return None
    fig = Figure(figsize=(3.8 * len(panels), 3.0))
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0]))
    if "bic" in axes:
        ks = sorted(bic)
        ax = axes["bic"]
        ax.plot(ks, [bic[k] for k in ks], marker=".", lw=1)
        best = min(ks, key=bic.get)
        ax.axvline(best, color="grey", ls="--", lw=0.8)
        # still falling at the largest K tried: the range chose K, not the data (said, as the log says it)
        edge = best == ks[-1]
        ax.set_title(f"mixture components: BIC (lowest at K = {best}" + (", the largest tried:\nstill falling, "
                     "raise model.k_max)" if edge else ")"), fontsize=9, color="crimson" if edge else "black")
        ax.set_xlabel("K", fontsize=8)
        ax.set_ylabel("BIC (lower is better)", fontsize=8)
    if "merge" in axes:
        ax = axes["merge"]
        ks = sorted(int(k) for k in entropy)
        x = [merged.get(str(k), np.nan) for k in ks] if merged else ks
        ax.plot(x, [entropy[str(k)] for k in ks], marker=".", lw=1)
        for k, xi in zip(ks, x):
            ax.annotate(str(k), (xi, entropy[str(k)]), fontsize=6, xytext=(2, 2), textcoords="offset points")
        chosen = merge.get("n_clusters")
        if chosen is not None and str(chosen) in entropy:
            ax.plot([x[ks.index(int(chosen))]], [entropy[str(chosen)]], "o", ms=8, mfc="none", color="crimson")
        ax.set_title(f"components merged into {chosen} clusters (the elbow)", fontsize=9)
        # merged_path counts a galaxy again at each merge it takes part in: its sum can exceed the survey
        ax.set_xlabel("galaxies in the merges so far (counted at each merge)" if merged else "clusters", fontsize=8)
        ax.set_ylabel("entropy of the soft assignment", fontsize=8)
    for ax in axes.values():
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
