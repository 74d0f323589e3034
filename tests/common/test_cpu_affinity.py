"""`--cpu-affinity` / MODELYARD_CPU_AFFINITY: every thread of the server runs on the chosen CPUs,
and a list that names no usable CPU is refused before anything starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard import Client
from modelyard.services.common.cpu_affinity import format_cpus, parse_cpus
from tests.conftest import UP_ADDRESS, require, start_command


def test_cpu_lists_read_and_print_the_usual_way() -> None:
    allowed = os.sched_getaffinity(0)
    assert parse_cpus(format_cpus(allowed)) == allowed
    low = min(allowed)
    assert parse_cpus(f"{low}") == {low}
    assert parse_cpus(f" {low}-{low}, {low} ") == {low}
    assert format_cpus({0, 2, 3, 4, 7}) == "0,2-4,7"


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "0;1", "1.5"])
def test_a_malformed_list_says_what_a_list_looks_like(text: str) -> None:
    with pytest.raises(ValueError, match="such as 0, 0-3 or 0,2-3"):
        parse_cpus(text)


def test_cpus_this_process_may_not_use_are_named() -> None:
    allowed = os.sched_getaffinity(0)
    missing = max(allowed) + 1
    with pytest.raises(ValueError, match=rf"CPUs {missing} are not available.*choose from"):
        parse_cpus(f"{min(allowed)},{missing}")


def test_serve_pins_every_thread_of_the_server(tmp_path: Path) -> None:
    allowed = os.sched_getaffinity(0)
    require(len(allowed) >= 2, "pinning is only observable with two or more CPUs")
    cpu = max(allowed)
    proc, address, printed = start_command(
        ["serve", "tracking", "--port", "0", "--home", str(tmp_path), "--cpu-affinity", str(cpu)],
        UP_ADDRESS,
    )
    try:
        assert f"Pinned to CPU {cpu}" in printed
        with Client(address) as client:  # the RPC pool starts its threads on the first calls
            run_id = client.create_run("0").info.run_id
            client.log_metric(run_id, "m", 1.0)
        threads = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir()]
        assert len(threads) > 3  # grpc's, the RPC pool's, the store's: not just the main one
        assert {tid: os.sched_getaffinity(tid) for tid in threads} == {t: {cpu} for t in threads}
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
