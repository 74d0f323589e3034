"""Materialization and SQL sources hold a batch of a view's rows in memory, not all of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Both scripts: their peak memory, and a feature store server in the process.
_SERVER = """def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024


server = build_server(Settings(home=home / "home", port=0, grace_period=0), ("features",))
server.start()
entity = Entity(name="e", join_keys=["k"])"""

# Materializes `rows` entities of 4 FLOAT64 features through a feature store server in a fresh
# process; prints how much its peak resident memory grew during the call, in MB.
_MATERIALIZE_MEMORY = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from modelyard.features import Entity, FeatureStoreClient, FeatureView, Field, FileSource, Float64
from modelyard.services.apps import build_server
from modelyard.services.common.settings import Settings

home, rows = Path(sys.argv[1]), int(sys.argv[2])
day = datetime(2026, 1, 1, tzinfo=UTC)
features = [f"f{i}" for i in range(4)]
data = {"k": np.arange(rows), "ts": pd.Timestamp(day)} | {f: np.random.rand(rows) for f in features}
pd.DataFrame(data).to_parquet(home / "big.parquet")
pd.DataFrame(data).head(1).to_parquet(home / "one.parquet")
del data


{server}
schema = [Field(f, Float64) for f in features]
views = [
    FeatureView(n, [entity], schema, FileSource(str(home / f"{n}.parquet"), "ts"))
    for n in ("one", "big")
]
with FeatureStoreClient(server.address) as store:
    store.apply([entity, *views])
    store.materialize(day - timedelta(days=1), day + timedelta(days=1), ["one"])  # warm
    before = peak()
    (run,) = store.materialize(day - timedelta(days=1), day + timedelta(days=1), ["big"])
    assert run.rows == rows, run
    print(peak() - before)
server.stop(grace=0)
""".replace("{server}", _SERVER)


def _grown_mb(script: str, tmp_path: Path, rows: int = 300_000) -> tuple[int, str]:
    """Run `script` on `rows` rows in a fresh process: the MB its server grew by (the last line
    it prints), and everything it printed."""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(rows)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1]), out.stdout


def test_materializing_a_large_view_holds_a_batch_in_memory(tmp_path: Path) -> None:
    """The window was read whole into Python values and written at once: 1M entities of 10
    features grew the server by 1.6 GB, so a large view could OOM-kill the pod. It now goes in
    batches: 300k entities of 4 features grew it by 337 MB, now by 65 MB."""
    grown, out = _grown_mb(_MATERIALIZE_MEMORY, tmp_path)
    assert grown < 150, out


# Reads a SQLite source of `rows` rows for a training set of 3 entity rows, in a fresh process;
# prints how much its peak resident memory grew during the call, in MB.
_SQL_SOURCE_MEMORY = """
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from modelyard.features import Entity, FeatureStoreClient, FeatureView, Field, Float64, SqlSource
from modelyard.services.apps import build_server
from modelyard.services.common.settings import Settings

home, rows = Path(sys.argv[1]), int(sys.argv[2])
day = datetime(2026, 1, 1, tzinfo=UTC)
db = sqlite3.connect(home / "warehouse.db")
for table, size in (("small", 3), ("stats", rows)):
    db.execute(f"CREATE TABLE {table} (k INTEGER, ts TEXT, f0 REAL, f1 REAL, note TEXT)")
    db.executemany(
        f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)",
        ((i, (day + timedelta(seconds=i)).isoformat(), i / 3, i / 7, f"{i}") for i in range(size)),
    )
db.commit()
db.close()


{server}
schema = [Field("f0", Float64), Field("f1", Float64)]
views = [
    FeatureView(t, [entity], schema, SqlSource(f"sqlite:///{home / 'warehouse.db'}", t, "ts"))
    for t in ("small", "stats")
]
entity_rows = pd.DataFrame({"k": [0, 1, 2], "event_timestamp": [day + timedelta(days=9)] * 3})
with FeatureStoreClient(server.address) as store:
    store.apply([entity, *views])
    store.get_historical_features(entity_rows, ["small:f0"]).to_arrow()  # warm
    before = peak()
    found = store.get_historical_features(entity_rows, ["stats:f0"]).to_arrow()
    assert found["f0"].to_pylist() == [0, 1 / 3, 2 / 3], found
    print(peak() - before)
server.stop(grace=0)
""".replace("{server}", _SERVER)


def test_a_sql_source_is_read_in_batches(tmp_path: Path) -> None:
    """A SQL source was fetched whole as Python rows, then copied into Arrow: a PostgreSQL table
    of 2M rows (135 MB as Arrow) grew the server by 1.9 GB for a training set of 3 rows. Rows
    now come through a server-side cursor where the driver has one, a batch at a time, into
    Arrow: 300k rows of SQLite grew it by 166 MB, now by 72 MB."""
    grown, out = _grown_mb(_SQL_SOURCE_MEMORY, tmp_path)
    assert grown < 115, out


def test_a_sql_source_streams_to_duckdb(tmp_path: Path) -> None:
    """A SQL source's batches were gathered into one Arrow table for DuckDB to read: in batches
    of 5,000 rows, 600k rows grew the server by 56 MB (300k by 34). They now stream to DuckDB
    as it reads them, the connection open meanwhile: 16 MB for either."""
    small_batches = "sql_sources._SQL_BATCH_ROWS = 5000\nhome, rows = Path"
    script = _SQL_SOURCE_MEMORY.replace("home, rows = Path", small_batches).replace(
        "from modelyard.services.apps import build_server",
        "from modelyard.services.apps import build_server\n"
        "from modelyard.services.feature_store.offline import sql_sources",
    )
    grown, out = _grown_mb(script, tmp_path, 600_000)
    assert grown < 30, out
