"""Throughput of the form-first VaDE's training parts against a large matmul in the same process.

The training of ``model.preset = "form"`` spends its time in three places: the frozen trunk's
forward passes over the view bank (8 dihedral + ``form.aug_views`` nuisance views per galaxy),
the image decoder's forward and backward passes, and (negligibly) the SSL head and the VaDE on
64-number vectors. For each of the first two this measures images/s, FLOPs per image
(``FlopCounterMode``), the FLOP/s reached, and that as a fraction of a 2048^2 float32 matmul
timed in the same process (before and after; the higher is used). The trunk is timed in
float32 and, where the CPU has native bfloat16, in bfloat16 (what ``form.precision = "auto"``
picks there); in float32 also through its own modules, the batch norms not folded into the
convolutions (``morphospace.nets.folding``; same FLOPs counted, so the fractions compare).

Usage::

    .venv/bin/python benchmarks/bench_form_throughput.py --threads 2 --batch 256
    # as the command line runs it: batches of 32, freed memory reused (glibc)
    MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \
        .venv/bin/python benchmarks/bench_form_throughput.py --threads 2 --batch 32
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_flops(seconds: float = 3.0, n: int = 2048, dtype=torch.float32, device: str = "cpu",
                 tf32: bool = False) -> float:
    """FLOP/s of an n x n matmul in ``dtype`` on ``device`` (this process's threads), timed for about
    ``seconds``: the peer every throughput fraction of the benchmarks is taken against. ``tf32``
    lets a CUDA float32 matmul use TF32."""
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up
    sync()
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def timed(fn, reps: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from morphospace.image.geometry import radial_weight
    from morphospace.ssl.embedder import build_trunk, resolve_precision
    from morphospace.vade.form_model import flip_min_sq_error
    from morphospace.config.learning import FormConfig
    from morphospace.vade.networks import DefaultDecoder

    peak_start = matmul_flops()
    x = torch.rand(args.batch, 3, 64, 64)
    rows = {}
    precisions = ["32"] + (["bf16"] if resolve_precision("auto") == "bf16" else [])
    for precision in precisions:
        trunk = build_trunk("efficientnet-lite0", 112, precision=precision).eval()
        with torch.no_grad():
            with FlopCounterMode(display=False) as fc:
                trunk(x[:8])
            flops = fc.get_total_flops() / 8
            sec = timed(lambda: trunk(x), args.reps)
            rows[f"trunk forward ({precision})"] = (args.batch / sec, flops)
            if precision == "32":  # the trunk's own modules, batch norms not folded (before nets/folding.py)
                sec = timed(lambda: trunk._forward(trunk.net, x), args.reps)
                rows["trunk forward (32, batch norms not folded)"] = (args.batch / sec, flops)
    w = radial_weight(64, 0.5, 0.25)
    z, target = torch.randn(128, 16), torch.rand(128, 3, 64, 64)
    # the form preset's image decoder, and the pixel VaDE's widths it had before form.decoder_widths
    for label, widths in (("", FormConfig().decoder_widths), (", widths 32-256", [32, 64, 128, 256])):
        dec = DefaultDecoder(3, 64, 16, tuple(widths))
        opt = torch.optim.Adam(dec.parameters(), lr=1e-4)

        def step():
            opt.zero_grad()
            flip_min_sq_error(target, dec(z), w).mean().backward()
            opt.step()

        with FlopCounterMode(display=False) as fc:
            flip_min_sq_error(target[:8], dec(z[:8]), w).mean().backward()
        rows[f"image decoder forward+backward (32{label})"] = (128 / timed(step, args.reps), fc.get_total_flops() / 8)
    peak = max(peak_start, matmul_flops())
    out = {"threads": args.threads, "matmul_gflops": peak / 1e9, "parts": {}}
    print(f"2048^2 float32 matmul: {peak / 1e9:.0f} GFLOP/s ({args.threads} threads)")
    print("| part | images/s | GFLOP per image | GFLOP/s | fraction of the matmul |")
    print("|---|---|---|---|---|")
    for name, (ips, flops) in rows.items():
        rate = ips * flops
        out["parts"][name] = {"images_per_s": ips, "flops_per_image": flops, "fraction": rate / peak}
        print(f"| {name} | {ips:.0f} | {flops / 1e9:.3f} | {rate / 1e9:.1f} | {100 * rate / peak:.0f}% |")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    from _entry import run

    run(main)
