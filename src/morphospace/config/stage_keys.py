"""Which settings describe what: a trained model, the machine a command runs on, the embed stage.

The command line refuses a stage's ``--set`` of an earlier stage's setting by these
(:mod:`morphospace.cli.settings`).
"""

from __future__ import annotations

__all__ = ["EMBED_KEYS", "MACHINE_KEYS", "MODEL_KEYS"]

MODEL_KEYS = ("model.", "form.", "train.")  # prefixes: the trained model's settings
MACHINE_KEYS = ("train.accelerator", "train.devices", "train.num_nodes", "train.strategy", "train.precision",
                "train.num_threads", "train.loader_workers", "ingest.workers")
# what `embed` acts on besides the machine: the merge of the model's components, and the pixel-PCA
# baseline it fits (its components, on a sample of train.sample drawn with train.seed)
EMBED_KEYS = ("model.merge_components", "model.merge_elbow_on", "model.pca_components", "train.sample",
              "train.seed")

