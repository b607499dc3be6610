"""A notebook's ``ms.ingest`` leaves the run's ``log.txt`` a ``morphospace ingest`` leaves, and no
logging handler, level or propagation changed after the call."""

import logging
import re

import pytest

import morphospace as ms
from morphospace import pipeline
from morphospace.cli import main
from morphospace.errors import UserError

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def _lines(text: str) -> list[str]:
    """The log's lines without their times (of day, and each stage's seconds)."""
    assert all(STAMP.match(line) for line in text.splitlines()), text
    return [re.sub(r"\d+\.\d+ s\b", "T s", STAMP.sub("", line)) for line in text.splitlines()]


def _state(logger: logging.Logger) -> tuple:
    return logger.level, logger.handlers[:], logger.propagate, logging.getLogger().handlers[:]


def test_a_notebook_ingest_writes_the_log_the_command_line_writes(tiny_folder_survey, tmp_path):
    logger = logging.getLogger("morphospace")
    before = _state(logger)
    ms.ingest(tiny_folder_survey, run=tmp_path / "api")
    assert _state(logger) == before  # no handler left, nor the level lowered for the file
    api = (tmp_path / "api" / "log.txt").read_text()
    assert main(["ingest", str(tiny_folder_survey), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = (tmp_path / "cli" / "log.txt").read_text()
    assert _lines(api) == _lines(cli)
    assert "INFO ===> ingest" in api and "galaxies in the cube" in api
    ms.ingest(tiny_folder_survey, run=tmp_path / "api")  # a re-ingest appends, as a command does
    assert _lines((tmp_path / "api" / "log.txt").read_text()) == _lines(api) * 2


def test_the_log_says_why_a_notebook_ingest_stopped_and_the_console_is_as_before(tiny_folder_survey, tmp_path,
                                                                                  monkeypatch):
    def failing(run, cfg, created):
        logging.getLogger("morphospace").info("reading the survey")
        logging.getLogger("morphospace").warning("an odd image")
        raise UserError("the survey holds no galaxy")

    monkeypatch.setattr(pipeline, "ingest_run", failing)
    logger, root = logging.getLogger("morphospace"), logging.getLogger()
    seen: list[logging.LogRecord] = []
    console = logging.Handler()  # a notebook's logging.basicConfig(): the root's handler at WARNING
    console.emit = seen.append
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.setattr(root, "level", logging.WARNING)
    root.addHandler(console)
    try:
        before = _state(logger)
        with pytest.raises(ValueError, match="no galaxy"):
            ms.ingest(tiny_folder_survey, run=tmp_path / "r")
        assert _state(logger) == before
    finally:
        root.removeHandler(console)
    lines = _lines((tmp_path / "r" / "log.txt").read_text())
    assert lines == ["INFO reading the survey", "WARNING an odd image", "ERROR error: the survey holds no galaxy"]
    # the notebook's console: the warning, as before; no INFO line that it did not show before
    assert [r.getMessage() for r in seen] == ["an odd image"]


def test_a_path_of_another_encoding_is_written_to_the_run_s_log(tmp_path, capsys):
    """A path with a byte UTF-8 cannot read (kept by Python as a surrogate, e.g. weights named in
    Latin-1) printed '--- Logging error ---' and left its line out of log.txt, the command line's and
    a notebook's alike; now the line is there, the byte escaped (``\\udcff``)."""
    import morphospace.cli as cli
    from morphospace.run import RunDir
    from morphospace.run.runlog import logged_to_run

    odd = b"/data/caf\xff/weights.h5".decode("utf-8", "surrogateescape")
    logger = logging.getLogger("morphospace")
    with logged_to_run(tmp_path / "notebook.txt"):
        logger.info("importing %s", odd)
    run = RunDir(tmp_path / "run", create=True)
    with cli._logging_as_found():  # as main() sets it up, and takes it off again
        cli._setup_logging(True, run)
        logger.info("importing %s", odd)
    assert "Logging error" not in capsys.readouterr().err
    for log in (tmp_path / "notebook.txt", run.log):
        assert log.read_text(encoding="utf-8").rstrip().endswith("INFO importing /data/caf\\udcff/weights.h5")
