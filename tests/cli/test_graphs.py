"""``dpa2-jax graphs`` reports the padded shapes that ``Potential.evaluate`` really uses."""

import re

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system
from tests.conftest import SYSTEMS

WATER_3 = SYSTEMS / "water" / "data_3"


def test_graphs_shapes_are_the_potentials(tiny_dp, capsys):
    pot = dpa2_jax.load(tiny_dp, atoms_per_batch=1000)
    system = read_npy_system(WATER_3, type_map=pot.type_map)
    pot.evaluate(system.coords, system.cells, system.atom_types)
    desc = pot.config.descriptor
    args = ["graphs", str(WATER_3), "--rcut", str(desc.rcut), "--sel", str(desc.sel)]
    assert main([*args, "--batch-atoms", "1000"]) == 0
    printed = re.findall(r"\((\d+), (\d+), (\d+)\): (\d+) batches", capsys.readouterr().out)
    shapes = {tuple(int(x) for x in row[:3]) for row in printed}
    assert shapes == pot.padder.shapes
    assert sum(int(row[3]) for row in printed) == -(-system.nframes // (1000 // 192))
