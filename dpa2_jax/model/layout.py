"""Choosing the descriptor's layout for a batch on the host: how many neighbor slots each
compactable block lays out.

Blocks that give the same numbers with fewer slots (``DescriptorFamily.compactable_blocks``)
lay out only as many as the most neighbors any atom of the batch has within the block's cutoff,
rounded up to a multiple of 8 so that few layouts (compilations) occur.
"""

from __future__ import annotations

from collections.abc import Sequence

import jraph
import numpy as np

from dpa2_jax.descriptor import Block, Layout
from dpa2_jax.graph.fields import max_neighbors

SLOT_MULTIPLE = 8


def compact_layout(
    blocks: Sequence[Block],
    batches: Sequence[jraph.GraphsTuple],
    node_chunk: int = 1024,
    multiple: int = SLOT_MULTIPLE,
) -> Layout:
    """The layout for unpadded host ``batches``: per block, its slots (``sel`` if not exact),
    rounded up to ``multiple`` (1 when the batches are all the layout will ever see)."""
    slots = tuple(
        min(b.sel, _round_up(max_neighbors(batches, b.rcut), multiple)) if b.exact else b.sel
        for b in blocks
    )
    return Layout(node_chunk=node_chunk, slots=slots)


def _round_up(n: int, multiple: int = SLOT_MULTIPLE) -> int:
    return max(multiple, -(-n // multiple) * multiple)
