"""Fitting heads: descriptor -> atomic properties."""
