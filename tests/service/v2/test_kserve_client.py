"""KServe's own Python client (``kserve.InferenceRESTClient``, protocol v2) against the
service: JSON and binary tensors, image and tabular cards. The client runs in a venv of its own
(``.ci/install-kserve-client``: kserve pins protobuf below the project's 7), through
``tests/support/kserve_client/round_trip.py``."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from tests.service.conftest import PREDICT_TOKEN
from tests.service.v2.conftest import Served
from tests.support.workspace import REPO

pytestmark = pytest.mark.integration
PYTHON = REPO / ".local" / "kserve-venv" / "bin" / "python"
SCRIPT = REPO / "tests" / "support" / "kserve_client" / "round_trip.py"


@pytest.fixture(scope="session")
def kserve_python() -> str:
    subprocess.run(["bash", str(REPO / ".ci" / "install-kserve-client")], check=True)
    return str(PYTHON)


@pytest.mark.parametrize("card", ["served_image", "served_tabular"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_client_infers_what_onnx_runtime_computes(
    card: str, binary: bool, request: pytest.FixtureRequest, kserve_python: str
) -> None:
    served: Served = request.getfixturevalue(card)
    model = served.model
    rows = model.test_x[:5].astype(np.float32)
    argv = [kserve_python, str(SCRIPT), served.base, model.card.name, model.card.input.name]
    argv += [PREDICT_TOKEN, "binary" if binary else "json", json.dumps(rows.tolist())]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    assert answer["live"] and answer["ready"] and answer["model_ready"]
    labels, probabilities = served.expected(rows)
    assert answer["outputs"]["label"] == labels
    np.testing.assert_allclose(
        np.asarray(answer["outputs"]["probabilities"], dtype=np.float32).reshape(5, -1),
        probabilities,
        rtol=1e-6,
    )
    # KServe's InferResponse keeps model_name and id but drops model_version (tritonclient's
    # test checks that one).
    assert (answer["model_name"], answer["id"]) == (model.card.name, "k-1")
    status, body = answer["other_model"]
    assert status == 404 and "error" in body
