"""Progress bars are for a person at a terminal: piped output holds the result only, with no
frames of a bar in it (they went to stdout, and stayed in a log or the next command's input)."""

from __future__ import annotations

from pathlib import Path

from modelyard import Client
from tests.cli.test_errors import cli


def test_transfers_print_only_their_result_when_piped(server, tmp_path: Path) -> None:
    uri = server.address
    with Client(uri) as client:
        rid = client.create_run("0").info.run_id
        client.log_text(rid, "manifest", "model/MLmodel")
        client.create_model_version("m", f"runs:/{rid}/model")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "[b].txt").write_text("b")  # a file name is not markup either
    runs = [
        (["artifacts", "upload", rid, str(src), "--uri", uri], "Uploaded 2 files\n"),
        (
            ["artifacts", "download", rid, "--dst", str(tmp_path / "d"), "--uri", uri],
            f"Downloaded to {tmp_path / 'd'}\n",
        ),
        (
            ["models", "download", "models:/m/1", "--dst", str(tmp_path / "m"), "--uri", uri],
            f"Downloaded m version 1 to {tmp_path / 'm' / 'm-v1'}\n",
        ),
    ]
    for args, printed in runs:
        result = cli(*args, env={"COLUMNS": "400"})
        assert result.returncode == 0, result.stderr
        assert (result.stdout, result.stderr) == (printed, "")
    assert (tmp_path / "d" / "sub" / "[b].txt").read_text() == "b"
