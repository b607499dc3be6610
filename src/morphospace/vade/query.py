"""New images through a run's trained model: their ``form`` embedding and their ``vade`` code.

The images are cube rows made the way the run's galaxies were (see
:func:`morphospace.data.ingest.preprocess_file`); they then take the path the run's galaxies
took to ``embeddings/form.npy`` and ``embeddings/vade.npy``:

``form``
    neighbours masked (:func:`morphospace.image.masking.mask_images`, the form model always
    reads masked cutouts), then the saved form embedder: the CNN trunk and the self-supervised
    head, averaged over the eight dihedral views (:class:`morphospace.ssl.embedder.FormEmbedder`);
``vade``
    the VaDE's ``z_mean``: for the form-first model, its core over the standardised form
    embedding; for a pixel VaDE, its encoder over the image (neighbours masked when it was
    trained so).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..image.masking import mask_images
from ..run import RunDir
from .io import load_vade, model_file

__all__ = ["MODEL_EMBEDDINGS", "as_the_model_reads", "embed_rows"]

MODEL_EMBEDDINGS = ("form", "vade")  # the embeddings this module computes for new images
SMALL_BATCH = 8  # up to this many images are embedded on one thread


def as_the_model_reads(rows: np.ndarray, hp: dict) -> np.ndarray:
    """New cube rows as a model with hyper-parameters ``hp`` reads its galaxies: neighbours masked
    for the form model (always) and for a pixel VaDE trained so."""
    if hp["preset"] == "form" or hp.get("mask_neighbours", False):
        return mask_images(rows, desc="")[0]
    return rows


def embed_rows(run: RunDir, rows: np.ndarray, embedding: str) -> np.ndarray:
    """Embed new cube rows with the run's trained model, like the run's own galaxies.

    Parameters
    ----------
    run : RunDir
        A run with a trained VaDE (``RUN/models/vade/model.pt``).
    rows : ndarray, shape (n, C, S, S)
        Preprocessed like the run's cube.
    embedding : str
        ``"form"`` (needs the form-first model) or ``"vade"``.

    Returns
    -------
    ndarray, shape (n, D), float32

    Raises
    ------
    UserError
        For another embedding, a run without a (form) model, or rows of another shape than the model's.
    """
    if embedding not in MODEL_EMBEDDINGS:
        raise UserError(f"embedding '{embedding}' is not computed by the run's model (these are: "
                        f"{', '.join(MODEL_EMBEDDINGS)})")
    model, hp, _ = load_vade(model_file(run))
    x = np.ascontiguousarray(rows, dtype=np.float32)
    want = (hp["channels"], hp["image_size"], hp["image_size"])
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise UserError(f"the run's model takes {' x '.join(map(str, want))} images, got {tuple(x.shape[1:])}")
    form = hp["preset"] == "form"
    if embedding == "form" and not form:
        raise UserError(f"the model of {run.path} is a '{hp['preset']}' VaDE, which has no form embedding: "
                        "query the 'vade' embedding (or train with model.preset=form)")
    x = as_the_model_reads(x, hp)
    model.eval()
    threads = torch.get_num_threads()
    if len(x) <= SMALL_BATCH:
        # a few images: intra-op threads gain nothing and, on a busy machine, cost seconds
        # (efficientnet-lite0, 8 views of one image: 0.2 s on one thread, 12 s on two under load)
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            t = torch.from_numpy(x)
            if form:
                emb = model.embedder(t)
                if embedding == "form":
                    return emb.numpy().astype(np.float32)
                mu = model.encode_embedding(emb)[0]
            else:
                mu = model.encode_with_target(t)[1]
        return mu.numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads)
