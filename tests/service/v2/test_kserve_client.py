"""KServe's own Python client (``kserve.InferenceRESTClient``, protocol v2) against the
service: JSON and binary tensors, image and tabular cards."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from tests.service.conftest import PREDICT
from tests.service.v2.conftest import Served

pytestmark = pytest.mark.integration


async def _round_trip(served: Served, binary: bool) -> None:
    model = served.model
    name = model.card.name
    rows = model.test_x[:5].astype(np.float32)
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    try:
        assert await client.is_server_live(served.base)
        assert await client.is_server_ready(served.base)
        assert await client.is_model_ready(served.base, name, headers=dict(PREDICT))
        tensor = InferInput(model.card.input.name, list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        request = InferRequest(name, infer_inputs=[tensor], request_id="k-1")
        response = await client.infer(served.base, request, name, headers=dict(PREDICT))
        by_name = {output.name: output for output in response.outputs}
        labels, probabilities = served.expected(rows)
        got = [v.decode() if isinstance(v, bytes) else str(v) for v in by_name["label"].data]
        assert got == labels
        np.testing.assert_allclose(
            np.asarray(by_name["probabilities"].data, dtype=np.float32).reshape(5, -1),
            probabilities,
            rtol=1e-6,
        )
        # KServe's InferResponse.from_bytes keeps model_name and id but drops model_version
        # (tritonclient's test checks that one).
        assert response.model_name == name and response.id == "k-1"
        with pytest.raises(httpx.HTTPStatusError) as raised:
            await client.infer(served.base, request, "not-this-model", headers=dict(PREDICT))
        assert raised.value.response.status_code == 404
        assert "error" in raised.value.response.json()
    finally:
        await client.close()


@pytest.mark.parametrize("card", ["served_image", "served_tabular"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_client_infers_what_onnx_runtime_computes(
    card: str, binary: bool, request: pytest.FixtureRequest
) -> None:
    asyncio.run(_round_trip(request.getfixturevalue(card), binary))
