"""Dashboards and alert rules as code; ``python -m monitoring.generate`` renders them."""
