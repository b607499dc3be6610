"""The run directory: one folder per run, the contract between stages (:mod:`.rundir`)."""

from .rundir import (LOCK_FILE, RUN_FILES, RunDir, atomic_path, release_locks, safe_name, write_json, write_npy,
                     write_table, write_text)

__all__ = ["RunDir", "RUN_FILES", "LOCK_FILE", "atomic_path", "release_locks", "safe_name", "write_json",
           "write_npy", "write_table", "write_text"]
