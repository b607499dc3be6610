"""Training and embedding throughput on an accelerator: the one short script for a GPU session (issue 10).

GPU time is scarce (a session may get a few minutes of one), so everything the issue asks of a
GPU is measured by one command, and each step is written to ``OUT/bench_gpu.json`` as soon as
it is done, so a run cut short still returns what it measured:

1. **matmul**: a large matmul's FLOP/s on the device in float32, TF32 (CUDA only) and bfloat16,
   the peer the issue's throughput fractions are taken against;
2. **embedding**: the frozen form trunk (EfficientNet-Lite0 at 112 px, batch norms folded) over a
   memory-mapped cube through Lightning's ``Trainer.predict``
   (:func:`morphospace.nets.predict.predict_rows`), with 0 and ``--loader-workers`` processes
   reading the cube: images/s (is the device starved by its loader?);
3. **default model** (``model.preset = "form"``): a survey of ``--n`` mock galaxies ingested on
   the machine's cores, then ``morphospace train --accelerator ...``; from the
   model's ``training.json``: trunk views/s of the form embedding (each galaxy's 8 dihedral +
   ``form.aug_views`` nuisance views through the trunk, the SSL head's training included) and
   images/s of the image decoder (``form.decoder_epochs`` passes);
4. **astrovader preset**: the same survey ingested with ``--preset astrovader`` (128 px grey) and
   trained with ``model.preset = "astrovader"`` (the published pixel VaDE), ``--epochs`` epochs:
   images/s (galaxies x epochs / training seconds, the mixture's initialisation included).

The mock survey is a Galaxy10-layout HDF5 file (128 x 128 colour cutouts of smooth,
two-armed and edge-on light profiles with noise, drawn by numpy: :func:`mock_galaxy10`), so the
GPU machine needs neither GalSim nor JPEG decoding; what the images show does not change the
throughput. ``--survey PATH`` ingests a real survey instead.

Each stage's command line is printed and kept in the JSON. The work files go under ``OUT/work``
(``--keep`` keeps them; removed otherwise).

Usage::

    # on the GPU machine, a fresh checkout (`make install` first); about 6-9 minutes on one GPU
    .venv/bin/python benchmarks/bench_gpu.py --out "$OUT" --n 20000
    # the device tool's machine (Python 3.12, torch, Lightning, h5py, scikit-learn already there):
    # carry the wheels benchmarks/gpu_wheels.txt names, then
    #   PYTHONPATH=src python3 benchmarks/bench_gpu.py --out "$OUT" --n 20000
    # a smoke run on a CPU (about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_gpu.py --out /tmp/bench_gpu --n 300 --accelerator cpu --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_form_throughput import matmul_flops  # noqa: E402 - the benchmarks' one matmul peer


def mock_galaxy10(path: Path, n: int, size: int = 128, seed: int = 0, chunk: int = 1000) -> None:
    """A Galaxy10-layout HDF5 file (``images`` uint8 (n, size, size, 3), ``ans``) of mock galaxies.

    Each is an exponential light profile with a random position angle, axis ratio (edge-on for
    class 2), size and colour; class 1 adds two logarithmic arms; sky noise on top.
    """
    import h5py

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - (size - 1) / 2
    with h5py.File(path, "w") as fh:
        images = fh.create_dataset("images", (n, size, size, 3), dtype=np.uint8, chunks=(64, size, size, 3))
        ans = rng.integers(0, 3, n)
        fh.create_dataset("ans", data=ans.astype(np.uint8))
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            cls = ans[s:s + m, None, None]
            pa = rng.uniform(0, np.pi, (m, 1, 1)).astype(np.float32)
            q = np.where(cls == 2, rng.uniform(0.1, 0.25, (m, 1, 1)), rng.uniform(0.5, 1.0, (m, 1, 1))).astype(np.float32)
            r_scale = rng.uniform(0.04, 0.1, (m, 1, 1)).astype(np.float32) * size
            u = xx * np.cos(pa) + yy * np.sin(pa)
            v = (-xx * np.sin(pa) + yy * np.cos(pa)) / q
            r = np.hypot(u, v)
            light = np.exp(-r / r_scale)
            arms = 1 + 0.6 * np.cos(2 * (np.arctan2(v, u) - 1.5 * np.log1p(r / r_scale)))
            light = np.where(cls == 1, light * arms, light)
            colour = rng.uniform(0.6, 1.0, (m, 1, 1, 3)).astype(np.float32)
            img = light[..., None] * colour + rng.normal(0, 0.02, (m, size, size, 3)).astype(np.float32)
            images[s:s + m] = np.clip(img * 230, 0, 255).astype(np.uint8)


def cli(args: list[str], log: list) -> float:
    """Run ``morphospace ARGS`` (this interpreter); its wall time in seconds. Fails loudly."""
    cmd = [sys.executable, "-m", "morphospace", *args]
    print("$ morphospace " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    log.append({"command": "morphospace " + " ".join(args), "seconds": round(seconds, 2)})
    return seconds


def embedding_rate(cube_path: Path, accelerator: str, precision: str, workers: int, work: Path, batch: int) -> float:
    """Images/s of the folded Lite0 trunk at 112 px over a memory-mapped cube, through Lightning."""
    from morphospace.nets.predict import predict_rows
    from morphospace.ssl.embedder import build_trunk

    cube = np.load(cube_path, mmap_mode="r")
    trunk = build_trunk("efficientnet-lite0", 112, precision="auto").eval()
    kwargs = {"accelerator": accelerator, "devices": 1, "precision": precision}
    predict_rows(trunk, cube[:batch], batch_size=batch, trainer_kwargs=kwargs, work_dir=work,
                 loader_workers=workers)  # warm-up: weights moved, kernels chosen
    t0 = time.perf_counter()
    out = predict_rows(trunk, cube, batch_size=batch, trainer_kwargs=kwargs, work_dir=work, loader_workers=workers)
    seconds = time.perf_counter() - t0
    assert len(out) == len(cube)
    return len(cube) / seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="bench_gpu.json and the work files go here")
    ap.add_argument("--n", type=int, default=20000, help="mock galaxies (without --survey)")
    ap.add_argument("--survey", type=Path, default=None, help="ingest this survey instead of mock galaxies")
    ap.add_argument("--accelerator", default="gpu", help="gpu (default) or cpu, as Lightning takes it")
    ap.add_argument("--devices", default="1")
    ap.add_argument("--precision", default=None,
                    help="Lightning's precision for training and the embedding (default: bf16-mixed on a GPU, 32-true on a CPU)")
    ap.add_argument("--epochs", type=int, default=3,
                    help="epochs of the astrovader preset's training (the first its autoencoder phase; >= 2)")
    ap.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--batch", type=int, default=256, help="rows per batch of the embedding step")
    ap.add_argument("--keep", action="store_true", help="keep OUT/work")
    args = ap.parse_args(argv)

    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (one autoencoder epoch, then the joint phase)")
    device = "cuda" if args.accelerator in ("gpu", "cuda") else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; use --accelerator cpu for a smoke run", file=sys.stderr)
        return 2
    precision = args.precision or ("bf16-mixed" if device == "cuda" else "32-true")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    cores = os.cpu_count() or 1
    result: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "cores": cores,
                    "torch": torch.__version__, "n": args.n, "precision": precision, "commands": []}

    def save() -> None:
        (args.out / "bench_gpu.json").write_text(json.dumps(result, indent=1))

    n = 8192 if device == "cuda" else 2048
    result["matmul_flops"] = {"float32": matmul_flops(2.0, n, torch.float32, device),
                              "bfloat16": matmul_flops(2.0, n, torch.bfloat16, device)}
    if device == "cuda":
        result["matmul_flops"]["tf32"] = matmul_flops(2.0, n, torch.float32, device, tf32=True)
    save()

    form_run, av_run = work / "form", work / "astrovader"
    train = ["--accelerator", args.accelerator, "--devices", args.devices, "--precision", precision, "--quiet",
             "--set", f"train.loader_workers={args.loader_workers}"]
    survey = args.survey
    if survey is None:
        survey = work / "mock.h5"
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        mock_galaxy10(survey, args.n)
        result["mock_s"] = round(time.perf_counter() - t0, 2)
    result["ingest_s"] = cli(["ingest", str(survey), "--out", str(form_run), "--workers", str(cores), "--quiet"],
                             result["commands"])
    save()

    rates = {}
    for workers in sorted({0, args.loader_workers}):
        rates[str(workers)] = embedding_rate(form_run / "cube.npy", args.accelerator, precision, workers,
                                       work / "predict", args.batch)
    result["embedding_images_per_s"] = rates  # by loader workers
    if device == "cpu":  # one CPU process embeds in its plain batched loop: no loader processes
        result["embedding_note"] = "CPU: plain loop, loader workers unused"
    save()

    cli(["train", str(form_run), *train], result["commands"])
    info = json.loads((form_run / "models" / "vade" / "training.json").read_text())
    form = tomllib.loads((form_run / "config.toml").read_text())["form"]
    parts = info["seconds_by_part"]
    views = info["n_images"] * (8 + int(form["aug_views"]))
    result["form"] = {"seconds_by_part": parts, "n_images": info["n_images"], "aug_views": form["aug_views"],
                      "decoder_epochs": form["decoder_epochs"], "form_precision": form.get("precision"),
                      "trunk_views_per_s": views / parts["embedding"],
                      "decoder_images_per_s": info["n_images"] * int(form["decoder_epochs"]) / parts["image_decoder"]}
    save()

    cli(["ingest", str(survey), "--out", str(av_run), "--preset", "astrovader", "--workers", str(cores), "--quiet"],
        result["commands"])
    # one epoch of the autoencoder phase, the rest joint: both phases timed
    cli(["train", str(av_run), "--epochs", str(args.epochs), "--set", "model.preset=astrovader",
         "--set", "train.pretrain_epochs=1", *train],
        result["commands"])
    info = json.loads((av_run / "models" / "vade" / "training.json").read_text())
    preset = json.loads((av_run / "models" / "vade" / "hparams.json").read_text())["preset"]
    assert preset == "astrovader", f"the astrovader step trained model.preset = {preset!r}"
    result["astrovader"] = {"seconds": info["seconds"], "epochs": info["epochs"], "n_images": info["n_images"],
                            "images_per_s": info["n_images"] * info["epochs"] / info["seconds"]}
    save()

    f = result["form"]
    print(f"\n{result['device']}, {cores} cores, {survey}")
    print(f"matmul: {result['matmul_flops']['float32'] / 1e12:.1f} TFLOP/s float32, "
          f"{result['matmul_flops']['bfloat16'] / 1e12:.1f} bfloat16")
    print("embedding (Lite0, 112 px, Trainer.predict): "
          + ", ".join(f"{r:.0f} images/s with {w} loader workers" for w, r in rates.items()))
    print(f"form model: {f['trunk_views_per_s']:.0f} trunk views/s (view bank + SSL head), "
          f"{f['decoder_images_per_s']:.0f} images/s (image decoder); parts {parts}")
    print(f"astrovader preset: {result['astrovader']['images_per_s']:.0f} images/s over {args.epochs} epochs")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
