"""The intervention test of the run's own clusters (:mod:`morphospace.vade.invariance`), for the
comparisons section: its table and one sentence a reader can act on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..context import ReportContext
from ..views import table

__all__ = ["invariance_view", "moved_by", "read_invariance"]

FILE = "invariance.csv"
CONTROL = "moved 1/2 px"  # the test's own floor (vade.invariance.CONTROL)
COLUMNS = ["change", "what", "changed", "ari", "excess", "excess_low", "excess_high", "chance", "n"]


def _floor(frame: pd.DataFrame) -> tuple[float, float] | None:
    """The control's share and chance's, or None: no control to compare with, or one cluster
    (nothing to change to)."""
    control = frame[frame["change"] == CONTROL]
    if control.empty or not np.isfinite(control["changed"].iloc[0]) or not frame["chance"].iloc[0] > 0:
        return None
    return float(control["changed"].iloc[0]), float(frame["chance"].iloc[0])


def moved_by(frame: pd.DataFrame) -> tuple[pd.DataFrame, float] | None:
    """The changes shown to move more galaxies to another cluster than the control (the 95% interval
    of the excess above zero), and the control's share; None where the test cannot tell (see
    :func:`_floor`), or where the control alone moves half of what chance would."""
    found = _floor(frame)
    if found is None or found[0] >= 0.5 * found[1]:
        return None
    others = frame[frame["change"] != CONTROL]
    return others[others["excess_low"] > 0], found[0]


def _verdict(frame: pd.DataFrame) -> str:
    """What the clusters are not invariant to (:func:`moved_by`), or why the test cannot tell."""
    found = _floor(frame)
    if found is None:
        return ""
    (floor, chance), n = found, int(frame["n"].iloc[0])
    if floor >= 0.5 * chance:
        return (f"Inconclusive: even the control, a move of half a pixel, sends {floor:.0%} of the {n} galaxies to "
                f"another cluster (chance {chance:.0%}); the clusters' edges hold too many galaxies for the test "
                "to tell.")
    followed, _ = moved_by(frame)
    if followed.empty:
        highest = pd.to_numeric(frame.loc[frame["change"] != CONTROL, "excess_high"], errors="coerce").max()
        return (f"No change is shown to send more of the {n} galaxies to another cluster than the control does "
                f"({floor:.0%}): every 95% interval of the excess holds zero"
                + (f", the highest reaching {100 * highest:+.0f} points: a larger sample (cluster.invariance_sample) "
                   "would tell more." if np.isfinite(highest) else "."))
    named = "; ".join(f"{r.changed:.0%} when {r.what} ({100 * r.excess:+.0f} points over the control, 95% "
                      f"interval {100 * r.excess_low:+.0f} to {100 * r.excess_high:+.0f})" for r in followed.itertuples())
    return (f"The clusters are not invariant to how a galaxy is shown. Of the same {n} galaxies, another cluster "
            f"takes {named}; against {floor:.0%} when they are only moved by half a pixel (the control).")


def read_invariance(path) -> pd.DataFrame | None:
    """The test's table with its numbers as numbers; None where it is missing, damaged or empty."""
    if path is None:
        return None
    try:
        frame = pd.read_csv(path)[COLUMNS]
        numbers = frame[COLUMNS[2:]].apply(pd.to_numeric, errors="raise")
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    return None if frame.empty else pd.concat([frame[["change", "what"]], numbers], axis=1)


def invariance_view(ctx: ReportContext) -> dict[str, Any] | None:
    """The test's table (change, what it does, share changed, its excess over the control, ARI) and
    its verdict; None where the run has no test or its table cannot be read."""
    frame = read_invariance(ctx.contents.comparison(FILE))
    if frame is None:
        return None
    shown = pd.DataFrame({
        "change": frame["change"], "what": frame["what"], "share changed": frame["changed"],
        "over the control (95%)": [f"{r.excess:+.2f} ({r.excess_low:+.2f} to {r.excess_high:+.2f})"
                                   if r.change != CONTROL and np.isfinite([r.excess, r.excess_low, r.excess_high]).all()
                                   else "" for r in frame.itertuples()],
        "ARI before / after": frame["ari"]})
    return {"table": table(shown, digits=2), "verdict": _verdict(frame), "n": int(frame["n"].iloc[0]),
            "chance": float(frame["chance"].iloc[0])}
