"""Web UI page times on a big experiment: the runs table's first page, deep pages, a run page,
and a run page whose metrics hold --history-points values each.

    python bench/ui.py [--runs 10000] [--repeat 20] [--history-points 100000]

Starts `modelyard up` (SQLite, its own home) in a subprocess, logs --runs runs (3 params and 3
metrics each, through the SDK), then times full HTTP responses of the UI's pages, and, when
Debian's chromium and Playwright are installed, the browser's time to the `load` event of the
runs page (HTML, CSS, script, and the plotly bundle from cache after the first visit). Prints
JSON; the issue's target is the runs table's first page in under 1 s with 10k runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchkit import log

from modelyard import Client
from modelyard.entities.tracking import Metric, Param

FILTERED = "filter=params.model+%3D+%27rf%27+and+metrics.auc+%3E+0.5"


def start(home: Path) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli", "up", "--home", str(home), "--port", "0",
         "--ui-port", "0", "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    services = ui = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.search(r"tracking\s*│?\s*(127\.0\.0\.1:\d+)", line):
            services = m.group(1)
        if m := re.search(r"web UI\s*│?\s*(http://\S+)", line):
            ui = m.group(1)
        if services and ui:
            return proc, services, ui
    raise RuntimeError("modelyard up did not start")


def populate(address: str, runs: int) -> str:
    with Client(address) as client:
        eid = client.create_experiment("bench-10k")

        def one(i: int) -> None:
            rid = client.create_run(eid, run_name=f"run-{i:05d}").info.run_id
            now = int(time.time() * 1000)
            client.log_batch(
                rid,
                metrics=[Metric(k, (i * 7919 % 1000) / 1000 + j, now, 0) for j, k in
                         enumerate(("auc", "loss", "f1"))],
                params=[Param("depth", str(i % 12)), Param("lr", str(0.01 * (i % 7))),
                        Param("model", "rf" if i % 2 else "gbm")],
            )  # fmt: skip
            client.set_terminated(rid)

        done = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in pool.map(one, range(runs)):
                done += 1
                if done % 1000 == 0:
                    log(f"logged {done}/{runs} runs")
        return eid


def long_history_run(address: str, eid: str, points: int) -> str:
    """A run with two metrics of `points` values each, as a long training loop logs them."""
    with Client(address) as client:
        rid = client.create_run(eid, run_name="long-history").info.run_id
        for key in ("loss", "lr"):
            client.log_batch(rid, [Metric(key, 1 / (i + 1), i, i) for i in range(points)])
            log(f"logged {points} values of {key}")
        return rid


def history_reads(address: str, rid: str, repeat: int) -> dict[str, dict[str, float]]:
    """One metric's history as the run page used to read it (every point, paged) and as it
    reads it now (the server's sample of at most 2,000), alternated in the same run."""
    whole: list[float] = []
    sampled: list[float] = []
    with Client(address) as client:
        for _ in range(repeat):
            for samples, read in (
                (whole, lambda: list(client.iter_metric_history(rid, "loss"))),
                (sampled, lambda: client.sample_metric_history(rid, "loss", 2000)),
            ):
                start = time.perf_counter()
                read()
                samples.append((time.perf_counter() - start) * 1000)
    return {
        name: {"p50_ms": round(statistics.median(v), 1), "max_ms": round(max(v), 1)}
        for name, v in (("every_point", whole), ("sample_of_2000", sampled))
    }


def fetch(url: str) -> tuple[float, str]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read().decode()
    return (time.perf_counter() - start) * 1000, body


def timed(url: str, repeat: int) -> dict[str, float]:
    fetch(url)  # warm
    samples = [fetch(url)[0] for _ in range(repeat)]
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "max_ms": round(max(samples), 1),
        "mean_ms": round(statistics.fmean(samples), 1),
    }


def deep_pages(base: str, eid: str, pages: int) -> dict[str, float]:
    """Follow "Next page" links: the time of each hop (page tokens keep them flat)."""
    url = f"{base}/experiments/{eid}"
    hops = []
    for _ in range(pages):
        elapsed, body = fetch(url)
        hops.append(elapsed)
        found = re.search(r'href="([^"]+)" class="next"', body)
        if not found:
            break
        url = base + found.group(1).replace("&amp;", "&")
    return {
        "pages": len(hops),
        "first_ms": round(hops[0], 1),
        "last_ms": round(hops[-1], 1),
        "p50_ms": round(statistics.median(hops), 1),
    }


def browser_load(url: str, repeat: int) -> dict[str, float] | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page()
        page.goto(url)  # first visit fetches plotly once; later visits use the cache
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            page.goto(url, wait_until="load")
            samples.append((time.perf_counter() - start) * 1000)
        rows = page.locator("table.runs tbody tr").count()
        browser.close()
    return {"p50_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1),
            "rows_shown": rows}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--history-points", type=int, default=100_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="modelyard-ui-bench-"))
    proc, address, ui = start(home)
    load_start = os.getloadavg()
    try:
        log(f"services {address}, UI {ui}; logging {args.runs} runs")
        t0 = time.perf_counter()
        eid = populate(address, args.runs)
        log_seconds = time.perf_counter() - t0
        with Client(address) as client:
            rid = client.search_runs([eid], max_results=1)[0].info.run_id
        long_rid = long_history_run(address, eid, args.history_points)
        base = f"{ui}/experiments/{eid}"
        result = {
            "runs": args.runs,
            "machine": {"cpus": os.cpu_count(), "load_start": load_start},
            "populate_seconds": round(log_seconds, 1),
            "runs_first_page": timed(base, args.repeat),
            "runs_sorted_by_metric": timed(base + "?order=metrics.auc+DESC", args.repeat),
            "runs_filtered": timed(base + "?" + FILTERED, args.repeat),
            "runs_deep_pages": deep_pages(ui, eid, 50),
            "run_page": timed(f"{ui}/runs/{rid}", args.repeat),
            "experiments_page": timed(f"{ui}/experiments", args.repeat),
            "run_page_two_long_metrics": timed(f"{ui}/runs/{long_rid}", min(args.repeat, 5)),
            "metric_history_read": history_reads(address, long_rid, min(args.repeat, 5)),
            "browser_runs_page_load": browser_load(base, min(args.repeat, 10)),
        }
        result["machine"]["load_end"] = os.getloadavg()
        first = result["runs_first_page"]["p50_ms"]
        result["targets"] = {"runs_first_page_under_1s": first < 1000}
        print(json.dumps(result, indent=2))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
