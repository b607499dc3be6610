"""What a fitted :class:`~morphospace.study.finetune.FineTuner` does: features, predictions, files.

:class:`FineTunedModel` is the base of the estimator: :meth:`~FineTunedModel.transform` (the
penultimate features, the study's input), :meth:`~FineTunedModel.predict_proba`,
:meth:`~FineTunedModel.predict`, :meth:`~FineTunedModel.score`, the JSON-ready
:meth:`~FineTunedModel.metrics`, and :meth:`~FineTunedModel.save` /
:meth:`~FineTunedModel.load` of ``model.pt``. Everything runs on the CPU, batch by batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..nets.backbones import make_backbone
from ..nets.batches import INFERENCE_BATCH, RowView, extract_features, forward_in_batches
from ..nets.saving import written_by_torch
from ..run import atomic_path, write_json
from .targets import rmse
from ..nets.scoped import torch_threads

__all__ = ["FineTunedModel", "MODEL_FILE"]

MODEL_FILE = "model.pt"


class FineTunedModel:
    """Inference and persistence of a fitted feature network and its head.

    A base class: :class:`~morphospace.study.finetune.FineTuner` fits the attributes it
    reads (``model_``, ``head_``, ``task_``, ``classes_``, ``input_spec_``, ...) and
    :meth:`load` restores them from ``model.pt``.
    """

    @staticmethod
    def _check_X(X) -> None:
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) != 4:
            raise UserError(f"images must be an N x C x H x W array, got shape {shape}")
        if shape[1] not in (1, 3):
            raise UserError(f"CNN backbones read 1- or 3-channel cubes, this cube has {shape[1]} channels")

    def _outputs(self, X, index: np.ndarray | None = None, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
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

    def transform(self, X, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
        """Penultimate features of every image, streamed batch by batch.

        Parameters
        ----------
        X : array (N, C, H, W)
            Images (a memory-mapped cube is read ``batch_size`` rows at a time).
        batch_size : int

        Returns
        -------
        ndarray (N, feature_dim_) float32
        """
        self._check_fitted()
        self._check_X(X)
        with torch_threads(self.num_threads):
            return extract_features(self.model_, X, batch_size=batch_size)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (classification) or vote fractions (regression).

        Parameters
        ----------
        X : array (N, C, H, W)

        Returns
        -------
        ndarray (N, K)
            Columns in ``classes_`` order (classification).
        """
        self._check_fitted(need_head=True)
        with torch_threads(self.num_threads):
            out = self._outputs(X)
        return (out.softmax(1) if self.task_ == "classification" else torch.sigmoid(out)).numpy()

    def predict(self, X) -> np.ndarray:
        """Class labels (classification) or vote fractions (regression).

        Parameters
        ----------
        X : array (N, C, H, W)

        Returns
        -------
        ndarray (N,) of labels, or (N, K) of fractions
        """
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)] if self.task_ == "classification" else proba

    def score(self, X, y) -> float:
        """Accuracy (classification) or the negative RMSE of the vote fractions (regression).

        Parameters
        ----------
        X : array (N, C, H, W)
        y : array (N,) or (N, K)
            True labels or fractions.

        Returns
        -------
        float
            Higher is better in both cases.
        """
        pred = self.predict(X)
        if self.task_ == "classification":
            return float((pred == np.asarray(y)).mean())
        y = np.asarray(y, dtype=np.float32)
        return -rmse(pred, y.reshape(pred.shape))

    # --- reports and persistence -------------------------------------------------------------
    def metrics(self) -> dict:
        """A JSON-ready summary of the fit: settings, history and validation metrics.

        Returns
        -------
        dict
            ``backbone``, ``mode``, ``task``, ``params``, ``history``, ``best_epoch``, ...; after
            fine-tuning also the split sizes, classes, and the validation rows' metrics (``val_*``,
            ``confusion_matrix``, ``classification_report``: those rows chose the epoch kept) and the
            test rows' (``test_*``: held out, they chose nothing; None without test rows).
        """
        self._check_fitted()
        out = {
            "backbone": self.backbone, "mode": self.mode, "task": self.task_,
            "input_size": self.input_spec_.size, "feature_dim": self.feature_dim_,
            "weights_source": self.weights_source_, "params": self.get_params(),
            "fit_seconds": self.fit_seconds_, "history": self.history_, "best_epoch": self.best_epoch_,
        }
        if self.head_ is not None:
            test = len(getattr(self, "test_index_", ()))  # a model saved before test splits has none
            out.update({"n_test": test, "test_accuracy": getattr(self, "test_accuracy_", None),
                        "test_balanced_accuracy": getattr(self, "test_balanced_accuracy_", None),
                        "test_rmse": getattr(self, "test_rmse_", None),
                        "test_confusion_matrix": getattr(self, "test_confusion_matrix_", None),
                        "test_classification_report": getattr(self, "test_classification_report_", None)})
            out.update({"n_train": len(self.train_index_), "n_val": len(self.val_index_),
                        "classes": None if self.classes_ is None else [_py(c) for c in self.classes_],
                        "class_weights": self.class_weights_,
                        "val_accuracy": self.val_accuracy_, "val_balanced_accuracy": self.val_balanced_accuracy_,
                        "classification_report": self.classification_report_,
                        "confusion_matrix": self.confusion_matrix_, "val_rmse": self.val_rmse_})
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``model.pt`` (weights, head, classes) and ``metrics.json`` into ``directory``.

        Parameters
        ----------
        directory : str or Path
            Created if needed.

        Returns
        -------
        Path
            ``directory``.
        """
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
        with atomic_path(directory / MODEL_FILE) as tmp, written_by_torch(directory / MODEL_FILE):
            torch.save(payload, tmp)
        write_json(directory / "metrics.json", self.metrics())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "FineTuner":
        """A fitted FineTuner from a directory written by :meth:`save` (for transform / predict).

        Parameters
        ----------
        directory : str or Path
            Holds ``model.pt``.

        Returns
        -------
        FineTuner
            Without history or validation split (those are in ``metrics.json``).

        Raises
        ------
        UserError
            ``model.pt`` is missing.
        """
        path = Path(directory) / MODEL_FILE
        if not path.is_file():
            raise UserError(f"no fine-tuned model in {directory} (model.pt missing)")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        params = dict(payload["params"])
        params["weights"] = None
        ft = cls(**params)
        ft.model_, ft.feature_dim_, ft.input_spec_ = make_backbone(
            payload["backbone"], pretrained=False, input_size=payload["input_size"], announce=False)
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

def _py(value):
    return value.item() if isinstance(value, np.generic) else value
