"""A forker's replacement for ``src/example``: wine (13 tabular features), gradient boosting."""
