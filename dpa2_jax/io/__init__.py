"""The only place that knows foreign formats: DeePMD `.dp` files and input JSON, checkpoints."""
