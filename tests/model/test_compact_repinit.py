"""Repinit over only the slots that hold neighbors, plus the empty slots' sum from a table per
(center type, first atom's type) (``repinit.empty_tail``), gives the numbers of the full
layout: energies, forces and virials at 1e-10, for any environment statistics."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpa2_jax.descriptor import family_of
from dpa2_jax.graph import batch_graphs, pad_graph
from dpa2_jax.model.compiled import compiled_forces_fn
from dpa2_jax.model.layout import compact_layout
from tests.model.model_helpers import HEAD, PAD, graph_of, random_params, tiny_config


def _per_slot_statistics(params, rng):
    """Repinit davg/dstd that differ per type, per slot and per column (the direction columns
    of davg non-zero too): the empty slots' rows then differ from slot to slot."""
    ri = dict(params["descriptor"]["repinit"])
    shape = ri["davg"].shape
    ri["davg"] = jnp.asarray(0.3 * rng.normal(size=shape))
    ri["dstd"] = jnp.asarray(rng.uniform(0.1, 0.4, size=shape))
    return {**params, "descriptor": {**params["descriptor"], "repinit": ri}}


@pytest.mark.parametrize("variant", ["concat", "strip_excluded"])
def test_compact_repinit_matches_full_layout(enable_x64, variant):
    cfg = tiny_config()
    if variant == "strip_excluded":
        desc = cfg.descriptor
        repinit = dataclasses.replace(desc.repinit, tebd_input_mode="strip")
        cfg = dataclasses.replace(
            cfg, descriptor=dataclasses.replace(desc, repinit=repinit, exclude_types=((0, 1),))
        )
    rng = np.random.default_rng(3)
    params = _per_slot_statistics(random_params(cfg, seed=5), rng)
    cell = np.eye(3) * 7.0
    frames = []
    for first in (0, 3):  # graphs whose first atoms differ in type
        types = rng.integers(0, 4, size=24)
        types[0] = first
        frames.append((rng.uniform(size=(24, 3)) @ cell, types, cell))
    graphs = [graph_of(cfg, f) for f in frames]
    blocks = family_of(cfg.descriptor).compactable_blocks(params["descriptor"], cfg.descriptor)
    layout = compact_layout(blocks, [batch_graphs(graphs)], multiple=1)
    full = dataclasses.replace(layout, slots=(*layout.slots[:2], cfg.descriptor.repinit.nsel))
    assert layout.slots[2] < cfg.descriptor.repinit.nsel  # repinit compacts here
    batch = pad_graph(batch_graphs(graphs), *PAD)
    want = compiled_forces_fn(cfg, HEAD, full)(params, batch)
    got = compiled_forces_fn(cfg, HEAD, layout)(params, batch)
    for key in ("energy", "forces", "virial"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), rtol=0,
                                   atol=1e-10, err_msg=key)  # fmt: skip
    assert np.ptp(np.asarray(want["energy"])[:2]) > 0  # the frames differ
    jax.clear_caches()
