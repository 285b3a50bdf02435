"""The Open Inference Protocol part of ``make bench-service``: the service's V2 routes (JSON
and Triton's binary tensors) against a hand-written FastAPI V2 endpoint over the same ONNX
session (``bench/baseline_app.py``) and against MLServer, the V2 reference server, serving the
same fitted estimator with its scikit-learn runtime (``bench/mlserver.in``, its own venv).

The model is the tabular fixture (``tests/support/fixture_models.py``), fitted once here: the
ONNX export for ours and the hand-written app, the estimator itself for MLServer. Every server
gets the same one-row request asking for the label and the probabilities. Configurations are
interleaved in rounds as in ``bench/service.py`` and each ratio is a median over rounds.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    REPO,
    TOKEN,
    TOKEN_SHA256,
    Point,
    Server,
    combine,
    free_port,
    measure,
    publish,
    row,
    start,
    stop,
    summary,
    write_script,
)
from machinery.modelcard import ModelCard

MLSERVER_VENV = REPO / ".local" / "mlserver-venv"
HEADER = "Inference-Header-Content-Length"
RATIOS = [
    ("V2 JSON ours / hand-written", "ours-v2-json", "baseline-v2-json", 1.0),
    ("V2 JSON ours / MLServer", "ours-v2-json", "mlserver-v2-json", 2.0),
    ("V2 binary / V2 JSON (ours)", "ours-v2-binary", "ours-v2-json", None),
]


def json_request(card: ModelCard, outputs: list[str] | None = None) -> bytes:
    features = card.n_features
    document: dict[str, Any] = {
        "inputs": [
            {"name": card.input.name, "shape": [1, features], "datatype": "FP32",
             "data": [0.5] * features}  # fmt: skip
        ]
    }
    if outputs:
        document["outputs"] = [{"name": name} for name in outputs]
    return json.dumps(document).encode()


def binary_request(card: ModelCard) -> tuple[bytes, int]:
    """What ``tritonclient.http`` sends by default: binary input, binary outputs."""
    import numpy as np

    features = card.n_features
    header = json.dumps(
        {
            "inputs": [
                {"name": card.input.name, "shape": [1, features], "datatype": "FP32",
                 "parameters": {"binary_data_size": 4 * features}}  # fmt: skip
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + np.full(features, 0.5, dtype="<f4").tobytes(), len(header)


def ensure_mlserver() -> Path:
    subprocess.run(["bash", str(REPO / "bench" / "install-mlserver")], check=True)
    return MLSERVER_VENV / "bin" / "mlserver"


def start_mlserver(model_dir: Path, estimator: Path, name: str, work: Path) -> Server:
    """MLServer on one worker process (``parallel_workers: 0``), pinned to core 0 like ours."""
    root = work / "mlserver"
    (root / name).mkdir(parents=True)
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(estimator), "version": "bench"},
    }
    (root / name / "model-settings.json").write_text(json.dumps(model_settings))
    log = (work / "mlserver.log").open("wb")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", str(ensure_mlserver()), "start", str(root)],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import httpx

    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{port}/v2/models/{name}/ready"
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return Server("mlserver", port, proc)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"MLServer did not start; see {work / 'mlserver.log'}")
        time.sleep(0.2)


def check(port: int, path: str, body: bytes, headers: dict[str, str]) -> None:
    import httpx

    answer = httpx.post(f"http://127.0.0.1:{port}{path}", content=body, headers=headers)
    if answer.status_code != 200:
        raise SystemExit(f"{path} on :{port} answered {answer.status_code}: {answer.text[:300]}")


def run(work: Path, rounds: int, seconds: float, levels: list[int]) -> list[Point]:
    from tests.support.fixture_models import ESTIMATOR_FILENAME, build_fixture_model

    fixture = build_fixture_model(work / "v2-model", kind="tabular", keep_fitted=True)
    card = fixture.card
    model_dir = fixture.model_dir
    env = {**publish(model_dir, work / "v2"), "MLOPS_ADMIN_TOKEN_SHA256": TOKEN_SHA256}
    path = f"/v2/models/{card.name}/infer"
    ours_json = json_request(card)
    binary, header_length = binary_request(card)
    peer_json = json_request(card, ["predict", "predict_proba"])
    extra = {HEADER: str(header_length)}
    scripts = {
        "ours-v2-json": write_script(work / "v2json.lua", ours_json, "application/json", TOKEN),
        "ours-v2-binary": write_script(
            work / "v2bin.lua", binary, "application/octet-stream", TOKEN, extra
        ),
        "baseline-v2-json": write_script(work / "v2base.lua", ours_json, "application/json", None),
        "mlserver-v2-json": write_script(work / "v2ml.lua", peer_json, "application/json", None),
    }
    servers: dict[str, Server] = {}
    points: list[Point] = []
    measured: dict[tuple[str, int], list[Point]] = {}
    try:
        ours = start("ours-v2", ["-m", "service"], env, work)
        servers["ours-v2-json"] = servers["ours-v2-binary"] = ours
        servers["baseline-v2-json"] = start(
            "baseline-v2",
            ["-m", "uvicorn", "bench.baseline_app:app", "--http", "httptools"],
            {"BENCH_MODEL_DIR": str(model_dir)},
            work,
        )
        servers["mlserver-v2-json"] = start_mlserver(
            model_dir, model_dir / ESTIMATOR_FILENAME, card.name, work
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        check(ours.port, path, ours_json, auth)
        check(ours.port, path, binary, {**auth, **extra})
        check(servers["baseline-v2-json"].port, path, ours_json, {})
        check(servers["mlserver-v2-json"].port, path, peer_json, {})
        names = list(scripts)
        for name in names:
            measure(servers[name], path, scripts[name], 8, 2)  # warm-up
        for concurrency in levels:
            for _ in range(rounds):
                for name in names:
                    point = measure(servers[name], path, scripts[name], concurrency, seconds, name)
                    measured.setdefault((name, concurrency), []).append(point)
            for name in names:
                points.append(combine(measured[(name, concurrency)]))
                print(row(points[-1]), flush=True)
    finally:
        stop(list({id(s): s for s in servers.values()}.values()))
    summary(measured, levels, RATIOS)
    return points
