"""The intervention test of the run's own clusters (:mod:`morphospace.vade.invariance`), for the
comparisons section: its table and one sentence a reader can act on."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..context import ReportContext
from ..views import table

__all__ = ["invariance_view"]

FILE = "invariance.csv"
CONTROL = "moved 1/2 px"  # the test's own floor (vade.invariance.CHANGES)
FOLLOWS = 2.0  # a change that moves this many times the control's share is one the clusters follow


def invariance_view(ctx: ReportContext) -> dict[str, Any] | None:
    """The test's table (change, what it does, share changed, ARI) and its verdict; None where the
    run has no test or its table cannot be read."""
    path = ctx.contents.comparison(FILE)
    if path is None:
        return None
    try:
        frame = pd.read_csv(path)
        frame = frame[["change", "what", "changed", "ari", "chance", "n"]]
        changed = pd.to_numeric(frame["changed"], errors="coerce")
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    if frame.empty:
        return None
    control = changed[frame["change"] == CONTROL]
    floor = float(control.iloc[0]) if len(control) and pd.notna(control.iloc[0]) else None
    others = frame[frame["change"] != CONTROL].assign(changed=changed[frame["change"] != CONTROL])
    if floor is None:
        verdict = ""
    else:
        followed = others[others["changed"] >= FOLLOWS * max(floor, 0.01)]
        if followed.empty:
            verdict = (f"No change moves the clusters much more than the control does ({floor:.0%} of the "
                       "galaxies): they do not follow these ways of being seen.")
        else:
            named = ", ".join(f"{r.changed:.0%} when {r.what}" for r in followed.itertuples())
            verdict = (f"The clusters follow how a galaxy is seen. Of the same galaxies, another cluster takes "
                       f"{named}; against {floor:.0%} when they are only moved by half a pixel (the control).")
    shown = frame.rename(columns={"changed": "share changed", "ari": "ARI before / after"})
    return {"table": table(shown[["change", "what", "share changed", "ARI before / after"]], digits=2),
            "verdict": verdict, "n": int(frame["n"].iloc[0]), "chance": float(frame["chance"].iloc[0])}
