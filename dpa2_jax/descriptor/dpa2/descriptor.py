"""The DPA-2 descriptor, composed in the paper's order (DeePMD's ``DescrptDPA2.call``).

T      = type embedding (of one-hot types, or of electron configurations)
g1     = W [repinit(R~_6A) , three_body(R~_4A)]      (W only when widths differ)
       (+ W' T_i  with add_tebd_to_repinit_out)
g1     = repformers(g1, R~_4A)
D_i    = [g1_i, T_i]                                   (concat_output_tebd)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from dpa2_jax.data.system import Frame
from dpa2_jax.descriptor import type_embedding
from dpa2_jax.descriptor.dpa2 import repformers, repinit, three_body
from dpa2_jax.descriptor.dpa2.config import DescriptorConfig
from dpa2_jax.descriptor.env_mat import (
    Neighborhood,
    chunk_neighborhood,
    environment_matrix,
    neighborhood_parts,
    normalize,
    pair_exclusion_mask,
)
from dpa2_jax.descriptor.env_mat_stats import block_statistics
from dpa2_jax.descriptor.family import Block, Layout
from dpa2_jax.nn import dense, init_dense
from dpa2_jax.nn.chunking import map_nodes
from dpa2_jax.typing import Array, Params, Rng


def dtype_of(cfg: DescriptorConfig):
    return jnp.float64 if cfg.precision == "float64" else jnp.float32


def init(rng: Rng, cfg: DescriptorConfig) -> Params:
    """Initial parameters; statistics are davg = 0, dstd = 1 until computed from data."""
    dtype = dtype_of(cfg)
    ri = cfg.repinit
    params: Params = {
        "type_embedding": type_embedding.init(
            rng, cfg.tebd_inputs.shape[-1], ri.tebd_dim, cfg.use_tebd_bias, dtype
        ),
        "repinit": repinit.init(rng, ri, cfg.ntypes, dtype),
        "repformers": repformers.init(rng, cfg.repformer, cfg.ntypes, dtype),
    }
    if ri.use_three_body:
        params["three_body"] = three_body.init(rng, ri, cfg.ntypes, dtype)
    if ri.dim_out != cfg.repformer.g1_dim:
        params["g1_shape_transform"] = init_dense(
            rng, ri.dim_out, cfg.repformer.g1_dim, bias=False, dtype=dtype
        )
    if cfg.add_tebd_to_repinit_out:
        params["tebd_transform"] = init_dense(
            rng, ri.tebd_dim, cfg.repformer.g1_dim, bias=False, dtype=dtype
        )
    return params


def _block_env(
    block: Params,
    species: Array,
    nb: Neighborhood,
    cfg: DescriptorConfig,
    rcut,
    rcut_smth,
    species_all: Array,
) -> tuple[Array, Array, Array]:
    """Environment of a repinit-type block: excluded pairs are zeroed after normalisation
    (empty slots keep -davg/dstd). species: the centers' types; species_all: every node's,
    which ``nb.index`` points to. Returns (rr, sw, neighbor species)."""
    em, sw = environment_matrix(nb, rcut, rcut_smth, cfg.env_protection)
    rr = normalize(em, species, block["davg"], block["dstd"])
    if cfg.exclude_types:
        keep = pair_exclusion_mask(species, nb, cfg.excluded_pairs, species_all)
        rr = jnp.where(keep[..., None], rr, 0.0)
        nb = nb.with_mask(nb.mask & keep)
        sw = jnp.where(nb.mask, sw, 0.0)
    return rr, sw, species_all[nb.index]


def _block_slots(block: Params, n: int) -> Params:
    """A block whose statistics cover only the first ``n`` slots (a compact layout)."""
    return dict(block, davg=block["davg"][:, :n], dstd=block["dstd"][:, :n])


def apply(
    params: Params,
    cfg: DescriptorConfig,
    species: Array,
    nb: Neighborhood,
    layout: Layout = Layout(),
) -> Array:
    """The per-atom descriptor.

    Args:
      species: [n_node] int32 type indices.
      nb: neighborhood at the repinit cutoff with ``cfg.sel`` slots.
      layout: node chunk, and the (three-body, repformer, repinit) slots to lay out when fewer
        than sel suffice (see ``compactable_blocks``); ``slots=None`` lays out all of them.

    Every array over neighbor slots (environment matrices, embeddings, g2) is made inside the
    chunks of centers (``nn/chunking.py``) from the chunk's slice of ``nb``: between blocks
    only per-atom rows (g1) and ``nb`` itself span all atoms.

    Returns:
      [n_node, cfg.dim_out]
    """
    ri, rf = cfg.repinit, cfg.repformer
    tebd = type_embedding.apply(params["type_embedding"], cfg.tebd_inputs)  # [n_type+1, tebd_dim]
    slots = layout.slots
    n_ri = slots[2] if slots else ri.nsel
    n3 = slots[0] if slots else ri.three_body_sel
    nf = slots[1] if slots else rf.nsel
    # chunks rebuild their slots' vectors from every atom's positions (neighborhood_parts),
    # each block reading only the slots it lays out; unchunked, nb serves as it is
    chunked = species.shape[0] > layout.node_chunk
    part, positions = neighborhood_parts(nb) if chunked else (nb, None)
    compact = n_ri < ri.nsel  # then the empty slots not laid out, summed per type pair
    table = repinit.empty_tail(params["repinit"], ri, cfg.smooth, tebd, n_ri) if compact else None

    def repinit_nb(nb):  # also drops neighbors a stale graph still holds
        return nb.restrict(ri.rcut, ri.nsel)

    def initial_g1(part, species, species_all, positions):
        """Repinit (+ three-body), brought to g1_dim, for a chunk of centers: the wide repinit
        output [n, neuron[-1] * axis_neuron] exists for one chunk at a time."""
        nb = repinit_nb(chunk_neighborhood(part, positions))
        tail = table[species, species_all[nb.first]] if compact else None  # [n, ng, 4]
        rr, sw, nei = _block_env(_block_slots(params["repinit"], n_ri), species,
                                 nb.restrict(ri.rcut, n_ri), cfg, ri.rcut, ri.rcut_smth,
                                 species_all)  # fmt: skip
        g1 = repinit.apply(params["repinit"], ri, cfg.smooth, rr, sw, species, nei, tebd, tail)
        if ri.use_three_body:
            rr3, sw3, nei3 = _block_env(
                _block_slots(params["three_body"], n3), species,
                nb.restrict(ri.three_body_rcut, n3), cfg, ri.three_body_rcut,
                ri.three_body_rcut_smth, species_all,
            )  # fmt: skip
            g3 = three_body.apply(params["three_body"], ri, cfg.smooth, rr3, sw3, nei3, tebd)
            g1 = jnp.concatenate([g1, g3], -1)
        if "g1_shape_transform" in params:
            g1 = dense(params["g1_shape_transform"], g1)
        if cfg.add_tebd_to_repinit_out:
            g1 = g1 + dense(params["tebd_transform"], tebd[species])
        return g1

    n_initial = max(n_ri, n3 if ri.use_three_body else 0)
    g1 = map_nodes(initial_g1, layout.node_chunk, (part.first_slots(n_initial), species),
                   (species, positions))  # fmt: skip
    davg, dstd = params["repformers"]["davg"][:, :nf], params["repformers"]["dstd"][:, :nf]

    def repformer_env(part, species, species_all, positions):
        """The repformer block's (rr, sw, neighborhood) for a chunk: excluded pairs are
        dropped before its environment matrix is computed."""
        nbf = repinit_nb(chunk_neighborhood(part, positions)).restrict(rf.rcut, nf)
        if cfg.exclude_types:
            keep = pair_exclusion_mask(species, nbf, cfg.excluded_pairs, species_all)
            nbf = nbf.with_mask(nbf.mask & keep)
        em, swf = environment_matrix(nbf, rf.rcut, rf.rcut_smth, cfg.env_protection)
        return normalize(em, species, davg, dstd), swf, nbf

    g1 = repformers.apply(params["repformers"], rf, cfg.smooth, g1, repformer_env,
                          (part.first_slots(nf), species), (species, positions),
                          layout.node_chunk)  # fmt: skip
    if cfg.concat_output_tebd:
        g1 = jnp.concatenate([g1, tebd[species]], -1)
    return g1


def compactable_blocks(params: Params, cfg: DescriptorConfig) -> tuple[Block, Block, Block]:
    """The three-body, the repformer and the repinit blocks, each with whether it gives the
    same numbers when only the slots holding neighbors are laid out (host-side check on
    concrete parameters).

    Three-body: an empty slot's row is -davg/dstd; its pair products vanish iff the direction
    columns of davg are zero (DeePMD's statistics keep them zero). Repformer: empty slots are
    masked everywhere except in the smooth softmax of attention, so without attention.
    Repinit: always, with the empty slots' sum added from a table (``repinit.empty_tail``).
    """

    ri, rf = cfg.repinit, cfg.repformer
    three = ri.use_three_body and not np.any(np.asarray(params["three_body"]["davg"])[..., 1:])
    attention = rf.update_g1_has_attn or (
        rf.nlayers > 1 and (rf.update_g2_has_attn or rf.update_h2)
    )
    return (
        Block(ri.three_body_rcut, ri.three_body_sel, bool(three)),
        Block(rf.rcut, rf.nsel, bool(not (cfg.smooth and attention))),
        Block(ri.rcut, ri.nsel, True),
    )


def statistics_blocks(cfg: DescriptorConfig) -> dict[str, dict]:
    """For each params block holding davg/dstd, the environment matrix DeePMD's
    ``DescrptDPA2.compute_input_stats`` takes its statistics from: the block's own cutoff and
    nearest-``sel`` list, the descriptor's env_protection and exclude_types.

    DeePMD builds the three-body block (``DescrptBlockSeTTebd``) with repinit's
    ``set_davg_zero``; the repformers use their own.
    """
    ri, rf = cfg.repinit, cfg.repformer
    common = {"protection": cfg.env_protection, "exclude_types": tuple(cfg.exclude_types)}
    blocks = {
        "repinit": dict(rcut=ri.rcut, rcut_smth=ri.rcut_smth, sel=ri.nsel,
                        set_davg_zero=ri.set_davg_zero, **common),
    }  # fmt: skip
    if ri.use_three_body:
        blocks["three_body"] = dict(
            rcut=ri.three_body_rcut, rcut_smth=ri.three_body_rcut_smth, sel=ri.three_body_sel,
            set_davg_zero=ri.set_davg_zero, **common,
        )  # fmt: skip
    blocks["repformers"] = dict(rcut=rf.rcut, rcut_smth=rf.rcut_smth, sel=rf.nsel,
                                set_davg_zero=rf.set_davg_zero, **common)  # fmt: skip
    return blocks


def statistics(cfg: DescriptorConfig, frames: Sequence[Frame]) -> dict[str, dict[str, np.ndarray]]:
    """davg/dstd [ntypes, sel, 4] of every block of ``statistics_blocks`` from ``frames``."""
    return block_statistics(statistics_blocks(cfg), frames, cfg.ntypes)


def change_type_map(params: Params, old_cfg: DescriptorConfig, index, rng: Rng) -> Params:
    """The one-hot type embedding follows the elements (``type_embedding.change_type_map``);
    an econf embedding reads the type map and needs nothing."""
    if "type_embedding" not in params or old_cfg.use_econf_tebd:
        return params
    rows = type_embedding.change_type_map(params["type_embedding"], index, rng)
    return {**params, "type_embedding": rows}
