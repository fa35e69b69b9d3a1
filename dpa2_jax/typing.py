"""Type aliases and the glossary of dimension names used in docstrings.

Dimensions (in shape brackets throughout the package):
  n_graph      frames in a batch (padding graph included)
  n_node       atoms in a batch, summed over graphs (padding nodes included)
  n_edge       directed center-neighbor edges (padding edges included)
  sel          neighbor slots per center atom (DeePMD's ``nsel``)
  n_type       number of element types in the model's type map
  tebd_dim     width of the type embedding
  g1_dim       width of the single-atom representation g1
  g2_dim       width of the pair representation g2
  axis_neuron  number of embedding channels kept in the G^T R R^T G< contraction

Symbols: g1 single-atom features, g2 pair features, h2 = r_ij / |r_ij| * s(r_ij) (the
equivariant pair part of the environment matrix), sw the smooth switch.
"""

from typing import Any

import jax
import numpy as np

Array = jax.Array
NDArray = np.ndarray
PRNGKey = jax.Array
Rng = np.random.Generator  # host-side random numbers (parameter initialisation)
Params = dict[str, Any]
