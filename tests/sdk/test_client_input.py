"""The Client checks what it converts before anything is sent, and MlflowClient's `synchronous`.

Bad input must fail in the SDK with InvalidArgument naming the field, never reach the server as a
silently different value (None stored as 0.0) nor surface as a protobuf TypeError/ValueError.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from modelyard import Client
from modelyard.client._transport import Transport
from modelyard.client.tracking import RunOperations
from modelyard.entities import Metric, Param, RunStatus, RunTag, ViewType
from modelyard.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NoServer,
    NotFound,
)
from modelyard.features.client import FeatureStoreClient
from modelyard.services.common.server import ModelyardServer
from tests import silent_peer


@pytest.fixture
def run_id(client: Client) -> str:
    return client.create_run(client.create_experiment("input")).info.run_id


@pytest.fixture
def unreachable() -> Iterator[Client]:
    """A client whose every call would fail as Unavailable: a check that raises InvalidArgument
    instead ran before anything was sent."""
    with Client("127.0.0.1:1", timeout=2) as c:
        yield c


# -- metric values -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "abc", "1.5", True, [1.0], 1 + 2j])
def test_log_batch_refuses_a_metric_value_that_is_not_a_number(
    client: Client, run_id: str, value: object
) -> None:
    good = Metric("ok", 1.0, 1_000, 0)
    with pytest.raises(InvalidArgument, match=r"metrics\[1\]\.value") as err:
        client.log_batch(run_id, metrics=[good, Metric("nv", value, 0, 0)])  # type: ignore[arg-type]
    assert err.value.field == "metrics[1].value"
    assert "number" in str(err.value)
    # All or nothing: the good metric before it was not sent either.
    assert client.get_run(run_id).data.metrics == {}


def test_log_batch_checks_every_metric_before_sending_the_first_chunk(
    client: Client, run_id: str
) -> None:
    metrics = [Metric("m", float(i), 1_000, i) for i in range(1_500)]  # two LogBatch calls
    metrics[1_200] = Metric("m", None, 1_000, 1_200)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"metrics\[1200\]\.value"):
        client.log_batch(run_id, metrics=metrics)
    assert client.get_metric_history(run_id, "m") == []


@pytest.mark.parametrize("value", [None, "abc", False])
def test_log_metric_refuses_a_value_that_is_not_a_number(
    unreachable: Client, value: object
) -> None:
    with pytest.raises(InvalidArgument, match="value") as err:
        unreachable.log_metric("0" * 32, "m", value)  # type: ignore[arg-type]
    assert err.value.field == "value"
    assert "could not convert" not in str(err.value)


def test_numbers_of_every_kind_are_logged_as_floats(client: Client, run_id: str) -> None:
    client.log_metric(run_id, "int", 3)
    # Numpy's numbers are taken, as MLflow takes them.
    np32, step = np.float32(0.5), np.int64(2)
    client.log_metric(run_id, "np32", np32, step=step)
    client.log_metric(run_id, "nan", float("nan"))
    npint = Metric("npint", np.int64(7), np.int64(1_000), 1)  # type: ignore[arg-type]  # numpy, too
    client.log_batch(run_id, metrics=[npint])
    got = client.get_run(run_id).data.metrics
    assert (got["int"], got["np32"], got["npint"]) == (3.0, 0.5, 7.0)
    assert got["nan"] != got["nan"]
    assert client.get_metric_history(run_id, "np32")[0].step == 2


def test_decimal_metric_values_are_logged_as_floats(client: Client, run_id: str) -> None:
    """A Decimal is a number to MLflow (a loss summed from a database column); a signaling NaN
    and one past a double's range are refused by name, as an int past it is."""
    client.log_metric(run_id, "dec", decimal.Decimal("0.125"))
    client.log_batch(run_id, metrics=[Metric("dnan", decimal.Decimal("NaN"), 1_000, 0)])  # type: ignore[arg-type]
    got = client.get_run(run_id).data.metrics
    assert got["dec"] == 0.125 and got["dnan"] != got["dnan"]
    for bad, words in (("sNaN", "number"), ("1e400", "too large")):
        with pytest.raises(InvalidArgument, match=words) as err:
            client.log_metric(run_id, "bad", decimal.Decimal(bad))
        assert err.value.field == "value"
    assert "bad" not in client.get_run(run_id).data.metrics


