"""Benchmarks of the fast paths (`python -m xray_utils bench`)."""
