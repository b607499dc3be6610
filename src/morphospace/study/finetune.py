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

Examples
--------
>>> ft = FineTuner("small", epochs=3, random_state=0).fit(X, y)     # doctest: +SKIP
>>> ft.val_accuracy_, ft.confusion_matrix_                           # doctest: +SKIP
>>> features = ft.transform(X)                                       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..nets.backbones import BACKBONES, make_backbone
from ..nets.batches import RowView, extract_features, forward_in_batches
from ..progress import progress
from ..run import atomic_path, write_json

log = logging.getLogger("morphospace")

MODES = ("finetune", "frozen")
TASKS = ("auto", "classification", "regression")


# --- augmentation -----------------------------------------------------------------------------

def augment(x: torch.Tensor, generator: torch.Generator, max_angle: float = 15.0) -> torch.Tensor:
    """Random 90-degree rotations, mirror flips and small arbitrary rotations of a batch.

    The 90-degree turns and flips are exact (no interpolation); the extra rotation of up
    to ``max_angle`` degrees is bilinear with reflected borders.
    """
    n = x.shape[0]
    k = torch.randint(0, 4, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_angle)
    out = torch.empty_like(x)
    for turns in range(4):
        sel = k == turns
        if sel.any():
            out[sel] = torch.rot90(x[sel], turns, dims=(2, 3))
    out = torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)
    if max_angle > 0:
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out


# --- the estimator -----------------------------------------------------------------------------

