"""Molecular dynamics front ends: an ASE calculator and a JAX-MD energy function.

``energy_fn``, ``neighbor_fn``, ``box_from_cell`` and ``cell_from_box`` (``md/jax_md.py``) import
JAX-MD only when asked for (the ``[md]`` extra), as do ``md/simulate.py`` (NVE/NVT/NPT with JAX-MD's
integrators, behind ``dpa2-jax md``) and ``md/output.py`` (its structure, thermo.log and extxyz
files).
"""

from dpa2_jax.md.ase_calculator import DPA2Calculator

_JAX_MD_NAMES = ("energy_fn", "neighbor_fn", "box_from_cell", "cell_from_box")


def __getattr__(name):  # JAX-MD is an optional dependency
    if name in _JAX_MD_NAMES:
        from dpa2_jax.md import jax_md

        return getattr(jax_md, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DPA2Calculator", "box_from_cell", "cell_from_box", "energy_fn", "neighbor_fn"]
