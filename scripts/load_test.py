"""Load test of `rnnclf serve` on 127.0.0.1: latency and throughput against issue 18's targets.

    python scripts/load_test.py --checkpoint runs/default/best.pt --threads 1
    python scripts/load_test.py --checkpoint runs/default/best.pt --malformed-mix

It starts `rnnclf serve CHECKPOINT` on a free localhost port (or uses --url, which must be a
127.0.0.1/localhost address), then runs, each bounded by --requests and --seconds:
  * single-text requests at concurrency 1, 16 and 64, and 64-text requests at concurrency 8:
    p50/p99 latency, requests/s and texts/s;
  * R: the in-process `predict_split` rate on the checkpoint's test split, measured in the same
    run with the same thread count, and the ratios the targets ask for;
  * with --malformed-mix: 10,000 requests of which 1,000 malformed (counts by status; no 500s,
    every valid request answered in full);
and samples the server's resident memory (VmRSS in /proc/<pid>/status) throughout.
The client is aiohttp (asyncio) in this process, so it shares the machine with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
SERVING_LINE = re.compile(r"serving .* on (http://[^\s]+)")
FALLBACK_TEXTS = ["Oil prices climb as OPEC cuts output",
                  "The striker scored twice as the home side won the cup final",
                  "New chip doubles battery life of laptops, researchers say",
                  "Rebels and government troops clash near the capital"]


@dataclass
class Scenario:
    name: str
    concurrency: int
    texts_per_request: int
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0

    def row(self) -> dict[str, float | int | str]:
        ordered = sorted(self.latencies_ms)
        count = len(ordered)
        return {"scenario": self.name, "concurrency": self.concurrency,
                "texts_per_request": self.texts_per_request, "requests": count,
                "failures": self.failures,
                "p50_ms": round(statistics.median(ordered), 2) if count else float("nan"),
                "p99_ms": round(ordered[min(count - 1, int(0.99 * count))], 2)
                if count else float("nan"),
                "requests_per_s": round(count / self.seconds, 1),
                "texts_per_s": round(count * self.texts_per_request / self.seconds, 1)}


class RssSampler:
    """VmRSS of `pid` every `interval_s` seconds, on a thread (None when /proc is absent)."""

    def __init__(self, pid: int | None, interval_s: float = 0.25) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def start(self) -> None:
        if self.pid is not None and Path(f"/proc/{self.pid}/status").exists():
            self._thread.start()

    def read(self) -> float | None:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        found = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(found.group(1)) / 1024 if found else None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = self.read()
            if value is not None:
                self.samples.append((time.monotonic() - self._start, value))

    def stop(self) -> None:
        self._stop.set()


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "rnnclf", "serve", str(args.checkpoint), "--host",
               "127.0.0.1", "--port", "0", "--threads", str(args.threads), "--device", "cpu",
               "--reload-interval", "0", "--max-batch", str(args.max_batch),
               "--max-wait-ms", str(args.max_wait_ms)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        found = SERVING_LINE.search(line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, found.group(1)
    raise SystemExit("rnnclf serve did not start; run it by hand to see why")


def check_local(url: str) -> str:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--url must point at this machine (127.0.0.1), not {host}")
    return url.rstrip("/")


async def wait_ready(session, url: str, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/readyz") as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the server never became ready")


async def run_scenario(session, url: str, scenario: Scenario, texts: list[str],
                       max_requests: int, max_seconds: float) -> Scenario:
    counter = iter(range(max_requests))
    deadline = time.monotonic() + max_seconds

    async def client() -> None:
        for index in counter:
            if time.monotonic() > deadline:
                return
            start = index * scenario.texts_per_request
            batch = [texts[(start + k) % len(texts)] for k in range(scenario.texts_per_request)]
            began = time.perf_counter()
            async with session.post(url + "/v1/predict", json={"texts": batch}) as response:
                body = await response.json()
            elapsed = (time.perf_counter() - began) * 1000
            if response.status == 200 and len(body["predictions"]) == len(batch):
                scenario.latencies_ms.append(elapsed)
            else:
                scenario.failures += 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(scenario.concurrency)))
    scenario.seconds = time.perf_counter() - began
    return scenario


def malformed_bodies() -> list[tuple[str, str, bytes]]:
    """(method, path, body) of requests a server must answer with a 4xx."""
    return [("POST", "/v1/predict", b'{"texts": ['),
            ("POST", "/v1/predict", b'{"texts": ["caf\xe9"]}'),
            ("POST", "/v1/predict", b'{"texts": [""]}'),
            ("POST", "/v1/predict", b'{"top_k": 1}'),
            ("POST", "/v1/predict", b'{"texts": "one"}'),
            ("POST", "/v1/predict", b'{"texts": [1, 2]}'),
            ("POST", "/v1/predict", b'{"texts": ["a"], "top_k": 99}'),
            ("POST", "/v1/predict", json.dumps({"texts": ["x"] * 5000}).encode()),
            ("POST", "/v1/predict", b'{"texts": ["' + b"x" * (2 << 20) + b'"]}'),
            ("POST", "/v1/predict", b'{"texts": ["\\ud800"]}'),
            ("POST", "/v1/predict", b"[" * 50_000),
            ("POST", "/v1/predict", b""),
            ("GET", "/v1/predict", b""),
            ("GET", "/v2/nothing", b"")]


async def run_malformed_mix(session, url: str, texts: list[str], total: int,
                            malformed_every: int, concurrency: int) -> dict[str, object]:
    import aiohttp

    bad = malformed_bodies()
    statuses: dict[int, int] = {}
    valid = {"sent": 0, "answered": 0}
    bad_counts = {"sent": 0, "4xx": 0, "connection_closed": 0}
    counter = iter(range(total))

    async def client() -> None:
        for index in counter:
            if index % malformed_every == malformed_every - 1:
                method, path, body = bad[(index // malformed_every) % len(bad)]
                bad_counts["sent"] += 1
                try:
                    async with session.request(method, url + path, data=body, headers={
                            "content-type": "application/json"}) as r:
                        await r.read()
                        bad_counts["4xx"] += 400 <= r.status < 500
                except aiohttp.ClientError:  # the server may close the socket after a 413
                    bad_counts["connection_closed"] += 1
                    continue
            else:
                valid["sent"] += 1
                async with session.post(url + "/v1/predict",
                                        json={"texts": [texts[index % len(texts)]]}) as r:
                    body = await r.json(content_type=None)
                    valid["answered"] += r.status == 200 and len(body["predictions"]) == 1
            statuses[r.status] = statuses.get(r.status, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"requests": total, "seconds": round(time.perf_counter() - began, 1),
            "statuses": dict(sorted(statuses.items())), "status_500": statuses.get(500, 0),
            "valid_sent": valid["sent"], "valid_answered": valid["answered"],
            "malformed_sent": bad_counts["sent"], "malformed_4xx": bad_counts["4xx"],
            "malformed_connection_closed": bad_counts["connection_closed"]}


def in_process_rate(checkpoint: Path, threads: int, data_file: Path | None) -> dict[str, object]:
    """R: texts/s of predict_split over the checkpoint's test split, in this process."""
    import torch

    from rnnclf.data.dataset import locate_file, prepare_eval_split
    from rnnclf.inference.scoring import predict_split
    from rnnclf.runs.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    loaded = load_model(checkpoint, "cpu")
    data = loaded.config.data
    path = data_file or locate_file(data, data.test_file)
    split, _ = prepare_eval_split(data, loaded.vocab, path, label_names=loaded.label_names)
    batch_size, max_length = loaded.config.train.eval_batch_size, data.max_length
    predict_split(loaded.model, split, batch_size, max_length, torch.device("cpu"))  # warm-up
    rates = []
    for _ in range(3):
        began = time.perf_counter()
        predict_split(loaded.model, split, batch_size, max_length, torch.device("cpu"))
        rates.append(len(split.labels) / (time.perf_counter() - began))
    return {"rows": len(split.labels), "texts_per_s": round(statistics.median(rates), 1),
            "data": str(path), "threads": torch.get_num_threads()}


