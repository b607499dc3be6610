"""Import the published AstroVaDEr Keras weights (``saved_weights.h5``) into PyTorch.

The file is a Keras 2.3 ``save_weights`` HDF5: one group per layer, datasets
``<layer>/<layer>/kernel:0`` and ``bias:0``, and the mixture layer ``latentGMM_Layer``
with ``theta_p:0`` (12,), ``u_p:0`` (20, 12) and ``lambda_p:0`` (20, 12).

Layout conversions:

* convolution kernels (kh, kw, in, out) -> torch (out, in, kh, kw);
* dense kernels (in, out) -> torch (out, in). The Keras Flatten / Reshape (H, W, C)
  order needs no weight permutation because :mod:`.astrovader_net` flattens and reshapes
  in that order itself.

The published mixture weights ``theta`` were never normalised (they drift to about 2.3
each); our prior is normalised, so ``logits = log(theta / sum(theta))``. The raw
``theta`` is kept as well.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MissingFile, UserError
from ..run import RunDir
from .astrovader_net import AstroVaDErDecoder, AstroVaDErEncoder

log = logging.getLogger("morphospace")

__all__ = ["ENCODER_LAYERS", "DECODER_LAYERS", "GMM_LAYER", "load_astrovader_h5", "build_astrovader", "astrovader_model", "import_astrovader"]

# Keras layer name -> torch module name
ENCODER_LAYERS = {
    "Conv1": "conv1",
    "Conv2": "conv2",
    "Conv3": "conv3",
    "Conv4": "conv4",
    "Conv5": "conv5",
    "Conv6": "conv6",
    "latentmean": "mean",
    "latentlog_var": "log_var",
}
DECODER_LAYERS = {
    "FC3": "fc",
    "Conv7": "conv7",
    "Conv8": "conv8",
    "Conv9": "conv9",
    "Conv10": "conv10",
    "Conv11": "conv11",
    "Conv12": "conv12",
    "Output": "output_conv",
}
GMM_LAYER = "latentGMM_Layer"


def _dataset(group: Any, layer: str, weight: str, path: Path) -> np.ndarray:
    import h5py

    if layer not in group:
        raise UserError(f"{path}: no layer {layer!r}; not the published AstroVaDEr weights")
    g = group[layer]
    # Keras 2.3 nests the weights as <layer>/<layer>/<weight>; accept the flat form too
    for key in (f"{layer}/{weight}", weight):
        if key in g and isinstance(g[key], h5py.Dataset):
            if g[key].dtype.kind not in "fiu":  # numpy reads text such as b"0.5" as numbers without a word
                raise UserError(f"{path}: layer {layer!r} weight {weight!r} holds {g[key].dtype} values, not "
                                "numbers; not the published AstroVaDEr weights")
            values = np.asarray(g[key][()], dtype=np.float32)
            if not np.isfinite(values).all():  # a damaged file: the model would give NaN for every galaxy
                raise UserError(f"{path}: layer {layer!r} weight {weight!r} holds "
                                f"{int((~np.isfinite(values)).sum())} NaN or infinite value(s); a damaged file")
            return values
    raise UserError(f"{path}: layer {layer!r} has no weight {weight!r}")


def _convert(kernel: np.ndarray, bias: np.ndarray) -> dict[str, torch.Tensor]:
    if kernel.ndim == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        weight = kernel.transpose(3, 2, 0, 1)
    elif kernel.ndim == 2:  # (in, out) -> (out, in)
        weight = kernel.T
    else:
        raise ValueError(f"unexpected kernel rank {kernel.ndim}")
    return {
        "weight": torch.from_numpy(np.ascontiguousarray(weight)),
        "bias": torch.from_numpy(np.ascontiguousarray(bias)),
    }


def load_astrovader_h5(path: str | Path) -> dict[str, Any]:
    """Read the published AstroVaDEr Keras weights into torch tensors.

    Parameters
    ----------
    path : str or Path
        The released ``saved_weights.h5``.

    Returns
    -------
    dict
        ``encoder`` and ``decoder``: state dicts for :class:`AstroVaDErEncoder` and
        :class:`AstroVaDErDecoder`; ``prior``: ``logits`` (K,) = log of the normalised
        theta, ``means`` (K, D), ``log_vars`` (K, D); ``theta_raw`` (K,): the stored,
        unnormalised mixture weights; ``latent_dim``, ``n_components``, ``image_size``,
        ``channels``; ``keras_version`` and ``backend`` as recorded in the file.

    Raises
    ------
    UserError
        If the file is missing, is not HDF5, or lacks a layer of the published model.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no such weights file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path} is not an HDF5 file ({exc})") from None
    with f:
        # full-model saves put the weights under model_weights/
        root = f["model_weights"] if "model_weights" in f else f
        encoder: dict[str, torch.Tensor] = {}
        for keras_name, torch_name in ENCODER_LAYERS.items():
            conv = _convert(
                _dataset(root, keras_name, "kernel:0", path), _dataset(root, keras_name, "bias:0", path)
            )
            encoder.update({f"{torch_name}.{k}": v for k, v in conv.items()})
        decoder: dict[str, torch.Tensor] = {}
        for keras_name, torch_name in DECODER_LAYERS.items():
            conv = _convert(
                _dataset(root, keras_name, "kernel:0", path), _dataset(root, keras_name, "bias:0", path)
            )
            decoder.update({f"{torch_name}.{k}": v for k, v in conv.items()})
        theta = _dataset(root, GMM_LAYER, "theta_p:0", path)
        mu = _dataset(root, GMM_LAYER, "u_p:0", path)  # (D, K)
        lam = _dataset(root, GMM_LAYER, "lambda_p:0", path)  # (D, K), variances
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in root.attrs.items()}

    if theta.ndim != 1 or mu.shape != lam.shape or mu.shape[1] != theta.shape[0]:
        raise UserError(
            f"{path}: inconsistent mixture shapes theta {theta.shape}, mu {mu.shape}, lambda {lam.shape}"
        )
    if np.any(theta <= 0) or np.any(lam <= 0):
        raise UserError(f"{path}: mixture weights and variances must be positive")
    theta_t = torch.from_numpy(theta.astype(np.float64))
    prior = {
        "logits": torch.log(theta_t / theta_t.sum()).to(torch.float32),
        "means": torch.from_numpy(np.ascontiguousarray(mu.T)),
        "log_vars": torch.from_numpy(np.ascontiguousarray(np.log(lam.T))),
    }
    conv1 = encoder["conv1.weight"]
    fc = decoder["fc.weight"]  # (16 * s * s, D)
    bottleneck = int(round((fc.shape[0] / 16) ** 0.5))
    return {
        "encoder": encoder,
        "decoder": decoder,
        "prior": prior,
        "theta_raw": torch.from_numpy(theta.copy()),
        "latent_dim": int(mu.shape[0]),
        "n_components": int(theta.shape[0]),
        "image_size": bottleneck * 8,
        "channels": int(conv1.shape[1]),
        "keras_version": str(attrs.get("keras_version", "")),
        "backend": str(attrs.get("backend", "")),
    }


