"""The label vocabularies of the known surveys, and the classes derived from them.

The Galaxy Zoo and Galaxy10 layouts also get a ``morph3`` column (elliptical, spiral,
edge_on; missing otherwise), so runs on different surveys can be compared on three classes;
so does a folder catalogue with Galaxy Zoo 1, 2 or DECaLS / DESI columns (:func:`with_gz_classes`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ...config import VoteThresholds
from ...errors import UserError
from ...run import MISSING_MARKERS

log = logging.getLogger("morphospace")

# Galaxy Zoo 1 class (0-3 of the sdss-gz1 labels.csv) -> morph3
GZ1_MORPH3 = {0: "elliptical", 1: "spiral", 2: "spiral", 3: "edge_on"}
# derive_gz2_class -> morph3 (artifact, merger and uncertain stay missing)
GZ2_MORPH3 = {"smooth": "elliptical", "spiral": "spiral", "barred_spiral": "spiral", "edge_on": "edge_on"}
# Galaxy10 class index (``ans``) -> name, per survey (DECaLS 256 px, SDSS 69 px)
GALAXY10_NAMES = {
    "decals": [
        "disturbed", "merging", "round_smooth", "in_between_round_smooth", "cigar_shaped_smooth",
        "barred_spiral", "unbarred_tight_spiral", "unbarred_loose_spiral", "edge_on_without_bulge",
        "edge_on_with_bulge",
    ],
    "sdss": [
        "disk_face_on_no_spiral", "smooth_completely_round", "smooth_in_between_round",
        "smooth_cigar_shaped", "disk_edge_on_rounded_bulge", "disk_edge_on_boxy_bulge",
        "disk_edge_on_no_bulge", "disk_face_on_tight_spiral", "disk_face_on_medium_spiral",
        "disk_face_on_loose_spiral",
    ],
}
GALAXY10_MORPH3 = {
    "decals": {2: "elliptical", 3: "elliptical", 4: "elliptical", 5: "spiral", 6: "spiral", 7: "spiral",
               8: "edge_on", 9: "edge_on"},
    "sdss": {1: "elliptical", 2: "elliptical", 3: "elliptical", 4: "edge_on", 5: "edge_on", 6: "edge_on",
             7: "spiral", 8: "spiral", 9: "spiral"},
}


def derive_gz2_class(votes: pd.DataFrame, t: VoteThresholds) -> pd.Series:
    """Morphology class of each galaxy from Kaggle Galaxy Zoo 2 vote fractions.

    The cuts apply to the columns as the Kaggle file gives them, where the answers to
    a later question are already multiplied by the fraction of volunteers who reached
    it: a cut of 0.5 on ``Class3.1`` means more than half of *all* volunteers saw a bar.
    The first rule that passes wins:

    ============== ============================ ===========================================
    class          rule                         question (answer)
    ============== ============================ ===========================================
    artifact       Class1.3 > t.artifact        Q1 smooth or features (star or artifact)
    merger         Class8.6 > t.merger          Q8 odd feature (merger)
    smooth         Class1.1 > t.smooth          Q1 (smooth)
    edge_on        Class2.1 > t.edge_on         Q2 edge-on disk (yes)
    barred_spiral  Class3.1 > t.barred          Q3 bar (yes)
    spiral         Class4.1 > t.spiral          Q4 spiral arms (yes)
    uncertain      otherwise
    ============== ============================ ===========================================

    Bars come before arms so that barred disks form their own class.

    Parameters
    ----------
    votes : pandas.DataFrame
        The Kaggle vote-fraction columns (at least those of the rules above).
    t : VoteThresholds
        The cuts (``data.vote_thresholds``).

    Returns
    -------
    pandas.Series
        The class of each row, dtype ``string``; missing where a vote the rules read is missing.
    """
    rules = [("artifact", "Class1.3", t.artifact), ("merger", "Class8.6", t.merger),
             ("smooth", "Class1.1", t.smooth), ("edge_on", "Class2.1", t.edge_on),
             ("barred_spiral", "Class3.1", t.barred), ("spiral", "Class4.1", t.spiral)]
    out = np.full(len(votes), "uncertain", dtype=object)
    decided = np.zeros(len(votes), dtype=bool)
    unknown = np.zeros(len(votes), dtype=bool)
    for name, col, cut in rules:
        fractions = pd.to_numeric(votes[col], errors="coerce").to_numpy(dtype=float)
        unknown |= np.isnan(fractions)
        take = (fractions > cut) & ~decided
        out[take] = name
        decided |= take
    out[unknown] = None  # a vote missing: no class, rather than "uncertain" or one decided without it
    return pd.Series(out, index=votes.index, dtype="string")


# the survey suffixes of Galaxy Zoo DECaLS / DESI question names (none in the published "friendly"
# catalogues; -dr5, -dr8, -dr12 in Zoobot's schemas), tried in this order
GZ_DECALS_SUFFIXES = ("", "-dr8", "-dr5", "-dr12")


def gz_decals_columns(columns) -> dict[str, list[str]] | None:
    """The vote-fraction columns of a Galaxy Zoo DECaLS / DESI catalogue (Walmsley et al. 2022, 2023) that
    :func:`derive_gz_decals_class` reads: ``smooth``, ``featured``, ``artifact``, ``edge_on`` (yes),
    ``spiral`` (yes), ``bar`` (strong and weak, or yes) and ``merger`` (the last four may be missing), each
    a list of column names; None where the catalogue lacks the first question's smooth or featured answer."""
    have = set(columns)
    for s in GZ_DECALS_SUFFIXES:
        def col(question: str, *answers: str) -> list[str]:
            return [c for a in answers if (c := f"{question}{s}_{a}_fraction") in have]
        found = {"smooth": col("smooth-or-featured", "smooth"), "featured": col("smooth-or-featured", "featured-or-disk"),
                 "artifact": col("smooth-or-featured", "artifact"), "edge_on": col("disk-edge-on", "yes"),
                 "spiral": col("has-spiral-arms", "yes"), "bar": col("bar", "strong", "weak") or col("bar", "yes"),
                 "merger": col("merging", "merger")}
        if found["smooth"] and found["featured"]:
            return found
    return None


