"""Distillation: a teacher labels the configurations its own MD samples; a cheaper student
trains on them (``pipeline.py`` runs check -> explore -> label -> train -> report)."""

from dpa2_jax.distill.config import DistillConfig, distill_config, read_distill_config
from dpa2_jax.distill.pipeline import STAGES, run

__all__ = ["STAGES", "DistillConfig", "distill_config", "read_distill_config", "run"]
