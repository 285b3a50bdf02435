"""Sweeps: a parameter grid run as one Slurm job array (or here), each point a DVC experiment."""
