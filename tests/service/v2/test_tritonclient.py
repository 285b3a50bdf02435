"""NVIDIA's own ``tritonclient.http`` against the service, with its defaults (binary tensors
in and out) and with JSON tensors, on an image card (a tensor, no PNG) and a tabular card."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.service.conftest import PREDICT
from tests.service.v2.conftest import Served

pytestmark = pytest.mark.integration


def token() -> dict[str, str]:
    # A fresh dict per call: tritonclient adds Inference-Header-Content-Length to the headers
    # dict it is given, and a later JSON request would carry the stale length.
    return dict(PREDICT)


def _client(served: Served) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(served.host_port, network_timeout=30)


@pytest.mark.parametrize("card", ["served_image", "served_tabular"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers_what_onnx_runtime_computes(
    card: str, binary: bool, request: pytest.FixtureRequest
) -> None:
    served: Served = request.getfixturevalue(card)
    model = served.model
    client = _client(served)
    assert client.is_server_live()
    assert client.is_server_ready()
    name = model.card.name
    assert client.is_model_ready(name, headers=token())
    assert client.is_model_ready(name, served.tag, headers=token())
    metadata = client.get_model_metadata(name, headers=token())
    assert metadata["versions"] == [served.tag]
    assert metadata["inputs"] == [
        {"name": model.card.input.name, "datatype": "FP32", "shape": [-1, model.n_features]}
    ]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]

    rows = model.test_x[:7].astype(np.float32)
    tensor = triton.InferInput(model.card.input.name, list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = None
    if not binary:
        outputs = [
            triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")
        ]
    result = client.infer(name, [tensor], outputs=outputs, request_id="r-7", headers=token())
    labels, probabilities = served.expected(rows)
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == labels
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)
    response = result.get_response()
    assert response["model_name"] == name and response["model_version"] == served.tag
    assert response["id"] == "r-7"
    # The labels are the card's, and right for most held-out rows.
    assert set(labels) <= set(model.labels)
    assert np.mean(np.array(labels) == model.test_y[:7]) >= 0.5


def test_tritonclient_sees_another_version_or_name_as_not_found(served_image: Served) -> None:
    client = _client(served_image)
    name = served_image.model.card.name
    rows = served_image.model.test_x[:1].astype(np.float32)
    tensor = triton.InferInput(served_image.model.card.input.name, list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    with pytest.raises(InferenceServerException) as raised:
        client.infer(name, [tensor], model_version="exp-b", headers=token())
    assert raised.value.status() == "404"
    assert "serves 'exp-a'" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("someone-else", headers=token())
    assert raised.value.status() == "404"
    assert not client.is_model_ready(name, "exp-b", headers=token())
    with pytest.raises(InferenceServerException) as raised:
        client.infer(name, [tensor])  # no token
    assert raised.value.status() == "401"
