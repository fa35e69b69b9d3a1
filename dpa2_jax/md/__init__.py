"""Molecular dynamics front ends: an ASE calculator (more engines later)."""

from dpa2_jax.md.ase_calculator import DPA2Calculator

__all__ = ["DPA2Calculator"]
