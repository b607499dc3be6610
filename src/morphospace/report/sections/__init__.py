"""The sections of the report, each built only when its inputs exist in the run.

Every builder takes the :class:`~morphospace.report.context.ReportContext`
and returns a :class:`~morphospace.report.context.Section` or None, rendering
its template of ``morphospace/report/templates``. :data:`BUILDERS` is their
order on the page (after the explorer); :func:`other_figures` comes last, as it
shows every figure the others did not place.
"""

from __future__ import annotations

from .clusters import cluster_section, exemplars
from .comparisons import comparison_section, probe_view, read_matrix
from .data import data_section, flag_rows
from .model import model_section
from .strangest import other_figures, strangest_section

__all__ = ["BUILDERS", "data_section", "model_section", "cluster_section", "comparison_section",
           "strangest_section", "other_figures", "exemplars", "flag_rows", "probe_view", "read_matrix"]

BUILDERS = (data_section, model_section, cluster_section, comparison_section, strangest_section)
