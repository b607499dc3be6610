"""The results catalogue: one row per input galaxy, for the user's own tools.

Columns (a stable contract): ``id``, the input label columns, the boolean
``flag_<reason>`` quality columns, then for every clustering ``cluster_<name>``
(missing for galaxies not in the cube, -1 for noise) and ``prob_<name>_<k>`` where the
clustering is soft, then per-galaxy scores (e.g. ``vade_anomaly``) where a model wrote them.
Written as CSV, Parquet or FITS by the output file's extension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .run import RUN_FILES, RunDir, atomic_path

FORMATS = (".csv", ".parquet", ".fits")


def results_table(run: RunDir) -> pd.DataFrame:
    """Build the results catalogue of ``run`` (see the module docstring)."""
    cat = run.read_catalogue()
    keep = [c for c in cat.columns if c not in ("source", "cube_index")]
    table = cat[keep].copy()
    in_cube = cat["cube_index"].to_numpy()
    ids_in_cube = run.cube_ids()
    for name in run.clusterings():
        clus = run.read_clustering(name)
        if len(clus) != len(ids_in_cube) or not np.array_equal(clus["id"].astype(str).to_numpy(), ids_in_cube.astype(str)):
            raise UserError(f"clustering '{name}' does not match the run's cube (re-run `morphospace cluster`)")
        # Join by cube position, not id: ids may repeat among flagged rows.
        labels = pd.array(np.full(len(cat), pd.NA), dtype="Int64")
        labels[in_cube >= 0] = clus["label"].to_numpy()[in_cube[in_cube >= 0]]
        table[f"cluster_{name}"] = labels
        for col in [c for c in clus.columns if c.startswith("prob_")]:
            probs = np.full(len(cat), np.nan, dtype=np.float32)
            probs[in_cube >= 0] = clus[col].to_numpy()[in_cube[in_cube >= 0]]
            table[f"prob_{name}_{col[5:]}"] = probs
    scores = run.path / "vade_galaxies.parquet"
    if scores.exists():
        per = pd.read_parquet(scores)
        for col in ("anomaly", "log_likelihood", "recon_error", "label_prob"):
            if col in per.columns:
                values = np.full(len(cat), np.nan, dtype=np.float32)
                values[in_cube >= 0] = per[col].to_numpy()[in_cube[in_cube >= 0]]
                table[f"vade_{col}"] = values
    return table


def export(run: RunDir, out: str | Path) -> Path:
    """Write the results catalogue of ``run`` to ``out`` (.csv, .parquet or .fits)."""
    if not str(out).strip():
        raise UserError("--out must name a file, got an empty path")
    out = Path(out)
    run_root = run.path.resolve()
    target = out.resolve()
    if target.is_relative_to(run_root) and (target.parent != run_root or target.name in RUN_FILES
                                            or target.name.startswith(".")):
        raise UserError(f"--out {out} would overwrite the run's own files: write the results catalogue "
                        f"outside {run.path}, or beside them under a new name")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: name a file (.csv, .parquet or .fits)")
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"cannot export to '{out.name}': use one of {', '.join(FORMATS)}")
    table = results_table(run)
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            _to_fits(table, tmp)
    return out


def _to_fits(table: pd.DataFrame, path: Path) -> None:
    from astropy.table import MaskedColumn, Table

    t = Table()
    for col in table.columns:
        s = table[col]
        mask = s.isna().to_numpy()
        if pd.api.types.is_bool_dtype(s):
            t[col] = s.to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(s):
            t[col] = MaskedColumn(s.fillna(-1).to_numpy(dtype=np.int64), mask=mask)
        elif pd.api.types.is_float_dtype(s):
            t[col] = s.to_numpy(dtype=np.float64)
        else:
            text = np.array(s.fillna("").astype(str).tolist() or [""], dtype=str)[: len(s)]
            t[col] = MaskedColumn(text, mask=mask)
    t.write(path, format="fits", overwrite=True)
