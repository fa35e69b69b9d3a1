"""The interface every descriptor family implements, and what the model asks of it.

A family is a folder under ``descriptor/`` whose ``__init__`` defines one ``DescriptorFamily``;
``descriptor/__init__.py`` lists the families by name (the ``type`` of DeePMD's descriptor
section). The model never imports a family by name: it looks the family up from its config.

A family's config is a frozen dataclass (hashable: it is a static jit argument) with these
attributes, read by the model, the graph builder and the I/O code:

    family     str     the registry name, e.g. "dpa2" (a ClassVar)
    ntypes     int     number of element types
    precision  str     "float64" or "float32"
    rcut       float   the largest cutoff, Angstrom: graphs are built with it
    sel        int     neighbor slots per center of the graph the descriptor reads
    dim_out    int     width of the per-atom descriptor

and its functions are pure:

    init(rng, cfg) -> params
        numpy arrays drawn from ``rng`` (a numpy Generator): host-side, so initialisation
        never waits for XLA to compile hundreds of small random draws.
    apply(params, cfg, species, nb, layout) -> [n_node, dim_out]
        species [n_node] int32; nb a ``Neighborhood`` of ``cfg.sel`` distance-ordered slots;
        layout a ``Layout`` (runtime knobs that never change the numbers).
    compactable_blocks(params, cfg) -> tuple[Block, ...]
        the inner blocks that may lay out fewer than their ``sel`` slots (see ``Layout``).
    config_from_deepmd(d) / params_from_deepmd(d) / to_deepmd(cfg, params, type_map)
        DeePMD-kit's serialized descriptor dict (the ``descriptor`` entry of a ``.dp`` model).
    config_from_input(section, ntypes) / input_section(cfg)
        the ``descriptor`` section of a DeePMD-kit input JSON.
    config_from_dict(d) / config_to_dict(cfg)
        our own JSON form (``model.json``), without the family tag.
    statistics_blocks(cfg) -> {block name: {rcut, rcut_smth, sel, set_davg_zero,
                                            protection, exclude_types[, type_sel]}}
        for each params block holding ``davg``/``dstd``, the environment matrix whose data
        statistics fill them (the keyword arguments of ``data.stats.environment_statistics``).

and one flag, ``mixed_types``: False for a family whose descriptor distinguishes neighbor
types by slots (se_e2_a); DeePMD then gives its energy fitting one net per atom type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Block:
    """An inner block reading the first ``sel`` slots within ``rcut`` [Angstrom]; ``exact`` says
    whether laying out only the slots that hold neighbors gives the same numbers (checked on
    the concrete parameters, host side)."""

    rcut: float
    sel: int
    exact: bool


@dataclasses.dataclass(frozen=True)
class Layout:
    """Runtime knobs of a descriptor call: they change speed and memory, never the numbers,
    so they stay out of the model's config (its identity).

    Attributes:
      node_chunk: centers per chunk of the per-atom blocks (memory linear in atoms; see
        ``nn/chunking.py``).
      slots: for each of ``compactable_blocks``, the slots to lay out (at most its ``sel``),
        or None for all of them.
    """

    node_chunk: int = 1024
    slots: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class DescriptorFamily:
    """A descriptor family: its config class and pure functions (module docstring)."""

    name: str
    config_class: type
    init: Callable[..., Any]
    apply: Callable[..., Any]
    compactable_blocks: Callable[..., tuple[Block, ...]]
    config_from_deepmd: Callable[[dict], Any]
    params_from_deepmd: Callable[[dict], Any]
    to_deepmd: Callable[..., dict]
    config_from_input: Callable[[dict, int], Any]
    input_section: Callable[[Any], dict]
    config_from_dict: Callable[[dict], Any]
    config_to_dict: Callable[[Any], dict]
    statistics_blocks: Callable[[Any], dict[str, dict]] | None = None
    mixed_types: bool = True
