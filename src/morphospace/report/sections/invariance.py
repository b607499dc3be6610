"""The intervention test of the run's own clusters (:mod:`morphospace.vade.invariance`), for the
comparisons section: its table and one sentence a reader can act on."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..context import ReportContext
from ..views import table

__all__ = ["invariance_view"]

FILE = "invariance.csv"
CONTROL = "moved 1/2 px"  # the test's own floor (vade.invariance.CONTROL)
COLUMNS = ["change", "what", "changed", "ari", "excess", "excess_low", "excess_high", "chance", "n"]


def _verdict(frame: pd.DataFrame) -> str:
    """What the clusters are not invariant to: the changes whose excess over the control is above
    zero at 95%; inconclusive where the control alone moves half of what chance would."""
    control = frame[frame["change"] == CONTROL]
    if control.empty or not pd.notna(control["changed"].iloc[0]):
        return ""
    floor, chance, n = float(control["changed"].iloc[0]), float(frame["chance"].iloc[0]), int(frame["n"].iloc[0])
    if floor >= 0.5 * chance:
        return (f"Inconclusive: even the control, a move of half a pixel, sends {floor:.0%} of the {n} galaxies to "
                f"another cluster (chance {chance:.0%}); the clusters' edges hold too many galaxies for the test "
                "to tell.")
    others = frame[frame["change"] != CONTROL]
    followed = others[others["excess_low"] > 0]
    if followed.empty:
        return (f"No change sends more of the {n} galaxies to another cluster than the control does ({floor:.0%}), "
                "beyond the sample's noise: the clusters are invariant to these changes, as far as the test can tell.")
    named = "; ".join(f"{r.changed:.0%} when {r.what} ({100 * r.excess:+.0f} points over the control, 95% "
                      f"interval {100 * r.excess_low:+.0f} to {100 * r.excess_high:+.0f})" for r in followed.itertuples())
    return (f"The clusters are not invariant to how a galaxy is shown. Of the same {n} galaxies, another cluster "
            f"takes {named}; against {floor:.0%} when they are only moved by half a pixel (the control).")


def invariance_view(ctx: ReportContext) -> dict[str, Any] | None:
    """The test's table (change, what it does, share changed, its excess over the control, ARI) and
    its verdict; None where the run has no test or its table cannot be read."""
    path = ctx.contents.comparison(FILE)
    if path is None:
        return None
    try:
        frame = pd.read_csv(path)[COLUMNS]
        numbers = frame[COLUMNS[2:]].apply(pd.to_numeric, errors="raise")
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    if frame.empty:
        return None
    frame = pd.concat([frame[["change", "what"]], numbers], axis=1)
    shown = pd.DataFrame({
        "change": frame["change"], "what": frame["what"], "share changed": frame["changed"],
        "over the control (95%)": [f"{r.excess:+.2f} ({r.excess_low:+.2f} to {r.excess_high:+.2f})"
                                   if r.change != CONTROL else "" for r in frame.itertuples()],
        "ARI before / after": frame["ari"]})
    return {"table": table(shown, digits=2), "verdict": _verdict(frame), "n": int(frame["n"].iloc[0]),
            "chance": float(frame["chance"].iloc[0])}
