"""Model deviation of an ensemble of M models on the same frames, as DeePMD-kit's
``dp model-devi`` defines it (``deepmd/infer/model_devi.py`` of 3.2.0: ``calc_model_devi_f``,
``calc_model_devi_v``, ``calc_model_devi_e``, ``write_model_devi_out``).

With F_m [n_frame, n_atom, 3] eV/A, W_m [n_frame, 3, 3] eV and E_m [n_frame] eV predicted by
model m, N atoms per frame and <.> the mean over the models:

    eps_f,i  = sqrt( <|F_m,i - <F_i>|^2> )            per atom, eV/A
    max/min/avg_devi_f = max / min / mean over atoms of eps_f,i
    eps_v,ab = sqrt( <(W_m,ab / N - <W_ab / N>)^2> )   per component, eV per atom
    max/min_devi_v = max / min over the 9 components; avg_devi_v = |eps_v| / 3 (Frobenius norm
                     over 3, DeePMD's "average")
    devi_e   = sqrt( <(E_m / N - <E / N>)^2> )          eV per atom

Means over models divide by M (numpy's ``std`` with ddof 0). ``model_devi.out`` holds one row
per frame: ``step`` (frame index times the trajectory's write frequency) and the seven values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dpa2_jax.errors import ConfigError

COLUMNS = ("step", "max_devi_v", "min_devi_v", "avg_devi_v",
           "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")  # fmt: skip


def atomic_force_deviation(forces: np.ndarray) -> np.ndarray:
    """eps_f per atom [n_frame, n_atom] eV/A from forces [n_model, n_frame, n_atom, 3] eV/A."""
    forces = np.asarray(forces, np.float64)
    return np.linalg.norm(np.std(forces, axis=0), axis=-1)  # sqrt(sum_xyz var) = rms |dF|


def force_deviation(forces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max, min, avg) over atoms of eps_f, each [n_frame] eV/A; forces [n_model, n_frame,
    n_atom, 3] eV/A."""
    eps = atomic_force_deviation(forces)  # [n_frame, n_atom]
    return eps.max(axis=-1), eps.min(axis=-1), eps.mean(axis=-1)


def virial_deviation(virials: np.ndarray, n_atom: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max, min, avg) over the 9 components of eps_v, each [n_frame] eV per atom; virials
    [n_model, n_frame, 3, 3] (or [..., 9]) eV, divided by ``n_atom`` first as DeePMD does."""
    v = np.asarray(virials, np.float64)
    v = v.reshape(*v.shape[:2], 9) / n_atom  # [n_model, n_frame, 9]
    eps = np.std(v, axis=0)  # [n_frame, 9]
    return eps.max(axis=-1), eps.min(axis=-1), np.linalg.norm(eps, axis=-1) / 3


def energy_deviation(energies: np.ndarray, n_atom: int) -> np.ndarray:
    """devi_e [n_frame] eV per atom from energies [n_model, n_frame] eV."""
    return np.std(np.asarray(energies, np.float64) / n_atom, axis=0)


def model_deviation(
    energies: np.ndarray, forces: np.ndarray, virials: np.ndarray, frequency: int = 1
) -> np.ndarray:
    """The ``model_devi.out`` table [n_frame, 8] (``COLUMNS``) of an ensemble's predictions.

    Args:
      energies: [n_model, n_frame] eV.
      forces: [n_model, n_frame, n_atom, 3] eV/A.
      virials: [n_model, n_frame, 3, 3] eV (DeePMD's sign; zeros for non-periodic frames).
      frequency: MD steps between frames: the step column is frame index times this.

    Raises:
      ConfigError: fewer than two models, or shapes that disagree.
    """
    forces = np.asarray(forces)
    if forces.ndim != 4 or forces.shape[0] < 2 or forces.shape[-1] != 3:
        raise ConfigError(
            f"model deviation needs forces [n_model >= 2, n_frame, n_atom, 3], got "
            f"{list(forces.shape)}"
        )
    n_model, n_frame, n_atom, _ = forces.shape
    if np.shape(energies) != (n_model, n_frame) or np.shape(virials)[:2] != (n_model, n_frame):
        raise ConfigError(
            f"energies {list(np.shape(energies))} and virials {list(np.shape(virials))} do not "
            f"match forces [{n_model}, {n_frame}, ...]"
        )
    step = np.arange(n_frame, dtype=np.float64) * frequency
    columns = [step, *virial_deviation(virials, n_atom), *force_deviation(forces),
               energy_deviation(energies, n_atom)]  # fmt: skip
    return np.stack(columns, axis=1)  # [n_frame, 8]


def header(title: str = "") -> str:
    """The two comment lines DeePMD-kit writes above the table (numpy adds the ``# ``)."""
    names = "".join(f"{name:19s}" for name in COLUMNS[1:])
    return f"{title}\n{'step':10s}{names}"


def write_model_devi(path: str | os.PathLike, table: np.ndarray, title: str = "") -> None:
    """Writes ``table`` [n_frame, 8] in DeePMD-kit's ``model_devi.out`` format (overwriting):
    step as %12d, the rest %19.6e, under the ``header``."""
    fmt = ["%12d"] + ["%19.6e"] * (len(COLUMNS) - 1)
    with open(path, "w") as f:
        np.savetxt(f, table, fmt=fmt, delimiter="", header=header(title))


def read_model_devi(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``model_devi.out`` columns by name (``COLUMNS``), each [n_frame]."""
    data = np.loadtxt(path, ndmin=2)
    return {name: data[:, k] for k, name in enumerate(COLUMNS[: data.shape[1]])}


def ensemble_predictions(
    pots: Sequence, coords: np.ndarray, cells: np.ndarray | None, symbols: Sequence[str],
    head: str | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Every model's energy [n_model, n_frame] eV, forces [n_model, n_frame, n_atom, 3] eV/A
    and virial [n_model, n_frame, 3, 3] eV on frames given by element symbols.

    ``head`` is used by models that have it (or need one); single-head models use their head.
    """
    out = {"energy": [], "forces": [], "virial": []}
    for pot in pots:
        use = head if head in pot.heads or len(pot.heads) > 1 else None
        pred = pot.evaluate(coords, cells, list(symbols), head=use)
        for key, values in out.items():
            values.append(pred[key])
    return {key: np.stack(value) for key, value in out.items()}
