"""Explanation: Grad-CAM, its localisation scores and heatmap figures."""