def derive_gz_decals_class(table: pd.DataFrame, columns: dict[str, list[str]], t: VoteThresholds) -> pd.Series:
    """Morphology class of each galaxy from Galaxy Zoo DECaLS / DESI vote fractions
    (:func:`gz_decals_columns`), by the rules and cuts of :func:`derive_gz2_class`.

    Unlike the Kaggle file's, these fractions are each of the volunteers who answered that question,
    so each is first multiplied by the share who reached it (as the Kaggle columns are): edge-on is
    ``featured x edge_on``, a bar ``featured x (1 - edge_on) x (strong + weak)``, arms
    ``featured x (1 - edge_on) x spiral``. A question nobody reached (an empty fraction) counts as
    no vote for it; a galaxy without the first question's fractions gets no class.

    Returns
    -------
    pandas.Series
        The class of each row (artifact, merger, smooth, edge_on, barred_spiral, spiral, uncertain),
        dtype ``string``.
    """
    def frac(key: str) -> np.ndarray:  # an empty fraction (a question nobody reached) reads 0
        parts = [pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float) for c in columns.get(key) or []]
        return np.nan_to_num(np.sum(parts, axis=0), nan=0.0) if parts else np.zeros(len(table))

    smooth = pd.to_numeric(table[columns["smooth"][0]], errors="coerce").to_numpy(dtype=float)
    featured = pd.to_numeric(table[columns["featured"][0]], errors="coerce").to_numpy(dtype=float)
    edge = frac("edge_on")
    face_on = featured * (1.0 - edge)
    votes = pd.DataFrame({"Class1.3": frac("artifact"), "Class8.6": frac("merger"), "Class1.1": smooth,
                          "Class2.1": featured * edge, "Class3.1": face_on * frac("bar"),
                          "Class4.1": face_on * frac("spiral")}, index=table.index)
    return derive_gz2_class(votes, t)  # a missing smooth or featured fraction: no class


# Galaxy Zoo 1's vote fractions (Lintott et al. 2011: P_EL, P_CW, P_ACW, P_EDGE, P_DK, P_MG), in the order
# of the sdss-gz1 layout's gz1_class codes 0-5
GZ1_VOTES = ("p_el", "p_cw", "p_acw", "p_edge", "p_dk", "p_mg")
GZ1_NAMES = ("elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger")


def gz1_votes_class(table: pd.DataFrame) -> pd.Series | None:
    """The Galaxy Zoo 1 class of each galaxy, the answer with the largest vote fraction (the first on a
    tie), from the columns of Lintott et al. 2011's table (:data:`GZ1_VOTES`, any case); as the
    sdss-gz1 layout's ``gz1_name``. None where the table lacks one of them; missing where a row's
    fractions are."""
    lower = {str(c).lower(): c for c in table.columns}
    if not all(v in lower for v in GZ1_VOTES):
        return None
    votes = np.column_stack([pd.to_numeric(table[lower[v]], errors="coerce").to_numpy(dtype=float) for v in GZ1_VOTES])
    known = ~np.isnan(votes).any(axis=1)
    out = pd.Series(pd.NA, index=table.index, dtype="string")
    out[known] = np.asarray(GZ1_NAMES, dtype=object)[np.argmax(votes[known], axis=1)]
    return out


# Galaxy Zoo 2's own class strings (Hart et al. 2016, ``gz2_class``: "Ei", "Sc2m", "SBb?t", "Ser", "A"):
# smooth, disk or feature (edge-on: "Se"; barred: "SB"), or artifact
GZ2_CLASS_STRING = r"^(A$|E[ric]|Se[rbn]|SB?[abcd])"


