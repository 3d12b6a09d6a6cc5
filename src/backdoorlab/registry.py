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

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered name: the factory (class or function), a one-line description, and where known
    its family (e.g. a defense's point of action), the paper it implements, aliases and module."""

    name: str
    factory: T
    description: str
    tags: tuple[str, ...] = ()
    family: str = ""
    paper: str = ""
    aliases: tuple[str, ...] = ()
    module: str = ""


class Registry(Generic[T]):
    """A name -> factory table with glob listing and keyword construction."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self,
        name: str,
        description: str = "",
        *,
        tags: tuple[str, ...] = (),
        paper: str = "",
        aliases: tuple[str, ...] = (),
        family: str = "",
    ) -> Callable[[T], T]:
        """Decorator that registers a class or factory function under ``name`` (and ``aliases``).

        A registered class gets ``name`` as its ``name`` attribute (one source of truth); ``family``
        defaults to the class's ``family`` attribute (a defense's point of action).
        """

        def deco(obj: T) -> T:
            for n in (name, *aliases):
                if n in self._entries or n in self._aliases:
                    raise ConfigError(f"{self.family}: name {n!r} is registered twice")
            desc = description or _first_doc_line(obj)
            fam = family or str(getattr(obj, "family", "") or "")
            module = str(getattr(obj, "__module__", ""))
            if isinstance(obj, type):
                type.__setattr__(obj, "name", name)
            self._entries[name] = Entry(name, obj, desc, tags, fam, paper, tuple(aliases), module)
            for a in aliases:
                self._aliases[a] = name
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (for tests that register temporary doubles)."""
        entry = self._entries.pop(name)
        for a in entry.aliases:
            self._aliases.pop(a, None)

    def get(self, name: str) -> T:
        """The factory registered as ``name``; a clear error suggests close names otherwise."""
        return self.entry(name).factory

    def canonical(self, name: str) -> str:
        """The registered name of ``name`` or of an alias; raises ``UnknownNameError`` otherwise."""
        return self.entry(name).name

    def entry(self, name: str) -> Entry[T]:
        """The full registry entry of ``name`` (or of an alias)."""
        key = self._aliases.get(name, name)
        try:
            return self._entries[key]
        except KeyError:
            raise UnknownNameError(
                unknown_name_message(self.family, name, self.all_names())
            ) from None

    def all_names(self) -> list[str]:
        """Registered names and aliases, sorted."""
        return sorted([*self._entries, *self._aliases])

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Build ``name`` with keyword options; unknown options give a clear error."""
        factory: Any = self.get(name)
        _check_kwargs(self.family, name, factory, kwargs)
        return factory(**kwargs)

    def from_config(self, spec: str | Mapping[str, Any]) -> Any:
        """Build from a name or a ``{"name": ..., "options": {...}}`` dict (what ``describe()`` and a
        nested ``config()`` write; other keys such as ``kind`` or ``family`` are ignored)."""
        if isinstance(spec, str):
            return self.create(spec)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(
                f"{self.family}: expected a name or {{'name': ..., 'options': {{...}}}}, got {spec!r}"
            )
        options = spec.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{self.family} {spec['name']!r}: options must be a table")
        return self.create(spec["name"], **options)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entries(self) -> list[Entry[T]]:
        """All entries sorted by name."""
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def suggest(name: str, known: list[str], n: int = 3) -> list[str]:
    """Known names close to ``name``: substring matches first, then spelling neighbours (difflib)."""
    if not name:
        return []
    low = name.lower()
    sub = [k for k in known if low in k.lower() or (len(k) >= 3 and k.lower() in low)]
    close = difflib.get_close_matches(low, known, n=n, cutoff=0.6)
    out = sorted(
        set(sub) | set(close),
        key=lambda k: -difflib.SequenceMatcher(None, low, k.lower()).ratio(),
    )
    return out[:n]


def unknown_name_message(family: str, name: str, known: list[str]) -> str:
    """The one rule every registry uses for an unknown name: suggest close names, else list them."""
    what = family[:-1] if family.endswith("s") else family
    close = suggest(name, known)
    if close:
        return f"unknown {what} {name!r} (did you mean {' or '.join(close)}?)"
    return f"unknown {what} {name!r}; known: {', '.join(known)}"


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
