"""md/simulate.py: masses, initial momenta, skin, cell form, option checks (host side), and the
driver growing a compact descriptor layout that became too small."""

from __future__ import annotations

import ase
import ase.units
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("jax_md")

from dpa2_jax.errors import ConfigError
from dpa2_jax.md.simulate import (
    MDConfig,
    check_config,
    fitting_skin,
    initial_momenta,
    masses_of,
    standard_cell,
)


def test_masses_are_ase_amu():
    np.testing.assert_allclose(masses_of(["O", "H", "C"]), [15.999, 1.008, 12.011], atol=1e-3)


def test_initial_momenta_have_zero_total_momentum_and_the_temperature():
    masses = masses_of(["O", "H", "H"] * 10)
    p = initial_momenta(7, masses, 300.0)
    np.testing.assert_allclose(p.sum(axis=0), 0.0, atol=1e-12)
    kinetic = 0.5 * np.sum(p**2 / masses[:, None])  # eV
    assert 2 * kinetic / (3 * len(masses) * ase.units.kB) == pytest.approx(300.0)
    np.testing.assert_array_equal(p, initial_momenta(7, masses, 300.0))  # seeded
    assert not np.allclose(p, initial_momenta(8, masses, 300.0))


def test_skin_shrinks_to_fit_and_small_cells_are_refused():
    assert fitting_skin(np.eye(3) * 20.0, 4.0, 0.5) == 0.5
    assert fitting_skin(np.eye(3) * 12.44, 6.0, 0.5) == pytest.approx(0.9 * 0.22)
    with pytest.raises(ConfigError, match="twice the cutoff"):
        fitting_skin(np.eye(3) * 11.0, 6.0, 0.5)


def test_standard_cell_is_lower_triangular_and_keeps_distances():
    atoms = ase.Atoms("OH", positions=[[1, 2, 3], [2, 2, 3.5]],
                      cell=[[10, 1, 0], [0, 10, 2], [1, 0, 10]], pbc=True)  # fmt: skip
    rotated = standard_cell(atoms)
    np.testing.assert_allclose(rotated.cell.array, np.tril(rotated.cell.array), atol=1e-12)
    assert rotated.get_distance(0, 1, mic=True) == pytest.approx(atoms.get_distance(0, 1, mic=True))
    assert rotated.cell.volume == pytest.approx(atoms.cell.volume)


@pytest.mark.parametrize(
    ("cfg", "periodic", "message"),
    [
        (MDConfig(ensemble="nvx"), True, "ensemble 'nvx'"),
        (MDConfig(thermostat="berendsen"), True, "thermostat 'berendsen'"),
        (MDConfig(ensemble="npt"), False, "needs a periodic box"),
        (MDConfig(timestep=0.0), True, "timestep 0.0 fs"),
    ],
)
def test_bad_options_are_named(cfg, periodic, message):
    with pytest.raises(ConfigError, match=message):
        check_config(cfg, periodic)


@pytest.mark.slow  # about 2 minutes: four layouts' MD loops compile
def test_driver_grows_compact_slots_and_matches_the_full_layout(water_pot, water_cluster):
    """A cluster spread 1.6x, its atoms flying inward: the starting structure's compact layout
    soon has too few three-body slots; the driver grows it, redoes the chunk, and the
    trajectory equals the full layout's."""
    from dpa2_jax.md.simulate import build_simulation, positions_of, run_chunks

    compact = water_cluster(16)
    spread = compact.copy()
    center = compact.positions.mean(axis=0)
    spread.positions = center + 1.6 * (compact.positions - center)
    cfg = MDConfig(temperature=0.0)
    inward = -(spread.positions - center) * (1 - 1 / 1.6) / (10 * cfg.timestep * ase.units.fs)
    runs = {}
    for flag in (True, False):
        sim = build_simulation(water_pot, spread, cfg, compact=flag)
        grown = []

        def relayout(state, sim=sim, grown=grown):
            grown.append(sim.relayout(state))
            return grown[-1]

        sim = sim._replace(relayout=relayout)
        state, _ = sim.init(0)
        # a neighbor list with room for the compact cluster (reallocating at a chunk's start
        # would size it for the spread one)
        nbr = sim.allocate(state.set(position=jnp.asarray(compact.positions)))
        state = state.set(momentum=jnp.asarray(inward) * state.mass.reshape(-1, 1))
        *_, (step, state, nbr, obs) = run_chunks(sim, state, nbr, n_steps=20, chunk=10)
        runs[flag] = (positions_of(sim, state, obs), obs, grown)
    (x, obs, grown), (x_full, obs_full, not_grown) = runs[True], runs[False]
    assert grown and all(grown) and not not_grown  # only the compact layout had to grow
    np.testing.assert_allclose(x, x_full, rtol=0, atol=1e-10)
    np.testing.assert_allclose(obs["energy"], obs_full["energy"], rtol=1e-10, atol=1e-10)
    ref = water_pot.evaluate(x, None, compact.get_chemical_symbols())
    np.testing.assert_allclose(obs["energy"], ref["energy"][0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(obs["forces"], ref["forces"][0], rtol=1e-10, atol=1e-10)


@pytest.mark.slow  # about 70 s of CPU: two simulations compile
def test_other_temperatures_reuse_the_compiled_run(water_pot, water_cluster):
    """``with_temperature`` (distillation explores several temperatures per structure): NVT at
    600 K from a simulation built at 300 K compiles nothing new and gives, step for step, what a
    simulation built at 600 K gives (initial velocities and Nose-Hoover target)."""
    import jax

    from dpa2_jax.md.simulate import build_simulation, run_chunks

    atoms = water_cluster(4)
    cfg = MDConfig(ensemble="nvt", temperature=300.0, timestep=0.5)

    def trajectory(sim):
        state, nbr = sim.init(3)
        return [np.asarray(s.position) for _, s, _, _ in run_chunks(sim, state, nbr, 20, 10)]

    at_300 = build_simulation(water_pot, atoms, cfg)
    first = trajectory(at_300)
    compiles = []
    listener = lambda event, *_, **__: compiles.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        reused = trajectory(at_300.with_temperature(600.0))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert not [e for e in compiles if "backend_compile" in e], compiles
    assert at_300.with_temperature(600.0).config.temperature == 600.0
    fresh = trajectory(
        build_simulation(water_pot, atoms, MDConfig(ensemble="nvt", temperature=600.0))
    )
    np.testing.assert_allclose(np.stack(reused), np.stack(fresh), rtol=0, atol=1e-12)
    assert np.abs(np.stack(reused)[-1] - np.stack(first)[-1]).max() > 1e-4
