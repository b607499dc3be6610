"""The report's first lines: what the run found, in three or four numbers under the heading.

The numbers come from the compare stage's files (nothing is computed here): the report's clusters
and how many; how far they agree with the truth label (AMI), where the run has one; the best
10% linear probe of an embedding; what of how a galaxy is seen the clusters follow most; and the
intervention test's change that moves them most.
Left out where the comparisons are of an earlier run state (the page says so below them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .collect import RunContents
from .sections.comparisons import read_matrix

__all__ = ["key_findings"]


def key_findings(contents: RunContents) -> list[tuple[str, str, str]]:
    """``(value, label, hint)`` tiles: the report's clusters, their agreement with the truth, the best
    10% linear probe and the largest nuisance AMI of the clusters, whichever the run holds."""
    tiles = []
    primary = contents.primary
    if primary is not None:
        held = len([k for k in primary.clusters if k >= 0])
        tiles.append((str(held), "cluster" if held == 1 else "clusters", primary.name))
    fresh = contents.stale_comparisons is None
    truth = contents.truth
    ami = _matrix(contents, "ami.csv") if fresh else None
    if primary is not None and truth and ami is not None and primary.name in ami.index and truth in ami.columns:
        v = pd.to_numeric(ami.loc[primary.name, truth], errors="coerce")
        if np.isfinite(v):
            # where it stands among the run's clusterings: a number alone says nothing of good or bad
            # among the clusterings no label made: not the label columns beside them, nor those of a map or
            # features the labels trained (held_out.json: LDA maps, fine-tuned features)
            made = list(contents.held_out)  # the clusterings whose representation the labels made
            labels = [truth, *contents.label_columns, *made]
            others = pd.to_numeric(ami[truth].drop(index=labels, errors="ignore"), errors="coerce").dropna()
            rank = int((others > v).sum()) + 1
            best = others.idxmax() if len(others) else primary.name
            standing = (f"; the best of the run's {len(others)} label-free clusterings" if rank == 1 else
                        f"; {rank} of the run's {len(others)} label-free clusterings, the best {best} at "
                        f"{others[best]:.2f}") if len(others) > 1 else ""
            if primary.name in made:  # not one of them: the labels made its map or features
                standing = "; made with the labels (scored on the galaxies held out), not ranked with the label-free"
            tiles.append((f"{v:.2f}".replace("-0.00", "0.00"), f"AMI with {truth}",
                          f"{primary.name} against the labels (1: the same, 0: chance){standing}"))
    probe = contents.comparison("linear_probe.csv") if fresh else None
    if probe is not None:
        try:
            t = pd.read_csv(probe)
            tenth = t[np.isclose(t["fraction"], 0.1)].sort_values("balanced_accuracy", ascending=False)
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            tenth = pd.DataFrame()
        if len(tenth):
            best = tenth.iloc[0]
            # the embeddings as good within the draws' spread: the first of them is no winner
            spread = float(best["std"]) if "std" in tenth and np.isfinite(best["std"]) else 0.0
            tied = [str(e) for e, b in zip(tenth["embedding"].iloc[1:], tenth["balanced_accuracy"].iloc[1:])
                    if b >= best["balanced_accuracy"] - spread]
            tiles.append((f"{best['balanced_accuracy']:.2f}", "linear probe, 10% of labels",
                          f"balanced accuracy of {best['embedding']} (chance {best['chance']:.2f})"
                          + (f"; as good within the draws' spread ({spread:.3f}): {', '.join(tied[:3])}"
                             + (", ..." if len(tied) > 3 else "") if tied else "")))
    audit = _matrix(contents, "nuisance_audit.csv") if fresh else None
    if primary is not None and audit is not None and primary.name in audit.index:
        row = pd.to_numeric(audit.loc[primary.name], errors="coerce").dropna()
        if len(row):
            tiles.append((f"{row.max():.3f}".replace("-0.000", "0.000"), "largest nuisance AMI",
                          f"{primary.name} with {row.idxmax()} (0: chance)"))
    moved = _most_moved(contents) if fresh else None
    if moved is not None:
        tiles.append(moved)
    return tiles


def _most_moved(contents: RunContents) -> tuple[str, str, str] | None:
    """The intervention test's change shown to send the most galaxies to another cluster beyond the
    control (``comparisons/invariance.csv``); None where the run has no test, the test cannot tell,
    or no change is shown to move more than the control."""
    from .sections.invariance import FILE, moved_by, read_invariance

    frame = read_invariance(contents.comparison(FILE))
    found = moved_by(frame) if frame is not None else None
    if found is None or found[0].empty:
        return None
    shown, floor = found
    top = shown.loc[shown["excess"].idxmax()]
    return (f"{top['excess']:+.2f}", "most moved by how a galaxy is shown",
            f"{top['changed']:.0%} of the galaxies tested change cluster when {top['what']}, against {floor:.0%} for "
            f"the control (95% interval {top['excess_low']:+.2f} to {top['excess_high']:+.2f})")


def _matrix(contents: RunContents, name: str) -> pd.DataFrame | None:
    path = contents.comparison(name)
    return read_matrix(path) if path is not None else None
