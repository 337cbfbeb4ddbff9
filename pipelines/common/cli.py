"""The command-line flow every study shares: ``--set`` overrides, config loading, exit codes and error lines."""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from augmentor.utils.config import Config, ConfigError, load_config_file, read_config_data

from .run_directory import StudyError

__all__ = [
    "add_override_arguments",
    "apply_overrides",
    "command_line_overrides",
    "load_config_with_overrides",
    "parse_override",
    "run_command",
]

ConfigT = TypeVar("ConfigT", bound=Config)
ResultT = TypeVar("ResultT")

def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted!r}: {'.'.join(keys[: i + 1])} is not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw config ``data`` with ``{"section.key": value}`` overrides applied."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        _set_path(data, dotted, value)
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"classifier.epochs=5"`` -> ``("classifier.epochs", 5)`` (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key, value


def add_override_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The ``--set KEY=VALUE`` and ``--no-progress`` flags every experiment command line takes."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override any config value, e.g. --set {example} (repeatable; value read as YAML)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def command_line_overrides(args: argparse.Namespace, named: dict[str, Any]) -> dict[str, Any]:
    """Config overrides of a command line: every ``--set``, then the named flags that were given."""
    overrides: dict[str, Any] = dict(parse_override(text) for text in args.overrides)
    named = {**named, "progress": False if args.no_progress else None}
    overrides.update({key: value for key, value in named.items() if value is not None})
    return overrides


def run_command(
    load_config: Callable[[], ConfigT],
    default_out: str,
    out: Path | None,
    run: Callable[[ConfigT, Path], ResultT],
    report: Callable[[ConfigT, ResultT, Path], None],
) -> int:
    """Load the config, run it in its run directory and print its report: a pipeline's ``main``.

    The library logs its progress (the plan, what was left out of the data), so
    INFO messages are shown.

    Args:
        load_config: reads and validates the config (raising :class:`ConfigError`).
        default_out: the run directory's name under ``runs/`` when ``out`` is None,
            with ``{name}`` standing for the config's ``name``.
        out: the run directory given on the command line.
        run: runs the config in the run directory and returns its result.
        report: prints the result, given the config, the result and the run directory.

    Returns:
        The exit status: 0 done, 1 the run failed (its error printed; finished
        outputs are kept), 2 an invalid configuration, 130 interrupted.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_config()
    except ConfigError as err:
        print(f"error: invalid configuration: {err}", file=sys.stderr)
        return 2
    out = out or Path("runs") / default_out.format(name=config.name)
    try:
        result = run(config, out)
    except (StudyError, ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a read-only or full output folder: the system's reason, without a traceback
        print(f"error: {err.strerror or err}: {err.filename or out}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished outputs are kept in {out}; rerun the same command to resume", file=sys.stderr)
        return 130
    report(config, result, out)
    return 0


def load_config_with_overrides(path: str | Path, cls: type[ConfigT], overrides: dict[str, Any] | None = None) -> ConfigT:
    """Read a config file of ``cls``, apply ``{"section.key": value}`` overrides, validate.

    Raises:
        ConfigError: missing or invalid file, unknown key or bad value (the message names the file
            and the field).
    """
    if not overrides:
        return load_config_file(path, cls)
    data = apply_overrides(read_config_data(path), overrides)
    try:
        return cls.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path} (with overrides {sorted(overrides)}): {err}") from None
