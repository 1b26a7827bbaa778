"""Radiograph phantoms: deterministic, physics-based X-ray-like images of the 14 body types."""