class FineTuner:
    """Fine-tune (or freeze) a CNN backbone on galaxy labels; its features are the study's input.

    Parameters
    ----------
    backbone : str
        A key of :data:`morphospace.nets.backbones.BACKBONES`.
    mode : {"finetune", "frozen"}
        ``frozen``: ImageNet features as they are, nothing is trained and ``y`` is ignored.
    task : {"auto", "classification", "regression"}
        ``auto``: a 2-D float ``y`` (or a 1-D float ``y`` with non-integer values) is
        regression on vote fractions, anything else classification.
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
        Share of the labelled rows held out for validation (stratified by class).
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
    train_index_, val_index_ : ndarray
        Row indices of ``X`` used for training and validation.
    fit_seconds_ : float
    """

    def __init__(self, backbone: str = "efficientnet-lite0", mode: str = "finetune", task: str = "auto",
                 epochs: int = 5, batch_size: int = 64, lr: float = 1e-3, backbone_lr_scale: float = 0.3,
                 weight_decay: float = 1e-4, patience: int = 2, val_fraction: float = 0.2,
                 input_size: int | None = None, augment: bool = True, class_weight: str | None = "balanced",
                 weights: str | None = None, bn_samples: int = 1024, num_threads: int | None = None,
                 random_state: int = 0, verbose: bool = True):
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
        self.input_size = input_size
        self.augment = augment
        self.class_weight = class_weight
        self.weights = weights
        self.bn_samples = bn_samples
        self.num_threads = num_threads
        self.random_state = random_state
        self.verbose = verbose

    def get_params(self, deep: bool = True) -> dict:
        names = ("backbone", "mode", "task", "epochs", "batch_size", "lr", "backbone_lr_scale", "weight_decay",
                 "patience", "val_fraction", "input_size", "augment", "class_weight", "weights", "bn_samples", "num_threads",
                 "random_state", "verbose")
        return {n: getattr(self, n) for n in names}

    # --- checks ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"study.mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.task not in TASKS:
            raise UserError(f"task must be one of {', '.join(TASKS)}, got '{self.task}'")
        if self.backbone not in BACKBONES:
            raise UserError(f"unknown backbone '{self.backbone}' (known: {', '.join(BACKBONES)})")
        if self.mode == "frozen" and not BACKBONES[self.backbone].pretrained and not self.weights:
            raise UserError(f"frozen mode needs trained weights and backbone '{self.backbone}' has none: "
                            "use study.mode = finetune, or name a weights file in study.weights")
        if self.mode == "finetune":
            if int(self.epochs) < 1:
                raise UserError(f"study.epochs must be at least 1, got {self.epochs}")
            if not 0.0 < float(self.val_fraction) < 1.0:
                raise UserError(f"the validation fraction must be in (0, 1), got {self.val_fraction}")
            if int(self.batch_size) < 2:
                raise UserError(f"study.batch_size must be at least 2, got {self.batch_size}")
            if self.class_weight not in ("balanced", None):
                raise UserError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")

    @staticmethod
    def _check_X(X) -> None:
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) != 4:
            raise UserError(f"images must be an N x C x H x W array, got shape {shape}")
        if shape[1] not in (1, 3):
            raise UserError(f"CNN backbones read 1- or 3-channel cubes, this cube has {shape[1]} channels")

    def _resolve_task(self, y: np.ndarray) -> str:
        if self.task != "auto":
            return self.task
        if y.dtype.kind == "f" and (y.ndim == 2 or not np.allclose(y, np.round(y))):
            return "regression"
        return "classification"

    # --- fitting ---------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "FineTuner":
        """Fine-tune on ``(X, y)``, or, in frozen mode, just build the pretrained network.

        Parameters
        ----------
        X : array (N, C, H, W)
            Images (a memory-mapped cube is read batch by batch).
        y : array (N,) or (N, K)
            Class labels, or vote fractions in [0, 1]. Ignored in frozen mode.
        """
        self._check_params()
        self._check_X(X)
        start = time.perf_counter()
        with _threads(self.num_threads), torch.random.fork_rng(devices=[]):
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

    def _encode_targets(self, y) -> tuple[np.ndarray, np.ndarray | None]:
        """Targets as the loss wants them: class indices, or float fractions."""
        if y is None:
            raise UserError("fine-tuning needs labels: name a catalogue label column in study.labels "
                            "(or use study.mode = frozen)")
        y = np.asarray(y)
        if len(y) == 0:
            raise UserError("fine-tuning needs labelled images, got none")
        self.task_ = self._resolve_task(y)
        if self.task_ == "classification":
            if y.ndim != 1:
                raise UserError(f"class labels must be one per image, got shape {y.shape}")
            if pd.isna(y).any():
                raise UserError("labels contain missing values: drop those rows before fitting")
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise UserError(f"fine-tuning on classes needs at least 2 classes, got {len(classes)}")
            return codes.astype(np.int64), classes
        y = y.astype(np.float32)
        if y.ndim == 1:
            y = y[:, None]
        if not np.isfinite(y).all() or y.min() < 0 or y.max() > 1:
            raise UserError("vote fractions must be finite numbers in [0, 1]")
        return y, None

    def _split(self, targets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.model_selection import train_test_split

        strata = targets if self.task_ == "classification" else (
            targets.argmax(1) if targets.shape[1] > 1 else None)
        if strata is not None:
            _, counts = np.unique(strata, return_counts=True)
            n_val = int(math.ceil(n * float(self.val_fraction)))
            if counts.min() < 2 or n_val < len(counts) or n - n_val < len(counts):
                log.warning("too few rows per class for a stratified split: splitting at random")
                strata = None
        if n < 4:
            raise UserError(f"fine-tuning needs at least 4 labelled images, got {n}")
        train, val = train_test_split(np.arange(n), test_size=float(self.val_fraction), stratify=strata,
                                      random_state=int(self.random_state), shuffle=True)
        return np.sort(train), np.sort(val)

    def _fit_finetune(self, X, y) -> None:
        targets, classes = self._encode_targets(y)
        if len(targets) != X.shape[0]:
            raise UserError(f"{X.shape[0]} images but {len(targets)} labels")
        self.classes_ = classes
        self.train_index_, self.val_index_ = self._split(targets, X.shape[0])
        n_out = len(classes) if self.task_ == "classification" else targets.shape[1]
        self.head_ = nn.Linear(self.feature_dim_, n_out)

        class_w = None
        if self.task_ == "classification" and self.class_weight == "balanced":
            counts = np.bincount(targets[self.train_index_], minlength=n_out).astype(np.float64)
            w = len(self.train_index_) / (n_out * np.maximum(counts, 1))
            class_w = torch.tensor(w, dtype=torch.float32)
        self.class_weights_ = None if class_w is None else class_w.numpy()

        if BACKBONES[self.backbone].pretrained or self.weights:
            backbone_lr = self.lr * self.backbone_lr_scale
        else:
            backbone_lr = self.lr
        opt = torch.optim.AdamW([{"params": self.model_.parameters(), "lr": backbone_lr},
                                 {"params": self.head_.parameters(), "lr": self.lr}],
                                weight_decay=self.weight_decay)
        bs = int(self.batch_size)
        steps_per_epoch = max(1, len(self.train_index_) // bs)  # the last partial batch is dropped
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * int(self.epochs))
        gen = torch.Generator().manual_seed(int(self.random_state))

        best_loss, best_state, stale = math.inf, None, 0
        for epoch in range(1, int(self.epochs) + 1):
            t0 = time.perf_counter()
            self.model_.train()
            self.head_.train()
            order = self.train_index_[torch.randperm(len(self.train_index_), generator=gen).numpy()]
            total, seen = 0.0, 0
            # Drop a last partial batch: BatchNorm over one or two images is noise.
            n_batches = steps_per_epoch
            for b in progress(range(n_batches), total=n_batches, desc=f"fine-tune epoch {epoch}/{self.epochs}",
                              unit="batch"):
                idx = order[b * bs:(b + 1) * bs] if len(order) >= bs else order
                xb = _rows(X, idx)
                if self.augment:
                    xb = augment(xb, gen)
                out = self.head_(self.model_(xb))
                loss = self._loss(out, targets[idx], class_w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            train_loss = total / max(seen, 1)
            _recalibrate_bn(self.model_, X, order[:self.bn_samples], bs)
            val_out = self._outputs(X, self.val_index_)
            val_loss = float(self._loss(val_out, targets[self.val_index_], class_w))
            record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss}
            if self.task_ == "classification":
                record["val_accuracy"] = float((val_out.argmax(1).numpy() == targets[self.val_index_]).mean())
            else:
                record["val_rmse"] = _rmse(torch.sigmoid(val_out).numpy(), targets[self.val_index_])
            record["seconds"] = time.perf_counter() - t0
            self.history_.append(record)
            if self.verbose:
                log.info("epoch %d/%d: %s", epoch, self.epochs,
                         ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
            if val_loss < best_loss - 1e-6:
                best_loss, stale, self.best_epoch_ = val_loss, 0, epoch
                best_state = (copy.deepcopy(self.model_.state_dict()), copy.deepcopy(self.head_.state_dict()))
            else:
                stale += 1
                if self.patience and stale >= int(self.patience):
                    log.info("early stop after epoch %d: validation loss has not improved for %d epochs",
                             epoch, stale)
                    break
        if best_state is not None:
            self.model_.load_state_dict(best_state[0])
            self.head_.load_state_dict(best_state[1])
        self.model_.eval()
        self.head_.eval()
        self._validation_metrics(X, targets)

    def _loss(self, out: torch.Tensor, target: np.ndarray, class_w: torch.Tensor | None) -> torch.Tensor:
        if self.task_ == "classification":
            return F.cross_entropy(out, torch.from_numpy(np.asarray(target)), weight=class_w)
        return F.mse_loss(torch.sigmoid(out), torch.from_numpy(np.asarray(target)))

    def _validation_metrics(self, X, targets: np.ndarray) -> None:
        from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix

        out = self._outputs(X, self.val_index_)
        truth = targets[self.val_index_]
        self.val_accuracy_ = self.val_balanced_accuracy_ = None
        self.classification_report_ = self.confusion_matrix_ = self.val_rmse_ = None
        if self.task_ == "classification":
            pred = out.argmax(1).numpy()
            labels = np.arange(len(self.classes_))
            self.val_accuracy_ = float((pred == truth).mean())
            self.val_balanced_accuracy_ = float(balanced_accuracy_score(truth, pred))
            self.classification_report_ = classification_report(
                truth, pred, labels=labels, target_names=[str(c) for c in self.classes_],
                output_dict=True, zero_division=0)
            self.confusion_matrix_ = confusion_matrix(truth, pred, labels=labels)
        else:
            self.val_rmse_ = _rmse(torch.sigmoid(out).numpy(), truth)

    # --- inference -----------------------------------------------------------------------------
    def _outputs(self, X, index: np.ndarray | None = None, batch_size: int = 256) -> torch.Tensor:
        """Head outputs (logits) for rows ``index`` of X, in eval mode."""
        self.model_.eval()
        self.head_.eval()
        index = np.arange(X.shape[0]) if index is None else index
        out = forward_in_batches(lambda xb: self.head_(self.model_(xb)), RowView(X, index), batch_size)
        return torch.zeros(0, self.head_.out_features) if out is None else torch.from_numpy(out)

    def _check_fitted(self, need_head: bool = False) -> None:
        if not hasattr(self, "model_"):
            raise UserError("this FineTuner is not fitted yet: call fit first")
        if need_head and self.head_ is None:
            raise UserError("a frozen backbone has no classifier: fine-tune (mode = finetune) to predict")

    def transform(self, X, batch_size: int = 256) -> np.ndarray:
        """Penultimate features, ``(N, feature_dim_)`` float32, streamed batch by batch."""
        self._check_fitted()
        self._check_X(X)
        with _threads(self.num_threads):
            return extract_features(self.model_, X, batch_size=batch_size)

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X, y).transform(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (classification) or vote fractions (regression), ``(N, K)``."""
        self._check_fitted(need_head=True)
        with _threads(self.num_threads):
            out = self._outputs(X)
        return (out.softmax(1) if self.task_ == "classification" else torch.sigmoid(out)).numpy()

    def predict(self, X) -> np.ndarray:
        """Class labels (classification) or vote fractions (regression)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)] if self.task_ == "classification" else proba

    def score(self, X, y) -> float:
        """Accuracy (classification) or the negative RMSE of the vote fractions (regression)."""
        pred = self.predict(X)
        if self.task_ == "classification":
            return float((pred == np.asarray(y)).mean())
        y = np.asarray(y, dtype=np.float32)
        return -_rmse(pred, y.reshape(pred.shape))

    # --- reports and persistence -------------------------------------------------------------
    def metrics(self) -> dict:
        """A JSON-ready summary of the fit: settings, history and validation metrics."""
        self._check_fitted()
        out = {
            "backbone": self.backbone, "mode": self.mode, "task": self.task_,
            "input_size": self.input_spec_.size, "feature_dim": self.feature_dim_,
            "weights_source": self.weights_source_, "params": self.get_params(),
            "fit_seconds": self.fit_seconds_, "history": self.history_, "best_epoch": self.best_epoch_,
        }
        if self.head_ is not None:
            out.update({"n_train": len(self.train_index_), "n_val": len(self.val_index_),
                        "classes": None if self.classes_ is None else [_py(c) for c in self.classes_],
                        "class_weights": self.class_weights_,
                        "val_accuracy": self.val_accuracy_, "val_balanced_accuracy": self.val_balanced_accuracy_,
                        "classification_report": self.classification_report_,
                        "confusion_matrix": self.confusion_matrix_, "val_rmse": self.val_rmse_})
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``model.pt`` (weights, head, classes) and ``metrics.json`` into ``directory``."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "backbone": self.backbone, "input_size": self.input_spec_.size, "task": self.task_,
            "classes": None if self.classes_ is None else [_py(c) for c in self.classes_],
            "params": self.get_params(),
            "state_dict": self.model_.state_dict(),
            "head": None if self.head_ is None else self.head_.state_dict(),
        }
        with atomic_path(directory / "model.pt") as tmp:
            torch.save(payload, tmp)
        write_json(directory / "metrics.json", self.metrics())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "FineTuner":
        """A fitted FineTuner from a directory written by :meth:`save` (for transform / predict)."""
        path = Path(directory) / "model.pt"
        if not path.is_file():
            raise UserError(f"no fine-tuned model in {directory} (model.pt missing)")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        params = dict(payload["params"])
        params["weights"] = None
        ft = cls(**params)
        ft.model_, ft.feature_dim_, ft.input_spec_ = make_backbone(
            payload["backbone"], pretrained=False, input_size=payload["input_size"])
        ft.model_.load_state_dict(payload["state_dict"])
        ft.model_.eval()
        ft.weights_source_ = str(path)
        ft.task_ = payload["task"]
        ft.classes_ = None if payload["classes"] is None else np.asarray(payload["classes"])
        ft.head_ = None
        if payload["head"] is not None:
            w = payload["head"]["weight"]
            ft.head_ = nn.Linear(w.shape[1], w.shape[0])
            ft.head_.load_state_dict(payload["head"])
            ft.head_.eval()
        ft.history_, ft.best_epoch_, ft.fit_seconds_ = [], 0, 0.0
        return ft


