"""Molecular dynamics with JAX-MD's integrators: NVE, NVT (Nose-Hoover chain or Langevin), NPT.

    sim = build_simulation(pot, atoms, MDConfig(ensemble="nvt", temperature=300.0))
    state, nbr = sim.init(seed=0)
    for step, state, nbr, obs in run_chunks(sim, state, nbr, n_steps=1000, chunk=10):
        ...  # obs: energy, forces, kinetic energy, temperature, pressure, cell at that step

Units: with eV, Angstrom and amu JAX-MD's time unit is sqrt(amu A^2 / eV) = 10.1805 fs, which
is also ASE's, so a time in fs is multiplied by ``ase.units.fs`` and momenta / masses are
velocities in ASE's units (``atoms.set_velocities``). kT = k_B T in eV; pressure in eV/A^3
(1 bar = ``ase.units.bar``). Temperatures count 3N degrees of freedom, as ASE and JAX-MD do.

Periodic systems use fractional coordinates (``space.periodic_general``, JAX-MD's NPT needs
them); free-space molecules use ``space.free`` and an all-pairs neighbor search. Each chunk of
steps is one compiled ``lax.fori_loop``; the host checks the neighbor list's overflow flag
after it and, on overflow, reallocates the list and redoes the chunk (JAX-MD's usual loop).

The energy lays out a compact descriptor layout (``jax_md.md_layout``: the starting
structure's most neighbors per block plus 25 %; ``build_simulation(..., compact=False)`` lays
out every ``sel`` slot). When atoms gather so that one has more neighbors than laid out, the
energy is NaN (``jax_md.energy_fn``); the driver then chooses a larger layout from the current
positions, recompiles the step, and redoes the chunk, so results never depend on the layout.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import ase
import ase.data
import ase.units
import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress
from jax_md import quantity, simulate, space

from dpa2_jax.errors import ConfigError, NeighborOverflowError
from dpa2_jax.md.jax_md import box_from_cell, energy_fn, md_layout, neighbor_fn
from dpa2_jax.model.potential import Potential

logger = logging.getLogger(__name__)
ENSEMBLES = ("nve", "nvt", "npt")
THERMOSTATS = ("nose-hoover", "langevin")


@dataclasses.dataclass(frozen=True)
class MDConfig:
    """What to simulate. Times in fs, temperature in K, pressure in bar, lengths in Angstrom."""

    ensemble: str = "nve"
    temperature: float = 300.0  # K: initial velocities; target of NVT / NPT
    timestep: float = 0.5  # fs
    thermostat: str = "nose-hoover"  # NVT only; NPT always uses Nose-Hoover chains
    pressure: float = 1.01325  # bar, NPT target
    tau_t: float = 100.0  # fs: Nose-Hoover time scale; Langevin friction is 1 / tau_t
    tau_p: float = 1000.0  # fs: barostat time scale
    skin: float = 0.5  # Angstrom: neighbor-list skin (JAX-MD's dr_threshold)


class Simulation(NamedTuple):
    """Compiled pieces of one simulation (see ``build_simulation``)."""

    init: Callable[[int], tuple[Any, Any]]  # seed -> (state, neighbor list)
    run: Callable[[Any, Any, int], tuple[Any, Any]]  # (state, nbr, n_steps) -> (state, nbr)
    observe: Callable[[Any, Any], dict]  # (state, nbr) -> observables (see ``observables``)
    allocate: Callable[[Any], Any]  # state -> a fresh neighbor list
    config: MDConfig
    symbols: tuple[str, ...]
    periodic: bool
    relayout: Callable[[Any], bool] = lambda state: False  # state -> whether slots grew
    # temperature K -> the same simulation at that temperature (initial velocities, NVT/NPT
    # target), sharing its compiled programs: the temperature is an argument of them
    with_temperature: Callable[[float], Simulation] | None = None


def masses_of(symbols) -> np.ndarray:
    """Atomic masses [N] in amu (ASE's table)."""
    return np.array([ase.data.atomic_masses[ase.data.atomic_numbers[s]] for s in symbols])


def initial_momenta(seed: int, masses: np.ndarray, temperature: float) -> np.ndarray:
    """Maxwell-Boltzmann momenta [N, 3] (amu A / time unit) with zero total momentum, scaled
    so that 2 KE / (3 N k_B) equals ``temperature`` (K) exactly."""
    rng = np.random.default_rng(seed)
    kT = ase.units.kB * temperature
    p = rng.normal(size=(len(masses), 3)) * np.sqrt(masses * kT)[:, None]
    p -= p.mean(axis=0)  # zero total momentum
    kinetic = 0.5 * np.sum(p**2 / masses[:, None])
    target = 1.5 * len(masses) * kT
    return p * np.sqrt(target / kinetic) if kinetic > 0 else p


def standard_cell(atoms: ase.Atoms) -> ase.Atoms:
    """A copy rotated so that the cell is lower triangular (rows: a along x, b in xy), so that
    JAX-MD's box (the transpose) is upper triangular, as its cell list wants."""
    atoms = atoms.copy()
    cell = atoms.cell.array
    if np.allclose(cell, np.tril(cell)):
        return atoms
    rcell, rotation = atoms.cell.standard_form()
    atoms.positions = atoms.positions @ rotation.T
    atoms.set_cell(rcell, scale_atoms=False)
    return atoms


def fitting_skin(cell: np.ndarray, rcut: float, skin: float) -> float:
    """The neighbor-list skin (A) to use in this cell: ``skin``, or less where the cell's
    narrowest width w leaves less room (a JAX-MD list needs w > 2 (rcut + skin)).

    Raises:
      ConfigError: the cell is not wider than 2 rcut.
    """
    widths = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # face-to-face distances
    room = widths.min() / 2 - rcut
    if room <= 0:
        raise ConfigError(
            f"cell widths {np.round(widths, 3).tolist()} A: a JAX-MD neighbor list needs every "
            f"width larger than twice the cutoff ({2 * rcut:g} A); use a supercell "
            "(ase.build.make_supercell) or the ASE calculator, which handles small cells"
        )
    if room <= skin:
        logger.warning("neighbor-list skin reduced from %g A to %.3g A to fit the cell (widths "
                       "%s A, cutoff %g A)", skin, 0.9 * room, np.round(widths, 3).tolist(), rcut)  # fmt: skip
        return 0.9 * room
    return skin


def check_config(cfg: MDConfig, periodic: bool) -> None:
    """Raises ConfigError naming the option for an unknown or unsupported choice."""
    if cfg.ensemble not in ENSEMBLES:
        raise ConfigError(f"ensemble {cfg.ensemble!r}: expected one of {list(ENSEMBLES)}")
    if cfg.thermostat not in THERMOSTATS:
        raise ConfigError(f"thermostat {cfg.thermostat!r}: expected one of {list(THERMOSTATS)}")
    if cfg.ensemble == "npt" and not periodic:
        raise ConfigError(
            "ensemble 'npt' needs a periodic box (atoms.pbc all True with a cell); this "
            "structure is not periodic: use nve or nvt"
        )
    if cfg.timestep <= 0 or cfg.temperature < 0 or cfg.tau_t <= 0 or cfg.tau_p <= 0:
        raise ConfigError(
            f"timestep {cfg.timestep} fs, tau_t {cfg.tau_t} fs and tau_p {cfg.tau_p} fs must be "
            f"positive and temperature {cfg.temperature} K non-negative"
        )


def _integrator(cfg: MDConfig, energy, shift):
    """JAX-MD's (init_fn, apply_fn) for the ensemble, in JAX-MD's units."""
    dt = cfg.timestep * ase.units.fs
    kT = ase.units.kB * cfg.temperature
    tau_t = cfg.tau_t * ase.units.fs
    if cfg.ensemble == "nve":
        return simulate.nve(energy, shift, dt)
    if cfg.ensemble == "npt":
        return simulate.npt_nose_hoover(
            energy, shift, dt, cfg.pressure * ase.units.bar, kT,
            barostat_kwargs={"tau": cfg.tau_p * ase.units.fs},
            thermostat_kwargs={"tau": tau_t},
        )  # fmt: skip
    if cfg.thermostat == "langevin":
        return simulate.nvt_langevin(energy, shift, dt, kT, gamma=1.0 / tau_t)
    return simulate.nvt_nose_hoover(energy, shift, dt, kT, tau=tau_t)


def observables(energy, state, nbr, box, n_atoms: int) -> dict:
    """Energy (eV), forces [N, 3] eV/A, kinetic energy (eV), temperature (K) and, with a box,
    stress [3, 3] eV/A^3 (ASE's sign, potential part), pressure (bar, with the kinetic part)
    and cell [3, 3] A (rows are lattice vectors)."""
    kinetic = quantity.kinetic_energy(momentum=state.momentum, mass=state.mass)
    out = {"kinetic": kinetic, "temperature": 2.0 * kinetic / (3 * n_atoms * ase.units.kB)}
    if box is None:
        e, grad = jax.value_and_grad(lambda R: energy(R, neighbor=nbr))(state.position)
        return {**out, "energy": e, "forces": -grad}
    eye = jnp.eye(3, dtype=state.position.dtype)

    def strained(R, eps):
        return energy(R, neighbor=nbr, box=box, perturbation=eye + eps)

    e, (grad, d_strain) = jax.value_and_grad(strained, argnums=(0, 1))(
        state.position, jnp.zeros_like(eye)
    )
    cell = box.T
    volume = jnp.abs(jnp.linalg.det(cell))
    stress = 0.5 * (d_strain + d_strain.T) / volume  # ASE's sign: dE/d(strain) / V
    pressure = (2.0 * kinetic / 3.0 - jnp.trace(d_strain) / 3.0) / volume
    return {**out, "energy": e, "forces": -grad, "stress": stress,
            "pressure": pressure / ase.units.bar, "cell": cell}  # fmt: skip


def _periodic(atoms: ase.Atoms) -> bool:
    """Whether ``atoms`` is periodic (pbc all True) or not (all False).

    Raises:
      ConfigError: mixed periodicity.
    """
    pbc = np.asarray(atoms.pbc, bool)
    if pbc.any() and not pbc.all():
        raise ConfigError(f"atoms.pbc={pbc.tolist()}: mixed periodicity is not supported")
    return bool(pbc.all())


class _Geometry(NamedTuple):
    """Where the atoms move: JAX-MD's box [3, 3] (columns are lattice vectors; None in free
    space), neighbor-list functions, shift function and starting positions R0 [N, 3]
    (fractional in a box, Angstrom in free space)."""

    box: Any
    nbr_fn: Any
    shift: Callable
    R0: Any


def _geometry(pot: Potential, atoms: ase.Atoms, cfg: MDConfig, periodic: bool) -> _Geometry:
    """The box (a lower-triangular cell, ``standard_cell``), neighbor list (skin fitted to the
    cell) and starting positions of ``atoms``, in the model's dtype."""
    if not periodic:
        _, shift = space.free()
        R0 = jnp.asarray(atoms.positions, pot.dtype)
        return _Geometry(None, neighbor_fn(pot, None, dr_threshold=cfg.skin), shift, R0)
    atoms = standard_cell(atoms)
    box = jnp.asarray(box_from_cell(atoms.cell.array), pot.dtype)
    skin = fitting_skin(atoms.cell.array, pot.rcut, cfg.skin)
    nbr_fn = neighbor_fn(pot, box, dr_threshold=skin)
    _, shift = space.periodic_general(box)
    R0 = jnp.asarray(np.mod(atoms.get_scaled_positions(wrap=False), 1.0), pot.dtype)
    return _Geometry(box, nbr_fn, shift, R0)


def _box_of(state, box, npt: bool):
    """The state's box: NPT's current one, else the fixed ``box`` (None in free space)."""
    return simulate.npt_box(state) if npt else box


def _box_kwargs(state, npt: bool) -> dict:
    """Neighbor-list keywords for the state: NPT's current box (the list keeps its own else)."""
    return {"box": simulate.npt_box(state)} if npt else {}


def _run_fn(apply_fn, npt: bool, thermostat: bool):
    """``run(state, nbr, n_steps, kT) -> (state, nbr)``: n_steps integrator steps in one
    jitted ``fori_loop``, updating the list every step (kT in eV: the thermostat's target)."""

    @jax.jit
    def run(state, nbr, n_steps, kT):
        target = {"kT": kT} if thermostat else {}

        def step(_, carry):
            state, nbr = carry
            nbr = nbr.update(state.position, **_box_kwargs(state, npt))
            return apply_fn(state, neighbor=nbr, **target), nbr

        return jax.lax.fori_loop(0, n_steps, step, (state, nbr))

    return run


def _observe_fn(energy, box, npt: bool, n_atoms: int):
    """``observe(state, nbr) -> observables`` (jitted), plus the updated list's
    ``overflow`` flag."""

    @jax.jit
    def observe(state, nbr):
        nbr = nbr.update(state.position, **_box_kwargs(state, npt))
        out = observables(energy, state, nbr, _box_of(state, box, npt), n_atoms)
        return {**out, "overflow": nbr.did_buffer_overflow}

    return observe


def _programs(pot: Potential, symbols, geo: _Geometry, cfg: MDConfig, head, layout):
    """(init_fn, run, observe) of the ensemble for one descriptor layout (``_run_fn``,
    ``_observe_fn``)."""
    energy = energy_fn(pot, symbols, geo.box, head, layout=layout)
    init_fn, apply_fn = _integrator(cfg, energy, geo.shift)
    npt = cfg.ensemble == "npt"
    run = _run_fn(apply_fn, npt, thermostat=cfg.ensemble != "nve")
    return init_fn, run, _observe_fn(energy, geo.box, npt, len(symbols))


class _Layouts:
    """The descriptor layout in use, and the programs built for each layout so far (shared
    by a simulation at every temperature, so none is compiled twice)."""

    def __init__(self, pot: Potential, symbols, geo: _Geometry, cfg: MDConfig, head, compact):
        self.pot, self.symbols, self.geo, self.cfg, self.head = pot, symbols, geo, cfg, head
        self.current = md_layout(pot, symbols, geo.R0, geo.box) if compact else None
        self.cache = {}  # layout -> (init_fn, run, observe)

    def programs(self):
        """(init_fn, run, observe) for the current layout, built and jitted once each."""
        if self.current not in self.cache:
            self.cache[self.current] = _programs(
                self.pot, self.symbols, self.geo, self.cfg, self.head, self.current
            )
        return self.cache[self.current]

    def relayout(self, state) -> bool:
        """Grows the layout after a slot overflow: from the state's positions, and to at least
        (1 + margin) times the slots before. False when every slot is laid out already."""
        old, box = self.current, self.geo.box
        if old is None:
            return False
        npt = self.cfg.ensemble == "npt"
        box_now = None if box is None else np.asarray(_box_of(state, box, npt))
        R = np.asarray(state.position)
        new = md_layout(self.pot, self.symbols, R, box_now, at_least=old.slots)
        if new.slots == old.slots:  # every compacted block is at its sel already
            return False
        logger.info("descriptor slots %s too few; laying out %s", old.slots, new.slots)
        self.current = new
        return True


def _init_state(cfg: MDConfig, init_fn, seed: int, geo: _Geometry, masses, momenta, kT):
    """(JAX-MD's initial state of the ensemble, a fresh neighbor list at R0); masses [N] amu,
    momenta [N, 3], kT eV."""
    nbr = geo.nbr_fn.allocate(geo.R0)
    key = jax.random.PRNGKey(seed)
    common = {"mass": masses, "momenta": momenta, "neighbor": nbr}
    # JAX-MD's init_fn is not jitted: run it compiled, not op by op (which would keep every
    # intermediate of the first forces whole: 7.8 GB for 98,304 atoms)
    init_fn = jax.jit(init_fn)
    if cfg.ensemble == "npt":
        state = init_fn(key, geo.R0, geo.box, kT=kT, **common)
    else:
        state = init_fn(key, geo.R0, kT=kT, **common)
    return state, nbr


def _at_temperature(layouts: _Layouts, temperature: float) -> Simulation:
    """The simulation at ``temperature`` (K: initial velocities, NVT/NPT target); the
    temperature is an argument of the compiled programs, so they are shared."""
    cfg = dataclasses.replace(layouts.cfg, temperature=temperature)
    geo, symbols, dtype = layouts.geo, layouts.symbols, layouts.pot.dtype
    periodic, npt = geo.box is not None, cfg.ensemble == "npt"
    check_config(cfg, periodic)
    kT = jnp.asarray(ase.units.kB * temperature, dtype)
    masses = jnp.asarray(masses_of(symbols), dtype)

    def init(seed: int):
        momenta = jnp.asarray(initial_momenta(seed, masses_of(symbols), temperature), dtype)
        return _init_state(cfg, layouts.programs()[0], seed, geo, masses, momenta, kT)

    def run(state, nbr, n_steps):
        return layouts.programs()[1](state, nbr, n_steps, kT)

    def observe(state, nbr):
        return layouts.programs()[2](state, nbr)

    def allocate(state):
        return geo.nbr_fn.allocate(state.position, **_box_kwargs(state, npt))

    with_temperature = functools.partial(_at_temperature, layouts)
    return Simulation(init, run, observe, allocate, cfg, symbols, periodic, layouts.relayout,
                      with_temperature)  # fmt: skip


def build_simulation(
    pot: Potential,
    atoms: ase.Atoms,
    cfg: MDConfig,
    head: str | None = None,
    *,
    compact: bool = True,
) -> Simulation:
    """Energy function, neighbor list and integrator for ``atoms``, jitted.

    Args:
      pot: the model.
      atoms: the starting structure (positions in Angstrom; pbc all True with a cell, or all
        False); momenta are drawn later by ``init``. A periodic cell must be wider than
        2 rcut in every direction (the skin shrinks to fit: ``fitting_skin``).
      cfg: ensemble and its parameters.
      head: head of a multi-head model.
      compact: lay out the descriptor's slots for the starting structure with a margin
        (module docstring; ``relayout`` grows them); False lays out every ``sel`` slot.

    Raises:
      ConfigError: a bad option, mixed periodicity, or a box too small for the cutoff.
    """
    periodic = _periodic(atoms)
    check_config(cfg, periodic)
    symbols = tuple(atoms.get_chemical_symbols())
    geo = _geometry(pot, atoms, cfg, periodic)
    return _at_temperature(_Layouts(pot, symbols, geo, cfg, head, compact), cfg.temperature)


def run_chunks(
    sim: Simulation, state, nbr, n_steps: int, chunk: int, max_reallocations: int = 10
) -> Iterator[tuple[int, Any, Any, dict]]:
    """Yields (step, state, nbr, observables as numpy) at step 0 and after every ``chunk``
    steps up to ``n_steps``. A chunk whose neighbor list overflowed is redone from its start
    with a reallocated list; one whose state turned non-finite, with more descriptor slots
    when ``sim.relayout`` can lay out more (a compact layout's slots were too few).

    Raises:
      NeighborOverflowError: the list still overflows after ``max_reallocations`` tries, or
        the energy is not finite (e.g. an NPT box shrunk below twice the cutoff).
    """
    step, tries = 0, 0
    while True:
        obs = jax.tree.map(np.asarray, sim.observe(state, nbr))
        if bool(obs["overflow"]) and tries < max_reallocations:  # list too small at the end
            nbr, tries = sim.allocate(state), tries + 1
            continue
        if not np.isfinite(obs["energy"]) and sim.relayout(state):  # slots too few
            continue
        if not np.isfinite(obs["energy"]):
            raise NeighborOverflowError(
                f"step {step}: non-finite energy {obs['energy']} (a neighbor list that "
                f"overflowed {tries} times, exploding dynamics, or a box narrower than twice "
                "the cutoff); try a smaller timestep"
            )
        yield step, state, nbr, obs
        if step >= n_steps:
            return
        n = min(chunk, n_steps - step)
        tries = 0
        while tries <= max_reallocations:
            new_state, new_nbr = sim.run(state, nbr, n)
            if bool(new_nbr.did_buffer_overflow):
                nbr, tries = sim.allocate(state), tries + 1  # redo with more capacity
            elif not _finite(new_state) and sim.relayout(state):
                continue  # redo with more descriptor slots (grows up to sel, so this ends)
            else:
                break
        else:
            raise NeighborOverflowError(
                f"steps {step}-{step + n}: the neighbor list still overflows after "
                f"{max_reallocations} reallocations"
            )
        state, nbr, step, tries = new_state, new_nbr, step + n, 0


def _finite(state) -> bool:
    """Whether every floating-point leaf of an integrator state is finite."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    return all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.floating))


def positions_of(sim: Simulation, state, obs: dict) -> np.ndarray:
    """Real positions [N, 3] Angstrom (periodic states hold fractional ones)."""
    R = np.asarray(state.position, np.float64)
    return R @ obs["cell"] if sim.periodic else R


def frame_atoms(sim: Simulation, state, obs: dict) -> ase.Atoms:
    """ase.Atoms of a state: positions, cell, velocities (ASE's units) and, as a
    SinglePointCalculator, energy, forces and (periodic) stress."""
    atoms = ase.Atoms(
        symbols=sim.symbols,
        positions=positions_of(sim, state, obs),
        cell=obs["cell"] if sim.periodic else None,
        pbc=sim.periodic,
    )
    atoms.set_velocities(np.asarray(state.momentum / state.mass, np.float64))
    results = {"energy": float(obs["energy"]), "forces": np.asarray(obs["forces"], np.float64)}
    if sim.periodic:
        results["stress"] = full_3x3_to_voigt_6_stress(np.asarray(obs["stress"], np.float64))
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms
