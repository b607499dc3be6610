"""Bilinear resizing of image batches by two matrix products.

``torch.nn.functional.interpolate`` gives results that differ in the last bit with the number of
threads (on a 2-core AVX512 CPU, 1 thread against 2: a third of the pixels of a 64 -> 112 px
resize). A float32 trunk hardly notices; a bfloat16 trunk rounds those bits into features that
differ by 1e-2, so the same galaxies embedded by two processes (one thread each) and by one
(two threads) did not agree. The same resize written as ``R_h @ x @ R_w.T``, with the
interpolation's own weights as matrices, gives the same numbers whatever the thread count and
batch (every image is its own product), to 1e-7 of ``interpolate``, and in less time.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["resize_bilinear", "resize_matrix"]


@lru_cache(maxsize=32)
def _matrix64(n_in: int, n_out: int, antialias: bool) -> torch.Tensor:
    # each input pixel alone through interpolate: its column of weights (float64, then rounded
    # once); two columns wide, as the antialiased kernel mishandles images one pixel wide
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1).expand(n_in, 1, n_in, 2)
    out = F.interpolate(eye, size=(n_out, 2), mode="bilinear", align_corners=False, antialias=antialias)
    return out[..., 0].reshape(n_in, n_out).T.contiguous()


def resize_matrix(n_in: int, n_out: int, antialias: bool = False, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The (n_out, n_in) matrix of 1-D bilinear resizing from ``n_in`` to ``n_out`` samples,
    ``align_corners=False``, antialiased (a wider triangle when shrinking) if asked, as
    ``interpolate`` computes it."""
    return _matrix64(int(n_in), int(n_out), bool(antialias)).to(dtype=dtype, device=device, copy=True)


def resize_bilinear(x: torch.Tensor, size: int, antialias: bool | None = None) -> torch.Tensor:
    """``x`` (N, C, H, W) resized to (N, C, size, size) as ``interpolate(mode="bilinear",
    align_corners=False)`` would; ``antialias`` None: only when shrinking."""
    h, w = x.shape[-2:]
    shrink = antialias if antialias is not None else bool(max(h, w) > size)
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    rows = resize_matrix(h, size, shrink, dtype, x.device)
    cols = resize_matrix(w, size, shrink, dtype, x.device)
    with torch.autocast(x.device.type, enabled=False):  # in the input's precision, as interpolate is under autocast
        return (rows @ x.to(dtype) @ cols.T).to(x.dtype)
