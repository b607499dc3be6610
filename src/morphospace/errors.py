"""Errors that reach the user as one clear line.

Anything the user can fix (a missing folder, an unknown config key, a file in a
format we do not read) raises :class:`UserError`; the command line prints its
message on one line and exits with status 2. Everything else is a bug and keeps
its traceback.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UserError(ValueError):
    """A mistake in the user's input: printed as one line, exit status 2.

    A ``ValueError``, as scikit-learn's conventions want for a wrong argument to an estimator.
    """

    exit_code = 2


class NotAvailableError(UserError):
    """A stage or backend that is not installed or not built yet."""
