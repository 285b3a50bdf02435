"""The pipeline report: ``reports/report.md`` (for the PR comment) and a self-contained HTML."""
