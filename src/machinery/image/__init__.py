"""The inference image: build ``service/Dockerfile`` without a daemon, push it, record its digest,
and describe its Python packages as a CycloneDX SBOM (``mlops image ...``)."""
