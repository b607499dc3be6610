"""Per-galaxy outputs of a trained VaDE, its figures, and synthetic galaxies.

:func:`embed_run` writes

``RUN/vade_galaxies.parquet``
    one row per galaxy of the cube, keyed by ``id``: ``z_mean_<d>``, ``z_log_var_<d>``
    (q(z | x)), ``prob_<k>`` (q(c = k | x), the closed-form responsibilities), ``label`` (the
    most probable component), ``label_prob`` (its probability), ``recon_error`` (the
    reconstruction error of ``decode(z_mean)``: weighted mean squared error per pixel, with the
    model's radial weight and, for a flip-invariant model, the best-matching flip),
    ``log_likelihood`` (``log p(z_mean)`` under the mixture prior, in nats) and ``anomaly``
    (``-log_likelihood``: large for galaxies in no component's core; rank by it to find oddities);
``RUN/embeddings/vade.npy``
    ``z_mean`` in cube order (float32), with ``vade.json`` saying what produced it;
``RUN/clusterings/vade.parquet``
    the VaDE's own clustering (label and ``prob_<k>``);
``RUN/figures/vade_*.png``
    ``vade_reconstructions``, ``vade_clusters``, ``vade_component_means``, ``vade_generated``,
    ``vade_interpolation``, ``vade_training_curves``.

:func:`generate` samples a component (``N(mu_k, t var_k)``, decoded) and :func:`write_generated`
writes the images as PNG and FITS (``morphospace generate``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import pandas as pd

from ..api import MODEL_FILE, load_vade, model_dir
from ..image.display import display_image
from ..errors import UserError
from ..progress import Timer, progress
from ..run import RunDir, atomic_path, write_json, write_npy, write_table

log = logging.getLogger("morphospace")

TABLE_NAME = "vade_galaxies.parquet"
FORM_EMBEDDING = "form_embedding.npy"  # written by form.train beside the model: every galaxy's form embedding


# --- encoding -------------------------------------------------------------------------------

def encode_cube(model, cube: np.ndarray, batch_size: int = 256, desc: str = "VaDE encode",
                embedding: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run a VaDE over a cube (N, C, H, W) in batches.

    ``embedding``: for the ``form`` preset, the galaxies' form embedding already computed in
    training (row for row with ``cube``), which spares the CNN a second pass.

    Returns
    -------
    dict of ndarray
        ``z_mean``, ``z_log_var`` (N, D); ``proba`` (N, K); ``recon_error``, ``log_likelihood`` (N,).
    """
    model.eval()
    keys = ("z_mean", "z_log_var", "proba", "recon_error", "log_likelihood")
    out: dict[str, list] = {k: [] for k in keys}
    # sum over pixels of the weights: turns the model's weighted sum into a weighted mean
    w_total = float(model.pixel_weight.sum()) * cube.shape[1]
    starts = range(0, len(cube), batch_size)
    with torch.no_grad():
        for s in progress(starts, total=len(starts), desc=desc, unit="batch"):
            x = torch.from_numpy(np.array(cube[s:s + batch_size], dtype=np.float32))  # a copy: memmaps are read-only
            e = None if embedding is None else torch.from_numpy(np.array(embedding[s:s + batch_size], dtype=np.float32))
            target, mu, log_var = model.encode_with_target(x, e)
            x_hat = model.decode(mu)
            # the model's own error, back in plain units: weighted mean of (x - x_hat)^2
            err = model.reconstruction_error(target, x_hat) * (2 * model.recon_sigma**2) / w_total
            out["z_mean"].append(mu.numpy())
            out["z_log_var"].append(log_var.numpy())
            out["proba"].append(model.prior.log_responsibilities(mu, log_var).exp().numpy())
            out["recon_error"].append(err.numpy())
            out["log_likelihood"].append(model.prior.log_prob(mu).numpy())
    return {k: np.concatenate(v).astype(np.float32 if k != "proba" else np.float64) for k, v in out.items()}


