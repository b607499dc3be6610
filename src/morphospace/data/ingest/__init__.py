"""Survey ingest: any known layout -> the image cube + the catalogue of a run.

Examples
--------
>>> from morphospace.config import Config
>>> from morphospace.run import RunDir
>>> summary = ingest("path/to/survey", RunDir("run", create=True), Config())  # doctest: +SKIP
>>> summary["n_in_cube"], summary["flags"].keys()  # doctest: +SKIP

The stages (:func:`~morphospace.data.ingest.driver.ingest` runs them):

1. :func:`~morphospace.data.ingest.layouts.read_survey` lists the records (no pixels yet)
   and flags catalogue-level problems (missing images, duplicate ids, ...);
2. a process pool (:mod:`~morphospace.data.ingest.workers`) decodes and preprocesses chunks
   of records (:mod:`~morphospace.data.ingest.decode`, :mod:`~morphospace.data.ingest.preprocess`),
   a few chunks in flight at a time, so memory stays flat however large the survey;
3. the parent appends each chunk's good rows to ``cube.npy.partial`` in input order
   (:class:`~morphospace.data.ingest.cube.CubeWriter`) and collects the flags;
4. the cube is finished, the catalogue and summary (:mod:`~morphospace.data.ingest.catalogue`)
   written to temporary names, and all three renamed into place (the catalogue last). A
   killed ingest leaves only ``.partial`` files; the next run starts clean.

Bad input never stops the run: every problem is a flag in the catalogue and a line
of the summary (count, meaning, example ids and what was wrong), and the good
galaxies go on. ``strict=True`` makes any flag an error (one line, nothing written).
"""

from .catalogue import build_catalogue, summarise
from .driver import ingest
from .layouts import LAYOUTS, Survey, detect_layout, read_survey
from .preprocess import PreprocessSpec
from .records import EXCLUDING, FLAG_DESCRIPTIONS, Record
from .workers import preprocess_file

__all__ = ["ingest", "read_survey", "detect_layout", "LAYOUTS", "FLAG_DESCRIPTIONS", "EXCLUDING",
           "PreprocessSpec", "build_catalogue", "summarise", "Survey", "Record", "preprocess_file"]
