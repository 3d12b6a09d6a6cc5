"""One registry per family (models, data sets, triggers, attacks, defenses), timm-style.

A method registers itself with a decorator; the CLI, configs and the benchmark grid find it by name::

    >>> from backdoorlab.registry import Registry
    >>> COLORS = Registry("colors")
    >>> @COLORS.register("red", "a warm colour")
    ... def red() -> str:
    ...     return "red"
    >>> COLORS.create("red")
    'red'
    >>> COLORS.names("r*")
    ['red']
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered name: the factory (class or function), a one-line description, extra tags."""

    name: str
    factory: T
    description: str
    tags: tuple[str, ...] = ()


class Registry(Generic[T]):
    """A name -> factory table with glob listing and keyword construction."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, description: str = "", *, tags: tuple[str, ...] = ()
    ) -> Callable[[T], T]:
        """Decorator that registers a class or factory function under ``name``."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ConfigError(f"{self.family}: name {name!r} is registered twice")
            desc = description or _first_doc_line(obj)
            self._entries[name] = Entry(name, obj, desc, tags)
            return obj

        return deco

    def get(self, name: str) -> T:
        """The factory registered as ``name``; a clear error lists the known names otherwise."""
        return self.entry(name).factory

    def entry(self, name: str) -> Entry[T]:
        """The full registry entry of ``name``."""
        try:
            return self._entries[name]
        except KeyError:
            close = fnmatch.filter(self._entries, f"*{name}*") if name else []
            hint = f" (did you mean {', '.join(close[:5])}?)" if close else ""
            raise UnknownNameError(
                f"unknown {self.family[:-1] if self.family.endswith('s') else self.family} "
                f"{name!r}{hint}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Build ``name`` with keyword options; unknown options give a clear error."""
        factory: Any = self.get(name)
        _check_kwargs(self.family, name, factory, kwargs)
        return factory(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entries(self) -> list[Entry[T]]:
        """All entries sorted by name."""
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def _first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _check_kwargs(family: str, name: str, factory: Any, kwargs: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = {
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise ConfigError(
            f"{family} {name!r}: unknown option(s) {', '.join(bad)}; "
            f"accepted: {', '.join(sorted(allowed)) or '(none)'}"
        )
