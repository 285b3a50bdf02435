"""A real local single-node Slurm with accounting and an SSH login node."""
