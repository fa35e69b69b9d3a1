"""dpa2_jax: the DPA-2 large atomic model in JAX, with exact DeePMD-kit parity."""

from dpa2_jax.io.convert import load
from dpa2_jax.md.ase_calculator import DPA2Calculator
from dpa2_jax.model.potential import Potential

__version__ = "0.1.0"

__all__ = ["DPA2Calculator", "Potential", "load"]