def gz2_strings_morph3(values: pd.Series) -> pd.Series | None:
    """morph3 from Galaxy Zoo 2 class strings (:data:`GZ2_CLASS_STRING`): elliptical for "E...", edge_on
    for "Se...", spiral for the other "S..." (barred or not, with arms or not: a disk seen face-on),
    missing for an artifact "A"; None where not every value given is such a string."""
    text = values.astype("string").str.strip()
    given = text.dropna()
    given = given[given != ""]
    if given.empty or not given.str.match(GZ2_CLASS_STRING).all():
        return None
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    out[text.str.startswith("E").fillna(False)] = "elliptical"
    out[text.str.startswith("S").fillna(False)] = "spiral"
    out[text.str.startswith("Se").fillna(False)] = "edge_on"
    return out


def gz1_classes(table: pd.DataFrame, source: str) -> pd.Series:
    """The ``gz1_class`` column of an sdss-gz1 ``labels.csv`` as Int64 codes 0-5 (empty cells, and
    nan / NA / null / None, missing); anything else a one-line error naming the first such row (one
    bad cell made the whole column text, and every galaxy's morph3 silently missing)."""
    raw = table["gz1_class"]
    text = raw.astype("string").str.strip()
    missing = raw.isna() | (text == "") | text.str.lower().isin(MISSING_MARKERS).fillna(False)
    codes = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = ~missing & ~codes.isin(range(6))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{source}: gz1_class of objid {str(table['objid'].iloc[row])[:40]} is "
                        f"{str(raw.iloc[row])[:40]!r}: Galaxy Zoo 1 classes are the numbers 0 to 5 "
                        f"({int(bad.sum())} such cell(s) in the column)")
    return codes.astype("Int64")


def vote_fractions(table: pd.DataFrame, column: str, source: str) -> pd.Series:
    """A Kaggle vote column as numbers in [0, 1] (empty cells, and nan / NA / null / None as in every
    label column, missing); anything else a one-line error."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    text = raw.astype("string").str.strip()
    missing = raw.isna() | (text == "") | text.str.lower().isin(MISSING_MARKERS).fillna(False)
    bad = values.isna() & ~missing | ((values < 0) | (values > 1))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{source}: {column} of GalaxyID {str(table['GalaxyID'].iloc[row])[:40]} is "
                        f"{str(raw.iloc[row])[:40]!r}: vote fractions are numbers in [0, 1] "
                        f"({int(bad.sum())} such cell(s) in the column)")
    return values


def with_gz_classes(labels: pd.DataFrame, thresholds: VoteThresholds, catalogue: str) -> pd.DataFrame:
    """A folder catalogue's ``labels`` with the classes its Galaxy Zoo columns give, where it has them
    and no columns of those names of its own (logged, naming ``catalogue``): ``gz1_name`` and
    ``morph3`` from Galaxy Zoo 1 vote fractions (:func:`gz1_votes_class`); else ``morph3`` from Galaxy
    Zoo 2 class strings (:func:`gz2_strings_morph3`); else ``gz_class`` and ``morph3`` from Galaxy Zoo
    DECaLS / DESI vote fractions (:func:`derive_gz_decals_class`, with ``thresholds``, the cuts of
    ``data.vote_thresholds``)."""
    gz1 = gz1_votes_class(labels) if not {"gz1_name", "morph3"} & set(labels.columns) else None
    if gz1 is not None:
        log.info("catalogue %s holds Galaxy Zoo 1 vote fractions (P_EL ... P_MG): gz1_name (the answer with the "
                 "largest fraction) and morph3 derived from them", catalogue)
        morph3 = {GZ1_NAMES[code]: m for code, m in GZ1_MORPH3.items()}
        return labels.assign(gz1_name=gz1, morph3=gz1.map(morph3).astype("string"))
    if "gz2_class" in labels.columns and "morph3" not in labels.columns:
        morph3 = gz2_strings_morph3(labels["gz2_class"])
        if morph3 is not None:
            log.info("catalogue %s: morph3 derived from its Galaxy Zoo 2 classes (gz2_class: E... elliptical, "
                     "Se... edge_on, other S... spiral, A none)", catalogue)
            return labels.assign(morph3=morph3)
    columns = gz_decals_columns(labels.columns)
    if columns is None or {"gz_class", "morph3"} & set(labels.columns):
        return labels
    gz = derive_gz_decals_class(labels, columns, thresholds)
    log.info("catalogue %s holds Galaxy Zoo DECaLS / DESI vote fractions (%s...): gz_class and morph3 derived "
             "from them", catalogue, columns["smooth"][0])
    return labels.assign(gz_class=gz, morph3=gz.map(GZ2_MORPH3).astype("string"))