def request_texts(data_file: Path | None, checkpoint: Path) -> list[str]:
    """Titles + descriptions of the test file, as a client would send them."""
    import csv

    if data_file is None:
        try:
            from rnnclf.config import from_saved_dict
            from rnnclf.data.dataset import locate_file
            from rnnclf.runs.checkpoint import load_checkpoint

            config = from_saved_dict(load_checkpoint(checkpoint)["config"], source="checkpoint")
            data_file = locate_file(config.data, config.data.test_file)
        except Exception:  # any data problem: fall back to a few fixed texts
            return FALLBACK_TEXTS
    with open(data_file, newline="", encoding="utf-8") as handle:
        rows = [" ".join(row[1:]) for row in csv.reader(handle) if len(row) >= 2]
    return rows[:5000] or FALLBACK_TEXTS


def targets(rows: dict[str, dict], rate: float) -> list[dict[str, object]]:
    single1, batch8, single64 = rows["c1"], rows["c8x64"], rows["c64"]
    return [
        {"target": "c=1 p50 <= 5 ms", "measured": single1["p50_ms"],
         "ratio": round(single1["p50_ms"] / 5, 2), "met": single1["p50_ms"] <= 5},
        {"target": "c=1 p99 <= 20 ms", "measured": single1["p99_ms"],
         "ratio": round(single1["p99_ms"] / 20, 2), "met": single1["p99_ms"] <= 20},
        {"target": "64 texts x c=8 >= 0.5 R texts/s", "measured": batch8["texts_per_s"],
         "ratio": round(batch8["texts_per_s"] / rate, 3),
         "met": batch8["texts_per_s"] >= 0.5 * rate},
        {"target": "c=64 single >= 0.15 R texts/s", "measured": single64["texts_per_s"],
         "ratio": round(single64["texts_per_s"] / rate, 3),
         "met": single64["texts_per_s"] >= 0.15 * rate},
    ]


