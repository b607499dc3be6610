"""In-domain adaptation of the ImageNet trunk's last blocks, self-supervised (issue 9): measured.

The form embedding reads a *frozen* ImageNet EfficientNet-Lite0. Issue 9 asks for the trunk
to be adapted in-domain too. ``form.train_trunk = true`` does that for the whole trunk, on views
drawn afresh each step: a GPU job. This script measures what a CPU can afford of it: the
stride-16 maps (the input of block ``--from-block``, 112 channels x 7 x 7 at 112 px) of every
galaxy's 8 dihedral and 4 nuisance views are computed once (float16, under ``--work``); then
the blocks from ``--from-block`` on, the head convolution, the form head and its projector
train together with the default objective (NT-Xent, t = 0.2, batch 256, pairs of different
views of each galaxy), the trunk's blocks at ``--lr-trunk`` (the head at 1e-3), with Lightning.

The embedding is then what the form embedder computes (the head's output averaged over the 8
dihedral views) and is scored as ``bench_form_pooling.score`` scores every variant: K-Means(3)
AMI against elliptical / spiral / edge-on (K-Means seeds 0-2), the 10% linear probe, and the
label-free silhouette of the K-Means clusters in a 2-D UMAP. ``--lr-trunk 0`` keeps the blocks
frozen: the default recipe on the same cached views, the peer of the same run.

Usage::

    .venv/bin/python benchmarks/bench_form_adapt.py --work W --lr-trunk 0 1e-4 --epochs 20

Labels only score; nothing is chosen here.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_form_pooling import score, survey_run  # noqa: E402 - the same survey and scores

N_VIEWS = 12  # 8 dihedral + 4 nuisance views, as the default view bank


def cache_maps(cube, trunk, from_block: int, out: Path) -> np.ndarray:
    """(12, N, C, H, W) float16: the input of block ``from_block`` for every view (memmap, reused)."""
    import torch

    from morphospace.image.geometry import dihedral
    from morphospace.nets.batches import INFERENCE_BATCH
    from morphospace.ssl.augment import NuisanceAugment
    from morphospace.ssl.bank import N_DIHEDRAL, view_seed

    path, done = out / f"maps_in{from_block}.npy", out / f"maps_in{from_block}.done"
    if done.is_file():
        return np.load(path, mmap_mode="r")
    fnet, eff = trunk.net, trunk.net.trunk.net

    def stem(x):
        h = eff._swish(eff._bn0(eff._conv_stem(fnet.prepare(x).contiguous(memory_format=torch.channels_last))))
        for blk in eff._blocks[:from_block]:
            h = blk(h)
        return h

    augment, n = NuisanceAugment(), len(cube)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=trunk.precision == "bf16"):
        shape = (N_VIEWS, n) + tuple(stem(torch.from_numpy(np.array(cube[:1], dtype=np.float32))).shape[1:])
        out.mkdir(parents=True, exist_ok=True)
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
        t0 = time.perf_counter()
        for s in range(0, n, INFERENCE_BATCH):  # the nuisance views drawn as the view bank draws them
            x = torch.from_numpy(np.array(cube[s:s + INFERENCE_BATCH], dtype=np.float32))
            for v in range(N_VIEWS):
                xv = dihedral(x, v) if v < N_DIHEDRAL else augment(x, seed=view_seed(0, v, s))
                mm[v, s:s + len(x)] = stem(xv).float().numpy()
            print(f"  maps {s + len(x)}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    mm.flush()
    del mm
    done.write_text("ok")
    return np.load(path, mmap_mode="r")


def adapted_embedding(maps: np.ndarray, trunk, from_block: int, lr_trunk: float, epochs: int, seed: int):
    """Train the trunk's tail (unless ``lr_trunk`` is 0) and the form head; the 8-view embedding."""
    import lightning.pytorch as pl
    import torch
    from torch import nn

    from morphospace.progress import quiet_lightning
    from morphospace.ssl.embedder import FormHead
    from morphospace.ssl.losses import nt_xent

    eff = trunk.net.trunk.net
    maps_t = torch.from_numpy(np.asarray(maps))  # float16 in memory (442 MB for sdss-gz1)
    n = maps_t.shape[1]

    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = copy.deepcopy(eff._blocks[from_block:])
            self.conv_head, self.bn1, self.swish = copy.deepcopy(eff._conv_head), copy.deepcopy(eff._bn1), eff._swish

        def forward(self, h):  # the two taps of TrunkTaps: last block and head, pooled
            for blk in self.blocks:
                h = blk(h)
            return torch.cat([h.mean((2, 3)), self.swish(self.bn1(self.conv_head(h))).mean((2, 3))], 1)

    def features(tail, views):
        with torch.no_grad():
            return torch.stack([torch.cat([tail(maps_t[v, s:s + 512].float()) for s in range(0, n, 512)]) for v in views])

    class Adapt(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.tail = Tail().eval()
            self.frozen = features(self.tail, range(N_VIEWS)) if lr_trunk == 0 else None
            self.head = FormHead(self.tail(maps_t[0, :2].float()).shape[1], dim=64)
            scale = self.frozen if self.frozen is not None else features(self.tail, range(N_VIEWS))
            self.head.set_scaling(scale.numpy())
            self.proj = nn.Sequential(nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 256), nn.BatchNorm1d(256),
                                      nn.ReLU(), nn.Linear(256, 256))

        def training_step(self, rows, _):
            g = torch.Generator().manual_seed(seed * 100_003 + self.global_step)
            a = torch.randint(0, N_VIEWS, (len(rows),), generator=g)
            c = (a + torch.randint(1, N_VIEWS, (len(rows),), generator=g)) % N_VIEWS
            if self.frozen is not None:
                f = torch.cat([self.frozen[a, rows], self.frozen[c, rows]])
            else:
                self.tail.train()
                f = self.tail(torch.cat([maps_t[a, rows], maps_t[c, rows]]).float())
            z = self.proj(self.head(f))
            loss = nt_xent(z[:len(rows)], z[len(rows):], temperature=0.2)
            self.log("loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self):
            groups = [{"params": list(self.head.parameters()) + list(self.proj.parameters()), "lr": 1e-3}]
            if self.frozen is None:
                groups.append({"params": self.tail.parameters(), "lr": lr_trunk})
            opt = torch.optim.AdamW(groups, weight_decay=1e-4)
            return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)]

    pl.seed_everything(seed, workers=True, verbose=False)
    module = Adapt()
    loader = torch.utils.data.DataLoader(torch.arange(n), batch_size=256, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    with quiet_lightning():
        pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_model_summary=False,
                   enable_progress_bar=False, accelerator="cpu", devices=1).fit(module, loader)
    seconds = time.perf_counter() - t0
    module.eval()
    with torch.no_grad():
        feats = module.frozen[:8] if module.frozen is not None else features(module.tail, range(8))
        emb = torch.stack([module.head(f) for f in feats]).mean(0).numpy()
    return emb, seconds


def main() -> None:
    import torch

    from morphospace.image.masking import masked_cube
    from morphospace.progress import set_quiet
    from morphospace.ssl.embedder import build_trunk

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--from-block", type=int, default=11, help="first trainable block (11: the stride-32 stages)")
    ap.add_argument("--lr-trunk", type=float, nargs="+", default=[0.0, 1e-4])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    set_quiet(True)
    run = survey_run(args.work, "gz1")
    truth = run.cube_catalogue()["morph3"].astype("string").fillna("").to_numpy()
    trunk = build_trunk("efficientnet-lite0", 112, precision="auto").eval()
    maps = cache_maps(masked_cube(run, workers=2), trunk, args.from_block, args.work)
    for lr in args.lr_trunk:
        emb, seconds = adapted_embedding(maps, trunk, args.from_block, lr, args.epochs, args.seed)
        sc = {k: v for k, v in score(emb, truth, 3, [0, 1, 2]).items() if k != "labels"}
        row = {"from_block": args.from_block, "lr_trunk": lr, "epochs": args.epochs, "seed": args.seed,
               "train_s": round(seconds, 1), **sc}
        print(json.dumps(row), flush=True)
        with open(args.work / "adapt_results.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    from _entry import run

    run(main)