def build_astrovader(
    path: str | Path,
) -> tuple[AstroVaDErEncoder, AstroVaDErDecoder, dict[str, torch.Tensor]]:
    """Build the published AstroVaDEr encoder, decoder and mixture prior from its weights.

    Parameters
    ----------
    path : str or Path
        The released ``saved_weights.h5``.

    Returns
    -------
    encoder : AstroVaDErEncoder
    decoder : AstroVaDErDecoder
        Both loaded (strictly) and in eval mode.
    prior_params : dict of torch.Tensor
        ``logits`` (K,), ``means`` (K, D), ``log_vars`` (K, D): the published mixture, with
        the weights normalised (see :func:`load_astrovader_h5` for the raw theta).
    """
    w = load_astrovader_h5(path)
    kwargs = dict(latent_dim=w["latent_dim"], image_size=w["image_size"], channels=w["channels"])
    encoder = AstroVaDErEncoder(**kwargs)
    decoder = AstroVaDErDecoder(**kwargs)
    try:
        encoder.load_state_dict(w["encoder"], strict=True)
        decoder.load_state_dict(w["decoder"], strict=True)
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        raise UserError(f"{path}: weights do not fit the AstroVaDEr network: {msg}") from None
    return encoder.eval(), decoder.eval(), dict(w["prior"])


