"""A forker's replacement for ``src/example``: diabetes progression (10 tabular features),
ridge regression. Its card says ``task: regression``; no labels."""
