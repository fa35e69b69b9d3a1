"""Maps a system's element symbols onto the model's type map.

Each data set names its own types (water: O, H; cho: C, H, O), but the model indexes one
shared list. Mapping goes by element symbol, never by position: atom type t of a system
becomes model type `model_type_map.index(system.type_map[t])`. Only symbols that atoms
actually use must exist in the model's type map; an unused entry of a system's own type
map (dpdata often writes the full list) is dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from dpa2_jax.data.system import System
from dpa2_jax.errors import DataError


def check_type_map(type_map: Sequence[str], where: str = "model type_map") -> tuple[str, ...]:
    """Validates a type map: a non-empty sequence of distinct, non-empty symbols.

    Args:
      type_map: element symbols, e.g. ["H", "C", "N", "O"]. A single string is rejected,
        since "HO" would otherwise read as ("H", "O").
      where: what to name in the message.

    Returns:
      The type map as a tuple of str.

    Raises:
      DataError: if empty, a bare string, with empty entries or repeated symbols.
    """
    if isinstance(type_map, str):
        raise DataError(f"{where}: expected a list of element symbols, got the string {type_map!r}")
    symbols = tuple(str(s).strip() for s in type_map)
    if not symbols or any(not s for s in symbols):
        raise DataError(f"{where}: must be a non-empty list of symbols, got {list(type_map)}")
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        raise DataError(f"{where}: symbols {repeated} appear more than once in {list(symbols)}")
    return symbols


def type_index_map(
    source_map: Sequence[str],
    target_map: Sequence[str],
    used: np.ndarray,
    where: str,
) -> np.ndarray:
    """Builds the lookup table source type index -> target type index, by symbol.

    Args:
      source_map: the system's element symbols.
      target_map: the model's element symbols.
      used: [k] distinct source type indices that atoms use; only these must map.
      where: file or system named in the message.

    Returns:
      [len(source_map)] int32, -1 for unused symbols absent from target_map.

    Raises:
      DataError: naming the element, `where` and target_map, for a used element absent
        from target_map.
    """
    lookup = np.full(len(source_map), -1, dtype=np.int32)
    for t, symbol in enumerate(source_map):
        if symbol in target_map:
            lookup[t] = list(target_map).index(symbol)
        elif t in used:
            raise DataError(
                f"{where}: element {symbol!r} is not in the model type map "
                f"{list(target_map)}; add it to the model's type_map or drop this system"
            )
    return lookup


def map_types(system: System, type_map: Sequence[str], where: str | None = None) -> System:
    """Re-indexes a system's atom types into `type_map` by element symbol.

    Args:
      system: a system whose `atom_types` index `system.type_map`.
      type_map: the model's element symbols, e.g. ["H", "C", "N", "O"].
      where: what to name in errors (default `system.path`); readers pass the file that
        holds the symbols, such as `.../type_map.raw`.

    Returns:
      A System with `type_map == tuple(type_map)` and `atom_types` [natoms] int32 indices
      into it; frames and labels are shared, not copied.

    Raises:
      DataError: if `type_map` is malformed or misses an element the atoms use.
    """
    target = check_type_map(type_map)
    used = np.unique(system.atom_types)
    lookup = type_index_map(system.type_map, target, used, where or system.path)
    return dataclasses.replace(system, type_map=target, atom_types=lookup[system.atom_types])