def astrovader_model(weights: str | Path) -> tuple[torch.nn.Module, dict]:
    """The published AstroVaDEr (Keras ``saved_weights.h5``) as our VaDE, and its hyper-parameters.

    Returns
    -------
    model : VaDE network
    hp : dict
        Its hyper-parameters, as a trained model's (``latent_dim``, ``n_components`` read from the weights).
    """
    from .networks import build_model

    encoder, decoder, prior = build_astrovader(weights)
    k, d = prior["means"].shape
    hp = {
        "preset": "astrovader", "channels": encoder.channels, "image_size": encoder.image_size, "latent_dim": d,
        "n_components": k, "k_min": k, "k_max": k, "min_weight": 0.0, "recon_sigma": 2 ** -0.5,
        "radial_inner": 0.0, "radial_width": 0.0, "canonicalise": False, "flip_invariant": False, "widths": [],
        "mask_neighbours": False, "colour_weight": 1.0,
        "imported_from": str(weights),
    }
    model = build_model(hp)
    model.encoder.load_state_dict(encoder.state_dict())
    model.decoder.load_state_dict(decoder.state_dict())
    with torch.no_grad():
        model.prior.logits.copy_(prior["logits"])
        model.prior.means.copy_(prior["means"])
        model.prior.raw_log_vars.copy_(prior["log_vars"])
    return model, hp


def check_no_model(run: RunDir) -> None:
    """A one-line :class:`UserError` where ``run`` holds a trained model, or a training's files (its
    checkpoints, its settings: one stopped half way, which ``train --resume`` would finish over the
    imported model, keeping it marked imported)."""
    from .io import model_file

    path = model_file(run)
    if path.is_file():
        raise UserError(f"{run.path} already holds a trained model ({path}): import into a new run, then ingest "
                        "your galaxies into it with --preset astrovader")
    left = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
    if left:
        raise UserError(f"{run.path} holds a training stopped before it finished ({path.parent}: "
                        f"{', '.join(left[:3])}{', ...' if len(left) > 3 else ''}): import into a new run")


def import_astrovader(run: RunDir, weights: str | Path, built: tuple[torch.nn.Module, dict] | None = None) -> Path:
    """Write the published AstroVaDEr (Keras ``saved_weights.h5``) as the run's VaDE.

    The result lives where ``morphospace train`` puts a trained model, so ``embed``,
    ``generate`` and :func:`load_model` work on it unchanged. ``built`` is
    :func:`astrovader_model`'s result when the caller has already read the weights. ``run`` is a
    :class:`RunDir`, an ``ms.Run`` or a folder (made); one that already holds a model is refused, as the command line
    refuses it (called from a notebook, it overwrote a trained model and left its embedding and
    clusters beside the imported one).
    """
    from ..run.writes import write_json
    from ..run.rundir import IMPORTED_MARKER
    from .io import model_file, save_model

    folder = Path(getattr(run, "path", run))  # a RunDir, an ms.Run or a folder
    if folder.is_dir():
        check_no_model(RunDir(folder))
    model, hp = built if built is not None else astrovader_model(weights)  # bad weights: no folder made
    run = run if isinstance(run, RunDir) else RunDir(folder, create=True)
    path = model_file(run)
    source = str(Path(weights).resolve())  # a relative path names nothing once the shell has moved on
    save_model(model, hp, path, extra={"imported_from": source})
    write_json(path.parent / IMPORTED_MARKER, {"imported_from": source})  # read by ingest, without torch
    # said here, for the command line and the notebook alike (each writes it to the run's log.txt)
    log.info("import-astrovader: the published AstroVaDEr from %s (latent %d, %d components) as the run's model %s",
             weights, hp["latent_dim"], hp["n_components"], path)
    return path
