"""Run by ``.local/kserve-venv``'s Python (KServe's client, its own pins), never imported by
pytest: one round trip against the service with ``kserve.InferenceRESTClient`` (protocol v2),
printed as JSON for tests/service/v2/test_kserve_client.py to check.

argv: base URL, model name, input name, token, "binary" or "json", rows as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(base: str, name: str, input_name: str, token: str, binary: bool, rows: list) -> dict:
    auth = {"Authorization": f"Bearer {token}"}
    data = np.asarray(rows, dtype=np.float32)
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    try:
        result: dict = {
            "live": await client.is_server_live(base),
            "ready": await client.is_server_ready(base),
            "model_ready": await client.is_model_ready(base, name, headers=dict(auth)),
        }
        tensor = InferInput(input_name, list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=binary)
        request = InferRequest(name, infer_inputs=[tensor], request_id="k-1")
        response = await client.infer(base, request, name, headers=dict(auth))
        result["model_name"], result["id"] = response.model_name, response.id
        result["outputs"] = {
            output.name: [v.decode() if isinstance(v, bytes) else v for v in output.data]
            for output in response.outputs
        }
        try:
            await client.infer(base, request, "not-this-model", headers=dict(auth))
        except httpx.HTTPStatusError as exc:
            result["other_model"] = [exc.response.status_code, exc.response.json()]
        return result
    finally:
        await client.close()


if __name__ == "__main__":
    base, name, input_name, token, mode, rows = sys.argv[1:7]
    answer = asyncio.run(main(base, name, input_name, token, mode == "binary", json.loads(rows)))
    print(json.dumps(answer, default=float))
