"""Offload a DVC stage to a Slurm cluster (transports none, local, ssh)."""