def galaxy_table(ids: np.ndarray, enc: dict[str, np.ndarray]) -> pd.DataFrame:
    """The per-galaxy table of :func:`embed_run` from :func:`encode_cube`'s output."""
    cols: dict[str, Any] = {"id": np.asarray(ids).astype(str)}
    d = enc["z_mean"].shape[1]
    for i in range(d):
        cols[f"z_mean_{i}"] = enc["z_mean"][:, i]
    for i in range(d):
        cols[f"z_log_var_{i}"] = enc["z_log_var"][:, i]
    proba = enc["proba"]
    for k in range(proba.shape[1]):
        cols[f"prob_{k}"] = proba[:, k].astype(np.float32)
    cols["label"] = proba.argmax(1).astype(np.int64)
    cols["label_prob"] = proba.max(1).astype(np.float32)
    cols["recon_error"] = enc["recon_error"]
    cols["log_likelihood"] = enc["log_likelihood"]
    cols["anomaly"] = -enc["log_likelihood"]
    return pd.DataFrame(cols)


def model_input(run: RunDir, hp: dict[str, Any]) -> np.ndarray:
    """The images the VaDE takes (memory-mapped): the cube, with neighbours masked if it was trained so."""
    from ..image.masking import model_input_path

    return np.load(model_input_path(run, hp), mmap_mode="r")


def embed_run(run: RunDir, cfg) -> pd.DataFrame:
    """Encode every galaxy of a run with its trained VaDE; write the table, embedding, clustering, figures."""
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    model, hp, extra = load_vade(model_dir(run) / MODEL_FILE)
    cube = model_input(run, hp)
    ids = run.cube_ids()
    if len(ids) != len(cube):
        raise UserError(f"catalogue lists {len(ids)} galaxies in the cube but cube.npy has {len(cube)} rows")
    if tuple(cube.shape[1:]) != (hp["channels"], hp["image_size"], hp["image_size"]):
        raise UserError(f"the trained VaDE expects {hp['channels']} x {hp['image_size']} x {hp['image_size']} "
                        f"images, the cube has {tuple(cube.shape[1:])}: retrain (`morphospace train`)")
    embedding = None
    cached = model_dir(run) / FORM_EMBEDDING
    if hp["preset"] == "form" and cached.is_file():
        embedding = np.load(cached, mmap_mode="r")  # computed in training: no second pass through the CNN
        if len(embedding) != len(cube):
            embedding = None
    with Timer(f"VaDE embedding of {len(cube)} galaxies"):
        enc = encode_cube(model, cube, embedding=embedding)
    table = galaxy_table(ids, enc)
    cluster_proba = enc["proba"]
    if cfg.model.merge_components and enc["proba"].shape[1] > 2:
        from .merge import ComponentMerger

        merger = ComponentMerger().fit(enc["proba"])
        cluster_proba = merger.transform(enc["proba"])
        enc["groups"] = merger.groups_
        write_json(model_dir(run) / "clusters.json",
                   {"what": "mixture components merged into clusters by entropy (Baudry et al. 2010)",
                    "n_clusters": merger.n_clusters_, "groups": merger.groups_,
                    "entropy_path": merger.entropy_path_})
        log.info("VaDE: %d mixture components merged into %d clusters by entropy: %s", enc["proba"].shape[1],
                 merger.n_clusters_, merger.groups_)
    table["cluster"] = cluster_proba.argmax(1).astype(np.int64)
    table["cluster_prob"] = cluster_proba.max(1).astype(np.float32)
    write_table(run.path / TABLE_NAME, table)
    write_npy(run.embedding_path("vade"), enc["z_mean"].astype(np.float32))
    write_json(run.embedding_path("vade").with_suffix(".json"),
               {"name": "vade", "what": "VaDE z_mean (mean of q(z|x))", "preset": hp["preset"],
                "latent_dim": hp["latent_dim"], "n_components": int(enc["proba"].shape[1]),
                "model": str(model_dir(run) / MODEL_FILE)})
    if embedding is not None:
        write_npy(run.embedding_path("form"), np.asarray(embedding, dtype=np.float32))
        write_json(run.embedding_path("form").with_suffix(".json"),
                   {"name": "form", "what": "form embedding (self-supervised head on the CNN trunk, averaged over "
                    "the 8 dihedral views) that the VaDE clusters", "dim": int(embedding.shape[1]),
                    "trunk": hp["form"]["backbone"]})
    run.write_clustering("vade", ids, table["cluster"].to_numpy(), cluster_proba)
    if cluster_proba is not enc["proba"]:
        run.write_clustering("vade_components", ids, table["label"].to_numpy(), enc["proba"])
    else:
        (run.path / "clusterings" / "vade_components.parquet").unlink(missing_ok=True)
    counts = np.bincount(table["cluster"], minlength=cluster_proba.shape[1])
    log.info("VaDE clusters (%d, from K = %d components): sizes %s", cluster_proba.shape[1], enc["proba"].shape[1],
             counts.tolist())
    with Timer("VaDE figures"):
        write_figures(run, model, cube, enc, cfg)
    return table


