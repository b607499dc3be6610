"""The ``morphospace`` command line: one sub-command per stage, and ``run`` for all.

User mistakes print one line and exit with status 2; ``--quiet`` silences progress
bars; every stage run on a run directory appends to its ``log.txt``.
"""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

from ..config import Config
from ..errors import RunInUse, Terminated, UserError, first_line, missing_package, sigterm_raises
from ..progress import is_quiet, set_quiet
from ..run import RunDir, job_size, launched_as_later_rank, release_locks, writer_of
from . import generate, peers
from .logs import (_close_run_log, _in_run_log, _logging_as_found, _on_stderr, _quiet_warnings, _reader_gone,
                   _setup_logging)
from .options import check_out, printable
from .parser import COMMANDS, build_parser
from .settings import (_config_for, _earlier_settings_kept, _save_changed_config, _say, _say_unused_epochs, _set,
                       _settings_replaced)

log = logging.getLogger("morphospace")
__all__ = ["main", "build_parser", "printable"]


# commands that only read the run (writing elsewhere, if at all): no lock, and a run they cannot write to
# (an archive, a colleague's read-only copy) serves them, logged to the console alone
READ_ONLY_COMMANDS = ("export", "generate")


def _reuse_freed_memory() -> None:
    """Let glibc's malloc reuse freed blocks of up to 1 GB instead of returning them to the kernel.

    By default a block over 32 MB (a CNN's activations for a batch, a decoder's gradients) is
    mapped afresh each time and unmapped when freed, so the kernel zeroes its pages again on
    every batch. Measured on the frozen trunk's view bank (512 galaxies x 8 views, one thread):
    12.0 s of CPU against 15.7 s (1.8 M page faults against 0.03 M), the peak memory the same.
    Only the command line does this (a library must not change its host's allocator); on a C
    library other than glibc it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass  # musl and others: their allocator, their defaults


def main(argv: list[str] | None = None) -> int:
    """Run the command line (the ``morphospace`` entry point).

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success; 2 without a sub-command (the help is printed on stderr), on a
        :class:`UserError` or when the file system refuses (each printed as one line);
        130 on Ctrl-C; 143 on SIGTERM; 141, silently, when the reader of the output went away (``| head``).
        Usage errors exit with status 2 from the parser itself.

    Called from Python (a notebook, a test), it leaves the ``morphospace`` and ``py.warnings`` loggers
    and the capture of warnings as it found them, and whether progress is shown, however the command
    ends: its console, its run's log and ``--quiet`` are the command's alone.
    """
    was_quiet = is_quiet()
    try:
        with _logging_as_found():
            return _command(argv)
    finally:
        set_quiet(was_quiet)  # a --quiet command leaves its caller's progress bars on


def _command(argv: list[str] | None) -> int:
    """:func:`main`'s command, which sets up its own logging (taken off again by :func:`main`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _reuse_freed_memory()
    if not args.command:  # a usage error, exit 2: its help on stderr, where the errors go, not in a pipe's data
        parser.print_help(sys.stderr)
        return 2
    set_quiet(args.quiet)
    succeeded = False
    try:
        # SIGTERM (`kill`, a scheduler's limit) stops a command as Ctrl-C does, in one line and in the log:
        # left to its default, it ended every stage but a training's fit without a word, status 143
        with _quiet_warnings(args.quiet), sigterm_raises():
            status = _dispatch(args) or 0
        if sys.stdout is not None:  # None when started with stdout closed (`>&-`): print() writes nothing then
            sys.stdout.flush()  # here, where a reader gone away is caught below, not at the interpreter's exit
        succeeded = status == 0
        return status
    except UserError as exc:
        _on_stderr(f"morphospace: error: {printable(str(exc))}")
        if not isinstance(exc, RunInUse):  # that run's log is its writer's
            _in_run_log(f"error: {exc}")
        peers.stopping(str(exc), exc.exit_code)
        return exc.exit_code
    except BrokenPipeError:  # the reader of the output went away (`| head`): done, as other tools are, quietly
        peers.stopping("stopped: the reader of its output went away", code := _reader_gone())
        return code
    except OSError as exc:  # the file system said no: a full disk, a read-only folder, a path that is a file
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        _on_stderr(f"morphospace: error: cannot use{printable(where)}: {printable(exc.strerror or str(exc))}")
        _in_run_log(f"error: cannot use{where}: {exc.strerror or exc}")
        peers.stopping(f"cannot use{where}: {exc.strerror or exc}", 2)
        return 2
    except ModuleNotFoundError as exc:  # a dependency not installed (e.g. astropy, read lazily for FITS)
        error = missing_package(exc)
        if error is None:
            raise  # our own module missing: a bug, with its traceback
        _on_stderr(f"morphospace: error: {printable(str(error))}")
        _in_run_log(f"error: {error}")
        peers.stopping(str(error), error.exit_code)
        return error.exit_code
    except KeyboardInterrupt:
        _on_stderr("morphospace: interrupted")
        _in_run_log("interrupted")
        peers.stopping("interrupted", 130)
        return 130
    except SystemExit as exc:
        # ours, or Lightning's (no exit code: status 0 before): a SIGTERM (a scheduler's preemption,
        # `kill`) is no success, however quietly it stops
        if isinstance(exc, Terminated) or type(exc).__name__ == "SIGTERMException":
            _on_stderr("morphospace: terminated (SIGTERM)")
            _in_run_log("terminated (SIGTERM)")
            peers.stopping("terminated (SIGTERM)", 128 + int(signal.SIGTERM))
            return 128 + int(signal.SIGTERM)
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        # Lightning turns Ctrl-C during a fit into sys.exit(1), once it has stopped its processes
        _on_stderr("morphospace: interrupted")
        _in_run_log("interrupted")
        peers.stopping("interrupted", 130)
        return 130
    except Exception as exc:  # a bug, with its traceback; or the closed connection of a task that stopped
        by_peer = peers.stopped_by_peer(exc)
        if by_peer is not None:
            line, code = by_peer
            _on_stderr(f"morphospace: error: {printable(line)}")
            _in_run_log(f"error: {line}")
            return code
        peers.stopping(f"{type(exc).__name__}: {first_line(exc)}", 1)
        raise
    finally:
        peers.command_ended(succeeded)
        _leave_process_group(succeeded)
        release_locks()
        _close_run_log()


