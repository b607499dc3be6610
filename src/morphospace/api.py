"""The notebook API of the model: the VaDE as a scikit-learn estimator (:class:`VaDE`), a run's
trained VaDE behind numpy methods (:func:`load_model`, :class:`VaDEModel`, from
:mod:`morphospace.vade.numpy_model`) and :func:`import_astrovader` (``ms.compare``, the agreement
of two labellings, is :func:`morphospace.analysis.agreement.compare`).

Examples
--------
>>> import numpy as np
>>> import morphospace
>>> model = morphospace.load_model("runs/gz1")            # doctest: +SKIP
>>> cube = np.load("runs/gz1/cube.npy", mmap_mode="r")    # doctest: +SKIP
>>> z_mean, z_log_var = model.encode(cube)                # every row, a chunk at a time # doctest: +SKIP
>>> p = model.predict_proba(cube[:100])                   # (100, K) # doctest: +SKIP
>>> fakes = model.sample(16, component=2)                # (16, C, H, W) # doctest: +SKIP

Images are N x C x H x W float arrays already preprocessed like the run's cube (``cube.npy``
rows); a memory-mapped cube is read a chunk of rows at a time and never copied whole.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin

from .config.set_values import said_as_arguments
from .errors import python_errors
from .run import RunDir
from .vade.fit_cube import check_images, float_images, place_cube, warn_scale
from .vade.io import MODEL_FILE, MODEL_NAME, load_vade, model_dir, model_file, plain_values, save_model
from .vade import keras_import
from .vade.numpy_model import VaDEModel, load_model, seed_of as _seed

log = logging.getLogger("morphospace")

__all__ = ["VaDE", "VaDEModel", "load_model", "import_astrovader", "save_model", "load_vade", "model_dir",
           "MODEL_NAME", "MODEL_FILE"]


def import_astrovader(run: Any, weights: str | Path) -> Path:
    """The published AstroVaDEr (its Keras ``saved_weights.h5``) as a run's model, where
    ``morphospace train`` puts one; returns the model file. The run's ``log.txt`` gets the import's
    line, the one the command line writes, and the error of an import that stops once the run's folder
    is made; a run with a model of its own and weights that are not the published ones are refused
    before the log is opened: the exception says why, the log says nothing.

    Parameters
    ----------
    run : ms.Run, RunDir or path
        A folder (made where missing); one that holds a trained model already is refused.
    weights : path
        The Keras weights file.

    Raises
    ------
    FileNotFoundError
        ``weights`` is not there.
    ValueError
        Not the published weights (a missing layer, NaN values, text in place of numbers), or a
        run with a model of its own.
    """
    from .run.runlog import logged_to_run
    from .script_guard import leave_a_rerun

    leave_a_rerun()  # a spawned worker importing the calling script again must not import once more
    folder = Path(getattr(run, "path", run))  # a RunDir, an ms.Run or a folder
    with python_errors():
        if folder.is_dir():  # a trained model is refused before the weights are read
            keras_import.check_no_model(RunDir(folder))
        built = keras_import.astrovader_model(weights)  # bad weights: no folder made, no log written
        rd = RunDir(folder, create=True)
        # the run's log.txt, as `morphospace import-astrovader` writes it (its lines, and the error that stops it)
        with logged_to_run(rd.log):
            return keras_import.import_astrovader(rd, weights, built)


# --- the VaDE as a scikit-learn estimator ----------------------------------------------------

# what random_state takes, as scikit-learn's estimators: a seed, a RandomState or Generator, or None
Seed = Union[int, np.random.RandomState, np.random.Generator, None]

class VaDE(ClusterMixin, TransformerMixin, BaseEstimator):
    """The VaDE as a scikit-learn estimator: images in; latent codes, clusters and galaxies out.

    ``fit`` trains exactly what ``morphospace train`` trains (the same Lightning code, in a
    temporary run directory that is removed afterwards), so a notebook and the command line
    give the same model for the same settings and seed.

    Parameters
    ----------
    preset : {"form", "default", "astrovader"}
        ``form`` (the default): the form-first VaDE over a self-supervised embedding;
        ``default``: the pixel VaDE; ``astrovader``: the published recipe.
    n_components : int or None
        Mixture components K; 0 chooses K by BIC in ``[model.k_min, model.k_max]``; ``None``
        keeps the preset's (0 for ``form`` and ``default``, 12 for ``astrovader``).
    latent_dim : int or None
        Latent dimension D; ``None`` keeps the preset's (16, or 20 for ``astrovader``).
    epochs, pretrain_epochs, batch_size : int or None
        Training schedule; ``None`` keeps the configuration's default.
    config : dict or None
        Further settings as ``{"section.key": value}`` (the keys of ``morphospace.toml``,
        e.g. ``{"form.ssl_epochs": 30}``; a setting that a parameter above holds, such as
        ``"model.n_components"``, is a ValueError unless that parameter is None).
        ``{"train.devices": 4}`` starts the devices from this process (``ddp_spawn``, so a
        script needs an ``if __name__ == "__main__":`` guard; ``ddp_notebook`` in a notebook);
        several nodes are ``morphospace train``'s.
    random_state : int, RandomState, Generator or None
        Seed of everything random in training (None: a fresh one each fit, as in scikit-learn;
        the model keeps the seed it used).
    verbose : bool
        Progress bars while fitting (the default), one per stage of the training, as ``ms.ingest``
        shows them: none under ``morphospace.progress.set_quiet(True)``; ``False`` shows none.

    Attributes
    ----------
    model_ : VaDEModel
        The trained model (numpy methods: ``encode``, ``decode``, ``sample``, ...).
    n_components_ : int
        K as fitted (chosen by BIC when ``n_components = 0``).
    labels_ : ndarray (N,)
        The most probable component of each training image.
    latent_ : ndarray (N, D)
        The latent means of the training images.
    n_features_in_ : int
        C x H x W.
    image_shape_ : tuple
        (C, H, W).

    Examples
    --------
    >>> import morphospace as ms
    >>> model = ms.VaDE(random_state=0).fit(run.cube)          # doctest: +SKIP
    >>> z, p = model.transform(run.cube), model.predict_proba(run.cube)  # doctest: +SKIP
    >>> fakes = model.sample(16, component=2)                   # doctest: +SKIP
    """

    def __init__(self, preset: str = "form", n_components: int | None = None, latent_dim: int | None = None,
                 epochs: int | None = None, pretrain_epochs: int | None = None, batch_size: int | None = None,
                 config: dict | None = None, random_state: Seed = 0, verbose: bool = True):
        self.preset = preset
        self.n_components = n_components
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.batch_size = batch_size
        self.config = config
        self.random_state = random_state
        self.verbose = verbose

    def _overrides(self) -> dict[str, Any]:
        """The settings this estimator's parameters make (checked when the config is built)."""
        from .config import settings_mapping
        from .errors import InvalidArgument

        if not isinstance(self.verbose, (bool, np.bool_)):  # "no" is truthy: it showed the bars
            raise InvalidArgument(f"verbose must be True or False, got {self.verbose!r}")
        config = settings_mapping(self.config, "{'train.epochs': 10}")
        o: dict[str, Any] = {"model.preset": self.preset, "train.seed": _seed(self.random_state)}
        # None leaves the setting to the configuration, and so to the preset (the astrovader preset's
        # 20 latent dimensions and 12 components); a value given is kept, even the default's
        for key, value in (("model.n_components", self.n_components), ("model.latent_dim", self.latent_dim),
                           ("train.epochs", self.epochs), ("train.pretrain_epochs", self.pretrain_epochs),
                           ("train.batch_size", self.batch_size)):
            if value is not None:
                o[key] = value
        # a setting that is also a parameter: one of the two would be silently ignored (and get_params,
        # clone and a grid search would show the other)
        named = {key: param for key, param in _NAMED_SETTINGS.items()
                 if key in config and getattr(self, param) is not None}
        if named:
            raise InvalidArgument("config sets " + ", ".join(f"'{k}'" for k in named) + ": that is the "
                                  + ", ".join(f"{p}=" for p in named.values()) + " parameter of VaDE; set it there")
        o.update(config)
        return o

    def fit(self, X, y=None) -> "VaDE":
        """Train on images ``X`` (N x C x H x W, preprocessed like a run's cube); ``y`` is ignored."""
        import shutil
        import tempfile

        import pandas as pd

        from .config import apply_overrides, load_config
        from .nets.scoped import seeded, torch_threads
        from .progress import is_quiet, set_quiet
        from .run import write_table
        from .script_guard import leave_a_rerun
        from .vade.embed import FORM_EMBEDDING
        from .vade.fitting import check_accelerator, one_process_devices
        from .vade.hparams import check_against_cube
        from .vade.train import train_run

        leave_a_rerun()  # a spawned worker importing the calling script again must not train once more
        x = check_images(X)
        with python_errors(), said_as_arguments(_NAMED_SETTINGS, "VaDE"):
            cfg = one_process_devices(apply_overrides(load_config(None), self._overrides()), "`VaDE.fit`")
            check_accelerator(cfg)
            check_against_cube(cfg, x, announce=False)  # settings too large for so few images: before any copy
        tmp = Path(tempfile.mkdtemp(prefix="morphospace-vade-"))
        was_quiet = is_quiet()
        set_quiet(was_quiet or not self.verbose)  # bars as ms.ingest shows them; none where asked for none
        try:
            run = RunDir(tmp, create=True)
            place_cube(run, x)
            write_table(run.catalogue, pd.DataFrame({"id": [str(i) for i in range(len(x))],
                                                     "cube_index": np.arange(len(x))}))
            # Lightning's seed_everything and Trainer set process-wide state (numpy's, Python's and torch's
            # global generators, the deterministic-algorithms switch, PL_GLOBAL_SEED...), train.num_threads
            # torch's thread count, and the encoding's loader draws from torch's generator: all put back
            # afterwards, as a scikit-learn fit leaves the caller's process
            with torch_threads(cfg.train.num_threads), seeded(cfg.train.seed):
                with python_errors(), said_as_arguments(_NAMED_SETTINGS, "VaDE"):
                    train_run(run, cfg)
                vade, hp, _ = load_vade(model_file(run))
                self.model_ = VaDEModel(vade, hp)
                emb = run.model_path(MODEL_NAME) / FORM_EMBEDDING
                if emb.is_file():  # the form model: codes from the embedding training computed, not a second CNN pass
                    with torch.no_grad():
                        mu, log_var = vade.encode_embedding(torch.from_numpy(np.load(emb)))
                        proba = vade.prior.log_responsibilities(mu, log_var).exp().numpy()
                    self.latent_ = mu.numpy()
                else:
                    self.latent_ = self.model_.encode(x)[0]
                    proba = self.model_.predict_proba(x)
        finally:
            set_quiet(was_quiet)
            shutil.rmtree(tmp, ignore_errors=True)
        self.labels_ = proba.argmax(1)
        self.n_components_ = self.model_.n_components
        self.image_shape_ = tuple(x.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        return self

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        """Fit, then the latent means of ``X`` (computed once; a copy: writing into it leaves
        ``latent_``, and what :meth:`save` writes, as they were)."""
        return self.fit(X).latent_.copy()

    def _model(self) -> "VaDEModel":
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        return self.model_

    def _images(self, X) -> np.ndarray:
        x = float_images(X)  # an ndarray not copied: read a chunk at a time later
        x = x[:, None] if x.ndim == 3 and self.image_shape_[0] == 1 else x
        if x.ndim == 3 and tuple(x.shape) == self.image_shape_:  # scikit-learn's rule: rows, never one sample
            raise ValueError(f"expected images N x {' x '.join(map(str, self.image_shape_))}, got one image: "
                             "pass it as a batch of one, X[None]")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape_:
            raise ValueError(f"expected images N x {' x '.join(map(str, self.image_shape_))}, got shape {x.shape}")
        if len(x) == 0:
            raise ValueError("no images: X has 0 rows")
        warn_scale(x)
        return x  # the model checks each batch finite as it reads it (a memory-mapped cube is read once)

    def transform(self, X) -> np.ndarray:
        """Latent means (N, D) of images ``X``."""
        model = self._model()
        return model.encode(self._images(X))[0]

    def inverse_transform(self, Z) -> np.ndarray:
        """Images (N, C, H, W) decoded from latent codes ``Z`` (N, D)."""
        model = self._model()
        if np.ndim(Z) == 1:  # scikit-learn's rule, as transform's: rows, never one sample
            raise ValueError(f"expected latent codes N x {model.latent_dim}, got one code: pass it as a batch "
                             "of one, Z[None]")
        return model.decode(Z)

    def predict_proba(self, X) -> np.ndarray:
        """Cluster probabilities q(c | x), (N, K)."""
        model = self._model()
        return model.predict_proba(self._images(X))

    def predict(self, X) -> np.ndarray:
        """The most probable cluster of each image, (N,)."""
        return self.predict_proba(X).argmax(1)

    def score_samples(self, X) -> np.ndarray:
        """``log p(z)`` of each image's code under the mixture prior: low means anomalous."""
        model = self._model()
        return model.log_likelihood(self._images(X))

    def sample(self, n: int = 16, *, component: int = 0, temperature: float = 0.5,
               random_state: Seed = 0) -> np.ndarray:
        """``n`` synthetic galaxies (N, C, H, W) drawn from one mixture component.

        Parameters
        ----------
        n : int
        component : int
        temperature : float
            Scales the component's variance (``N(mu_k, t var_k)``): below 1, typical galaxies.
        random_state : int, RandomState, Generator or None
            None: a fresh draw every call.
        """
        model = self._model()
        random_state = _seed(random_state)  # None: a fresh draw every call; a RandomState or Generator: its next number
        for name, value in (("n", n), ("component", component), ("random_state", random_state)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
            raise ValueError(f"temperature must be a number, got {temperature!r}")
        return model.sample(int(n), component=int(component), temperature=temperature,
                            random_state=int(random_state))

    def save(self, path: str | Path) -> Path:
        """Write the fitted model (and these parameters) to ``path``; :meth:`load` reads it back."""
        model = self._model()
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder: give the file to write, e.g. vade.pt", str(path))
        from .run.places import run_owning

        if (owner := run_owning(path)) is not None:  # its catalogue or cube replaced: the run unusable
            raise ValueError(f"{path} is a file of the run {owner} (its own, or in a folder its stages write): "
                             "save the estimator elsewhere, e.g. beside the run as vade.pt")
        import torch

        # an estimator loaded from a run's model.pt has no training labels to keep; tensors and plain
        # values only, so that load reads the file without unpickling objects (which could run code)
        trained = {"labels": torch.from_numpy(np.asarray(self.labels_)),
                   "latent": torch.from_numpy(np.asarray(self.latent_))} if hasattr(self, "labels_") else {}
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
            params["random_state"] = int(model.hparams.get("seed", 0))  # a generator's draw: the seed it gave
        save_model(model.vade, model.hparams, path, extra={"estimator": plain_values(params), **trained})
        return path

    @classmethod
    def load(cls, path: str | Path, trusted: bool = False) -> "VaDE":
        """An estimator fitted by :meth:`save`, or a run's trained model (the run, its folder or its
        ``model.pt``, as :func:`load_model` takes; without training labels).

        The file is read without unpickling Python objects; one that holds them (saved by an
        earlier version) is refused unless ``trusted`` (only for files you wrote yourself)."""
        from .vade.numpy_model import trained_model_file

        with python_errors():
            path = trained_model_file(path)  # a FileNotFoundError where there is no model
            vade, hp, extra = load_vade(path, trusted=trusted)
        saved = extra.get("estimator")
        params = dict(saved) if isinstance(saved, dict) else _params_of(hp)
        if params.get("preset") == "astrovader":
            from .config.learning import MODEL_PRESETS

            # saved by a version whose defaults (16, 0) meant "the preset's": what the model has is the preset's
            for key, earlier_default in (("latent_dim", 16), ("n_components", 0)):
                if params.get(key) == earlier_default and hp.get(key) == MODEL_PRESETS["astrovader"]["model"][key]:
                    params[key] = None
        known = cls._get_param_names()
        dropped = sorted(k for k in params if k not in known)  # a setting of another version of the estimator
        if dropped:
            log.warning("%s: estimator settings this version does not have are left out: %s", path, ", ".join(dropped))
        est = cls(**{k: v for k, v in params.items() if k in known})
        est.model_ = VaDEModel(vade, hp)
        est.n_components_ = est.model_.n_components
        est.image_shape_ = tuple(est.model_.image_shape)
        est.n_features_in_ = int(np.prod(est.image_shape_))
        if "labels" in extra:
            est.labels_, est.latent_ = (np.array(extra[k].numpy() if hasattr(extra[k], "numpy") else extra[k])
                                        for k in ("labels", "latent"))
        return est


# the settings VaDE's own parameters hold (config may not set them too, unless the parameter is None)
_NAMED_SETTINGS = {"model.preset": "preset", "model.n_components": "n_components", "model.latent_dim": "latent_dim",
                   "train.seed": "random_state", "train.epochs": "epochs", "train.pretrain_epochs": "pretrain_epochs",
                   "train.batch_size": "batch_size"}


def _params_of(hp: dict[str, Any]) -> dict[str, Any]:
    """The estimator's parameters that train the model ``hp`` describes (a run's ``model.pt``,
    trained by the command line): ``clone(VaDE.load(path)).fit(X)`` trains the same kind of model,
    not the defaults' (K by BIC, the ImageNet trunk where the run had its own)."""
    from .vade.hparams import settings_of

    config = settings_of(hp)
    params: dict[str, Any] = {"preset": "form", "latent_dim": 16, "n_components": 0, "epochs": None,
                              "pretrain_epochs": None, "batch_size": None, "random_state": 0}
    params.update({name: config.pop(key) for key, name in _NAMED_SETTINGS.items() if key in config})
    weights = config.pop("form.weights", "")
    if weights and Path(weights).is_file():
        config["form.weights"] = weights
    elif weights:  # the model keeps the trunk it trained from; a refit would start from ImageNet's
        log.warning("the trunk weights this model started from (%s) are not there: a refit of these "
                    "parameters starts from the packaged ImageNet weights", weights)
    params["config"] = config or None
    return params
