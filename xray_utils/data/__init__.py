"""What the model reads: the image reader (``imageio``), manifests, the preprocessing cache,
the loaders and the data figures.  Where the images come from is :mod:`xray_utils.sources`."""
