"""The run directory: one folder per run, the contract between stages (:mod:`.rundir`).

Every stage reads and writes a run through :class:`RunDir` and the atomic writers (:mod:`.writes`);
:func:`in_cube_order` is the one alignment of the catalogue with the cube's rows; one process
(or one distributed job) writes a run at a time (:mod:`.lock`), and the tasks of such a job stop
together (:mod:`.job`).
"""

from .lock import LOCK_FILE, built_by_one, job_size, launched_as_later_rank, release_locks, writer_of
from .cube_order import in_cube_order, keeps_cube_order, mark_cube_order
from .rundir import MISSING_MARKERS, RUN_FILES, RunDir, safe_name
from .writes import (atomic_path, content_stamp, file_stamp, new_npy_map, read_cached_npy, read_parquet, spreadsheet_safe,
                     spreadsheet_guard_removed, read_stamped_pickle, stamp_is_current, write_json, write_npy, write_stamped_pickle, write_table, write_text)

__all__ = ["RunDir", "MISSING_MARKERS", "RUN_FILES", "LOCK_FILE", "atomic_path", "built_by_one", "content_stamp",
           "file_stamp", "in_cube_order", "keeps_cube_order", "mark_cube_order", "launched_as_later_rank", "new_npy_map", "read_cached_npy",
           "job_size", "read_parquet", "read_stamped_pickle", "release_locks", "safe_name", "spreadsheet_guard_removed", "spreadsheet_safe",
           "stamp_is_current", "write_json", "writer_of",
           "write_npy", "write_stamped_pickle", "write_table", "write_text"]
