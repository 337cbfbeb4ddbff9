"""Tests of pipelines.common.cli.run_command: the exit codes and messages every pipeline's ``main`` shares."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from augmentor.utils.config import ConfigError
from pipelines.common.run_directory import StudyError
from pipelines.common.cli import run_command

CONFIG = SimpleNamespace(name="demo")


def _raise(error: BaseException):
    def run(config, out):
        raise error
    return run


def _fail_config():
    raise ConfigError("seeds: must be >= 1, got 0")


def test_a_finished_run_is_reported_with_its_config_and_default_run_directory():
    reported = []
    status = run_command(lambda: CONFIG, "study_{name}", None, lambda config, out: ("result", out),
                         lambda *args: reported.append(args))
    assert status == 0
    assert reported == [(CONFIG, ("result", Path("runs") / "study_demo"), Path("runs") / "study_demo")]


def test_an_invalid_configuration_exits_2_before_anything_runs(capsys):
    ran = []
    status = run_command(_fail_config, "study_{name}", None, lambda config, out: ran.append(out), print)
    assert status == 2 and not ran
    assert "error: invalid configuration: seeds: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("error", [StudyError("2 job(s) failed"), ValueError("images contain NaN"),
                                   FileNotFoundError("no OASIS folder /data/oasis")])
def test_a_failing_run_exits_1_with_its_error(error, capsys, tmp_path):
    status = run_command(lambda: CONFIG, "study_{name}", tmp_path, _raise(error), print)
    assert status == 1
    assert capsys.readouterr().err.strip() == f"error: {error}"


def test_an_interrupted_run_exits_130_and_says_how_to_resume(capsys, tmp_path):
    status = run_command(lambda: CONFIG, "study_{name}", tmp_path, _raise(KeyboardInterrupt()), print)
    assert status == 130
    assert f"finished outputs are kept in {tmp_path}; rerun the same command to resume" in capsys.readouterr().err


def test_an_unexpected_error_is_not_swallowed(tmp_path):
    with pytest.raises(RuntimeError, match="a bug"):
        run_command(lambda: CONFIG, "study_{name}", tmp_path, _raise(RuntimeError("a bug")), print)
