"""The per-galaxy anomaly score a report shows: the form embedding's (re-ranked by the user's tags),
else the VaDE's; read from the run once, aligned to the cube order.

:class:`AnomalyScores` is a part of :class:`~morphospace.report.collect.RunContents`: it reads
through the run (``self.run``, ``self.path``), the cube's size (``self.n``) and its id-to-row map
(``self.rows_of``) that the whole provides.
"""

from __future__ import annotations

import logging
from functools import cached_property

import numpy as np
import pandas as pd

from ..errors import UserError
from ..run.writes import read_parquet

log = logging.getLogger("morphospace")


class AnomalyScores:
    """The report's readers of the anomaly score (a mixin of :class:`~morphospace.report.collect.RunContents`)."""

    @cached_property
    def anomaly(self) -> tuple[str, np.ndarray] | None:
        """(what, score) with higher = stranger: the form anomaly score (``anomaly.parquet``: raw, or re-ranked
        once the user has tagged galaxies) when the run has one, else the VaDE's (``vade_galaxies.parquet``),
        else None."""
        form = self._form_anomaly
        if form is not None:
            return form
        candidates = [self.path / "vade_galaxies.parquet", *sorted(self.path.glob("models/*/vade_galaxies.parquet"))]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            return None
        try:
            table = read_parquet(path)
        except Exception as exc:
            log.warning("report: %s unreadable (%s)", path, exc)
            return None
        if "anomaly" in table.columns:
            what, values = "anomaly score", table["anomaly"].to_numpy(np.float64)
        elif "log_likelihood" in table.columns:
            what, values = "anomaly score (negative log-likelihood)", -table["log_likelihood"].to_numpy(np.float64)
        else:
            return None
        score = np.full(self.n, np.nan)
        if "id" in table.columns:
            rows = self.rows_of(table["id"])
            ok = rows >= 0
            score[rows[ok]] = values[ok]
        elif len(table) == self.n:
            score = values
        else:
            log.warning("report: %s has %d rows and no id column; the cube has %d: anomaly left out",
                        path, len(table), self.n)
            return None
        return (what, score) if np.isfinite(score).any() else None

    @property
    def anomaly_source(self) -> str | None:
        """Which score :attr:`anomaly` is: ``"form"`` (the form embedding's), ``"vade"`` or None."""
        if self.anomaly is None:
            return None
        return "form" if self._form_anomaly is not None else "vade"

    @property
    def anomaly_tags(self) -> dict[str, int]:
        """How many galaxies the form score's user tags mark ``interesting`` and ``boring`` (0 without)."""
        found = self._form_anomaly_found
        return found[2] if found else {"interesting": 0, "boring": 0}

    @property
    def anomaly_tags_changed(self) -> bool:
        """Whether the user's tags file changed after the form score was re-ranked by it (said on the page)."""
        found = self._form_anomaly_found
        return bool(found and found[4])

    @property
    def anomaly_description(self) -> str:
        """How the form anomaly score is made ("" for the VaDE's)."""
        found = self._form_anomaly_found
        return found[3] if found else ""

    @property
    def _form_anomaly(self) -> tuple[str, np.ndarray] | None:
        found = self._form_anomaly_found
        return found[:2] if found else None

    @cached_property
    def _form_anomaly_found(self) -> tuple[str, np.ndarray, dict[str, int], str, bool] | None:
        """(what, current score, tag counts, description, tags changed since) from ``anomaly.parquet``
        (``analysis.anomaly``), or None when absent or stale."""
        from ..analysis.anomaly import ANOMALY_FILE, read_anomaly, tags_current
        from ..analysis.anomaly_tags import TAGS_FILE

        try:
            found = read_anomaly(self.run)
        except UserError as exc:
            log.warning("report: %s; the VaDE's anomaly score is shown instead", exc)
            return None
        if found is None:
            return None
        table, meta = found
        changed = "tags_stamp" in meta and not tags_current(self.run, meta["tags_stamp"])  # earlier runs': no stamp
        if changed:
            log.warning("report: %s changed after the scores in %s: the report shows the scores of the last "
                        "`morphospace anomalies` call (run it to apply the file)", TAGS_FILE, ANOMALY_FILE)
        rows = self.rows_of(table["id"])
        if len(table) != self.n or (rows < 0).any():
            log.warning("report: anomaly.parquet does not match the cube (re-run `morphospace anomalies`): "
                        "the VaDE's anomaly score is shown instead")
            return None
        tags = table["tag"].astype(str) if "tag" in table.columns else pd.Series([], dtype=str)
        counts = {t: int((tags == t).sum()) for t in ("interesting", "boring")}
        # without tags the raw score (same order as the rank, and a histogram and colour scale that show
        # how far the outliers lie); with tags the re-ranked score
        column = "score" if sum(counts.values()) else "form_anomaly"
        score = np.full(self.n, np.nan)
        score[rows] = table[column].to_numpy(np.float64)
        return str(meta.get("what") or "form anomaly"), score, counts, str(meta.get("description") or ""), changed
