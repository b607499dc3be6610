"""The form-first VaDE's whole training as a fraction of a large matmul's FLOP/s, in one process.

Issue 9 asks for the training throughput as a fraction of a large matmul's FLOP/s in the same
process. ``bench_form_throughput.py`` measures the parts one at a time on random inputs; this
measures the training itself: it ingests DATA into ``--work`` (once; default sdss-gz1), then, in
this process, times a 2048^2 float32 matmul (and a bfloat16 one where the CPU computes bfloat16
natively), trains the default model through ``morphospace train``'s own code
(:func:`morphospace.vade.train.train_run`), times the matmuls again (the higher of each pair is
the peak), and counts the FLOPs the training did with torch's ``FlopCounterMode`` (matrix
products and convolutions; element-wise work is not counted, as usual for such fractions):

- the view bank: the trunk's forward FLOPs per image x (8 + ``form.aug_views``) views x the
  galaxies trained on, plus ``embed_views`` passes for each galaxy outside ``train.sample``;
- the SSL head: one step's forward and backward (head, projector, NT-Xent) x the steps taken
  (``form.ssl_epochs`` x full batches of 256 x heads);
- the image decoder: forward and backward per image x ``form.decoder_epochs`` x galaxies;
- the linear core's EM fits: not counted (small matrices), but their time is in the total.

Each part's FLOP/s is its FLOPs over its wall time from ``training.json`` (``seconds_by_part``);
the whole is all FLOPs over the training's ``seconds``. Fractions are printed against the float32
matmul and, where there is one, the bfloat16 matmul (the trunk and the decoder compute in
bfloat16 there, so that is the stricter peer).

Usage::

    .venv/bin/python benchmarks/bench_form_training_rate.py --work W
    .venv/bin/python benchmarks/bench_form_training_rate.py --work W --set form.precision=32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_form_throughput import matmul_flops  # noqa: E402 - the same peer as the per-part benchmark

GZ1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-gz1"
HEAD_BATCH = 256  # fit_embedder's batch


def _flops(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def part_flops(hp: dict, n_train: int, n_all: int, channels: int, side: int, feature_dim: int) -> dict:
    """FLOPs of each part of a form training of ``n_train`` of ``n_all`` galaxies (see the module docstring)."""
    from morphospace.image.geometry import radial_weight
    from morphospace.ssl.embedder import FormHead, build_trunk
    from morphospace.ssl.training import SSLModule
    from morphospace.vade.form_model import flip_min_sq_error
    from morphospace.vade.networks import DefaultDecoder

    f = hp["form"]
    x = torch.rand(8, channels, side, side)
    trunk = build_trunk(f["backbone"], f["input_size"], precision="32").eval()  # the same FLOPs in any precision
    with torch.enable_grad():  # the trunk's own modules: its inference copy computes zero taps too (nets/folding.py)
        per_view = _flops(lambda: trunk(x)) / len(x)
    embed_views = f.get("embed_views") or (8 if n_train == n_all else 4)  # as train_form_run resolves it
    bank = per_view * ((8 + f["aug_views"]) * n_train + embed_views * (n_all - n_train))

    module = SSLModule(FormHead(feature_dim, dim=f["dim"]), None, temperature=f["temperature"])
    f1, f2 = torch.randn(HEAD_BATCH, feature_dim), torch.randn(HEAD_BATCH, feature_dim)
    step = _flops(lambda: module._loss(module.projector(module.head(f1)), module.projector(module.head(f2))).backward())
    head = step * f["ssl_epochs"] * max(1, n_train // HEAD_BATCH) * f.get("heads", 1)

    decoder = DefaultDecoder(channels, side, hp["latent_dim"], tuple(hp["widths"]))
    z, target, w = torch.randn(8, hp["latent_dim"]), torch.rand(8, channels, side, side), radial_weight(side, 0.5, 0.25)
    per_image = _flops(lambda: flip_min_sq_error(target, decoder(z), w).mean().backward()) / len(z)
    return {"embedding": bank + head, "view bank": bank, "ssl head": head,
            "image_decoder": per_image * f["decoder_epochs"] * n_train}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="where the ingested run and its training go")
    ap.add_argument("--data", type=Path, default=GZ1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="configuration overrides")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from morphospace.config import apply_overrides, load_config
    from morphospace.data.ingest import ingest
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir
    from morphospace.ssl.embedder import resolve_precision
    from morphospace.vade.train import train_run

    set_quiet(True)
    cfg = apply_overrides(load_config(None), ["train.keep_view_bank=true", *args.set])  # its width is read below
    path = args.work / "run"
    if not (path / "cube.npy").is_file():
        ingest(args.data, RunDir(path, create=True), cfg)
    run = RunDir(path)
    native_bf16 = resolve_precision("auto") == "bf16"
    peers = {"float32": [matmul_flops()]}
    if native_bf16:
        peers["bfloat16"] = [matmul_flops(dtype=torch.bfloat16)]
    train_run(run, cfg)
    peers["float32"].append(matmul_flops())
    if native_bf16:
        peers["bfloat16"].append(matmul_flops(dtype=torch.bfloat16))
    peak = {k: max(v) for k, v in peers.items()}

    summary = json.loads((path / "models" / "vade" / "training.json").read_text())
    from morphospace.vade.io import load_vade

    _, hp, _ = load_vade(path / "models" / "vade" / "model.pt")
    n_all = int(summary["n_images"])
    n_train = int(summary.get("train_sample") or n_all)
    cube = np.load(path / "cube.npy", mmap_mode="r")
    feature_dim = int(np.load(path / "models" / "vade" / "ssl" / "view_bank.npy", mmap_mode="r").shape[-1])
    flops = part_flops(hp, n_train, n_all, cube.shape[1], cube.shape[2], feature_dim)
    seconds = dict(summary["seconds_by_part"])
    seconds["whole training"] = float(summary["seconds"])
    flops["whole training"] = flops["embedding"] + flops["image_decoder"]
    print(f"{n_all} galaxies ({n_train} trained on), trunk precision {hp['form']['precision']}; matmul peaks: "
          + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peak.items()))
    print("| part | seconds | TFLOP | GFLOP/s | " + " | ".join(f"fraction of the {k} matmul" for k in peak) + " |")
    print("|---|---|---|---|" + "---|" * len(peak))
    out = {"n_images": n_all, "train_sample": n_train, "precision": hp["form"]["precision"],
           "matmul_gflops": {k: v / 1e9 for k, v in peak.items()}, "parts": {}}
    for name in ("embedding", "image_decoder", "whole training"):
        rate = flops[name] / seconds[name]
        out["parts"][name] = {"seconds": seconds[name], "flops": flops[name],
                              "fractions": {k: rate / v for k, v in peak.items()}}
        print(f"| {name} | {seconds[name]:.1f} | {flops[name] / 1e12:.2f} | {rate / 1e9:.1f} | "
              + " | ".join(f"{100 * rate / v:.0f}%" for v in peak.values()) + " |")
    print(f"(of the embedding's FLOPs: view bank {flops['view bank'] / 1e12:.2f} T, "
          f"SSL head {flops['ssl head'] / 1e12:.2f} T; "
          f"the linear core's {seconds.get('vade', 0.0):.1f} s are in the whole)")
    print(json.dumps(out))


if __name__ == "__main__":
    from _entry import run

    run(main)