def _first_rank_when_alone() -> None:
    """A lone process is its job's first: Lightning reads its rank from RANK, LOCAL_RANK or
    SLURM_PROCID alone, and a stray SLURM_PROCID=1 made `embed` skip its pixel PCA and anomaly
    score (the work of a job's first process) and exit 0."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank
    from lightning.pytorch.utilities import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank

    rank_zero_only.rank = fabric_rank.rank = utils_rank.rank = 0


def _leave_process_group(succeeded: bool) -> None:
    """A process of a job started from outside (``srun``, ``torchrun``) leaves its process group
    before it exits (after the others, unless it stops on an error): left to the interpreter's exit,
    a gloo group aborts the process now and then (:mod:`morphospace.nets.spawn`)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        from ..nets.spawn import leave_process_group

        leave_process_group(wait=succeeded)


def _new_run(args, out: str, trains: bool = False, says_replaced: bool = True, **options) -> tuple[RunDir, Config, bool, str]:
    """Create the run directory of a stage that starts a run, with its log, and its config (``--config``,
    ``--set``, then the command's ``options``, dotted keys spelt with ``__``). Settings that are
    refused and data that is not there are one line before anything is written: no new folder, and
    an existing run keeps its configuration (a command that ``trains``: its accelerator too).
    Returns the run, its config, whether this command created the folder (a start refused later
    takes it away: :func:`~morphospace.pipeline.removed_on_failure`) and what of an existing run's
    saved settings it replaces (:func:`_settings_replaced`, said once the command has done its work; "" if not ``says_replaced``)."""
    from .. import pipeline
    from ..run.places import check_not_a_folder_of_results

    check_out(out)
    check_not_a_folder_of_results(out)
    cfg = _set(_config_for(args, None, training=args.command == "run"), args, **options)
    pipeline.check_data(cfg, out)
    if trains:
        from ..vade.fitting import check_accelerator

        check_accelerator(cfg, True if args.command == "study" else None)
    created = not Path(out).exists()
    run = RunDir(out, create=True)
    _setup_logging(args.quiet, run)
    replaced = "" if created or not says_replaced else _settings_replaced(args, run, cfg, options)
    return run, cfg, created, replaced


