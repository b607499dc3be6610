"""Shared pieces of the command line: the one-line-error parser, common options, safe printing."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from ..errors import UserError

__all__ = ["Parser", "common", "stage", "printable", "check_out", "seed"]

MAX_SEED = 2**31 - 1  # as the configuration's seeds (config.base.Seed)


class _StoreOnce(argparse._StoreAction):
    """An option of one value given twice is a usage error: argparse kept the last silently, so
    `similar RUN --id a --id b` answered for b alone (options that gather, --set, --labels, are
    ``append`` / ``extend`` actions and repeat as they always did)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_options_given", set())
        if option_string is not None and self.dest in given:
            parser.error(f"{'/'.join(self.option_strings)} given twice: give it once")
        if isinstance(values, str) and not values.strip():
            # read as not given: `--config ""` ran on the defaults, `--embedding ""` on the primary one,
            # and a RUN of "" was the folder in which the command was typed
            name = option_string or self.dest.upper()
            parser.error(f"{name} must not be empty")
        given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2, names the closest of the
    choices to one mistyped, and refuses an option of one value given twice."""

    def __init__(self, *args, **kwargs):
        # no prefixes of options: `--inter` was taken for --interesting, `--q` for --quiet, and `--c`
        # named a hidden option among those it could mean
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def _check_value(self, action, value):
        """argparse's check of a value against its choices, with the closest choice named (a
        mistyped command, ``studdy``: "did you mean 'study'?"); none close: argparse's message."""
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            known = [c for c in action.choices if isinstance(c, str)] if isinstance(value, str) else []
            close = difflib.get_close_matches(value, known, n=1)
            if not close:
                raise
            hint = f"did you mean '{close[0]}'? "
            message = exc.message
            if "(choose from " in message:  # as the config's unknown key: the hint, then the list
                message = message.replace("(choose from ", f"({hint}choose from ", 1)
            else:
                message = f"{message} ({hint.strip()})"
            raise argparse.ArgumentError(action, message) from None

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"morphospace: error: {message} (see --help)\n")


def seed(text: str) -> int:
    """An option's seed: an integer that numpy, scikit-learn, torch and Lightning all take."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is an integer, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is in [0, {MAX_SEED}], got {text}")
    return value


def common(p: argparse.ArgumentParser, config: bool | str = True, example: str = "train.epochs=5") -> None:
    """Add ``--config``/``--set`` (when ``config``; ``"refused"``: taken, to be refused in one line
    by the command, and left out of its help) and ``--quiet`` to a sub-command; ``example``: a
    setting the command acts on, shown in the help (``train.epochs`` was shown to stages that
    refuse it)."""
    if config:
        shown = config != "refused"
        p.add_argument("--config", metavar="FILE", help="TOML configuration file" if shown else argparse.SUPPRESS)
        p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                       help=f"override one configuration key, e.g. --set {example} (repeatable; a key given twice takes the "
                            "last value)" if shown
                       else argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def stage(sub, name: str, help_: str, example: str, run_arg: bool = True) -> argparse.ArgumentParser:
    """A sub-command with its help, one example and (when ``run_arg``) the RUN argument."""
    p = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if run_arg:
        p.add_argument("run", metavar="RUN", help="the run directory")
    return p


def printable(text: str) -> str:
    """``text`` with control characters (newlines, terminal escape codes) shown escaped, so a
    user-supplied string can neither break the one-line error nor drive the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def check_out(out: str | None, what: str = "--out", purpose: str = "the run") -> Path:
    """``out`` as a folder path; a one-line error when it is empty or names a file."""
    if out is None or not str(out).strip():
        raise UserError(f"{what} must name a folder, got an empty path")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {printable(str(path))} is a file, not a folder: choose a folder for {purpose}")
    if purpose == "the run":
        from ..run.places import check_run_place

        check_run_place(path, what)
    return path
