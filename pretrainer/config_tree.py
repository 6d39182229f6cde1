"""Walking config trees: dataclass configs (their dotted keys, stray keys) and the nested
dicts that `asdict` and run summaries give (flattened to dotted keys)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from pretrainer.errors import ConfigError


def flatten(tree: dict, separator: str = ".", prefix: str = "") -> dict:
    """A nested dict (a config as `asdict` gives it, a summary) as joined key -> value; lists
    and tuples are values (tuples as lists)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, separator, f"{prefix}{key}{separator}"))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def field_paths(obj: object, prefix: str = "") -> set[str]:
    """Every dotted key of a config dataclass, groups included: {"trainer", "trainer.lr", ...}."""
    paths: set[str] = set()
    for f in fields(obj):
        path = f"{prefix}{f.name}"
        paths.add(path)
        value = getattr(obj, f.name)
        if is_dataclass(value):
            paths |= field_paths(value, f"{path}.")
    return paths


def reject_unknown_fields(obj: object, prefix: str = "") -> None:
    """Keys added with Hydra's `+group.key=value` land on the dataclass as stray attributes;
    they would be silently ignored, so they are an error naming the valid keys."""
    if not is_dataclass(obj):
        return
    known = [f.name for f in fields(obj)]
    for name in vars(obj):
        if name not in known:
            raise ConfigError(f"unknown key {prefix}{name}; valid keys: {', '.join(known)}")
    for name in known:
        reject_unknown_fields(getattr(obj, name), f"{prefix}{name}.")
