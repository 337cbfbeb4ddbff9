"""Typed configuration dataclasses that validate themselves and round-trip to JSON/YAML.

Every config in the toolkit derives from :class:`Config`. Unknown keys, wrong
types and out-of-range values raise :class:`ConfigError` with a message that
names the offending field, so a typo in a YAML file fails loudly instead of
being silently ignored. Checks that hold for every field of a type are made
once, here: a ``float`` field must be finite (JSON's ``Infinity`` and ``NaN``
are refused) and an ``int`` field must fit in 64 bits.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["Config", "ConfigError", "MAX_YAML_VALUES", "config_path", "load_config_file", "quote", "read_config_data",
           "shipped_config", "shipped_configs"]

C = TypeVar("C", bound="Config")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
QUOTE_LIMIT = 80
MAX_YAML_VALUES = 100_000
"""The most values a YAML config may hold once its aliases are expanded (configs hold a few hundred)."""


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped or out of range."""


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` of at most about ``limit`` characters, for error messages (a value may be huge).

    Built with :mod:`reprlib`, so the full text of a large container is never made.
    """
    import reprlib

    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    short.maxlevel = 3
    text = short.repr(value)
    return text if len(text) <= limit + 20 else f"{text[:limit]}... ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _same_kind(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of the container or scalar kind that annotation ``tp`` expects."""
    kind = get_origin(tp) or tp
    if kind in (tuple, list):
        return isinstance(value, (tuple, list))
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(kind, type) and issubclass(kind, Config):
        return isinstance(value, (dict, kind))  # a nested config is written as a mapping
    return isinstance(kind, type) and isinstance(value, kind)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form.

    Lists become tuples where a tuple is expected (JSON and YAML have no tuples),
    ints are accepted where floats are expected, and nested configs are built
    from dictionaries.
    """
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = {}
        for option in get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors[option] = err
        # The one option of the value's own kind (``X`` of ``X | None``, the int of
        # ``int | tuple[int, ...]`` given an int) says best what is wrong with it.
        of_its_kind = [err for option, err in errors.items() if _same_kind(value, option)]
        if len(of_its_kind) == 1:
            raise of_its_kind[0]
        raise ConfigError(f"{where}: {quote(value)} matches none of {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected None, got {quote(value)}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        choices = ", ".join(repr(a) for a in get_args(tp))
        raise ConfigError(f"{where}: {quote(value)} is not one of {choices}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {quote(value)}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {quote(value)}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return tp.from_dict(value, where=where)
        raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {quote(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {quote(value)}")
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {quote(value)}")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ConfigError(f"{where}: {value} does not fit in a 64-bit integer")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {quote(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {quote(value)}")
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {quote(value)}")
    raise ConfigError(f"{where}: unsupported annotation {_type_name(tp)}")


@dataclasses.dataclass
class Config:
    """Base class: a dataclass whose fields are type-checked on construction.

    Subclasses add range checks by overriding :meth:`validate` (call ``super()``).
    """

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            where = f"{type(self).__name__}.{f.name}"
            setattr(self, f.name, _coerce(getattr(self, f.name), hints[f.name], where))
        self.validate()

    def validate(self) -> None:
        """Range checks; raise :class:`ConfigError` naming the field."""

    def _fail(self, field: str, message: str) -> None:
        raise ConfigError(f"{type(self).__name__}.{field}: {message}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Config):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], where: str | None = None) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {quote(data)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(names)}"
            )
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _shipped_folder() -> Path:
    """The folder of the configs installed with the package (``augmentor/configs``)."""
    return Path(str(resources.files("augmentor") / "configs"))


def shipped_configs() -> list[str]:
    """Names of the configs installed with the package, e.g. ``"oasis_tiny"``."""
    return sorted(path.stem for path in _shipped_folder().glob("*.yaml"))


def shipped_config(name: str) -> Path:
    """The file of the shipped config ``name`` (e.g. ``"oasis_quick"``)."""
    path = _shipped_folder() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no shipped config {name!r}; the shipped configs are {', '.join(shipped_configs())}")
    return path


def config_path(value: str | Path) -> Path:
    """The file of a config given as a path or as the name of a shipped config.

    An existing file wins; otherwise a bare name (``"oasis_tiny"`` or
    ``"oasis_tiny.yaml"``, no folder) names a config installed with the package,
    so the command lines work from an installed wheel, outside a checkout.
    Anything else is returned unchanged (reading it then reports it missing).
    """
    path = Path(value)
    if path.is_file() or path.parent != Path("."):
        return path
    shipped = _shipped_folder() / (path.name if path.suffix else f"{path.name}.yaml")
    return shipped if shipped.is_file() else path


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a ``.json`` or ``.yaml`` file (or a shipped config's name, see
    :func:`config_path`), with errors naming the file."""
    import yaml

    path = config_path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {path} does not exist (the shipped configs, usable by name: {', '.join(shipped_configs())})"
        )
    text = path.read_text()
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if path.suffix == ".json" else _load_yaml(text, path)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid {kind}: {quote(str(err), 500)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: {kind} nested too deeply to be a configuration") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load`` that refuses aliases expanding beyond :data:`MAX_YAML_VALUES` values (an alias
    bomb: a kilobyte of YAML can stand for billions of values), checked before anything is built."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expanded_size(root: Any, path: Path) -> None:
    """Count the values of a composed YAML node as if every alias were expanded, without expanding them."""
    import yaml

    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise ConfigError(f"{path}: a YAML alias refers to a value that contains it (a recursive alias)")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_YAML_VALUES:
                raise ConfigError(f"{path}: the YAML's aliases expand to more than {MAX_YAML_VALUES:,} values; "
                                  "refusing it (a configuration holds a few hundred)")
        in_progress.discard(key)
        sizes[key] = total
        return total

    size(root)


def load_config_file(path: str | Path, cls: type[C]) -> C:
    """Read a ``.json`` or ``.yaml`` file into ``cls``, with errors naming the file."""
    data = read_config_data(path)
    try:
        return cls.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
