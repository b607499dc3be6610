"""Where a training's loss terms per epoch go: ``<model folder>/logs/csv/`` and
``logs/tensorboard/``, a version folder per fit (``v0``, ``v1`` ...; ``ssl_v0`` and ``decoder_v0``
for the two parts of the form-first model): a resumed training's curves beside the interrupted
one's (a new training clears the model's folder, logs included)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["loss_loggers"]


def loss_loggers(model_folder: str | Path, part: str = "") -> list:
    """A CSV and a TensorBoard logger of the next version of ``part`` (``""``: the model itself)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    logs = Path(model_folder) / "logs"
    prefix = f"{part}_v" if part else "v"
    done = [p for p in (logs / "csv").glob(f"{prefix}*") if p.name[len(prefix):].isdigit()] \
        if (logs / "csv").is_dir() else []
    version = f"{prefix}{len(done)}"
    return [CSVLogger(str(logs), name="csv", version=version),
            TensorBoardLogger(str(logs), name="tensorboard", version=version, default_hp_metric=False)]
