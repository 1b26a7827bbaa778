"""Data: image reading, the preprocessing cache, manifests, loaders, data figures, and the sources
(demo generator, real dataset adapters, public datasets, one downloader, labelled folders)."""
