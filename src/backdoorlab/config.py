"""Options and configuration: typed values from ``KEY=VALUE`` strings, config files, canonical hashes.

Configuration is layered: built-in defaults < a config file (JSON or TOML) < explicit options. The
library parses option strings here; only ``backdoorlab.cli`` knows about argparse.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import field, fields, is_dataclass
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, ClassVar

from .errors import ConfigError


def parse_value(v: str) -> Any:
    """A command-line option value: int, float, true/false/none, or the string itself."""
    low = v.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_kv(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict with typed values; a malformed item is a one-line error."""
    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"{flag} {it!r}: expected KEY=VALUE")
        k, v = it.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v)
    return out


def read_config(path: str) -> dict[str, Any]:
    """A JSON or TOML config file as a dict."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config ({e.strerror})") from None
    try:
        cfg = tomllib.loads(text.decode()) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} ({e})"
        ) from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: expected a table/object at the top level")
    return cfg


# --- canonical configurations and their hashes ----------------------------------------------------

CONFIG_OFF = "config"  # field metadata key: ``{CONFIG_OFF: False}`` keeps a field out of config()
REGISTRY_KEY = "registry"  # field metadata key: the registry a nested configurable is rebuilt from


def runtime_input(default: Any = None) -> Any:
    """A dataclass field for a run-time *object* handed to a method (a reference model, a scan
    result): accepted by the constructor, but not an option -- kept out of ``config()``, ``repr``
    and equality, since it cannot be written to a config file."""
    return field(default=default, repr=False, compare=False, metadata={CONFIG_OFF: False})


def nested(registry: Any, default_factory: Any) -> Any:
    """A dataclass field holding another configurable (e.g. an attack's trigger) from ``registry``.

    ``config()`` writes it as ``{"name": ..., "options": ...}``; the owner's ``__post_init__`` turns
    such a dict (or a bare name) back into the object with :func:`resolve_nested`.
    """
    return field(default_factory=default_factory, metadata={REGISTRY_KEY: registry})


def resolve_nested(obj: Any) -> None:
    """Rebuild every ``nested`` field of the dataclass ``obj`` given as a name or a
    ``{"name", "options"}`` dict (as ``config()`` writes it) through its registry."""
    for f in fields(obj):
        reg = f.metadata.get(REGISTRY_KEY)
        if reg is None:
            continue
        v = getattr(obj, f.name)
        if isinstance(v, (str, Mapping)):
            setattr(obj, f.name, reg.from_config(v))


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data: tuples and sets become lists, tensors and arrays lists, paths
    strings, nested configurables ``{"name": ..., "options": ...}``; anything else is an error."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, Configurable):
        return {"name": obj.name, "options": obj.config()}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    tolist = getattr(obj, "tolist", None)  # torch tensors, numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist())
    raise ConfigError(f"cannot write a {type(obj).__name__} into a configuration")


def canonical_json(obj: Any) -> str:
    """One canonical text for a configuration: keys sorted, no whitespace, floats by ``repr``
    (shortest round-trip form), tuples and tensors as lists, nested configurables as
    ``{"name", "options"}``. Equal configurations give equal text.

    Example:
        >>> canonical_json({"b": (1, 2.5), "a": None})
        '{"a":null,"b":[1,2.5]}'
    """
    return json.dumps(
        to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    )


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit hash (SHA-256 of :func:`canonical_json`) of a configuration.

    Example:
        >>> config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": (1, 2), "a": 1})
        True
    """
    return hashlib.sha256(canonical_json(cfg).encode()).hexdigest()[:16]


class Configurable:
    """Mixin for registered methods whose options are the ``init`` fields of a dataclass.

    ``config()`` lists every option (JSON-friendly) so that ``REGISTRY.create(obj.name,
    **obj.config())`` rebuilds an equal object; ``describe()`` adds the name and family/kind;
    ``config_hash()`` hashes name and options. Run-time state is kept out: fields with
    ``init=False`` and fields marked with :func:`runtime_input`.
    """

    name: ClassVar[str] = ""

    def config(self) -> dict[str, Any]:
        """Every option of this object, as JSON data that rebuilds it through its registry."""
        if not is_dataclass(self):
            return {}
        return {
            f.name: to_jsonable(getattr(self, f.name))
            for f in fields(self)
            if f.init and not f.name.startswith("_") and f.metadata.get(CONFIG_OFF, True)
        }

    def describe(self) -> dict[str, Any]:
        """Name, family or kind (where the class has one) and options, for results files."""
        d: dict[str, Any] = {"name": self.name}
        for key in ("family", "kind"):
            v = getattr(type(self), key, None)
            if isinstance(v, str) and v:
                d[key] = v
        d["options"] = self.config()
        return d

    def config_hash(self) -> str:
        """Stable hash of the name and the options (see :func:`config_hash`)."""
        return config_hash({"name": self.name, "options": self.config()})
