"""Python API to a run's trained VaDE: numpy in, numpy out.

Examples
--------
>>> import morphospace
>>> model = morphospace.load_model("runs/gz1")            # doctest: +SKIP
>>> cube = np.load("runs/gz1/cube.npy", mmap_mode="r")    # doctest: +SKIP
>>> z_mean, z_log_var = model.encode(cube[:100])          # doctest: +SKIP
>>> p = model.predict_proba(cube[:100])                   # (100, K) # doctest: +SKIP
>>> fakes = model.sample(component=2, n=16)               # (16, C, H, W) # doctest: +SKIP

Inputs are N x C x H x W float arrays already preprocessed like the run's cube (``cube.npy``
rows). A model of the ``default`` preset rotates each image to its canonical orientation itself,
so ``decode`` returns images in that frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError
from .nets.batches import forward_in_batches
from .run import RunDir
from .vade.io import MODEL_FILE, MODEL_NAME, load_vade, model_dir, save_model

__all__ = ["VaDEModel", "load_model", "import_astrovader", "save_model", "load_vade", "model_dir",
           "MODEL_NAME", "MODEL_FILE"]


class VaDEModel:
    """A trained VaDE behind numpy methods.

    Attributes
    ----------
    vade : morphospace.vade.model.VaDE
        The torch module (CPU, eval mode).
    hparams : dict
        How it was built and trained.
    n_components : int
    latent_dim : int
    image_shape : tuple
        (C, H, W) the model takes.
    """

    def __init__(self, vade, hparams: dict[str, Any], batch_size: int = 256):
        self.vade = vade.eval()
        self.hparams = dict(hparams)
        self.batch_size = int(batch_size)
        self.n_components = vade.prior.n_components
        self.latent_dim = vade.latent_dim
        self.image_shape = (hparams["channels"], hparams["image_size"], hparams["image_size"])

    def __repr__(self) -> str:
        return (f"VaDEModel(preset={self.hparams['preset']!r}, K={self.n_components}, "
                f"D={self.latent_dim}, image_shape={self.image_shape})")

    # helpers ---------------------------------------------------------------------------
    def _images(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise UserError(f"expected images N x {' x '.join(map(str, self.image_shape))}, got shape {x.shape}")
        if self.hparams.get("mask_neighbours", False):
            # the model was trained on cutouts with their neighbours masked: same input transform
            # (deterministic per image: the same cube gives exactly what `morphospace embed` saw)
            from .image.masking import mask_images

            x, _ = mask_images(x, desc="")
        return x

    # the API ----------------------------------------------------------------------------
    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``(z_mean, z_log_var)`` of q(z | x), each (N, D)."""
        return forward_in_batches(self.vade.encode, self._images(x), self.batch_size)

    def decode(self, z) -> np.ndarray:
        """Images (N, C, H, W) from latent codes (N, D)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise UserError(f"expected latent codes N x {self.latent_dim}, got shape {z.shape}")
        return forward_in_batches(self.vade.decode, z, self.batch_size)

    def predict_proba(self, x) -> np.ndarray:
        """Cluster probabilities q(c | x), (N, K) (closed form from the encoder's Gaussian)."""
        return np.exp(forward_in_batches(self.vade.predict_log_proba, self._images(x), self.batch_size))

    def predict(self, x) -> np.ndarray:
        """Most probable cluster of each image, (N,)."""
        return self.predict_proba(x).argmax(1)

    def log_likelihood(self, x) -> np.ndarray:
        """``log p(z_mean)`` under the mixture prior (low = anomalous), (N,)."""
        mu, _ = self.encode(x)
        with torch.no_grad():
            return self.vade.prior.log_prob(torch.from_numpy(mu)).numpy()

    def sample(self, component: int, n: int, temperature: float = 0.5, reject_below: float | None = None,
               seed: int = 0) -> np.ndarray:
        """``n`` synthetic galaxies of one component (see :meth:`morphospace.vade.generate.Generative.generate`)."""
        return self.vade.generate(component, n, temperature=temperature, reject_below=reject_below, seed=seed)


def _model_file(run) -> Path:
    path = Path(run.path if isinstance(run, RunDir) else run)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"run directory not found: {path}")
    return path / "models" / MODEL_NAME / MODEL_FILE


def load_model(run) -> VaDEModel:
    """The trained VaDE of a run (a :class:`RunDir`, a run folder, or a ``model.pt`` file)."""
    vade, hp, _ = load_vade(_model_file(run))
    return VaDEModel(vade, hp)


def import_astrovader(run: RunDir, weights: str | Path) -> Path:
    """Write the published AstroVaDEr (Keras ``saved_weights.h5``) as the run's VaDE.

    The result lives where ``morphospace train`` puts a trained model, so ``embed``,
    ``generate`` and :func:`load_model` work on it unchanged.
    """
    from .vade.keras_import import build_astrovader  # the published network: imported lazily
    from .vade.networks import build_model

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
    path = model_dir(run) / MODEL_FILE
    save_model(model, hp, path, extra={"imported_from": str(weights)})
    return path
