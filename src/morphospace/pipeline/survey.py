"""A run's survey: the built-in synthetic one made or found, the settings saved, the ingest (and
the neighbour masking) run, and a folder made for a run that fails early taken away again."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from ..caches import cache_root
from ..config import Config, dumps_config, load_config
from ..errors import MissingFile, UserError, sigterm_raises
from ..progress import Timer
from ..run import RunDir, atomic_path, launched_as_later_rank, write_text
from ..data.ingest.replace import results_present

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("morphospace")


def default_survey_dir(cfg: Config) -> Path:
    """Where the built-in synthetic survey for ``cfg`` is cached (re-used across runs)."""
    from ..data import synth

    return cache_root() / f"synth-v{synth.GENERATOR_VERSION}-n{cfg.data.synth_n}-seed{cfg.data.synth_seed}"


def stage_synth(out: Path, n: int, seed: int, workers: int, size: int | None = None) -> Path:
    """Render the built-in synthetic survey into ``out`` (``morphospace synth``).

    Parameters
    ----------
    out : Path
        Folder to write (``images/`` and ``catalogue.csv``).
    n : int
        Number of galaxies.
    seed : int
        Survey seed (same seed, same bytes).
    workers : int
        Rendering processes.
    size : int, optional
        Frame side in pixels (default: :func:`~morphospace.data.synth.make_survey`'s).

    Returns
    -------
    Path
        The survey folder.
    """
    from ..data.synth import make_survey

    kwargs = {"size": size} if size is not None else {}  # 0 is refused by make_survey, not the default
    with Timer(f"rendering {n} synthetic galaxies"):
        return Path(make_survey(out, n=n, seed=seed, workers=workers, **kwargs))


def ensure_survey(cfg: Config) -> Path:
    """The data path of a run: the user's, or the built-in synthetic survey (made once)."""
    if cfg.data.path:
        return Path(cfg.data.path)
    from ..data.synth.survey import survey_whole
    from ..run import built_by_one

    out = default_survey_dir(cfg)
    n = cfg.data.synth_n
    if survey_whole(out, n):  # an image deleted by hand, or a render killed after its catalogue: made again
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # two runs at once take turns: the second took the first's half-rendered survey for an interrupted
    # one and rendered it again, deleting images the first then read as missing (195 of 300)
    with built_by_one(out.parent / f".{out.name}.lock"):
        if not survey_whole(out, n):
            log.info("no data given: using the built-in synthetic survey (%d galaxies, seed %d) in %s",
                     cfg.data.synth_n, cfg.data.synth_seed, out)
            stage_synth(out, cfg.data.synth_n, cfg.data.synth_seed, cfg.ingest.workers)
    return out


def check_data(cfg: Config, out: str | Path | None = None) -> None:
    """Before a run at ``out`` is made: its data must be there (else :class:`MissingFile`) and must not
    be ``out`` itself, nor its ``images/`` folder, whose own files would be read as galaxies (else
    ``UserError``)."""
    if not cfg.data.path:
        return
    if not Path(cfg.data.path).exists():
        raise MissingFile(f"data not found: {cfg.data.path}")
    from ..data.synth.files import MARKER_NAME, looks_like_partial_survey

    data = Path(cfg.data.path)
    if data.is_dir() and not (data / MARKER_NAME).is_file() and looks_like_partial_survey(data):
        # a `synth` stopped half way: its first images were ingested as the whole survey, unsaid
        raise UserError(f"{data} is a synthetic survey whose rendering did not finish (no {MARKER_NAME}): run "
                        f"`morphospace synth` with the same --n, --seed and --out again to finish it")
    if out is None:
        return
    data, run = Path(cfg.data.path).resolve(), Path(out).resolve()
    # the survey's images are in the folder, or in its images/ folder beside a catalogue
    if run == data or (run == data / "images" and run.is_dir()):
        raise UserError(f"the run's folder {out} is the {'data' if run == data else 'survey images'} folder: a run "
                        "there would read its own files as galaxies; give the run a folder of its own")


def save_config(run: RunDir, cfg: Config) -> None:
    """Write the resolved ``cfg`` to ``RUN/config.toml``, where later stages read it back; only the first
    process of a distributed job writes it.

    Parameters
    ----------
    run : RunDir
    cfg : Config
    """
    if launched_as_later_rank():  # one writer: a later task of a job (refused the run or not) wrote it too
        return
    write_text(run.config, dumps_config(cfg))


@contextmanager
def config_restored_on_failure(run: RunDir) -> Iterator[None]:
    """``RUN/config.toml`` put back as it was when the block does not finish (a refused setting or
    data, a file-system error, Ctrl-C): a stage saves the settings it was given before it runs, and
    a value it then rejects must not stay to stop every later stage. Only the first process of a
    distributed job writes the run's configuration, so only it puts it back."""
    if launched_as_later_rank():
        yield
        return
    try:
        before = run.config.read_bytes()
    except OSError:
        before = None
    try:
        yield
    except BaseException:
        try:
            now = run.config.read_bytes()
        except OSError:
            now = None
        # only where it changed, and never in the way of the error that stopped the block: a run
        # that cannot be written (a full disk, a read-only folder) said "cannot use .config.toml.partial"
        if run.path.is_dir() and now != before:  # (a folder the command made is taken away whole)
            try:
                if before is None:
                    run.config.unlink(missing_ok=True)
                else:
                    with atomic_path(run.config) as tmp:
                        tmp.write_bytes(before)
            except OSError as exc:
                log.warning("could not put %s back as it was (%s)", run.config, exc.strerror or exc)
        raise


def saved_config(run: RunDir) -> Config | None:
    """The run's saved configuration, or None where it has none or it cannot be read."""
    if not run.config.is_file():
        return None
    try:
        return load_config(run.config)
    except (UserError, OSError):
        return None


def cube_settings(earlier: Config | None, cfg: Config, columns) -> Config:
    """``cfg``'s ``data``, ``preprocess`` and ``ingest`` (what made the run's cube; the truth label
    aside) over the run's ``earlier`` settings (the defaults for a new run): what a run keeps when
    its galaxies are in but a later check refused the rest of ``cfg``. The earlier truth label and
    nuisance columns stay only where the new catalogue (its ``columns``) has them."""
    base = earlier if earlier is not None else Config()
    columns = set(columns)
    truth = base.data.truth_label if base.data.truth_label in columns else ""
    nuisance = [c for c in base.cluster.nuisance_columns if c in columns]
    return base.model_copy(update={"data": cfg.data.model_copy(update={"truth_label": truth}),
                                   "cluster": base.cluster.model_copy(update={"nuisance_columns": nuisance}),
                                   "preprocess": cfg.preprocess, "ingest": cfg.ingest})


def with_imported_model(run: RunDir, cfg: Config) -> Config:
    """``cfg`` with the run's ``[model]`` settings where the run holds an imported model
    (import-astrovader wrote them: the published network's preset, latent size and components) and
    ``cfg`` sets none of its own: an ingest into the run keeps the model, and so what describes it."""
    earlier = saved_config(run) if run.imported_model() is not None and not cfg.model.model_fields_set else None
    return cfg if earlier is None else cfg.model_copy(update={"model": earlier.model})


def ingest_checked(run: RunDir, cfg: Config, check: Callable[[Config], Config],
                   check_catalogue: Callable[[pd.DataFrame, tuple], object] | None = None) -> Config:
    """The survey ingested into the run, then ``check`` (the checks that need the catalogue; it may
    return the settings amended), then the settings saved; what ``check`` returns.
    ``check_catalogue`` sees the new catalogue and cube shape before the ingest replaces or sets aside anything
    of the run: a label setting the new survey cannot serve leaves a finished run as it was. An
    ingest that fails keeps the earlier cube, and so its settings; a check that refuses (or a
    Ctrl-C) leaves the run with the settings that made its new cube (:func:`cube_settings`). The
    neighbour masking is the caller's (:func:`mask_if_asked`), after: the settings saved are those
    of the cube in place."""
    earlier = saved_config(run)
    cfg = with_imported_model(run, cfg)
    ingest_survey(run, cfg, check_catalogue)
    try:
        checked = check(cfg)
    except BaseException:
        save_config(run, cube_settings(earlier, cfg, run.read_catalogue().columns))
        raise
    save_config(run, checked)
    return checked


def stage_ingest(run: RunDir, cfg: Config) -> dict:
    """Ingest the configured survey (or the built-in synthetic one, made once) into the run, and
    with ``ingest.mask_neighbours`` mask the neighbours in its cube on the ingest's workers.

    Parameters
    ----------
    run : RunDir
    cfg : Config

    Returns
    -------
    dict
        The ingest summary, also written to ``ingest_summary.json``.
    """
    summary = ingest_survey(run, cfg)
    mask_if_asked(run, cfg)
    return summary


def ingest_survey(run: RunDir, cfg: Config, check: Callable[[pd.DataFrame, tuple], object] | None = None) -> dict:
    """The configured survey (or the built-in synthetic one, made once) ingested into the run,
    without the neighbour masking (:func:`mask_if_asked`); returns the ingest summary. ``check``
    goes to :func:`~morphospace.data.ingest.ingest`."""
    from ..data.ingest import ingest

    data = ensure_survey(cfg)
    with Timer("ingest"):
        return ingest(data, run, cfg, check=check)


def mask_if_asked(run: RunDir, cfg: Config) -> None:
    """With ``ingest.mask_neighbours``, the neighbours in the run's cube masked now, on the ingest's workers."""
    from ..image.masking import masked_cube

    if cfg.ingest.mask_neighbours:
        with Timer("neighbour masking"):
            masked_cube(run, workers=cfg.ingest.workers)


@contextmanager
def removed_on_failure(run: RunDir, created: bool) -> Iterator[None]:
    """Whatever stops the block (an error, Ctrl-C, SIGTERM) takes away the run's folder if this command
    ``created`` it (killed by `timeout` a first ingest left a folder every later one refused)."""
    with sigterm_raises() if created else nullcontext():
        try:
            yield
        except BaseException:
            if created:
                shutil.rmtree(run.path, ignore_errors=True)
            raise


# the ingest's own settings (what made the cube); the other sections say what the later stages made
INGEST_SECTIONS = ("data", "preprocess", "ingest")


def with_kept_results(run: RunDir, cfg: Config, earlier: Config | None, before: list[Path]) -> Config:
    """``cfg`` after an ingest: where it kept the run's results (``before``: :func:`results_present` ahead of
    it; the same galaxies made the same way), the run's ``earlier`` settings of every later stage
    (``[model]``, ``[form]``, ``[train]``, ``[cluster]``...) but for the keys this command sets, so that
    ``config.toml`` still says what trained the kept model (it said the defaults: a re-ingest of the same
    survey rewrote ``form.ssl_epochs = 4`` as 60 beside a model trained for 4)."""
    if earlier is None or not before or results_present(run) != before:
        return cfg
    kept = cube_settings(earlier, cfg, run.read_catalogue().columns)
    given = {}  # a later stage's key this command sets: taken, over the run's section
    if "truth_label" in cfg.data.model_fields_set:  # given, not the run's earlier one (cube_settings keeps that)
        given["data"] = kept.data.model_copy(update={"truth_label": cfg.data.truth_label})
    for name in type(cfg).model_fields:
        section = getattr(cfg, name)
        if name not in INGEST_SECTIONS and section.model_fields_set:
            given[name] = getattr(kept, name).model_copy(
                update={key: getattr(section, key) for key in section.model_fields_set})
    return kept.model_copy(update=given)


def ingest_run(run: RunDir, cfg: Config, created: bool) -> dict:
    """The ingest a user asks for by name (``morphospace ingest``, ``ms.ingest``): the survey is
    read first and the settings saved as soon as it is in, so that an ingest refused or stopped on
    the way (an unknown layout, a missing id column, no usable galaxy, Ctrl-C) leaves an existing
    run's settings as they were and takes away a folder it ``created`` itself. The neighbour
    masking comes after: a failure there keeps the ingest, whose cube the training masks anyway."""
    cfg = with_imported_model(run, cfg)
    earlier, before = saved_config(run), results_present(run)
    with removed_on_failure(run, created):
        summary = ingest_survey(run, cfg)
    cfg = with_kept_results(run, cfg, earlier, before)
    save_config(run, cfg)
    from ..analysis.labels import check_label_settings

    try:  # the ingest reads no label setting; the stages that do refuse it
        check_label_settings(run, cfg)
    except UserError as exc:
        log.warning("%s: every later stage (train, embed, reduce, ...) refuses it until it is set right "
                    "(--set data.truth_label=...)", exc)
    if cfg.model.kind == "vade":  # a cube the model cannot take (17 px) was said only at `train`
        from ..vade.hparams import resolve_hparams

        shape = run.read_cube().shape  # its images, not its number of galaxies: `train` takes settings for that
        try:
            resolve_hparams(cfg, shape[1], shape[2], announce=False)
        except UserError as exc:
            log.warning("%s: `morphospace train` refuses this cube with these settings", exc)
    mask_if_asked(run, cfg)
    return summary


def check_not_a_survey(out: str) -> None:
    """A one-line :class:`UserError` where ``out`` (no run yet) holds a survey: a model imported there
    made the data folder a run, which `ingest DATA --out DATA` then refused."""
    import shlex

    from ..data.ingest import detect_layout
    from ..run.places import is_run

    folder = Path(out)
    if not folder.is_dir() or is_run(folder):
        return
    try:
        layout = detect_layout(folder)
    except UserError:  # no survey here
        return
    raise UserError(f"--out {out} holds a survey ({layout} layout): import the model into a folder of its own, "
                    f"then ingest the survey into it (morphospace ingest {shlex.quote(out)} --out RUN "
                    "--preset astrovader)")
