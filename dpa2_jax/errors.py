"""Exceptions raised by dpa2_jax. Every message names the file, field or value at fault."""


class Dpa2JaxError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(Dpa2JaxError, ValueError):
    """A data file or array is missing, malformed or inconsistent."""


class ConfigError(Dpa2JaxError, ValueError):
    """A model or training option is unknown, unsupported or inconsistent."""


class NeighborOverflowError(Dpa2JaxError, RuntimeError):
    """A padded buffer (nodes, edges, neighbors) is too small for the input."""


class UnstableDynamicsError(Dpa2JaxError, RuntimeError):
    """A model's MD runs away: non-finite numbers, or forces, temperature or energy drift
    beyond the configured limits (the distillation teacher's check)."""


class CheckpointError(Dpa2JaxError, ValueError):
    """A checkpoint or model file cannot be read or written."""


class TrainingError(Dpa2JaxError, RuntimeError):
    """Training cannot go on (a non-finite loss); earlier checkpoints are kept."""


class Interrupted(Dpa2JaxError):
    """A run stopped by SIGINT or SIGTERM after saving what it had done; ``status`` is the
    shell's exit status for that signal (130, 143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def status(self) -> int:
        return 128 + self.signum
