"""Configuration as frozen dataclasses: from YAML files and ``key=value`` overrides, back to YAML with outputs.

``load_config(cls, "configs/x.yaml", ["train.epochs=3"])`` reads the file, applies the overrides (values parsed as
YAML, so ``3``, ``1e-3``, ``true``, ``[1, 2]`` work) and builds ``cls``, refusing unknown keys with the list of known
ones (:class:`~coldstream.errors.ConfigError`). The dataclasses themselves live with what they configure:
``coldstream.model.ModelConfig``, ``coldstream.train.config.JobConfig``, ``coldstream.train.demo.DemoConfig``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path

import yaml

from coldstream.atomic import atomic_write_text
from coldstream.errors import ConfigError


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(args[0], value, where)
    if origin is tuple:
        return tuple(value)
    if tp in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" as a string
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls, d: dict, where: str = ""):
    """Build dataclass ``cls`` from a nested dict, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in {where or cls.__name__}; known: {sorted(names)}")
    kw = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in d.items()}
    return cls(**kw)


def to_dict(cfg) -> dict:
    """The dataclass as plain nested dicts and lists (tuples become lists), ready for YAML or a checkpoint."""
    d = dataclasses.asdict(cfg)
    return json.loads(json.dumps(d))  # tuples -> lists, for YAML


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=3)")
        key, raw = item.split("=", 1)
        node = d
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return d


def load_config(cls, path: str | os.PathLike | None = None, overrides: list[str] | None = None):
    """Read a YAML file (optional), apply ``key=value`` overrides, return the frozen dataclass ``cls``."""
    d: dict = {}
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        d = yaml.safe_load(p.read_text()) or {}
    apply_overrides(d, list(overrides or []))
    return from_dict(cls, d)


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