@pytest.mark.parametrize("value", [10**10, -(10**10), 2.5, "10", True])
def test_a_page_size_protobuf_cannot_hold_is_named(unreachable: Client, value: object) -> None:
    """max_results=10**10 was protobuf's bare ValueError 'Value out of range', naming no field."""
    calls: dict[str, list[Callable[[], object]]] = {
        "max_results": [
            lambda: unreachable.search_runs(["0"], max_results=value),  # type: ignore[arg-type]
            lambda: unreachable.search_experiments(max_results=value),  # type: ignore[arg-type]
            lambda: unreachable.search_registered_models(max_results=value),  # type: ignore[arg-type]
            lambda: unreachable.search_model_versions(max_results=value),  # type: ignore[arg-type]
            lambda: unreachable.list_audit_events(max_results=value),  # type: ignore[arg-type]
            lambda: unreachable.get_inference_log("ep", max_results=value),  # type: ignore[arg-type]
        ],
        "max_points": [lambda: unreachable.sample_metric_history("0" * 32, "m", value)],  # type: ignore[arg-type]
        "page_size": [lambda: list(unreachable.iter_metric_history("0" * 32, "m", value))],  # type: ignore[arg-type]
    }
    for field, attempts in calls.items():
        for attempt in attempts:
            with pytest.raises(InvalidArgument) as err:
                attempt()
            assert err.value.field == field


@pytest.mark.parametrize("value", [0, -1])
def test_a_search_page_of_no_runs_is_refused_as_mlflow_does(
    client: Client, unreachable: Client, value: int
) -> None:
    """search_runs(max_results=0) and search_experiments(max_results=0) sent the int32's unset
    value, so the server answered with its default page (up to 1000); MLflow refuses a page
    size under 1. The wire keeps 0 as 'the default' (proto3 optional would be FILE-breaking),
    so the SDK refuses it before sending; None still asks for the default page."""
    eid = client.create_experiment("pages")
    for _ in range(3):
        client.create_run(eid)
    for c in (client, unreachable):
        with pytest.raises(InvalidArgument, match="1 or more") as err:
            c.search_runs([eid], max_results=value)
        assert err.value.field == "max_results"
        with pytest.raises(InvalidArgument, match="1 or more") as err:
            c.search_experiments(max_results=value)
        assert err.value.field == "max_results"
    assert len(client.search_runs([eid], max_results=1)) == 1
    assert len(client.search_experiments(max_results=None, filter_string="name = 'pages'")) == 1


@pytest.mark.parametrize("value", [0, -1])
def test_every_page_size_under_one_is_refused_before_sending(
    unreachable: Client, value: int
) -> None:
    """The registry's searches, model events, audit events and the inference log sent 0 as the
    unset int32 too, and got the server's default page (100 to 10000 results) for it."""
    calls: list[Callable[[], object]] = [
        lambda: unreachable.search_registered_models(max_results=value),
        lambda: unreachable.search_model_versions(max_results=value),
        lambda: unreachable.list_model_events(max_results=value),
        lambda: unreachable.list_audit_events(max_results=value),
        lambda: unreachable.get_inference_log("ep", max_results=value),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="1 or more") as err:
            call()
        assert err.value.field == "max_results"


def test_a_view_type_is_a_view_type_or_its_mlflow_name(client: Client, unreachable: Client) -> None:
    """run_view_type="all" was a bare ValueError from int(), naming no field; MLflow's names
    for view types (ViewType.from_string's) now select that view, and anything else is
    refused by field before a call is made."""
    eid = client.create_experiment("views")
    kept, gone = (client.create_run(eid).info.run_id for _ in range(2))
    client.delete_run(gone)
    for view, want in (("all", {kept, gone}), ("DELETED_ONLY", {gone}), (3, {kept, gone})):
        assert {r.info.run_id for r in client.search_runs([eid], run_view_type=view)} == want
    names = {e.name for e in client.search_experiments(view_type="active_only")}
    assert "views" in names
    for bad in ("everything", "", 7, 2.0, True, False, [3]):
        with pytest.raises(InvalidArgument, match="active_only") as err:
            unreachable.search_runs([eid], run_view_type=bad)  # type: ignore[arg-type]
        assert err.value.field == "run_view_type"
        with pytest.raises(InvalidArgument, match="active_only") as err:
            unreachable.search_experiments(view_type=bad)  # type: ignore[arg-type]
        assert err.value.field == "view_type"


