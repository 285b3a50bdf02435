"""The example ML project: the part of this repository you replace.

One module per DVC stage (``data``, ``train``, ``evaluate``), each reading only its own
section of ``params.yaml``. Replace them with your own data and estimator; keep writing the
files the rest of the template reads (see ``machinery.modelcard``).
"""
