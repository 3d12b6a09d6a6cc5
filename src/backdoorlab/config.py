"""Options and configuration: typed values from ``KEY=VALUE`` strings, config files, canonical hashes.

Configuration is layered: built-in defaults < a config file (JSON or TOML) < explicit options. The
library parses option strings here; only ``backdoorlab.cli`` knows about argparse.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