@pytest.mark.parametrize("value", [10**20, -(10**20), 2.5, "10", True])
def test_an_event_id_protobuf_cannot_hold_is_named(unreachable: Client, value: object) -> None:
    """since_event_id=10**20 was protobuf's bare ValueError 'Value out of range', naming no
    field."""
    calls: dict[str, list[Callable[[], object]]] = {
        "since_event_id": [
            lambda: unreachable.list_audit_events(since_event_id=value),  # type: ignore[arg-type]
            lambda: unreachable.list_model_events(since_event_id=value),  # type: ignore[arg-type]
            lambda: next(unreachable.watch_model_events(since_event_id=value)),  # type: ignore[arg-type]
        ],
        "since_record_id": [
            lambda: unreachable.get_inference_log("ep", since_record_id=value),  # type: ignore[arg-type]
        ],
    }
    for field, attempts in calls.items():
        for attempt in attempts:
            with pytest.raises(InvalidArgument) as err:
                attempt()
            assert err.value.field == field


@pytest.mark.parametrize("value", ["abc", "v2", "2.0", "²", 2.5, True, 10**20, None])
def test_a_version_that_is_not_a_version_number_is_named(
    unreachable: Client, value: object
) -> None:
    """int(version) took 2.5 and True as versions 2 and 1 (delete_model_version(m, 2.5)
    deleted version 2), and "abc" or 10**20 were a bare ValueError naming no field."""
    calls: list[Callable[[], object]] = [
        lambda: unreachable.get_model_version("m", value),  # type: ignore[arg-type]
        lambda: unreachable.update_model_version("m", value, "d"),  # type: ignore[arg-type]
        lambda: unreachable.delete_model_version("m", value),  # type: ignore[arg-type]
        lambda: unreachable.set_model_version_tag("m", value, "k", "v"),  # type: ignore[arg-type]
        lambda: unreachable.delete_model_version_tag("m", value, "k"),  # type: ignore[arg-type]
        lambda: unreachable.transition_model_version_stage("m", value, "Staging"),  # type: ignore[arg-type]
        lambda: unreachable.set_registered_model_alias("m", "a", value),  # type: ignore[arg-type]
        lambda: unreachable.list_model_version_artifacts("m", value),  # type: ignore[arg-type]
        lambda: unreachable.get_model_version_lineage("m", value),  # type: ignore[arg-type]
    ]
    for attempt in calls:
        with pytest.raises(InvalidArgument) as err:
            attempt()
        assert err.value.field == "version"


def test_a_version_may_be_given_as_its_digits(client: Client, run_id: str) -> None:
    """As MlflowClient takes it: "2" (or " 2 ") is version 2."""
    client.log_text(run_id, "flavors: {}", "model/MLmodel")
    for _ in range(2):
        client.create_model_version("digits", f"runs:/{run_id}/model")
    assert client.get_model_version("digits", "2").version == 2
    assert client.get_model_version("digits", " 2 ").version == 2


def test_a_model_uri_with_digits_int_cannot_read_is_not_a_version(unreachable: Client) -> None:
    """'models:/m/²' passed isdigit() and failed int() with a bare ValueError."""
    from modelyard.models.uri import resolve_model_version

    with pytest.raises(InvalidArgument, match="not a version, alias or stage"):
        resolve_model_version("models:/m/²", unreachable)


