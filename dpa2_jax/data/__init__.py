"""Host-side data readers: DeePMD npy folders and ASE files -> `System` (numpy, float64)."""

from dpa2_jax.data.ase_io import atoms_to_system, read_ase, system_to_atoms
from dpa2_jax.data.npy_system import find_systems, read_npy_system, read_npy_systems
from dpa2_jax.data.system import System, select_frames, validate_system
from dpa2_jax.data.type_map import check_type_map, map_types

__all__ = [
    "System",
    "atoms_to_system",
    "check_type_map",
    "find_systems",
    "map_types",
    "read_ase",
    "read_npy_system",
    "read_npy_systems",
    "select_frames",
    "system_to_atoms",
    "validate_system",
]