# --- helpers -----------------------------------------------------------------------------------

def _rows(X, index: np.ndarray) -> torch.Tensor:
    """Rows of an array or memmap as a float32 tensor (sorted reads are fastest on a memmap)."""
    index = np.asarray(index)
    order = np.argsort(index, kind="stable")
    block = np.asarray(X[index[order]], dtype=np.float32)
    out = np.empty_like(block)
    out[order] = block
    return torch.from_numpy(out)


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - truth) ** 2)))


def _py(value):
    return value.item() if isinstance(value, np.generic) else value


@torch.no_grad()
def _recalibrate_bn(model: nn.Module, X, index: np.ndarray, batch_size: int) -> None:
    """Re-estimate batch-norm running statistics with the current weights ("precise BN").

    During fine-tuning the running averages lag the weights; evaluated with them, a
    network that fits its training batches can predict a single class (seen on small
    data). Averaging the statistics of un-augmented training batches with the final
    weights makes eval-mode outputs match what was trained. Other layers stay in eval
    mode (no drop-connect).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(index) == 0:
        return
    was_training = model.training
    model.eval()
    saved = []
    for m in bns:
        saved.append(m.momentum)
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    index = np.sort(index)
    for start in range(0, len(index), batch_size):
        model(_rows(X, index[start:start + batch_size]))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    model.train(was_training)


class _threads:
    """Set torch's CPU thread count for a block, then restore it."""

    def __init__(self, n: int | None):
        self.n = int(n) if n else 0

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.n > 0:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.n > 0:
            torch.set_num_threads(self.before)