def _dispatch(args) -> int | None:
    from .. import pipeline

    cmd = args.command
    if cmd == "synth":
        _setup_logging(args.quiet, None)
        if args.n < 1:
            raise UserError("--n must be at least 1")
        out = pipeline.stage_synth(Path(args.out), args.n, args.seed, args.workers, args.size)
        print(f"synthetic survey: {printable(str(out))}")
        return 0
    if cmd == "run":
        run, cfg, created, replaced = _new_run(args, args.out, True, data__path=args.data, model__kind=args.model,
                                               train__epochs=args.epochs, train__seed=args.seed,
                                               ingest__workers=args.workers, cluster__seed=args.seed)
        run.acquire_lock()
        _say_unused_epochs(args, cfg)
        report = pipeline.run_all(run, cfg, created)
        _say(replaced)
        print(f"report: {printable(str(Path(report).resolve()))}")
        return 0
    if cmd == "ingest":
        options = dict(data__path=str(args.data), data__layout=args.layout, data__catalogue=args.catalogue,
                       data__id_column=args.id_column, data__file_column=args.file_column, ingest__workers=args.workers,
                       preprocess__preset=args.preset, preprocess__size=args.size, preprocess__colour=args.colour,
                       ingest__strict=True if args.strict else None,
                       ingest__mask_neighbours=True if args.mask_neighbours else None)
        run, cfg, created, _ = _new_run(args, args.out, says_replaced=False, **options)
        run.acquire_lock()
        earlier = None if created else pipeline.saved_config(run)  # None: none, or damaged (said from it now)
        replaced = _settings_replaced(args, run, cfg, options) if not created and earlier is None else ""
        summary = pipeline.ingest_run(run, cfg, created)
        if earlier is not None:  # said once known: an ingest that kept the run's results kept their settings
            replaced = _settings_replaced(args, run, pipeline.saved_config(run) or cfg, options, saved=earlier)
        _say(replaced)
        print(f"ingested {summary['n_in_cube']} of {summary['n_records']} galaxies into {printable(str(run.path))}")
        return 0
    if cmd == "study":
        run, cfg, created, replaced = _new_run(args, args.out, True, data__path=args.data,
                                               study__backbone=args.backbone, study__labels=args.labels,
                                               study__mode=args.mode, study__epochs=args.epochs,
                                               train__seed=args.seed, cluster__seed=args.seed,
                                               ingest__workers=args.workers)
        run.acquire_lock()
        report = pipeline.run_study(run, cfg, created, resume=args.resume)
        _say(replaced)
        print(f"report: {printable(str(Path(report).resolve()))}")
        return 0
    if cmd == "import-astrovader":
        from ..nets.weights import existing_weights_file

        existing_weights_file(args.weights)  # before the run's folder is made
        pipeline.check_not_a_survey(args.out)
        run, cfg, created, _ = _new_run(args, args.out)
        if not created and run.cube.is_file():
            # into a run that holds galaxies: its own settings (which made its cube) with those given, not
            # the defaults, which reset its survey and preprocessing without a word
            cfg = _config_for(args, run)
        run.acquire_lock()
        with pipeline.removed_on_failure(run, created):  # weights it cannot read: no folder left behind
            pipeline.stage_import_astrovader(run, cfg, Path(args.weights))
        print(f"imported the published AstroVaDEr model into {printable(str(run.path))}")
        return 0

    run = RunDir(args.run)
    if not (run.catalogue.exists() or run.config.exists()):  # before a log or a lock is left in it
        raise UserError(f"{run.path} is not a morphospace run (no catalogue.parquet or config.toml): ingest a "
                         f"survey into it first (morphospace ingest DATA --out {shlex.quote(str(run.path))})")
    distributed = cmd in ("train", "embed")  # may run as several processes of one job (srun, DDP)
    if distributed and job_size() < 2:
        _first_rank_when_alone()
    if distributed:
        peers.watch_peers(run.path, cmd)  # a task of a job stops when another does
    reads_only = cmd in READ_ONLY_COMMANDS
    if not reads_only:
        run.acquire_lock(distributed=distributed)
    # a reader logs beside a writer's lines only where none is writing (its log is that stage's record)
    writer = writer_of(run.path) if reads_only else None
    _setup_logging(args.quiet, None if writer else run, later_rank=distributed and launched_as_later_rank(),
                   reads_only=reads_only)
    if writer:
        log.info("%s is being written by %s: this command logs to the console alone", run.path, writer)
    command = next((c for c in COMMANDS if c.NAME == cmd), None)
    if command is not None:
        return command.run(args, run)
    if cmd == "export":
        from ..export import export

        out = export(run, args.out)
        print(f"results catalogue: {printable(str(out))}")
        return 0
    if cmd == "generate":
        generate.refuse_settings(args)
    cfg = _config_for(args, run, training=cmd == "train")
    if cmd in ("train", "embed"):
        cfg = _set(cfg, args, train__devices=args.devices, train__num_nodes=args.num_nodes, train__strategy=args.strategy,
                   train__accelerator=args.accelerator, train__precision=args.precision)
        from ..vade.fitting import check_accelerator

        check_accelerator(cfg)  # before the settings are saved and a trained model is cleared
    if not reads_only and run.catalogue.exists():
        from ..analysis.labels import check_label_settings

        check_label_settings(run, cfg)  # a misspelt truth label: one line before any work, not after it
    saves = cmd in ("embed", "reduce", "cluster", "compare", "report")  # train saves its own, once checked
    if saves or cmd in ("train", "generate"):  # generate took `--set preprocess.size=128` without a word
        cfg = _earlier_settings_kept(run, cfg, args)
    # a setting the stage then refuses (a representation the run lacks...) does not stay in the run
    saved = False
    with pipeline.config_restored_on_failure(run) if saves else nullcontext():
        if saves:
            if getattr(args, "config", None):  # a file in place of the run's settings: what it set back, said
                _say(_settings_replaced(args, run, cfg, {}))
            saved = _save_changed_config(run, cfg)
        if cmd == "train":
            cfg = _set(cfg, args, train__epochs=args.epochs, train__seed=args.seed)
            _say_unused_epochs(args, cfg)
            if cfg.model.kind == "vade":
                from ..vade.hparams import check_against_cube

                hp = check_against_cube(cfg, run.read_cube(), announce=False)  # before the config is saved
                if args.resume:
                    from ..vade.fitting import check_resumable

                    check_resumable(run, hp, say=False)
            pipeline.save_config(run, cfg)
            pipeline.stage_train(run, cfg, resume=args.resume)
        elif cmd == "embed":
            pipeline.stage_embed(run, cfg)
        elif cmd == "reduce":
            pipeline.stage_reduce(run, cfg, embedding=args.embedding)
        elif cmd == "cluster":
            pipeline.stage_cluster(run, cfg)
        elif cmd == "compare":
            pipeline.stage_compare(run, cfg)
        elif cmd == "generate":
            generate.run(args, run, cfg)
        elif cmd == "report":
            report = pipeline.stage_report(run, cfg)
            print(f"report: {printable(str(Path(report).resolve()))}")
    if saved:  # said once the stage has kept them
        log.info("settings saved to %s", run.config)
    return 0

