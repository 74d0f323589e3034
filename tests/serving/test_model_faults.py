"""A model's own faults reach its caller as a status, and never cost other callers the server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import modelyard
from modelyard import Client
from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard._gen.inference import grpc_predict_v2_pb2_grpc
from modelyard.errors import DeadlineExceeded, Internal, InvalidArgument
from modelyard.services.common import logging as mlog
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import Settings
from tests.conftest import running_server
from tests.serving import models
from tests.serving.conftest import serve, wait_pending

X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})


@pytest.fixture
def gate() -> Iterator[None]:
    models.GATE.clear()
    models.ENTERED.clear()
    models.SEEN.clear()
    yield
    models.GATE.set()  # never leave a server thread waiting


def test_a_model_that_calls_sys_exit_answers_internal(platform) -> None:
    """SystemExit is no Exception: it used to leave the call unanswered until its deadline."""
    server, client = platform
    serve(client, models.Exits(), X, "exits")
    with Client(server.address, timeout=30) as caller:
        for _ in range(2):  # and the endpoint goes on answering
            with pytest.raises(Internal) as err:
                caller.predict("exits", X.assign(a=-1.0))
            assert "failed to predict" in str(err.value) and "SystemExit" in str(err.value)
        assert caller.predict("exits", X)["predictions"] == pytest.approx([1.0, 2.0, 3.0])


def test_values_the_model_refuses_are_the_callers_to_fix(platform) -> None:
    """NaN or infinity sent to a model that refuses them (scikit-learn's "Input X contains NaN")
    was INTERNAL, a server fault to report. It is INVALID_ARGUMENT naming the column; a model
    that takes NaN answers it, and a model's own fault stays INTERNAL with a request id, NaN in
    the request or not."""
    server, client = platform
    y = [1.0, 2.0, 3.0]
    serve(client, LinearRegression().fit(X, y), X, "linear")
    for bad in (np.nan, np.inf):
        with pytest.raises(InvalidArgument) as refused:
            client.predict("linear", X.assign(b=[4.0, bad, 6.0]))
        assert refused.value.field == "b" and "(row 1)" in refused.value.message
        assert "model linear version 1 refuses" in refused.value.message
        assert "replace missing or infinite values" in refused.value.message
    with grpc.insecure_channel(server.address) as channel:  # a 2-D tensor names the column too
        request = oip.ModelInferRequest(model_name="linear")
        tensor = request.inputs.add(name="features", datatype="FP64", shape=[1, 2])
        tensor.contents.fp64_contents.extend([np.nan, 4.0])
        with pytest.raises(grpc.RpcError) as err:
            grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "input 'a' holds NaN (row 0)" in err.value.details()
    nan_ok = HistGradientBoostingRegressor(max_iter=3, min_samples_leaf=1).fit(X, y)
    serve(client, nan_ok, X, "takes-nan")
    with_nan = X.assign(b=[4.0, np.nan, 6.0])
    answer = client.predict("takes-nan", with_nan)["predictions"]
    assert answer.tolist() == nan_ok.predict(with_nan).tolist()
    serve(client, models.Faulty(), X, "faulty")
    with pytest.raises(Internal) as fault:
        client.predict("faulty", X.assign(a=[-1.0, 2.0, 3.0], b=[np.nan, 5.0, 6.0]))
    assert "failed to predict: ValueError: operands" in fault.value.message
    assert fault.value.request_id


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # the models' own casts
def test_refusals_of_nan_by_common_libraries_are_the_callers_to_fix(platform) -> None:
    """Only ValueErrors worded "NaN"/"inf" were taken for a model's refusal of the caller's
    values; scipy's "must not contain infs or NaNs", statsmodels' MissingDataError (no
    ValueError), pandas' OverflowError for infinity cast to Int64, and a tree's float32 "value
    too large" were INTERNAL, a server fault to report. Each is INVALID_ARGUMENT naming the
    column and row; a NaN the model made itself from finite values stays INTERNAL."""
    _server, client = platform
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    y = 2 * train["a"] + rng.normal(size=40)
    cases = {
        "solves": (models.Solves(), np.nan, "ValueError: array must not contain infs or NaNs"),
        "counts": (models.Counts(), np.nan, "IntCastingNaNError: "),
        "nullable-counts": (models.Counts(nullable=True), np.inf, "OverflowError: "),
        "forecasts": (models.Forecasts().fit(train, y), np.nan, "MissingDataError: exog"),
        "forest": (RandomForestRegressor(n_estimators=2).fit(train, y), 1e300, "float32 range"),
        "boosted": (models.Boosted().fit(train, y), np.inf, "Input data contains `inf`"),
    }
    for name, (model, _bad, _said) in cases.items():
        serve(client, model, X, name)
    for name, (_model, bad, said) in cases.items():
        with pytest.raises(InvalidArgument) as refused:
            client.predict(name, X.assign(a=[1.0, bad, 3.0]))
        assert refused.value.field == "a", (name, refused.value.message)
        assert f"which model {name} version 1 refuses" in refused.value.message
        assert "(row 1)" in refused.value.message and said in refused.value.message
    assert client.predict("counts", X)["predictions"].tolist() == [1.0, 2.0, 3.0]
    logs = make_pipeline(FunctionTransformer(np.log), LinearRegression()).fit(X, [1.0, 2.0, 3.0])
    serve(client, logs, X, "logs")
    with pytest.raises(Internal) as fault:  # its own NaN, from a log of -1.0
        client.predict("logs", X.assign(a=[-1.0, 2.0, 3.0]))
    assert "Input X contains NaN" in fault.value.message and fault.value.request_id


def test_a_models_own_fault_worded_like_a_refusal_of_nan_stays_internal(
    platform, caplog: pytest.LogCaptureFixture
) -> None:
    """Any ValueError with the word "NaN", "inf" or "missing values" in it was taken for the
    model's refusal of a NaN in the request: a model's own fault saying so was answered
    INVALID_ARGUMENT, the caller's to fix, and nobody was told. Only libraries' own phrases for
    that refusal are; these stay INTERNAL, with a request id, and are logged."""
    _server, client = platform
    faults = {
        "weights": "weights are NaN after the warm-up step; retrain the model",
        "lookup": "region table has missing values for 'eu'",
        "budget": "an inf budget is not supported by this scorer",
    }
    for name, message in faults.items():
        serve(client, models.Faulty(message), X, name)
    with caplog.at_level(logging.ERROR, logger="modelyard.services.serving.service"):
        for name, message in faults.items():
            with pytest.raises(Internal) as fault:
                client.predict(name, X.assign(a=[-1.0, 2.0, 3.0], b=[np.nan, np.inf, 6.0]))
            assert f"failed to predict: ValueError: {message}" in fault.value.message
            assert fault.value.request_id
    logged = [(r.getMessage(), r.exc_info[0] if r.exc_info else None) for r in caplog.records]
    assert len(logged) == len(faults), logged
    for (said, kind), (name, message) in zip(logged, faults.items(), strict=True):
        assert name in said and message in said and kind is ValueError, said


def test_a_models_fault_is_logged_under_the_request_id_it_answers(platform) -> None:
    """A model's own fault was answered INTERNAL, "report the request id to the operator", yet
    nothing was logged under that id (the operator had the model's one-line message at most),
    and a ModelStreamInfer answer's error_message carried no request id at all. Both now carry
    it, and the fault is logged under it with the model's traceback."""
    server, client = platform
    serve(client, models.Faulty(), X, "faulty")
    seen: list[tuple[str | None, logging.LogRecord]] = []

    class Tagged(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((mlog.request_id.get(), record))

    logger = logging.getLogger("modelyard.services.serving.service")
    handler = Tagged()
    logger.addHandler(handler)
    request = oip.ModelInferRequest(model_name="faulty", id="s1")
    for name, value in (("a", -1.0), ("b", 4.0)):
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[1])
        tensor.contents.fp64_contents.append(value)
    try:
        with pytest.raises(Internal) as fault:
            client.predict("faulty", X.assign(a=-1.0))
        with grpc.insecure_channel(server.address) as channel:
            stream = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer
            (answer,) = stream(iter([request]), metadata=(("x-request-id", "st-7"),), timeout=60)
    finally:
        logger.removeHandler(handler)
    assert "failed to predict: ValueError" in answer.error_message
    assert "(request id st-7)" in answer.error_message and answer.infer_response.id == "s1"
    errors = {rid: record for rid, record in seen if record.levelno == logging.ERROR}
    assert set(errors) == {fault.value.request_id, "st-7"}
    for record in errors.values():
        assert record.exc_info and record.exc_info[0] is ValueError
        assert "faulty" in record.getMessage()


@pytest.fixture
def few_threads(tmp_path: Path) -> Iterator[tuple[ModelyardServer, Client]]:
    """A server with 8 RPC threads, so a handful of stuck calls would hold them all."""
    settings = Settings(home=tmp_path, port=0, grace_period=0, core_workers=2, max_workers=8)
    with running_server(settings) as server, Client(server.address) as client:
        modelyard.set_tracking_uri(server.address)
        yield server, client
        modelyard.set_tracking_uri("127.0.0.1:1")


def test_callers_that_give_up_behind_a_slow_model_free_the_server(few_threads, gate) -> None:
    """20 callers with a 1 s deadline queue behind a call the model holds. They used to hold
    the server's threads until the model finished; now they leave at their deadline (that they
    are then never run is test_batching's), and other endpoints' callers are answered."""
    server, client = few_threads
    serve(client, models.Gated(), X, "slow")
    serve(client, LinearRegression().fit(X, [1.0, 2.0, 3.0]), X, "fast")
    answer: dict[str, np.ndarray] = {}
    held = threading.Thread(target=lambda: answer.update(client.predict("slow", X.assign(a=-1.0))))
    held.start()
    assert models.ENTERED.wait(60)
    with Client(server.address, timeout=1) as impatient, ThreadPoolExecutor(20) as pool:
        calls = [pool.submit(impatient.predict, "slow", X.assign(a=float(i))) for i in range(20)]
        for call in calls:
            with pytest.raises(DeadlineExceeded):
                call.result(60)
    # With the old queue, this waited for the held call (ten seconds is a bound, not a timing).
    with Client(server.address, timeout=10) as other:
        assert other.predict("fast", X)["predictions"] == pytest.approx([1.0, 2.0, 3.0])
    models.GATE.set()
    held.join(60)
    assert answer["predictions"].tolist() == [-1.0, -1.0, -1.0]


def test_callers_without_a_deadline_wait_behind_a_running_call(platform, gate) -> None:
    """tritonclient sets no deadline by default; grpc then reports ~9.2e18 s remaining, and the
    callers that had to wait behind a running call got INTERNAL (an OverflowError)."""
    server, client = platform
    serve(client, models.Gated(), X, "patient")
    with grpc.insecure_channel(server.address) as channel:
        infer = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer

        def call(first: float) -> grpc.Future:
            request = oip.ModelInferRequest(model_name="patient")
            tensor = request.inputs.add(name="features", datatype="FP64", shape=[1, 2])
            tensor.contents.fp64_contents.extend([first, 4.0])
            return infer.future(request)  # no timeout, as tritonclient's infer()

        held = call(-1.0)
        assert models.ENTERED.wait(60)
        waiting = [call(float(i)) for i in range(6)]
        wait_pending(client, "patient", 6)
        models.GATE.set()
        answers = [f.result(60) for f in [held, *waiting]]
        wait_pending(client, "patient", 0)
    assert [list(a.outputs[0].contents.fp64_contents) for a in answers] == [
        [-1.0],
        *([float(i)] for i in range(6)),
    ]