def rss_summary(sampler: RssSampler) -> dict[str, object]:
    values = [mib for _, mib in sampler.samples]
    if not values:
        return {"samples": 0}
    half = len(values) // 2
    return {"samples": len(values), "start_mib": round(values[0], 1),
            "end_mib": round(values[-1], 1), "max_mib": round(max(values), 1),
            "first_half_max_mib": round(max(values[:half] or values), 1),
            "second_half_max_mib": round(max(values[half:]), 1),
            "timeline_mib": [round(values[i * (len(values) - 1) // 10], 1) for i in range(11)]}


async def run_all(args: argparse.Namespace, url: str, sampler: RssSampler) -> dict[str, object]:
    import aiohttp

    texts = request_texts(args.data, args.checkpoint)
    connector = aiohttp.TCPConnector(limit=100)
    timeout = aiohttp.ClientTimeout(total=120)
    report: dict[str, object] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await wait_ready(session, url)
        sampler.start()
        await run_scenario(session, url, Scenario("warm-up", 4, 1), texts, 200, 30)
        if not args.malformed_only:
            plan = [("c1", Scenario("single text, concurrency 1", 1, 1)),
                    ("c16", Scenario("single text, concurrency 16", 16, 1)),
                    ("c64", Scenario("single text, concurrency 64", 64, 1)),
                    ("c8x64", Scenario("64 texts, concurrency 8", 8, 64))]
            rows = {}
            for key, scenario in plan:
                limit = args.requests if scenario.texts_per_request == 1 else args.requests // 8
                rows[key] = (await run_scenario(session, url, scenario, texts, limit,
                                                args.seconds)).row()
                print(json.dumps(rows[key]), flush=True)
            report["scenarios"] = rows
        if args.malformed_mix or args.malformed_only:
            for round_ in range(args.mix_rounds):  # more rounds: a leak keeps growing
                report[f"malformed_mix_{round_ + 1}" if round_ else "malformed_mix"] = mix = \
                    await run_malformed_mix(session, url, texts, 10_000, 10,
                                            args.mix_concurrency)
                print(json.dumps(mix), f"RSS {sampler.read()} MiB", flush=True)
    return report


def markdown(report: dict[str, object]) -> str:
    lines = []
    rate = report.get("R", {}).get("texts_per_s") if isinstance(report.get("R"), dict) else None
    if "scenarios" in report:
        lines += ["| scenario | requests | p50 ms | p99 ms | requests/s | texts/s | texts/s / R |",
                  "|---|---|---|---|---|---|---|"]
        for row in report["scenarios"].values():
            share = f"{row['texts_per_s'] / rate:.3f}" if rate else "-"
            lines.append(f"| {row['scenario']} | {row['requests']} | {row['p50_ms']} | "
                         f"{row['p99_ms']} | {row['requests_per_s']} | {row['texts_per_s']} | "
                         f"{share} |")
        lines.append(f"\nR (in-process predict_split) = {rate} texts/s")
        for item in report.get("targets", []):
            lines.append(f"- {item['target']}: {item['measured']} (ratio {item['ratio']}) "
                         f"{'met' if item['met'] else 'NOT met'}")
    for key in [key for key in report if key.startswith("malformed_mix")]:
        lines.append(f"\n{key.replace('_', ' ')}: {json.dumps(report[key])}")
    lines.append(f"server RSS (MiB): {json.dumps(report.get('rss', {}))}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="best.pt to serve and to measure R on "
                        "(default: the newest run's under $RNNCLF_RUNS_DIR or ./runs)")
    parser.add_argument("--url", help="use this running server (127.0.0.1 only)")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS")
    parser.add_argument("--data", type=Path, help="CSV of texts for requests and R "
                        "(default: the checkpoint's test file)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server and R")
    parser.add_argument("--requests", type=int, default=3000,
                        help="most requests per single-text scenario (64-text: an 8th)")
    parser.add_argument("--seconds", type=float, default=30, help="most seconds per scenario")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--malformed-mix", action="store_true",
                        help="also 10,000 requests of which 1,000 malformed")
    parser.add_argument("--malformed-only", action="store_true", help="only the mix")
    parser.add_argument("--mix-concurrency", type=int, default=32)
    parser.add_argument("--mix-rounds", type=int, default=1,
                        help="run the malformed mix this many times (RSS between rounds)")
    parser.add_argument("--json", type=Path, help="write the report here as JSON too")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(REPO))
    if args.checkpoint is None:
        from rnnclf.config.schema import default_runs_dir
        from rnnclf.runs.checkpoint import newest_run_checkpoint

        args.checkpoint = newest_run_checkpoint(default_runs_dir())
    process = None
    if args.url:
        url, pid = check_local(args.url), args.pid
    else:
        process, url = start_server(args)
        pid = process.pid
    sampler = RssSampler(pid)
    try:
        report = asyncio.run(run_all(args, url, sampler))
    finally:
        sampler.stop()
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
    report["rss"] = rss_summary(sampler)
    if "scenarios" in report:
        report["R"] = in_process_rate(args.checkpoint, args.threads, args.data)
        report["targets"] = targets(report["scenarios"], report["R"]["texts_per_s"])
    report["command"] = " ".join(["python", *sys.argv])
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
