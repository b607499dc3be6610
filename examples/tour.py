"""A tour of morphospace from Python: from a folder of cutouts to clusters, checked against labels.

Run it on the real galaxies (minutes on a laptop)::

    .venv/bin/python examples/tour.py ../shared/data/sdss-gz1 --labels morph3 --out runs/tour

or on anything morphospace reads (a folder of JPEG / PNG / FITS cutouts, a Galaxy10 HDF5
file; no path: the built-in synthetic survey). Figures and tables go to ``--out``. Each step
is one call; the same objects work cell by cell in a notebook.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import morphospace as ms


def main(argv: list[str] | None = None) -> dict:
    """Run the tour; returns the headline numbers (also written to ``OUT/tour.json``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None, help="survey folder or file (default: the synthetic survey)")
    ap.add_argument("--out", default="runs/tour", help="run directory (created)")
    ap.add_argument("--labels", default="", help="a catalogue column to score the clusters against (optional)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a very short schedule (for a smoke test)")
    args = ap.parse_args(argv)
    out = Path(args.out)

    # 1. the survey -> a run directory: a catalogue and a memory-mapped cube, row for row
    run = ms.ingest(args.data, run=out)
    print(f"{len(run.catalogue)} galaxies, cube {run.cube.shape}")

    # 2. the form-first VaDE: latent codes, cluster probabilities, anomaly scores
    settings = dict(n_components=3, epochs=2, pretrain_epochs=1,
                    config={"form.ssl_epochs": 2, "form.aug_views": 1, "form.decoder_epochs": 1,
                            "train.batch_size": 12, "form.decoder_widths": [8, 16, 16, 16]}) if args.quick else {}
    model = ms.VaDE(random_state=args.seed, **settings).fit(run.cube)
    z = model.latent_
    odd = model.score_samples(run.cube)
    print(f"VaDE: K = {model.n_components_}, latent {z.shape}; the strangest galaxy: {run.catalogue['id'][np.argmin(odd)]}")

    # 3. a map and clusterings of the latent space, K chosen without labels
    xy = ms.TSNE(random_state=args.seed).fit_transform(z)
    km = ms.KMeansSelect(range(2, 7) if args.quick else range(3, 9), random_state=args.seed).fit(z)
    result = {"n_galaxies": len(z), "vade_components": int(model.n_components_), "kmeans_k": int(km.best_k_)}

    # 4. against labels, where the catalogue has them
    if args.labels:
        truth = run.catalogue[args.labels]
        table = ms.compare(model.labels_, truth, names=("VaDE components", args.labels)).join(
            ms.compare(km.labels_, truth, names=(f"K-Means({km.best_k_})", args.labels)))
        print(table.round(3).to_string())
        # balanced accuracy of a linear read-out from 10% (and all, cross-validated) of the labels;
        # a fraction too small to hold every class is skipped (the log says so)
        probe = ms.linear_probe(z, truth.to_numpy(), fractions=(0.1, 1.0), repeats=3, random_state=args.seed)
        result.update({"ami_vade": float(table.iloc[:, 0]["ami"]), "ami_kmeans": float(table.iloc[:, 1]["ami"]),
                       "probe": {f"{f:g}": float(a) for f, a in zip(probe["fraction"], probe["balanced_accuracy"])}})

    # 5. figures: reconstructions, new galaxies, the map
    ms.plot.reconstructions(model, run.cube, n=8).savefig(out / "tour_reconstructions.png", dpi=100)
    ms.plot.generated(model, n=6).savefig(out / "tour_generated.png", dpi=100)
    labels = run.catalogue[args.labels].astype(str).to_numpy() if args.labels else km.labels_
    ms.plot.latent_map(xy, labels, title="t-SNE of the VaDE's latent space").savefig(out / "tour_map.png", dpi=100)
    model.save(out / "tour_vade.pt")
    (out / "tour.json").write_text(json.dumps(result, indent=1))
    print(f"figures and tour.json in {out}")
    return result


if __name__ == "__main__":
    main()
