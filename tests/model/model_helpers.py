"""Helpers shared by the tests of dpa2_jax/model: the tiny model with random parameters, random
frames, and one padded shape for every evaluation (one compilation for all files)."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from configs import tiny
from dpa2_jax.graph import batch_graphs, frame_to_graph, neighbor_list, pad_graph
from dpa2_jax.io.deepmd_config import model_config
from dpa2_jax.model.energy import init
from dpa2_jax.model.compiled import compiled_forces_fn

MOLECULE = pathlib.Path(__file__).parents[1] / "systems" / "cho_molecules" / "C3H3O4"
HEAD = "default"
TYPE_MAP = ("C", "H", "N", "O")
# One padded shape (n_node, n_edge, n_graph) for every evaluation in tests/model: with the same
# config, one compilation of the model's forces function serves all files.
PAD = (96, 2048, 6)


def tiny_config(type_map=TYPE_MAP, overrides=None):
    """The tiny ModelConfig; ``overrides``: {"descriptor.repformer.nlayers": 3, ...} set in its
    model section."""
    model = tiny.get_config().model.to_dict()
    model["type_map"] = list(type_map)
    for key, value in (overrides or {}).items():
        *path, last = key.split(".")
        section = model
        for name in path:
            section = section[name]
        section[last] = value
    return model_config(model)


def random_params(cfg, seed, zero_block_davg=False):
    """Random parameters with init()'s structure, with statistics and biases far from init()'s
    neutral values (so that every parameter matters). Weights w ~ N(0, 1/(d_in + d_out)), biases ~ N(0, 1), timesteps ~ 0.1, residual
    scales ~ N(0, 0.1^2) (the tiny config's update_residual), layer-norm scales ~ 1, energy
    biases ~ N(0, 1).
    davg, dstd: per type, the same in every neighbor slot (as DeePMD's statistics are); davg
    non-zero in the radial column only and one dstd in [0.1, 0.4] for the three direction columns
    (any other form breaks rotation invariance). With ``zero_block_davg`` the repinit and
    three-body davg are zero (``set_davg_zero=True``, the tiny config's setting): DeePMD, and so
    dpa2_jax, reads atom 0's type in empty neighbor slots, whose environment row is -davg/dstd,
    so a non-zero davg there makes the energy depend on which atom comes first.
    """
    rng = np.random.default_rng(seed)
    shapes = init(jax.random.key(0), cfg)

    def draw(path, leaf):
        names = [str(getattr(k, "key", getattr(k, "idx", ""))) for k in path]
        shape = leaf.shape
        if names[-1] in ("davg", "dstd"):
            nt, sel, _ = shape
            if names[-1] == "davg":
                davg = np.zeros((nt, 1, 4))
                if not (zero_block_davg and names[-2] != "repformers"):
                    davg[..., 0] = 0.3 * rng.normal(size=(nt, 1))
                return np.broadcast_to(davg, shape)
            dstd = rng.uniform(0.1, 0.4, (nt, 1, 2))[..., [0, 1, 1, 1]]
            return np.broadcast_to(dstd, shape)
        if any(name.endswith("_residual") for name in names):
            return 0.1 * rng.normal(size=shape)
        if names[-1] == "w" and len(shape) == 2:
            return rng.normal(size=shape) / np.sqrt(sum(shape))
        if names[-1] == "w":  # layer norm
            return 1.0 + 0.1 * rng.normal(size=shape)
        if names[-1] == "idt":
            return 0.1 + 0.01 * rng.normal(size=shape)
        return rng.normal(size=shape)  # b, bias_atom_e, out_bias

    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.asarray(draw(path, leaf), leaf.dtype), shapes
    )


def random_positions(n, cell, min_dist, rng, box=4.0):
    """n positions in the cell (or a cube of side ``box``), min_dist apart (images included)."""
    pos = np.empty((0, 3))
    frame = cell if cell is not None else np.eye(3) * box
    while len(pos) < n:
        trial = np.vstack([pos, rng.uniform(size=(1, 3)) @ frame])
        if neighbor_list(trial, cell, min_dist, 10**6).n_edge == 0:
            pos = trial
    return pos


def check_sel(cfg, pos, cell):
    """No atom has more neighbors than a block's sel within its cutoff (nothing is truncated)."""
    ri, rf = cfg.descriptor.repinit, cfg.descriptor.repformer
    for rcut, sel in (
        (ri.rcut, ri.nsel),
        (rf.rcut, rf.nsel),
        (ri.three_body_rcut, ri.three_body_sel),
    ):
        count = neighbor_list(pos, cell, rcut, 10**6).max_neighbors
        assert count <= sel, f"{count} neighbors within {rcut} A exceed sel={sel}"


def graph_of(cfg, frame):
    pos, types, cell = frame
    return frame_to_graph(pos, types, cell, cfg.descriptor.rcut, cfg.descriptor.sel)


def split(out, frames):
    """Per-frame dicts from the outputs of a batch holding ``frames`` first."""
    out = jax.tree.map(np.asarray, out)
    results, start = [], 0
    for g, (pos, _, _) in enumerate(frames):
        n = len(pos)
        results.append(
            {
                "energy": out["energy"][g],
                "forces": out["forces"][start : start + n],
                "virial": out["virial"][g],
                "stress": out["stress"][g],
                "atom_energy": out["atom_energy"][start : start + n],
            }
        )
        start += n
    return results


def run_model(params, cfg, batch):
    """The model's compiled forces function (full slot layout) on one padded batch."""
    return compiled_forces_fn(cfg, HEAD)(params, batch)


def evaluate(params, cfg, frames):
    """Outputs, one dict per frame, of frames [(positions, types, cell or None)], evaluated in
    as many PAD-shaped batches as they need."""
    graphs = [graph_of(cfg, f) for f in frames]

    def fits(start, stop):
        nodes = sum(int(g.n_node[0]) for g in graphs[start:stop])
        edges = sum(int(g.n_edge[0]) for g in graphs[start:stop])
        return stop - start < PAD[2] and nodes < PAD[0] and edges <= PAD[1]

    results, start = [], 0
    while start < len(graphs):
        stop = start + 1
        while stop < len(graphs) and fits(start, stop + 1):
            stop += 1
        batch = pad_graph(batch_graphs(graphs[start:stop]), *PAD)
        results += split(run_model(params, cfg, batch), frames[start:stop])
        start = stop
    return results
