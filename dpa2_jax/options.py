"""Options dataclasses from and to plain dicts (JSON, DeePMD-kit sections), with "did you mean"
hints for unknown keys. The bottom floor: imports nothing of the package but ``errors``."""

from __future__ import annotations

import dataclasses
import difflib

from dpa2_jax.errors import ConfigError


def nearest_hint(key: str, valid) -> str:
    """ "; did you mean 'x'?" for the valid name closest to ``key``, or a plain statement."""
    close = difflib.get_close_matches(key, sorted(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else " (not an option dpa2_jax supports)"


def dataclass_kwargs(cls, args: dict, what: str, ignore=()) -> dict:
    """Keyword arguments of ``cls`` from a serialized options dict (lists become tuples);
    options that ``cls`` lacks and ``ignore`` does not name raise a ConfigError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(args) - names - set(ignore))
    if unknown:
        raise ConfigError(f"{what}: unknown key {unknown[0]!r}{nearest_hint(unknown[0], names)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if k in names}


_SIMPLE = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_field_types(obj, what: str) -> None:
    """ConfigError naming ``what.FIELD`` for a field of the dataclass ``obj`` annotated int,
    float, bool or str (or that or None) whose value is of another type (a bool is no
    number; an int is a float)."""
    for f in dataclasses.fields(obj):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not set(kinds) - {"None"} or not set(kinds) - {"None"} <= set(_SIMPLE):
            continue  # not a simple option (tuples, unions of other types)
        value = getattr(obj, f.name)
        if value is None and "None" in kinds:
            continue
        allowed = tuple(t for k in kinds if k in _SIMPLE for t in _SIMPLE[k])
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            expected = " or ".join(k for k in kinds if k != "None")
            raise ConfigError(f"{what}.{f.name}: expected {expected}, got {value!r}")


def check_type_pairs(pairs, ntypes: int, what: str) -> None:
    """ConfigError unless every entry of ``pairs`` is a pair of type indices in [0, ntypes)."""
    for pair in pairs:
        if len(pair) != 2 or not all(0 <= t < ntypes for t in pair):
            raise ConfigError(
                f"{what} entry {list(pair)}: expected a pair of type indices in [0, {ntypes})"
            )


def options_dict(cfg) -> dict:
    """A frozen options dataclass as a JSON-ready dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
