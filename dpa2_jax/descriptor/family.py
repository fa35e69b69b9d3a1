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

and its functions are pure. Required:

    init(rng, cfg) -> params
        numpy arrays drawn from ``rng`` (a numpy Generator): host-side, so initialisation
        never waits for XLA to compile hundreds of small random draws.
    apply(params, cfg, species, nb, layout) -> [n_node, dim_out]
        species [n_node] int32; nb a ``Neighborhood`` of ``cfg.sel`` distance-ordered slots;
        layout a ``Layout`` (runtime knobs that never change the numbers).

Optional, with the default that applies when a family leaves them out:

    config_from_input(section, ntypes) / input_section(cfg)
        the ``descriptor`` section of a DeePMD-kit input JSON, which ``model.json`` stores too
        (default: the config class's fields by name, lists as tuples, ``type`` the family's
        name; unknown keys are errors naming the nearest field).
    compactable_blocks(params, cfg) -> tuple[Block, ...]
        the inner blocks that may lay out fewer than their ``sel`` slots (default: none).
    statistics(cfg, frames) -> {block name: {leaf: array}}
        the descriptor's data statistics (``davg``/``dstd`` of each block holding them),
        written into ``params[block]`` before training; frames are (coords [na, 3], model
        types [na], cell or None). Families of environment-matrix blocks use
        ``env_mat_stats.block_statistics`` (default: none).
    change_type_map(params, old_cfg, index, rng) -> params
        for fine-tuning into another type map, after the rows of every type-indexed leaf
        (``davg``, ``dstd``, ...) have been carried over: whatever else follows the elements
        (e.g. a one-hot type embedding's rows). ``index`` [new ntypes] is each new type's old
        index, -1 for a new element (default: None, which refuses a type-map change).
    compress(params, cfg, min_dist, stride, extrapolate) -> params
        tabulated inner nets (``dpa2-jax compress``; default: None, not compressible).
    config_from_deepmd(d) / params_from_deepmd(d) / to_deepmd(cfg, params, type_map)
        DeePMD-kit's serialized descriptor dict (the ``descriptor`` entry of a ``.dp`` model);
        default: None (no ``.dp`` files for this family).

and one flag, ``mixed_types``: False for a family whose descriptor distinguishes neighbor
types by slots (se_e2_a); DeePMD then gives its energy fitting one net per atom type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from dpa2_jax.errors import ConfigError
from dpa2_jax.options import dataclass_kwargs, options_dict


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


def _no_blocks(params, cfg) -> tuple[Block, ...]:
    return ()


@dataclasses.dataclass(frozen=True)
class DescriptorFamily:
    """A descriptor family: its config class and pure functions (module docstring)."""

    name: str
    config_class: type
    init: Callable[..., Any]
    apply: Callable[..., Any]
    config_from_input: Callable[[dict, int], Any] | None = None
    input_section: Callable[[Any], dict] | None = None
    compactable_blocks: Callable[..., tuple[Block, ...]] = _no_blocks
    statistics: Callable[[Any, Sequence], dict[str, dict]] | None = None
    change_type_map: Callable[..., Any] | None = None
    compress: Callable[..., Any] | None = None
    config_from_deepmd: Callable[[dict], Any] | None = None
    params_from_deepmd: Callable[[dict], Any] | None = None
    to_deepmd: Callable[..., dict] | None = None
    mixed_types: bool = True

    def __post_init__(self):
        def from_options(d: dict, ntypes: int):
            d = {k: v for k, v in d.items() if k not in ("type", "ntypes")}
            kwargs = dataclass_kwargs(self.config_class, d, self.name)
            return self.config_class(ntypes=ntypes, **kwargs)

        def to_section(cfg) -> dict:
            section = {"type": self.name, **options_dict(cfg)}
            del section["ntypes"]  # DeePMD takes it from the model's type map
            return section

        if self.input_section is None:
            object.__setattr__(self, "input_section", to_section)
        if self.config_from_input is None:
            object.__setattr__(self, "config_from_input", from_options)

    @classmethod
    def from_modules(cls, name: str, config_class: type, *modules, **fields) -> DescriptorFamily:
        """The family whose functions are the ones of these names in ``modules`` (the first
        module defining a name wins), with ``fields`` given explicitly."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("name", "config_class")]
        for field in names:
            found = [getattr(m, field) for m in modules if hasattr(m, field)]
            if field not in fields and found:
                fields[field] = found[0]
        return cls(name, config_class, **fields)

    def deepmd_codec(self, what: str) -> Callable:
        """The family's ``.dp`` reader or writer ``what``; a ConfigError if it has none."""
        fn = getattr(self, what)
        if fn is None:
            raise ConfigError(f"descriptor {self.name!r} has no DeePMD-kit .dp form ({what})")
        return fn
