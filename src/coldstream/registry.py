"""Components chosen by name: one :class:`Registry` each for encoders, cores, readouts and tasks.

The pattern is timm's ``register_model`` / ``create_model``: a module registers a class (or a factory) under a name
and optional aliases; callers build it by name with keyword options. Unknown names and options are refused with the
list of what is known.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from coldstream.errors import ConfigError


class Registry:
    """Name -> builder (a class or a function), with aliases; names are case-insensitive.

    Args:
        kind: what the entries are ("encoder", "core", ...), for messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable:
        """Decorator: ``@CORES.register("gmmix", aliases=("gatedmambamix",))``."""

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            key = name.lower()
            taken = [n for n in (key, *(a.lower() for a in aliases)) if n in self._entries or n in self._aliases]
            if taken:
                raise ConfigError(f"{self.kind} name(s) {taken} are registered already")
            self._entries[key] = builder
            self._aliases.update({a.lower(): key for a in aliases})
            return builder

        return add

    def names(self) -> list[str]:
        """The registered names (aliases left out), in registration order."""
        return list(self._entries)

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` (a name or an alias, any case) stands for."""
        if not isinstance(name, str):
            raise ConfigError(f"a {self.kind} name must be a string, got {type(name).__name__}")
        key = self._aliases.get(name.lower(), name.lower())
        if key not in self._entries:
            aliases = f" (aliases: {', '.join(sorted(self._aliases))})" if self._aliases else ""
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}{aliases}")
        return key

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in {**self._entries, **self._aliases}

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered under ``name``."""
        return self._entries[self.canonical(name)]

    def accepts(self, name: str, option: str) -> bool:
        """Whether the builder of ``name`` takes the keyword ``option``."""
        accepted = _keyword_names(self.get(name))
        return accepted is None or option in accepted

    def create(self, name: str, *args: Any, **options: Any) -> Any:
        """Build ``name`` with ``options``; an option the builder does not take is refused with the accepted ones."""
        builder = self.get(name)
        accepted = _keyword_names(builder)
        unknown = sorted(set(options) - accepted) if accepted is not None else []
        if unknown:
            raise ConfigError(
                f"{self.kind} {self.canonical(name)!r}: unknown option(s) {unknown}; accepted: {sorted(accepted)}"
            )
        return builder(*args, **options)


def _keyword_names(builder: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments ``builder`` accepts (through ``**kwargs`` up the class hierarchy); None = any."""
    if inspect.isclass(builder):
        targets = [c.__init__ for c in inspect.getmro(builder) if "__init__" in vars(c)]
    else:
        targets = [builder]
    names: set[str] = set()
    for fn in targets:
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self"}
    return None
