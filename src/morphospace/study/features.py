"""CNN features of a run: fine-tune (or freeze) a backbone, then embed every cube row.

:func:`study_features_run` is the first half of ``morphospace study``: it reads the cube
and the catalogue, fine-tunes the configured backbone on the configured label column
(rows without a label are left out of training but still get features), and writes

* ``embeddings/features.npy`` (one row per cube row) and ``embeddings/features.json``;
* ``models/<backbone>/model.pt`` and ``metrics.json`` (fine-tune mode), beside
  ``best.ckpt``, the Lightning checkpoint of the best epoch;
* ``comparisons/finetune_metrics.json``, ``comparisons/confusion_matrix.csv``;
* ``figures/confusion_matrix.png``, ``figures/finetune_curves.png``.

The reductions, clusterings and comparisons of the study then read ``features`` like
any other embedding.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config, apply_overrides
from ..data.ingest.catalogue import RESERVED
from ..errors import UserError
from ..image.display import figure_text
from ..nets.batches import RowView
from ..progress import Timer
from ..run import RunDir, atomic_path, write_json, write_npy, write_table
from .finetune import FineTuner

log = logging.getLogger("morphospace")

EMBEDDING = "features"
# a study's labelled galaxies: 20% held out of its fine-tuning (they choose nothing: the scores against
# the labels are made there, on as many galaxies as the published study's 80/20 split), 10% validate
# (choose the epoch kept and stop early), 70% train
TEST_FRACTION, VAL_FRACTION = 0.2, 0.1


# --- labels ------------------------------------------------------------------------------------

def _label_like(cat: pd.DataFrame) -> list[str]:
    skip = set(RESERVED) | {"file", "path", "ra", "dec"}  # the ingest's own columns (id, source, crop...) are no labels
    return [c for c in cat.columns if c not in skip and not c.startswith("flag_")]


def resolve_labels(cat: pd.DataFrame, spec: str) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """Targets from catalogue column(s).

    Parameters
    ----------
    cat : DataFrame
        Catalogue rows in cube order.
    spec : str
        One column (classes; or a float column of fractions in [0, 1]), or several vote
        fraction columns as a glob (``Class*``) or a comma-separated list (regression).

    Returns
    -------
    y : array
        Targets of the labelled rows: class labels (N_l,) or fractions (N_l, K).
    labelled : bool array (N,)
        Which rows have a label.
    task : {"classification", "regression"}
    columns : list of str
    """
    known = _label_like(cat)  # the ingest's own columns (flags, crop, positions...) are no labels to learn
    if any(ch in spec for ch in "*?[") or "," in spec:
        patterns = [p.strip() for p in spec.split(",") if p.strip()]
        columns = [c for c in known if any(fnmatch.fnmatchcase(c, p) for p in patterns)]
        if not columns:
            raise UserError(f"study.labels = '{spec}' matches no catalogue column "
                            f"(label columns: {', '.join(known) or 'none'})")
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(c, p) for c in known)]
        if unmatched:  # a typo in a list was dropped without a word
            raise UserError(f"study.labels = '{spec}': {', '.join(repr(p) for p in unmatched)} matches no label "
                            f"column (label columns: {', '.join(known) or 'none'})")
        table = cat[columns]
        if not all(pd.api.types.is_numeric_dtype(table[c]) for c in columns):
            raise UserError(f"study.labels = '{spec}': several columns are vote fractions and must be numeric")
        values = table.to_numpy(dtype=np.float64, na_value=np.nan)
        labelled = np.isfinite(values).all(axis=1)
        return values[labelled].astype(np.float32), labelled, "regression", columns
    if spec not in known:
        what = "a bookkeeping column (ids, files, flags, framing, positions), not a label" if spec in cat.columns \
            else "no column"
        # `classify --labels` takes a CSV file: given here, it was only "no column in the catalogue"
        a_file = spec not in cat.columns and (Path(spec).is_file() or Path(spec).suffix.lower() in (".csv", ".parquet"))
        how = ("; --labels names a column of the survey's catalogue, not a file: join a labels file to the images at "
               "ingest (`--catalogue FILE` with its id column, for a folder of images), then name its column"
               if a_file else "")
        raise UserError(f"study.labels: '{spec}' is {what} in the catalogue{how} "
                        f"(label columns: {', '.join(known) or 'none'})")
    col = cat[spec]
    labelled = ~col.isna().to_numpy()
    values = col[labelled]
    if pd.api.types.is_float_dtype(values) and not np.allclose(values, np.round(values)):
        v = values.to_numpy(dtype=np.float32)
        if v.min() < 0 or v.max() > 1:
            raise UserError(f"study.labels: column '{spec}' is continuous but not a fraction in [0, 1]")
        return v[:, None], labelled, "regression", [spec]
    if pd.api.types.is_numeric_dtype(values):
        y = values.to_numpy(dtype=np.int64)
    else:
        y = values.astype(str).to_numpy(dtype=object)
    return y, labelled, "classification", [spec]


def default_label_column(cat: pd.DataFrame, cfg: Config) -> str:
    """The catalogue column to fine-tune on.

    Parameters
    ----------
    cat : DataFrame
        The run's catalogue.
    cfg : Config

    Returns
    -------
    str
        ``study.labels``, else ``data.truth_label``, else ``morph3`` / ``morphology`` if the
        catalogue has one, else ``""`` (no labels).
    """
    if cfg.study.labels:
        return cfg.study.labels
    if cfg.data.truth_label:
        return cfg.data.truth_label
    for name in ("morph3", "morphology"):
        if name in cat.columns:
            return name
    return ""


# --- figures -----------------------------------------------------------------------------------

def plot_confusion_matrix(matrix: np.ndarray, classes: list, path, split: str = "validation") -> None:
    """Row-normalised confusion matrix (colour) with the counts written in each cell.

    Parameters
    ----------
    matrix : array (K, K)
        Counts; rows: true class, columns: predicted class.
    classes : list
        Class names, in the matrix's order.
    path : Path
        The PNG written (atomically).
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    k = len(classes)
    rows = matrix.sum(axis=1, keepdims=True)
    frac = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = 2.2 + 0.7 * k
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.6 else "black")
    names = [str(c) for c in classes]
    ax.set_xticks(range(k), [figure_text(n) for n in names], rotation=30, ha="right")
    ax.set_yticks(range(k), [figure_text(n) for n in names])
    ax.set_xlabel("predicted")
    ax.set_ylabel(f"true ({split} split)")
    ax.set_title("fine-tuned CNN: confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def plot_curves(history: list[dict], best_epoch: int, path) -> None:
    """Training and validation loss per epoch, and validation accuracy (or RMSE).

    Parameters
    ----------
    history : list of dict
        :attr:`FineTuner.history_ <morphospace.study.finetune.FineTuner>`, one record per epoch.
    best_epoch : int
        The epoch whose weights were kept (marked; 0: none).
    path : Path
        The PNG written (atomically).
    """
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(8.5, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    metric = "val_accuracy" if "val_accuracy" in history[0] else "val_rmse"
    ax2.plot(epochs, [h[metric] for h in history], "s-", color="tab:green")
    for ax in (ax1, ax2):
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1, label="kept")
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
    ax1.set_ylabel("loss")
    ax1.legend(frameon=False)
    ax2.set_ylabel("validation accuracy" if metric == "val_accuracy" else "validation RMSE")
    fig.suptitle("fine-tuning")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


# --- the run stage -----------------------------------------------------------------------------

_FINETUNE_OUTPUTS = (("comparisons", "confusion_matrix.csv"), ("figures", "confusion_matrix.png"),
                     ("figures", "finetune_curves.png"))


def study_features_run(run: RunDir, cfg: Config, resume: bool = False) -> dict:
    """Fine-tune (or freeze) ``cfg.study.backbone`` and write the ``features`` embedding.

    Parameters
    ----------
    run : RunDir
        A run with a cube and a catalogue (after ``ingest``).
    cfg : Config
        Uses ``study`` (backbone, labels, mode, epochs, weights, input_size, batch_size, lr,
        patience) and ``train`` (seed, num_threads, accelerator, precision).
    resume : bool
        Go on with an interrupted fine-tuning from its ``last.ckpt`` (``models/<backbone>/``).

    Returns
    -------
    dict
        The content of ``comparisons/finetune_metrics.json``.
    """
    st = cfg.study
    cube = run.read_cube()
    inside = run.cube_catalogue()
    if len(inside) != cube.shape[0] or not np.array_equal(inside["cube_index"].to_numpy(), np.arange(len(inside))):
        raise UserError(f"catalogue and cube of {run.path} disagree ({len(inside)} rows vs {cube.shape[0]} images): "
                        "re-run `morphospace ingest`")
    if cfg.train.devices != 1 and st.mode == "finetune":
        log.info("fine-tuning on one device (train.devices = %d is for the VaDE)", cfg.train.devices)
    ft = FineTuner(backbone=st.backbone, mode=st.mode, epochs=st.epochs, batch_size=st.batch_size, lr=st.lr,
                   patience=st.patience, input_size=st.input_size or None, weights=st.weights or None,
                   # rows that choose nothing: the scores against the labels made later are held out
                   test_fraction=TEST_FRACTION, val_fraction=VAL_FRACTION,
                   num_threads=cfg.train.num_threads or None, random_state=cfg.train.seed,
                   accelerator=cfg.train.accelerator, devices=1, precision=cfg.train.precision, resume=resume,
                   # Lightning's last.ckpt and best.ckpt, beside model.pt: named before the checks, which
                   # refuse a resume without them
                   checkpoint_dir=str(run.model_dir(st.backbone)) if st.mode == "finetune" else None)
    ft._check_params()  # a bad backbone / mode fails before any label work
    label_info: dict = {"labels": None}
    t0 = time.perf_counter()
    if st.mode == "frozen":
        with Timer(f"loading {st.backbone} (frozen, no training)"):
            ft.fit(cube)
    else:
        spec = fine_tuning_labels(inside, cfg)
        y, labelled, task, columns = resolve_labels(inside, spec)
        ft.task = task
        rows = np.flatnonzero(labelled)
        label_info = {"labels": spec, "label_columns": columns, "n_labelled": int(len(rows)),
                      "n_unlabelled": int(len(inside) - len(rows))}
        if len(rows) < len(inside):
            log.info("fine-tuning on %d labelled galaxies (%d without '%s' get features only)",
                     len(rows), len(inside) - len(rows), spec)
        images = cube if len(rows) == len(inside) else RowView(cube, rows)
        with Timer(f"fine-tuning {st.backbone} on '{spec}' ({task}, {len(rows)} galaxies)"):
            ft.fit(images, y)
        ft.train_index_, ft.val_index_, ft.test_index_ = (rows[ft.train_index_], rows[ft.val_index_],
                                                          rows[ft.test_index_])  # as cube rows
    fit_seconds = time.perf_counter() - t0
    with Timer(f"features of {cube.shape[0]} galaxies") as timer:
        features = ft.transform(cube)
    write_npy(run.embedding_path(EMBEDDING), features)

    metrics = ft.metrics()
    metrics.update(label_info)
    metrics["extract_seconds"] = timer.elapsed
    metrics["total_seconds"] = fit_seconds + timer.elapsed
    model_dir = None
    if st.mode == "finetune":
        model_dir = ft.save(run.model_dir(st.backbone))
        split = np.full(len(inside), "", dtype=object)
        split[ft.train_index_] = "train"
        split[ft.val_index_] = "validation"  # chose the epoch kept
        split[ft.test_index_] = "test"  # chose nothing: where the held-out scores are made
        # the files too: ids recur across surveys (every synthetic survey's synth_000000), and a frozen study
        # of another survey with this model.pt took its galaxies of those ids for trained on
        write_table(model_dir / "split.parquet", pd.DataFrame({"id": inside["id"].astype(str), "split": split,
                                                               **({"source": inside["source"].astype(str)}
                                                                  if "source" in inside else {})}))
    write_json(run.embedding_path(EMBEDDING).with_suffix(".json"), {
        "name": EMBEDDING, "kind": "cnn_features", "backbone": st.backbone, "mode": st.mode,
        "input_size": ft.input_spec_.size, "input_spec": ft.input_spec_.to_dict(), "feature_dim": ft.feature_dim_,
        "weights_source": ft.weights_source_, "task": metrics.get("task"), **label_info,
        "model_dir": None if model_dir is None else str(model_dir.relative_to(run.path)),
        # a weights file of the user's: a fine-tuning's model.pt names the galaxies it trained on beside it
        "weights_file": str(Path(st.weights).resolve()) if st.weights else None,
        "n_rows": int(features.shape[0]), "seconds": metrics["total_seconds"],
    })
    if st.weights and st.mode == "frozen" and not (Path(st.weights).resolve().parent / "split.parquet").is_file():
        log.warning("features from the weights file %s: if it was trained on these galaxies' labels, their "
                    "clusterings' and probes' scores against those labels are training scores (a study's own "
                    "fine-tuning keeps its split.parquet beside its model.pt, and then they are held out)", st.weights)
    write_json(run.sub("comparisons") / "finetune_metrics.json", metrics)

    for sub, name in _FINETUNE_OUTPUTS:  # never leave a previous fine-tune's figures beside frozen features
        (run.path / sub / name).unlink(missing_ok=True)
    # on the test rows, which chose nothing; the validation rows' where there are none
    tested = getattr(ft, "test_confusion_matrix_", None) is not None
    matrix = ft.test_confusion_matrix_ if tested else getattr(ft, "confusion_matrix_", None)
    if matrix is not None:
        classes = [str(c) for c in ft.classes_]
        table = pd.DataFrame(matrix, columns=classes)
        table.insert(0, "true", classes)
        write_table(run.sub("comparisons") / "confusion_matrix.csv", table)
        plot_confusion_matrix(matrix, classes, run.figure_path("confusion_matrix"), "test" if tested else "validation")
    if ft.history_:
        plot_curves(ft.history_, ft.best_epoch_, run.figure_path("finetune_curves"))
    if st.mode == "finetune":
        if ft.task_ == "classification":
            log.info("fine-tuned %s: validation accuracy %.3f (balanced %.3f) on %d galaxies; held-out test "
                     "accuracy %.3f (balanced %.3f) on %d", st.backbone, ft.val_accuracy_, ft.val_balanced_accuracy_,
                     len(ft.val_index_), ft.test_accuracy_, ft.test_balanced_accuracy_, len(ft.test_index_))
        else:
            log.info("fine-tuned %s: validation RMSE %.4f on %d galaxies; held-out test RMSE %.4f on %d",
                     st.backbone, ft.val_rmse_, len(ft.val_index_), ft.test_rmse_, len(ft.test_index_))
    return metrics


def fine_tuning_labels(inside: pd.DataFrame, cfg: Config) -> str:
    """The label spec a fine-tuning study reads from the catalogue rows ``inside`` the cube, checked
    (:func:`resolve_labels` refuses one it cannot read, :func:`encode_targets` one with no label
    or a single class); a ``UserError`` when there is none. Checked before any training."""
    from .targets import encode_targets

    spec = default_label_column(inside, cfg)
    if not spec:
        raise UserError("study.labels: name a catalogue label column to fine-tune on "
                        f"(label columns: {', '.join(_label_like(inside)) or 'none'}), or set study.mode = frozen")
    from ..analysis.labels import refuse_identifier

    y, _, task, _ = resolve_labels(inside, spec)
    try:
        encode_targets(y, task)
    except UserError as exc:
        raise UserError(f"study.labels = '{spec}': {exc}") from None
    if task == "classification":  # `--labels id`: as many classes as galaxies, one example each
        refuse_identifier(pd.Series(np.asarray(y, dtype=object).ravel()), f"study.labels = '{spec}'")
    return spec


def study_truth(catalogue: pd.DataFrame, cfg: Config, announce: bool = True) -> Config:
    """The classes a study fine-tunes on (``study.labels``) are the truth its LDA, contingency tables
    and probe score against, unless ``data.truth_label`` names another: ``cfg`` with that truth,
    for the caller to save in the run's configuration, so that a later ``compare`` or ``report``
    of the run reads the same. ``catalogue``: the run's (:meth:`RunDir.read_catalogue`); ``announce``:
    say so in the log."""
    spec = cfg.study.labels
    if not spec:
        return cfg
    try:  # classes as the fine-tuning reads them: T-types stored as 1.0, 2.0 ... are classes too
        task = resolve_labels(catalogue, spec)[2]
    except UserError:
        if cfg.study.mode == "frozen" or cfg.study.backbone in ("vade", "ssl"):
            raise  # nothing else reads them (no fine-tuning): a typo would score against another column
        return cfg  # a column the fine-tuning itself refuses, in its own words
    several = any(ch in spec for ch in "*?[,")
    if (several or task != "classification") and (cfg.study.mode == "frozen" or cfg.study.backbone in ("vade", "ssl")):
        # nothing fine-tunes on them and the truth is one class column: they were dropped without a word
        # and the study scored against the guessed truth (morph3)
        what = "several columns" if several else "continuous values (vote fractions or a measurement)"
        raise UserError(f"--labels {spec!r} are {what}: a study that fine-tunes nothing ({cfg.study.backbone}, "
                        f"{cfg.study.mode}) reads --labels only as the one class column its comparisons score "
                        f"against; name one (e.g. morph3), or fine-tune on them (--mode finetune)")
    if cfg.data.truth_label or several or task != "classification":
        return cfg  # another truth named, or vote fractions (regression)
    if announce:
        log.info("the study's labels '%s' are the truth its comparisons score against", spec)
    return apply_overrides(cfg, {"data.truth_label": spec})
