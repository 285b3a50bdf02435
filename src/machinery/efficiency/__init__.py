"""Every stage's efficiency (the source paper's Table 1 and formula (1)) and right-sizing advice."""
