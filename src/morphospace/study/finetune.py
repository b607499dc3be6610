"""Transfer learning of a CNN backbone on galaxy labels, as a scikit-learn-like estimator.

:class:`FineTuner` fine-tunes a backbone of :mod:`morphospace.nets.backbones` plus a linear
head on either

* classes (``y`` one label per image: cross-entropy, class-balanced by default), or
* vote fractions (``y`` an ``N x K`` array in [0, 1], the Kaggle Galaxy Zoo layout:
  mean squared error on sigmoid outputs, reported as the Kaggle RMSE),

with a seeded, stratified train/validation split, rotation and flip augmentation (a
galaxy's class does not depend on its orientation or handedness), early stopping on
the validation loss (the best epoch's weights are kept), and a ``frozen`` mode that
trains nothing and uses no labels (ImageNet features as they are). ``transform`` gives
the penultimate features, the input of the study's reductions and clusterings.

The training itself is Lightning's (:mod:`morphospace.study.training`): a
:class:`~morphospace.study.training.FineTuneModule` driven by a ``lightning.Trainer`` with
``EarlyStopping`` and ``ModelCheckpoint``, like the VaDE's.

Examples
--------
>>> ft = FineTuner("small", epochs=3, random_state=0).fit(X, y)     # doctest: +SKIP
>>> ft.val_accuracy_, ft.confusion_matrix_                           # doctest: +SKIP
>>> features = ft.transform(X)                                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..nets.backbones import BACKBONES, make_backbone
from .datamodule import FineTuneData, augment
from .finetuned import FineTunedModel
from .targets import TASKS, balanced_class_weights, encode_targets, split_rows, validation_scores
from ..nets.scoped import torch_threads
from .training import FineTuneModule, fit_classifier

__all__ = ["FineTuner", "augment", "MODES", "TASKS"]

MODES = ("finetune", "frozen")


# --- the estimator -----------------------------------------------------------------------------


def check_frozen_weights(backbone: str, mode: str, weights) -> None:
    """A frozen backbone must have trained weights (ImageNet's, or a file): a ``UserError`` for one
    that has none, which the study checks before it ingests anything."""
    if mode == "frozen" and not BACKBONES[backbone].pretrained and not weights:
        raise UserError(f"frozen mode needs trained weights and backbone '{backbone}' has none: "
                        "use study.mode = finetune, or name a weights file in study.weights")

class FineTuner(FineTunedModel):
    """Fine-tune (or freeze) a CNN backbone on galaxy labels; its features are the study's input.

    Parameters
    ----------
    backbone : str
        A key of :data:`morphospace.nets.backbones.BACKBONES`.
    mode : {"finetune", "frozen"}
        ``frozen``: ImageNet features as they are, nothing is trained and ``y`` is ignored.
    task : {"auto", "classification", "regression"}
        See :func:`~morphospace.study.targets.resolve_task`.
    epochs : int
        Most epochs; early stopping may end sooner.
    batch_size : int
    lr : float
        AdamW learning rate of the head; the pretrained backbone gets ``lr * backbone_lr_scale``
        (a from-scratch backbone gets ``lr``). Cosine decay over the epochs.
    backbone_lr_scale : float
    weight_decay : float
    patience : int
        Epochs without a lower validation loss before stopping (0: never stop early).
    val_fraction : float
        Share of the labelled rows for validation (stratified by class): they choose the epoch
        kept and stop the training early.
    test_fraction : float
        Share of the labelled rows held out for testing (stratified by class), in [0, 1): they
        take no part in the fine-tuning, and the held-out scores (``test_*_``) are made on them.
        0: none (``morphospace study`` holds out 20%, and validates on 10%).
    input_size : int, optional
        Side images are resized to; default: the backbone's default (see the registry).
    augment : bool
        Rotation / flip augmentation of the training batches.
    class_weight : {"balanced", None}
        ``balanced`` weights the loss by inverse class frequency, so that rare classes
        (spirals among ellipticals) shape the features too.
    weights : str, optional
        A weights file for the backbone (see :func:`~morphospace.nets.backbones.make_backbone`).
    bn_samples : int
        Training images whose statistics replace the batch-norm running averages after
        each epoch (before validation), so eval-mode outputs match the trained weights.
    num_threads : int, optional
        torch CPU threads during fit / transform (restored afterwards).
    random_state : int
        Seeds the split, the head, the batch order and the augmentation.
    verbose : bool
        Log one line per epoch.
    checkpoint_dir : str, optional
        Where Lightning's ``ModelCheckpoint`` keeps ``best.ckpt``, the best epoch's weights
        (the run's model directory in ``morphospace study``); default: a temporary folder,
        removed after the fit.
    accelerator : str
        Lightning accelerator of the training (``cpu``, ``gpu``, ``auto``, ...); features and
        predictions are computed on the CPU.
    devices : int
        Devices of the training; the fine-tuner trains on one.
    precision : str
        Lightning precision of the training (``32-true``, ``bf16-mixed``, ...).
    resume : bool
        Go on with an interrupted fine-tuning from ``last.ckpt`` in ``checkpoint_dir`` (the same
        images, labels and settings: the split and the batches are drawn again from
        ``random_state``).

    Attributes
    ----------
    model_ : FeatureNet
        The (fine-tuned) feature network.
    head_ : nn.Linear or None
        The classifier / regressor on top (None in frozen mode).
    feature_dim_ : int
    input_spec_ : InputSpec
    task_ : str
    classes_ : ndarray or None
        Class labels (classification).
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy`` (classification)
        or ``val_rmse`` (regression), ``seconds``.
    best_epoch_ : int
        The epoch whose weights were kept (1-based; 0 in frozen mode).
    val_accuracy_, val_balanced_accuracy_ : float
        On the validation split (classification).
    classification_report_ : dict
        ``sklearn.metrics.classification_report(output_dict=True)`` on the validation split.
    confusion_matrix_ : ndarray (K, K)
        Rows: true class, columns: predicted class, in ``classes_`` order.
    val_rmse_ : float
        Root mean squared error of the vote fractions on the validation split (regression).
    train_index_, val_index_, test_index_ : ndarray
        Row indices of ``X`` used for training, validation and testing.
    test_accuracy_, test_balanced_accuracy_, test_rmse_, test_confusion_matrix_, test_classification_report_
        The validation scores' like on the test rows (None without test rows, or of the other task).
    fit_seconds_ : float
    """

    def __init__(self, backbone: str = "efficientnet-lite0", mode: str = "finetune", task: str = "auto",
                 epochs: int = 5, batch_size: int = 64, lr: float = 1e-3, backbone_lr_scale: float = 0.3,
                 weight_decay: float = 1e-4, patience: int = 2, val_fraction: float = 0.2,
                 test_fraction: float = 0.0, input_size: int | None = None, augment: bool = True, class_weight: str | None = "balanced",
                 weights: str | None = None, bn_samples: int = 1024, num_threads: int | None = None,
                 random_state: int = 0, verbose: bool = True, checkpoint_dir: str | None = None,
                 accelerator: str = "cpu", devices: int = 1, precision: str = "32-true", resume: bool = False):
        self.backbone = backbone
        self.mode = mode
        self.task = task
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.backbone_lr_scale = backbone_lr_scale
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.input_size = input_size
        self.augment = augment
        self.class_weight = class_weight
        self.weights = weights
        self.bn_samples = bn_samples
        self.num_threads = num_threads
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.accelerator = accelerator
        self.devices = devices
        self.precision = precision
        self.resume = resume

    _PARAMS = ("backbone", "mode", "task", "epochs", "batch_size", "lr", "backbone_lr_scale", "weight_decay",
               "patience", "val_fraction", "test_fraction", "input_size", "augment", "class_weight", "weights", "bn_samples",
               "num_threads", "random_state", "verbose", "checkpoint_dir", "accelerator", "devices", "precision",
               "resume")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters, as scikit-learn's ``get_params``.

        Parameters
        ----------
        deep : bool
            Ignored (no nested estimators).

        Returns
        -------
        dict
        """
        return {n: getattr(self, n) for n in self._PARAMS}

    # --- checks ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"study.mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.task not in TASKS:
            raise UserError(f"task must be one of {', '.join(TASKS)}, got '{self.task}'")
        if self.backbone not in BACKBONES:
            raise UserError(f"unknown backbone '{self.backbone}' (known: {', '.join(BACKBONES)})")
        check_frozen_weights(self.backbone, self.mode, self.weights)
        if self.mode == "finetune":
            if int(self.epochs) < 1:
                raise UserError(f"study.epochs must be at least 1, got {self.epochs}")
            if not 0.0 < float(self.val_fraction) < 1.0:
                raise UserError(f"the validation fraction must be in (0, 1), got {self.val_fraction}")
            if not 0.0 <= float(self.test_fraction) < 1.0 or float(self.val_fraction) + float(self.test_fraction) >= 1:
                raise UserError(f"the test fraction must be in [0, 1) and leave rows to train on beside the "
                                f"validation's {self.val_fraction}, got {self.test_fraction}")
            if int(self.batch_size) < 2:
                raise UserError(f"study.batch_size must be at least 2, got {self.batch_size}")
            if self.class_weight not in ("balanced", None):
                raise UserError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
            if int(self.devices) != 1:
                raise UserError(f"the fine-tuner trains on one device, got devices = {self.devices}")
            if self.resume and not self.checkpoint_dir:
                raise UserError("resume goes on from the checkpoints of a checkpoint_dir: give one")

    # --- fitting ---------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "FineTuner":
        """Fine-tune on ``(X, y)``, or, in frozen mode, just build the pretrained network.

        Parameters
        ----------
        X : array (N, C, H, W)
            Images (a memory-mapped cube is read batch by batch).
        y : array (N,) or (N, K)
            Class labels, or vote fractions in [0, 1]. Ignored in frozen mode.

        Returns
        -------
        FineTuner
            ``self``, fitted.
        """
        self._check_params()
        self._check_X(X)
        start = time.perf_counter()
        with torch_threads(self.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            pretrained = self.mode == "frozen" or BACKBONES[self.backbone].pretrained
            self.model_, self.feature_dim_, self.input_spec_ = make_backbone(
                self.backbone, pretrained=pretrained, weights=self.weights, input_size=self.input_size)
            self.weights_source_ = self.model_.weights_source
            self.head_ = None
            self.history_ = []
            self.best_epoch_ = 0
            self.classes_ = None
            self.task_ = None
            if self.mode == "frozen":
                self.model_.eval()
            else:
                self._fit_finetune(X, y)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_finetune(self, X, y) -> None:
        targets, self.classes_, self.task_ = encode_targets(y, self.task)
        if len(targets) != X.shape[0]:
            raise UserError(f"{X.shape[0]} images but {len(targets)} labels")
        self.train_index_, self.val_index_, self.test_index_ = split_rows(
            targets, self.task_, self.val_fraction, self.random_state, test_fraction=float(self.test_fraction))
        n_out = len(self.classes_) if self.task_ == "classification" else targets.shape[1]
        self.head_ = nn.Linear(self.feature_dim_, n_out)
        self.class_weights_ = None
        if self.task_ == "classification" and self.class_weight == "balanced":
            self.class_weights_ = balanced_class_weights(targets[self.train_index_], n_out)
        if BACKBONES[self.backbone].pretrained or self.weights:
            backbone_lr = self.lr * self.backbone_lr_scale
        else:
            backbone_lr = self.lr
        seed = int(self.random_state)
        data = FineTuneData(X, targets, self.train_index_, self.val_index_, int(self.batch_size), seed,
                            bn_samples=int(self.bn_samples))
        module = FineTuneModule(self.model_, self.head_, self.task_, lr=self.lr, backbone_lr=backbone_lr,
                                weight_decay=self.weight_decay, total_steps=data.steps_per_epoch * int(self.epochs),
                                class_weights=None if self.class_weights_ is None else torch.from_numpy(self.class_weights_),
                                augment=self.augment, seed=seed, verbose=self.verbose)
        module.signature = self._signature(X, targets)
        with tempfile.TemporaryDirectory(prefix="morphospace-finetune-") as scratch:
            self.best_epoch_ = fit_classifier(
                module, data, epochs=int(self.epochs), patience=int(self.patience),
                checkpoint_dir=Path(self.checkpoint_dir or scratch), seed=seed, accelerator=self.accelerator,
                devices=int(self.devices), precision=self.precision,
                resume=bool(self.resume))
        self.history_ = module.history
        self.model_.eval()
        self.head_.eval()
        self._validation_metrics(X, targets)

    def _signature(self, X, targets: np.ndarray) -> dict:
        """What this fine-tuning starts from, kept in its checkpoints: ``resume`` goes on only with the same
        (other labels, split, schedule or rates would have trained a model no run asked for)."""
        def digest(*arrays) -> str:
            h = hashlib.blake2b(digest_size=8)
            for a in arrays:
                h.update(np.ascontiguousarray(a).tobytes())
            return h.hexdigest()

        return {"backbone": self.backbone, "weights": str(self.weights or ""), "input_size": int(self.input_spec_.size),
                "images": int(X.shape[0]), "labels": digest(targets, np.asarray([str(c) for c in self.classes_]
                                                                            if self.classes_ is not None else [])),
                "split": digest(self.train_index_, self.val_index_, self.test_index_),
                "val_fraction": float(self.val_fraction), "test_fraction": float(self.test_fraction), "seed": int(self.random_state),
                "epochs": int(self.epochs), "batch_size": int(self.batch_size), "lr": float(self.lr),
                "backbone_lr_scale": float(self.backbone_lr_scale), "weight_decay": float(self.weight_decay),
                "patience": int(self.patience), "augment": bool(self.augment), "class_weight": str(self.class_weight)}

    def _validation_metrics(self, X, targets: np.ndarray) -> None:
        scores = validation_scores(self._outputs(X, self.val_index_).numpy(), targets[self.val_index_], self.task_,
                                   self.classes_)
        for name, value in scores.items():
            setattr(self, name + "_", value)
        # the same on the test rows, which chose nothing: the held-out scores
        tested = validation_scores(self._outputs(X, self.test_index_).numpy(), targets[self.test_index_],
                                   self.task_, self.classes_) if len(self.test_index_) else {}
        for name in ("val_accuracy", "val_balanced_accuracy", "val_rmse", "confusion_matrix", "classification_report"):
            setattr(self, "test_" + name.removeprefix("val_") + "_", tested.get(name))

    def fit_transform(self, X, y=None) -> np.ndarray:
        """:meth:`fit`, then :meth:`transform` of the same images.

        Parameters
        ----------
        X : array (N, C, H, W)
        y : array (N,) or (N, K), optional

        Returns
        -------
        ndarray (N, feature_dim_) float32
        """
        return self.fit(X, y).transform(X)
