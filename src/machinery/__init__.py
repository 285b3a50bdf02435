"""Template machinery: the part of this repository a forker never edits.

Report rendering, Slurm offload, the model registry, the PR comment, the GitOps bump and
the ``mlops`` CLI that CI calls. It meets the example project only through files
(``model.onnx``, ``model_card.json``, ``metrics.json``, plot data), never by importing it.
"""
