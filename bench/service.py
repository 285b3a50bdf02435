"""``make bench-service``: /predict throughput of the service against a hand-written app, then
the large-image benchmark (``bench/large_images.py``).

Servers on one model, started side by side, each one uvicorn worker (uvloop, no access log)
pinned to core 0, loaded by ``wrk`` pinned to core 1:
  ours          ``python -m service`` as the image runs it: auth and metrics on, the header
                limit on its httptools protocol
  ours-noauth   the same with MLOPS_AUTH_ENABLED=false
  ours-stock    the app on uvicorn's stock httptools protocol (no header limit): the limit's cost
  ours-h11      the app on uvicorn's h11 (which has a header limit of its own): the alternative
  baseline      bench/baseline_app.py: the same /predict written by hand, nothing else
The request follows the model card: a multipart PNG when the card has image preprocessing, a
JSON row when it has none (a tabular fork). Configurations are interleaved, A B C D E A B C D E
…, for ``--rounds`` rounds at each concurrency, and every ratio is printed as its median over
rounds with min–max, so that a claim survives a rerun on a shared machine.
For an image model, then ours and the hand-written app again on the tabular fixture (one JSON
row): a tabular fork's /predict has a target of its own (``--skip-tabular``).
Then ``/feedback`` (``bench/feedback.py``: batches of 100 labels, and their cost on /predict p99),
the Open Inference Protocol part (``bench/v2.py``: V2 JSON and binary against a hand-written
V2 endpoint and MLServer). Writes bench/results/service.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench import feedback, large_images, v2
from bench.harness import (
    FORM_TYPE,
    REPO,
    TOKEN,
    TOKEN_SHA256,
    WRK,
    Point,
    Server,
    check_answer,
    combine,
    measure,
    model_card,
    multipart,
    publish,
    resolve_model,
    row,
    sample_picture,
    sample_rows,
    start,
    stop,
    summary,
    write_script,
)
from machinery.modelcard import ModelCard

FACTORY = ["-m", "uvicorn", "--factory", "service.main:create_app"]
RATIOS = [
    ("ours / hand-written", "ours", "baseline", 1.0),
    ("auth on / auth off", "ours", "ours-noauth", 0.95),
    ("header limit on / off", "ours", "ours-stock", 0.95),
    ("h11 / httptools", "ours-h11", "ours-stock", None),
]


TABULAR_RATIOS = [("tabular ours / hand-written", "ours-tabular", "baseline-tabular", 1.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per configuration and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (≥ 3)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument(
        "--model", default="auto", help="auto | fixture-image | fixture-tabular | a model dir"
    )
    parser.add_argument("--skip-large", action="store_true", help="no large-image benchmark")
    parser.add_argument("--skip-v2", action="store_true", help="no Open Inference Protocol part")
    parser.add_argument(
        "--skip-tabular", action="store_true", help="no tabular /predict part (image models)"
    )
    parser.add_argument("--skip-feedback", action="store_true", help="no /feedback part")
    args = parser.parse_args()
    if args.rounds < 3:
        raise SystemExit("--rounds must be at least 3")
    if not shutil.which("taskset") or not Path(WRK).is_file():
        raise SystemExit("needs taskset and wrk (make system-deps)")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    model_dir = resolve_model(args.model, work)
    card = model_card(model_dir)
    common = publish(model_dir, work)
    takes_images = card.preprocessing is not None
    points = predict_part(model_dir, common, work, args, levels, full=True)
    tabular_points: list[Point] = []
    if takes_images and not args.skip_tabular:
        # A tabular fork's /predict (JSON rows) has a target of its own: ours and the
        # hand-written app only, on the template's tabular fixture.
        tabular_dir = resolve_model("fixture-tabular", work)
        tabular_env = publish(tabular_dir, work / "tabular")
        tabular_points = predict_part(tabular_dir, tabular_env, work, args, levels, full=False)
    fed = None
    if not args.skip_feedback:
        body, content_type = request_for(card)
        fed = feedback.run(common, work, card, body, content_type, args.rounds, args.seconds)
    v2_points = [] if args.skip_v2 else v2.run(work, args.rounds, args.seconds, levels)
    large = None
    if takes_images and not args.skip_large:
        picture = sample_picture(card)
        large = large_images.run(common, work, picture, args.rounds, args.seconds * 2)
    elif not args.skip_large:
        print("\nlarge-image benchmark skipped: this model's card takes no images")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    result = {
        "points": [asdict(p) for p in points],
        "tabular": [asdict(p) for p in tabular_points],
        "v2": [asdict(p) for p in v2_points],
        "large_images": large,
        "feedback": fed,
    }
    (out / "service.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


def request_for(card: ModelCard) -> tuple[bytes, str]:
    """The request the card calls for: a multipart PNG for image preprocessing, else a JSON row."""
    if card.preprocessing is not None:
        return multipart(sample_picture(card)), FORM_TYPE
    return sample_rows(card), "application/json"


def predict_part(
    model_dir: Path,
    common: dict[str, str],
    work: Path,
    args: argparse.Namespace,
    levels: list[int],
    full: bool,
) -> list[Point]:
    """/predict with the request the card calls for: every configuration (``full``), or ours
    and the hand-written app alone (suffixed ``-tabular``)."""
    card = model_card(model_dir)
    takes_images = card.preprocessing is not None
    suffix = "" if full else "-tabular"
    body, content_type = request_for(card)
    print(f"\nmodel {model_dir} ({card.name}, {card.estimator}); request: {content_type}")
    authed = write_script(work / f"auth{suffix}.lua", body, content_type, TOKEN)
    open_ = write_script(work / f"open{suffix}.lua", body, content_type, None)
    with_token = {**common, "MLOPS_ADMIN_TOKEN_SHA256": TOKEN_SHA256}
    plan = [
        ("ours", ["-m", "service"], with_token, authed),
        ("ours-noauth", ["-m", "service"], {**common, "MLOPS_AUTH_ENABLED": "false"}, open_),
        ("ours-stock", [*FACTORY, "--http", "httptools"], with_token, authed),
        ("ours-h11", [*FACTORY, "--http", "h11"], with_token, authed),
        ("baseline", ["-m", "uvicorn", "bench.baseline_app:app", "--http", "httptools"],
         {"BENCH_MODEL_DIR": str(model_dir)}, open_),
    ]  # fmt: skip
    if not full:
        plan = [(name + suffix, *rest) for name, *rest in plan if name in ("ours", "baseline")]
    servers: dict[str, Server] = {}
    points: list[Point] = []
    rounds: dict[tuple[str, int], list[Point]] = {}
    try:
        for name, argv, env, _ in plan:
            servers[name] = start(name, argv, env, work)
        for name, _, _, script in plan:
            check_answer(
                servers[name].port, body, content_type, TOKEN if script is authed else None
            )
            measure(servers[name], "/predict", script, 8, 2)  # warm-up
        for concurrency in levels:
            for _ in range(args.rounds):
                for name, _, _, script in plan:
                    point = measure(servers[name], "/predict", script, concurrency, args.seconds)
                    rounds.setdefault((name, concurrency), []).append(point)
            for name, *_ in plan:
                points.append(combine(rounds[(name, concurrency)]))
                print(row(points[-1]), flush=True)
        if takes_images and full:
            raw = write_script(work / "raw.lua", sample_picture(card), "image/png", TOKEN)
            point = measure(
                servers["ours"], "/predict", raw, 8, args.seconds * 2, "ours image/* body"
            )
            points.append(point)
            print(row(point), flush=True)
        if full:
            ping = write_script(work / "ping.lua", None, "", None)
            for name, path in (("baseline", "/ping"), ("ours", "/health/live")):
                point = measure(servers[name], path, ping, 8, args.seconds * 2, f"{name} {path}")
                points.append(point)
                print(row(point), flush=True)
    finally:
        stop(list(servers.values()))
    summary(rounds, levels, RATIOS if full else TABULAR_RATIOS)
    return points


if __name__ == "__main__":
    main()