# --- generation --------------------------------------------------------------------------------

def _as_model(run_or_model):
    from torch import nn

    if isinstance(run_or_model, nn.Module):  # a VaDE or a FormVaDE
        return run_or_model
    if hasattr(run_or_model, "vade"):  # api.VaDEModel
        return run_or_model.vade
    run = run_or_model if isinstance(run_or_model, RunDir) else RunDir(run_or_model)
    return load_vade(model_dir(run) / MODEL_FILE)[0]


def generate(run_or_model, component: int, n: int, temperature: float = 0.5, reject_below: float | None = None,
             seed: int = 0, max_tries: int = 100) -> np.ndarray:
    """Synthetic galaxies of one mixture component.

    Draws ``z ~ N(mu_k, temperature * var_k)`` and decodes it. With ``reject_below``, only
    draws whose posterior ``p(k | z)`` under the mixture is at least that are kept (so the
    samples are typical of component k and not of a neighbour).

    Parameters
    ----------
    run_or_model : RunDir, path, VaDE or the object of :func:`morphospace.load_model`
    component : int
    n : int
    temperature : float
        Variance scale t (the paper used 0.5).
    reject_below : float, optional
    seed : int
    max_tries : int
        Give up after drawing ``max_tries * n`` candidates.

    Returns
    -------
    ndarray (n, C, H, W) float32
    """
    model = _as_model(run_or_model)
    k = model.prior.n_components
    if not 0 <= component < k:
        raise UserError(f"component must be in 0..{k - 1} (the model has {k}), got {component}")
    if n < 1:
        raise UserError(f"n must be >= 1, got {n}")
    if temperature <= 0:
        raise UserError(f"temperature must be > 0, got {temperature}")
    g = torch.Generator().manual_seed(int(seed))
    kept: list[torch.Tensor] = []
    have, drawn = 0, 0
    model.eval()
    with torch.no_grad():
        while have < n:
            if drawn >= max_tries * n:
                raise UserError(f"only {have} of {max_tries * n} draws of component {component} have "
                                f"p(k|z) >= {reject_below}: lower --reject-below or raise the temperature")
            m = max(n - have, 16) if reject_below else n - have
            z = model.prior.sample(component, m, temperature=temperature, generator=g)
            drawn += m
            if reject_below is not None:
                z = z[model.prior.posterior(z)[:, component] >= reject_below]
            z = z[: n - have]
            if len(z):
                kept.append(model.decode(z))
                have += len(z)
    return torch.cat(kept).numpy().astype(np.float32)


def write_generated(images: np.ndarray, out_dir: str | Path, prefix: str = "generated") -> list[Path]:
    """Write each image (N, C, H, W) as ``<prefix>_<i>.png`` (display, clipped to [0, 1]) and ``.fits`` (float values).

    Returns the written paths.
    """
    from astropy.io import fits
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    width = max(4, len(str(len(images) - 1)))
    for i, img in enumerate(np.asarray(images, dtype=np.float32)):
        stem = f"{prefix}_{i:0{width}d}"
        png = out / f"{stem}.png"
        with atomic_path(png) as tmp:
            Image.fromarray(display_image(img)).save(tmp, format="PNG")
        fts = out / f"{stem}.fits"
        with atomic_path(fts) as tmp:
            hdu = fits.PrimaryHDU(img[0] if img.shape[0] == 1 else img)
            hdu.header["ORIGIN"] = "morphospace"
            hdu.header["COMMENT"] = "VaDE synthetic galaxy (decoded sample of one mixture component)"
            hdu.writeto(tmp, overwrite=True)
        paths += [png, fts]
    return paths


