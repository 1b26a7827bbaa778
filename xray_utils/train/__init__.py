"""Training: Catalyst runs of the three modules, checkpoints, resume."""