def test_an_update_without_a_description_is_refused_not_a_clearing(
    client: Client, run_id: str
) -> None:
    """update_registered_model(name) and update_model_version(name, v) sent description "" and
    cleared it; MlflowClient refuses None ("no new field values"). '' still clears."""
    client.log_text(run_id, "flavors: {}", "model/MLmodel")
    client.create_model_version("described", f"runs:/{run_id}/model", description="v1 notes")
    client.update_registered_model("described", "the model")
    for update in (
        lambda: client.update_registered_model("described"),
        lambda: client.update_model_version("described", 1),
        lambda: client.update_model_version("described", 1, 7),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidArgument) as err:
            update()
        assert err.value.field == "description"
    assert client.get_registered_model("described").description == "the model"
    assert client.get_model_version("described", 1).description == "v1 notes"
    assert client.update_model_version("described", 1, "").description == ""


# -- timestamps, steps, statuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"timestamp": 10**20}, "timestamp", "0001-01-01 to 9999-12-31"),
        ({"timestamp": 1.7e12}, "timestamp", "milliseconds"),
        ({"step": 1.5}, "step", "integer"),
        ({"step": 2**63}, "step", "64-bit"),
    ],
)
def test_log_metric_names_a_bad_timestamp_or_step(
    unreachable: Client, kwargs: dict[str, object], field: str, expected: str
) -> None:
    with pytest.raises(InvalidArgument, match=expected) as err:
        unreachable.log_metric("0" * 32, "m", 1.0, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
    assert "Timestamp is not valid" not in str(err.value)


def test_log_batch_names_the_metric_with_a_bad_timestamp(unreachable: Client) -> None:
    metrics = [Metric("m", 1.0, 1_000, 0), Metric("m", 1.0, -(10**20), 1)]
    with pytest.raises(InvalidArgument, match="0001-01-01") as err:
        unreachable.log_batch("0" * 32, metrics=metrics)
    assert err.value.field == "metrics[1].timestamp"


def test_create_run_names_a_bad_start_time(client: Client, unreachable: Client) -> None:
    with pytest.raises(InvalidArgument, match="0001-01-01 to 9999-12-31") as err:
        unreachable.create_run("0", start_time=10**20)
    assert err.value.field == "start_time"
    eid = client.create_experiment("times")
    assert client.create_run(eid, start_time=1_000).info.start_time == 1_000


def test_update_run_lists_the_valid_statuses(unreachable: Client) -> None:
    with pytest.raises(
        InvalidArgument, match="RUNNING, SCHEDULED, FINISHED, FAILED or KILLED"
    ) as e:
        unreachable.update_run("0" * 32, status="DONE")
    assert e.value.field == "status"
    with pytest.raises(InvalidArgument, match="end_time") as e:
        unreachable.update_run("0" * 32, end_time=10**20)
    assert e.value.field == "end_time"


# -- synchronous=False ---------------------------------------------------------------------------


def queued(op: RunOperations | None) -> RunOperations:
    """A synchronous=False call's RunOperations: the hints say `| None`, for synchronous calls."""
    assert isinstance(op, RunOperations), op
    return op


def test_synchronous_default_and_true_log_at_once(client: Client, run_id: str) -> None:
    assert client.log_metric(run_id, "m", 1.0, synchronous=True) is None
    assert client.log_param(run_id, "p", 5, synchronous=None) == 5
    assert client.set_tag(run_id, "t", "x", synchronous=True) is None
    assert client.log_batch(run_id, params=[Param("q", "1")], synchronous=True) is None
    data = client.get_run(run_id).data
    assert (data.metrics, data.params["p"], data.tags["t"]) == ({"m": 1.0}, "5", "x")


def test_asynchronous_calls_run_in_submission_order(client: Client, run_id: str) -> None:
    ops = [
        queued(client.log_metric(run_id, "m", float(i), step=i, synchronous=False))
        for i in range(50)
    ]
    ops += [queued(client.set_tag(run_id, "last", str(i), synchronous=False)) for i in range(20)]
    ops.append(queued(client.log_param(run_id, "p", "v", synchronous=False)))
    ops.append(
        queued(
            client.log_batch(
                run_id,
                metrics=[Metric("b", 2.0, 1_000, 0)],
                tags=[RunTag("bt", "y")],
                synchronous=False,
            )
        )
    )
    # One worker, first in first out: once the last call is done, all before it are too.
    ops[-1].wait()
    run = client.get_run(run_id)
    assert run.data.tags["last"] == "19" and run.data.tags["bt"] == "y"
    assert run.data.params == {"p": "v"} and run.data.metrics["b"] == 2.0
    assert [m.value for m in client.get_metric_history(run_id, "m")] == [
        float(i) for i in range(50)
    ]
    for op in ops:
        assert op.wait() is None  # type: ignore[func-returns-value]  # checks the hint's None


def test_wait_raises_the_error_of_an_asynchronous_call(client: Client, run_id: str) -> None:
    missing = queued(client.log_metric("f" * 32, "m", 1.0, synchronous=False))
    after = queued(client.set_tag(run_id, "after", "ok", synchronous=False))
    with pytest.raises(NotFound):
        missing.wait()
    after.wait()  # a failed call does not stop the ones queued after it
    assert client.get_run(run_id).data.tags["after"] == "ok"


def test_closing_the_client_waits_for_its_queued_calls(
    server: ModelyardServer, client: Client, run_id: str
) -> None:
    with Client(server.address) as queued:
        for i in range(50):
            queued.log_metric(run_id, "queued", float(i), step=i, synchronous=False)
    assert [m.step for m in client.get_metric_history(run_id, "queued")] == list(range(50))


def test_a_metric_time_before_the_epoch_is_refused_before_sending(unreachable: Client) -> None:
    """The server refuses a negative metric timestamp (as MLflow does); queued for a background
    batch, the refusal came only when the run ended. The SDK refuses it in the caller."""
    with pytest.raises(InvalidArgument, match="before 1970") as err:
        unreachable.log_metric("0" * 32, "m", 1.0, timestamp=-5, synchronous=False)
    assert err.value.field == "timestamp"
    with pytest.raises(InvalidArgument, match="before 1970") as err:
        batch = [Metric("m", 1.0, 0, 0), Metric("m", 1.0, -1, 1)]
        unreachable.log_batch("0" * 32, metrics=batch, synchronous=False)
    assert err.value.field == "metrics[1].timestamp"


def test_asynchronous_calls_check_their_input_at_once(unreachable: Client) -> None:
    with pytest.raises(InvalidArgument, match=r"metrics\[0\]\.value"):
        unreachable.log_batch("0" * 32, metrics=[Metric("m", None, 0, 0)], synchronous=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="step"):
        unreachable.log_metric("0" * 32, "m", 1.0, step=0.5, synchronous=False)  # type: ignore[arg-type]


# -- MLflow's entity helpers ---------------------------------------------------------------------


def test_run_status_and_view_type_strings() -> None:
    assert RunStatus.from_string("FINISHED") is RunStatus.FINISHED
    assert RunStatus.to_string(RunStatus.KILLED) == "KILLED"
    assert RunStatus.all_status() == list(RunStatus)
    # MLflow's RunStatus.is_terminated(status) on the class, a property on a status.
    terminated = [
        RunStatus.is_terminated(s)  # type: ignore[operator]  # a descriptor mypy takes for a member
        for s in ("RUNNING", "FINISHED", RunStatus.KILLED)
    ]
    assert terminated == [False, True, True]
    assert RunStatus.FAILED.is_terminated and not RunStatus.SCHEDULED.is_terminated
    with pytest.raises(ValueError, match="RUNNING"):
        RunStatus.from_string("DONE")
    assert ViewType.from_string("deleted_only") is ViewType.DELETED_ONLY
    assert ViewType.to_string(ViewType.ALL) == "all"
    with pytest.raises(ValueError, match="active_only"):
        ViewType.from_string("everything")


def test_run_to_dictionary(client: Client, run_id: str) -> None:
    client.log_batch(run_id, metrics=[Metric("m", 0.5, 1_000, 1)], params=[Param("p", "1")])
    run = client.get_run(run_id)
    d = run.to_dictionary()
    assert d["info"]["run_id"] == d["info"]["run_uuid"] == run_id
    assert d["info"]["status"] == "RUNNING" and type(d["info"]["status"]) is str
    assert d["info"]["lifecycle_stage"] == "active"
    assert d["data"] == {"metrics": {"m": 0.5}, "params": {"p": "1"}, "tags": run.data.tags}
    assert d["inputs"] == {"dataset_inputs": []}


def test_a_call_no_server_answers_says_how_to_start_one(unreachable: Client) -> None:
    with pytest.raises(NoServer, match="modelyard up") as err:
        unreachable.search_experiments()
    assert "127.0.0.1:1" in err.value.message


def test_errors_carry_mlflows_error_codes(client: Client, run_id: str) -> None:
    """MLflow code compares MlflowException.error_code with MLflow's names."""
    client.create_experiment("twice")
    with pytest.raises(AlreadyExists) as exists:
        client.create_experiment("twice")
    with pytest.raises(NotFound) as missing:
        client.get_run("0" * 32)
    with pytest.raises(InvalidArgument) as bad:
        client.log_metric(run_id, "bad key!", 1.0)
    client.delete_run(run_id)
    with pytest.raises(FailedPrecondition) as deleted:
        client.log_metric(run_id, "m", 1.0)
    assert [e.value.error_code for e in (exists, missing, bad, deleted)] == [
        "RESOURCE_ALREADY_EXISTS",
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
        "INVALID_PARAMETER_VALUE",  # as MLflow's store refuses a write to a deleted run
    ]
    assert missing.value.code.name == "NOT_FOUND"  # the gRPC status it travelled as


def test_one_order_by_clause_may_be_passed_as_a_string(client: Client) -> None:
    """order_by="metrics.rmse DESC" used to go out as its characters, and the server answered
    about those ("unexpected character '.' at position 0"); it is that one clause now."""
    experiment_id = client.create_experiment("ordered")
    for value in (0.2, 0.9, 0.5):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_metric(run_id, "rmse", value)
    runs = client.search_runs(experiment_id, order_by="metrics.rmse DESC")
    assert [r.data.metrics["rmse"] for r in runs] == [0.9, 0.5, 0.2]
    client.create_experiment("a-first")
    names = [e.name for e in client.search_experiments(order_by="name")]
    assert names == sorted(names) and "a-first" in names
    for name in ("m-b", "m-a"):
        client.create_registered_model(name)
    models = client.search_registered_models(order_by="name DESC")
    assert [m.name for m in models] == ["m-b", "m-a"]


def test_log_artifact_takes_the_root_as_slash_as_log_artifacts_does(
    client: Client, run_id: str, tmp_path: Path
) -> None:
    """artifact_path="/" made the absolute '/<name>', refused; log_artifacts took it as the
    artifact root. Both put the file at the root now."""
    (tmp_path / "report.txt").write_text("report")
    assert client.log_artifact(run_id, tmp_path / "report.txt", "/").path == "report.txt"
    assert client.log_artifact(run_id, tmp_path / "report.txt", "/reports/").path == (
        "reports/report.txt"
    )


def test_a_key_that_is_not_a_string_is_named(unreachable: Client) -> None:
    """An int key used to reach protobuf and fail as a TypeError naming neither field nor key
    ('bad argument type for built-in operation'); the SDK refuses it first, naming both."""
    run_id = "0" * 32
    calls = {
        "key": [
            lambda: unreachable.log_metric(run_id, 5, 1.0),  # type: ignore[arg-type]
            lambda: unreachable.log_param(run_id, 5, 1),  # type: ignore[arg-type]
            lambda: unreachable.set_tag(run_id, 5, "x"),  # type: ignore[arg-type]
        ],
        "metrics[1].key": [
            lambda: unreachable.log_batch(
                run_id,
                metrics=[Metric("ok", 1.0, 1, 0), Metric(7, 1.0, 1, 0)],  # type: ignore[arg-type]
            )
        ],
        "params.key": [lambda: unreachable.log_batch(run_id, params=[Param(5, "1")])],  # type: ignore[arg-type]
        "tags.key": [
            lambda: unreachable.log_batch(run_id, tags=[RunTag(5, "1")]),  # type: ignore[arg-type]
            lambda: unreachable.create_run("0", tags={5: "x"}),  # type: ignore[dict-item]
        ],
    }
    for field, field_calls in calls.items():
        for call in field_calls:
            with pytest.raises(
                InvalidArgument, match=r"(5|7) is of type int; keys are strings"
            ) as err:
                call()
            assert err.value.field == field


def test_a_metric_value_too_large_for_a_double_is_refused_by_name(
    client: Client, run_id: str
) -> None:
    """float(10**400) overflows: the caller gets InvalidArgument naming the field and key."""
    with pytest.raises(InvalidArgument) as err:
        client.log_metric(run_id, "huge", 10**400)
    assert err.value.field == "value" and "'huge'" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        client.log_batch(
            run_id, metrics=[Metric("ok", 1.0, 1_000, 0), Metric("big", -(10**400), 0, 0)]
        )
    assert err.value.field == "metrics[1].value" and "'big'" in str(err.value)
    assert len(str(err.value)) < 400  # the 401 digits are not pasted into the message
    assert client.get_run(run_id).data.metrics == {}


def test_a_download_onto_a_file_names_the_destination(
    client: Client, run_id: str, tmp_path: Path
) -> None:
    """A dst_path that is an existing file was a bare FileExistsError from mkdir."""
    client.log_text(run_id, "a", "model/a.txt")
    client.create_registered_model("dl")
    client.create_model_version("dl", f"runs:/{run_id}/model", run_id=run_id)
    taken = tmp_path / "taken"
    taken.write_text("mine")
    attempts: list[Callable[[], object]] = [
        lambda: client.download_artifacts(run_id, "", taken),
        lambda: client.download_artifacts(run_id, "model", taken / "below"),
        lambda: client.download_model_version("dl", 1, taken),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidArgument, match=str(taken)) as err:
            attempt()
        assert err.value.field == "dst_path"
    assert taken.read_text() == "mine"
    (tmp_path / "out" / "a.txt").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="would replace the directory"):
        client.download_artifacts(run_id, "model/a.txt", tmp_path / "out")


