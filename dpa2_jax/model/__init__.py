"""Model: graph -> atomic energies -> energy, forces, virial."""
