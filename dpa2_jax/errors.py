"""Exceptions raised by dpa2_jax. Every message names the file, field or value at fault."""


class Dpa2JaxError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(Dpa2JaxError, ValueError):
    """A data file or array is missing, malformed or inconsistent."""


class ConfigError(Dpa2JaxError, ValueError):
    """A model or training option is unknown, unsupported or inconsistent."""


class NeighborOverflowError(Dpa2JaxError, RuntimeError):
    """A padded buffer (nodes, edges, neighbors) is too small for the input."""


class CheckpointError(Dpa2JaxError, ValueError):
    """A checkpoint or model file cannot be read or written."""


class TrainingError(Dpa2JaxError, RuntimeError):
    """Training cannot go on (a non-finite loss); earlier checkpoints are kept."""
