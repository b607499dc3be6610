"""A trained VaDE behind numpy methods (:class:`VaDEModel`), and a run's model loaded as one.

Inputs are N x C x H x W float arrays already preprocessed like the run's cube (``cube.npy``
rows), read, masked and encoded a batch at a time: a memory-mapped cube of any N costs the
memory of a batch. A model of the ``default`` preset rotates each image to its canonical
orientation itself, so ``decode`` returns images in that frame.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidArgument, MissingFile
from ..nets.batches import INFERENCE_BATCH, forward_in_batches
from ..run import RunDir
from .io import load_vade, model_file

__all__ = ["VaDEModel", "load_model", "seed_of"]

def seed_of(random_state) -> int:
    """``random_state`` as a seed, as scikit-learn reads it: an int as it is, None a fresh seed each
    call, a ``RandomState`` or ``Generator`` the next number it draws."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    return random_state  # an int, or what the checks refuse in one line


class VaDEModel:
    """A trained VaDE behind numpy methods.

    Parameters
    ----------
    vade : morphospace.vade.model.VaDE
        The torch module (moved to the CPU, eval mode).
    hparams : dict
        How it was built and trained (the run's ``hparams.json``).
    batch_size : int
        Images per forward pass of :meth:`encode` and the methods built on it.

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

    def __init__(self, vade, hparams: dict[str, Any], batch_size: int = INFERENCE_BATCH):
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
    def _rows(self, x):
        """``x`` as N x C x H x W rows, checked but not read: a memory-mapped cube stays on disk."""
        from .fit_cube import float_images

        given = np.shape(x)
        x = float_images(x)  # 8-bit levels (0-255) or booleans are not the cube's scale
        if x.ndim == 3 and tuple(x.shape) == self.image_shape:
            x = x[None]  # one image
        elif x.ndim == 3 and self.image_shape[0] == 1 and tuple(x.shape[1:]) == self.image_shape[1:]:
            x = x[:, None]  # a stack of grey images, as the estimator reads it
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise InvalidArgument(f"expected images N x {' x '.join(map(str, self.image_shape))}, got shape {given}")
        if len(x) == 0:
            raise InvalidArgument("no images (0 rows)")
        return x

    def _images(self, x) -> np.ndarray:
        stored = getattr(x, "dtype", np.float32)
        x = np.asarray(x, dtype=np.float32)
        if self.hparams.get("mask_neighbours", False):
            # the model was trained on cutouts with their neighbours masked: same input transform
            # (deterministic per image, and rounded as the run's masked cube keeps a float16 cube's
            # dtype: the same cube gives exactly what `morphospace embed` saw)
            from ..image.masking import mask_images

            x, _ = mask_images(x, desc="")
            if stored == np.float16:
                x = x.astype(np.float16).astype(np.float32)
        if not np.isfinite(x).all():  # a NaN image gives NaN codes and "cluster 0", silently
            raise InvalidArgument("images must be finite (no NaN or inf)")
        return x

    def _over_rows(self, fn, x):
        """``fn`` (a tensor method of the model) over ``x``'s rows, read and prepared a batch at a
        time, so that memory does not grow with N; outputs concatenated."""
        return forward_in_batches(fn, self._rows(x), self.batch_size, prepare=self._images)

    # the API ----------------------------------------------------------------------------
    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``(z_mean, z_log_var)`` of q(z | x), each (N, D)."""
        return self._over_rows(self.vade.encode, x)

    def decode(self, z) -> np.ndarray:
        """Images (N, C, H, W) from latent codes (N, D)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim or len(z) == 0:
            raise InvalidArgument(f"expected latent codes N x {self.latent_dim} (N >= 1), got shape {z.shape}")
        if not np.isfinite(z).all():
            raise InvalidArgument("latent codes must be finite (no NaN or inf)")
        return forward_in_batches(self.vade.decode, z, self.batch_size)

    def predict_proba(self, x) -> np.ndarray:
        """Cluster probabilities q(c | x), (N, K) (closed form from the encoder's Gaussian)."""
        return np.exp(self._over_rows(self.vade.predict_log_proba, x))

    def predict(self, x) -> np.ndarray:
        """Most probable cluster of each image, (N,)."""
        return self.predict_proba(x).argmax(1)

    def log_likelihood(self, x) -> np.ndarray:
        """``log p(z_mean)`` under the mixture prior (low = anomalous), (N,)."""
        mu, _ = self.encode(x)
        with torch.no_grad():
            return self.vade.prior.log_prob(torch.from_numpy(mu)).numpy()

    def sample(self, n: int = 16, *, component: int = 0, temperature: float = 0.5,
               reject_below: float | None = None, random_state: int = 0, seed: int | None = None) -> np.ndarray:
        """``n`` synthetic galaxies of one component, ``(n, C, H, W)``.

        The same call as :meth:`morphospace.VaDE.sample`: ``n`` first, the component by name
        (``model.sample(16, component=2)``), so that an older ``sample(component, n)`` fails
        loudly instead of drawing another component.

        Parameters
        ----------
        n : int
        component : int
            The mixture component drawn from.
        temperature : float
            Scales the component's variance (``N(mu_k, t var_k)``): below 1, typical galaxies.
        reject_below : float, optional
            Draws whose log-density under the mixture is below this are drawn again.
        random_state : int, RandomState, Generator or None
            None: a fresh draw every call.
        seed : int, optional
            The former name of ``random_state``; not both.

        See :meth:`morphospace.vade.generate.Generative.generate`.
        """
        from ..errors import python_errors

        if seed is not None and random_state != 0:
            raise ValueError("give random_state (seed is its former name), not both")
        seed = seed_of(random_state) if seed is None else seed
        with python_errors():  # too few draws above reject_below: a ValueError here
            return self.vade.generate(component, n, temperature=temperature, reject_below=reject_below, seed=seed)


def trained_model_file(run) -> Path:
    """The model file of a run (a :class:`~morphospace.runs.Run`, a :class:`RunDir`, a run folder), or the file itself."""
    path = Path(run.path if hasattr(run, "path") else run)  # a RunDir, a notebook's Run, or a path
    if path.is_file():
        return path
    if not path.is_dir():  # an OSError: a FileNotFoundError in a notebook, one line on the command line
        raise FileNotFoundError(errno.ENOENT, "no run or model file here", str(path))
    run = RunDir(path)
    if note := run.pixel_pca_note():  # "run `morphospace train` first" would retrain the PCA
        raise MissingFile(note)
    return model_file(run)


def load_model(run) -> VaDEModel:
    """The trained VaDE of a run (a :class:`~morphospace.runs.Run`, a :class:`RunDir`, a run folder,
    or a ``model.pt`` file).

    Raises
    ------
    FileNotFoundError
        No run or model file there, or a run without a trained model.
    ValueError
        A damaged model file.
    """
    from ..errors import python_errors

    with python_errors():
        vade, hp, _ = load_vade(trained_model_file(run))
    return VaDEModel(vade, hp)