# --- figures --------------------------------------------------------------------------------

def _show(ax, img: np.ndarray) -> None:
    ax.imshow(display_image(img), cmap="gray" if img.shape[0] != 3 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(rows: int, cols: int, size: float = 1.1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(cols * size + 1.0, rows * size + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    return fig, axes


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def write_figures(run: RunDir, model, cube: np.ndarray, enc: dict[str, np.ndarray], cfg) -> None:
    """All VaDE figures of a run (each is skipped, with a warning, if it fails)."""
    for name, fn in [("vade_reconstructions", fig_reconstructions), ("vade_clusters", fig_clusters),
                     ("vade_component_means", fig_component_means), ("vade_generated", fig_generated),
                     ("vade_interpolation", fig_interpolation), ("vade_training_curves", fig_training_curves)]:
        try:
            fig = fn(run=run, model=model, cube=cube, enc=enc, cfg=cfg)
        except UserError as exc:
            log.warning("figure %s skipped: %s", name, exc)
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
    weights = model.prior.log_weights.detach().exp().numpy()
    for c, members in enumerate(groups):
        rng = np.random.default_rng(seed + c)
        w = weights[members] / weights[members].sum()
        counts = np.bincount(rng.choice(len(members), size=n, p=w), minlength=len(members))
        imgs = np.concatenate([generate(model, m, int(k), temperature=temperature, seed=seed + 100 * c + m)
                               for m, k in zip(members, counts) if k > 0])
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


def fig_clusters(model, cube, enc, cfg=None, per_row: int | None = None, **_):
    """A row per component: its most probable members (label = k, sorted by q(k|x))."""
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
        axes[c, 0].set_ylabel(f"{c}\n n={int((labels == c).sum())}", fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle("VaDE clusters: most probable members", fontsize=10)
    return fig


def fig_component_means(model, **_):
    """Decoded component means ``decode(mu_k)``."""
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
        ax.set_title(f"{c}: pi={w[c]:.2f}", fontsize=7)
    fig.suptitle("decoded component means", fontsize=10)
    return fig


def fig_generated(model, n: int = 8, temperature: float = 0.5, seed: int = 0, **_):
    """Per component, ``n`` decoded samples of ``N(mu_k, t var_k)``."""
    k = model.prior.n_components
    fig, axes = _grid(k, n)
    for c in range(k):
        imgs = generate(model, c, n, temperature=temperature, seed=seed + c)
        for j in range(n):
            _show(axes[c, j], imgs[j])
        axes[c, 0].set_ylabel(str(c), fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(f"generated galaxies per component (t = {temperature})", fontsize=10)
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


def read_curves(run: RunDir) -> pd.DataFrame:
    """Per-epoch training metrics from every (re)start of the CSV logger, last value per epoch."""
    files = sorted((model_dir(run) / "logs" / "csv").glob("v*/metrics.csv"),
                   key=lambda p: int(p.parent.name[1:]))
    if not files:
        raise UserError("no training logs (RUN/models/vade/logs/csv): was the model trained here?")
    frames = [pd.read_csv(f) for f in files]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["epoch"].notna()]
    df = df.groupby("epoch", as_index=False).last()
    return df.sort_values("epoch")


def fig_training_curves(run: RunDir, **_):
    """Per-epoch loss terms (from the CSV logs); the dashed line is the mixture initialisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = read_curves(run)
    panels = [("loss (negative ELBO as optimised)", ["loss", "neg_elbo"], True),
              ("reconstruction", ["reconstruction"], True),
              ("KL(q(z,c|x) || p(z,c))", ["kl"], False),
              ("pieces of the VaDE KL", ["expected_log_pz_c", "expected_log_pc", "entropy_c", "neg_entropy_z"], False),
              ("clusters", ["largest_fraction", "n_empty", "latent_weight"], False)]
    panels = [p for p in panels if any(c in df and df[c].notna().any() for c in p[1])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 2.9), squeeze=False)
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