def test_a_timeout_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TIMEOUT", "soon")
    with pytest.raises(InvalidArgument, match="MODELYARD_TIMEOUT='soon'") as err:
        Client("127.0.0.1:1")
    assert err.value.field == "MODELYARD_TIMEOUT"


class PublicOnly(grpc.Channel):
    """A channel offering only grpc's public API, as a library wrapping grpc's (tracing, a test
    double) may: its multi-callables are plain functions, without grpc's private attributes."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def _wrapped(self, kind: str, method: str, *args: Any, **kwargs: Any) -> Any:
        call = getattr(self._channel, kind)(method, *args, **kwargs)
        return lambda *a, **kw: call(*a, **kw)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped("unary_unary", method, *args, **kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped("unary_stream", method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped("stream_unary", method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped("stream_stream", method, *args, **kwargs)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PublicOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_a_hung_service_is_named_whatever_the_channel() -> None:
    """The service a timed-out call waited on was read from a private attribute of grpc's
    multi-callables: over any other channel (one wrapped for tracing, say) every timeout
    blamed "the Modelyard service". Stubs made by the Transport keep the name themselves."""
    with silent_peer.silent_port() as port:
        transport = Transport(f"127.0.0.1:{port}", timeout=0.5)
        transport.channel = PublicOnly(transport.channel)
        client = Client.over(transport)
        calls: dict[str, Callable[[], object]] = {
            "tracking": client.search_experiments,
            "registry": client.search_registered_models,
            "serving": client.list_endpoints,
            "auth": client.whoami,
            "features": FeatureStoreClient(transport=transport).list_entities,
            "tracking (stream)": lambda: client.open_artifact("0" * 32, "a.txt", timeout=0.5),
        }
        try:
            for label, call in calls.items():
                service = label.split()[0]
                with pytest.raises(DeadlineExceeded) as err:
                    call()
                assert err.value.message.startswith(
                    f"the {service} service at 127.0.0.1:{port} did not answer within 0.5 s"
                ), label
                assert err.value.resource_name == service, label
        finally:
            transport.close()
