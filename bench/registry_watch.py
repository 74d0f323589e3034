"""How fast a watching client sees an alias move (WatchModelEvents), end to end over gRPC.

    python bench/registry_watch.py [--moves 200]

Starts the services in this process (SQLite, a temporary home), registers two versions, then
moves an alias back and forth while a second thread watches; each delivery's delay is measured
from just before the move's call to the event's arrival. Prints JSON (the registry issue's
target: a watcher sees a move within 1 s). MLflow has no change feed to compare with: its
clients poll.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from modelyard import Client
from modelyard.services.apps import build_server
from modelyard.services.common.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moves", type=int, default=200)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="modelyard-watch-bench-"))
    server = build_server(Settings(home=home, port=0, grace_period=0))
    server.start()
    try:
        with Client(server.address) as client:
            rid = client.create_run("0").info.run_id
            client.log_text(rid, "flavors: {}", "model/MLmodel")
            for _ in range(2):
                client.create_model_version("watched", f"runs:/{rid}/model")
            since = client.list_model_events("watched")[-1].event_id
            arrived: dict[int, float] = {}
            ready = threading.Event()
            delivered = threading.Condition()

            def watch() -> None:
                with Client(server.address) as watcher:
                    stream = watcher.watch_model_events("watched", since, timeout=600)
                    ready.set()
                    for event in stream:
                        if event.event_type == "ALIAS_SET":
                            with delivered:
                                arrived[len(arrived)] = time.perf_counter()
                                delivered.notify()
                            if len(arrived) == args.moves:
                                return

            thread = threading.Thread(target=watch)
            thread.start()
            ready.wait(30)
            sent = []
            for i in range(args.moves):
                sent.append(time.perf_counter())
                client.set_registered_model_alias("watched", "champion", 1 + i % 2)

                def moved(i: int = i) -> bool:
                    return len(arrived) > i

                with delivered:  # one move in flight at a time
                    delivered.wait_for(moved, timeout=30)
            thread.join(60)
        delays = sorted((arrived[i] - sent[i]) * 1000 for i in range(len(arrived)))
        result = {
            "moves": len(delays),
            "delivery_ms": {
                "p50": round(statistics.median(delays), 2),
                "p99": round(delays[int(len(delays) * 0.99) - 1], 2),
                "max": round(delays[-1], 2),
            },
            "load": os.getloadavg(),
            "target_within_1s": delays[-1] < 1000,
        }
        print(json.dumps(result, indent=2))
    finally:
        server.stop(grace=0)
    print(f"(home {home})", file=sys.stderr)


if __name__ == "__main__":
    main()
