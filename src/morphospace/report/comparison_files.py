"""What the compare stage left in a run, as a report reads it: its files, and whether they are still
this run's (:attr:`ComparisonFiles.stale_comparisons`).

:class:`ComparisonFiles` is a part of :class:`~morphospace.report.collect.RunContents`: it reads
through the run (``self.run``, ``self.path``), the page's truth label (``self.truth``) and the results
the run holds that are stale (``self.stale_results``) that the whole provides.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from ..run.provenance import comparison_inputs_changed


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class ComparisonFiles:
    """The report's readers of the compare stage's results (a mixin of :class:`~morphospace.report.collect.RunContents`)."""

    @cached_property
    def stale_comparisons(self) -> tuple[str, bool, bool] | None:
        """Why the compare stage's results are not this run's any more, whether that touches its
        comparisons of the clusterings (matrices, contingency tables, audit) and whether its linear
        probes; None when they are this run's (or the run predates the record of what was compared).

        Their ``inputs.json`` records the clusterings, embeddings and catalogue compared
        (:func:`~morphospace.run.provenance.comparison_inputs`), or that the last compare did not finish.

        Returns
        -------
        (str, bool, bool) or None
            (why, clusterings stale, probes stale).
        """
        path = self.path / "comparisons" / "inputs.json"
        if not path.is_file():
            if not any((self.path / "comparisons").glob("*.csv")) and any(
                    (self.path / "figures" / f"{name}.png").is_file() for name in ("ari_matrix", "ami_matrix",
                                                                                    "nuisance_audit")):
                # its figures outlived its results (comparisons/ removed): shown as the run's before
                return "the compare stage's results are not in the run", True, True
            return None  # none made, or made before what was compared was recorded
        try:
            was = json.loads(path.read_text())
            if was.get("incomplete"):
                return "the last `morphospace compare` did not finish", True, True
            changed = comparison_inputs_changed(self.run, was)
            # compared, then made stale by a new map or embedding: left out of the page, so out of its comparisons
            left_out = sorted(n for n in was["clusterings"] if f"clusterings/{n}" in self.stale_results)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return "their record of what was compared is damaged", True, True
        if changed["catalogue"]:
            return "the catalogue has changed since", True, True
        if "truth" in was and was["truth"] != self.truth:  # `report --set data.truth_label=...` alone
            return (f"they score the clusterings against {was['truth'] or 'no truth label'}, and this page's truth "
                    f"label is {self.truth or 'none'} (`morphospace compare RUN --set data.truth_label=...` "
                    "scores them against it)", True, True)
        reasons = []
        clusterings = changed["clusterings"]
        if clusterings:
            reasons.append(f"clusterings have changed since ({_few(clusterings)})")
        if left_out:
            reasons.append(f"clusterings compared were made from an earlier embedding or map ({_few(left_out)})")
            clusterings = clusterings + left_out
        embeddings = changed["embeddings"] or []
        if embeddings:
            reasons.append(f"embeddings have changed since ({_few(embeddings)})")
        return ("; ".join(reasons), bool(clusterings), bool(embeddings)) if reasons else None

    def comparison(self, name: str) -> Path | None:
        """A file of ``RUN/comparisons/``, if it exists.

        Parameters
        ----------
        name : str
            Its file name (e.g. ``"ari.csv"``).

        Returns
        -------
        Path or None
        """
        p = self.path / "comparisons" / name
        return p if p.exists() else None

    @cached_property
    def held_out(self) -> dict[str, int]:
        """Clustering -> the galaxies it was scored on against the labels, for those whose representation
        the labels made (an LDA map, fine-tuned features: the compare stage's ``held_out.json``); empty
        where there is none or it cannot be read."""
        from ..analysis.compare import HELD_OUT

        path = self.comparison(HELD_OUT)
        try:
            held = json.loads(path.read_text()).get("held_out", {}) if path else {}
        except (OSError, ValueError, AttributeError):
            return {}
        return {str(k): int(v) for k, v in held.items() if isinstance(v, int)} if isinstance(held, dict) else {}
