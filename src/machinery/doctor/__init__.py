"""``mlops doctor``: every CI setting checked against the real service it names (docs/doctor.md)."""
