"""Evaluation: predictions from checkpoints, metrics, figures, scoring on real films."""
