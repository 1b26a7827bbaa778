"""Diagnosis: the decision rule of the chain, `Diagnoser`/`diagnose()`, the widget."""
