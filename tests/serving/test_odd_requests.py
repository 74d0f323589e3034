"""Requests and answers at the edges of the Open Inference Protocol: each either works as a
user would expect or gets a status naming the field at fault, never INTERNAL for the caller's
doing and never a wrong answer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import modelyard
import modelyard.sklearn
from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard._gen.inference import grpc_predict_v2_pb2_grpc
from modelyard.entities.serving import ServedModel
from modelyard.errors import InvalidArgument
from modelyard.models.signature import ColumnSpec, Signature, TensorSpec
from tests.serving import models
from tests.serving.conftest import wait_ready

Infer = Callable[..., oip.ModelInferResponse]  # ModelInfer(request, timeout=...)
COLORS = pd.DataFrame({"color": ["red", "blue", "red", "green"], "size": ["s", "l", "l", "s"]})


def _serve(client, model, name: str, example, signature: Signature | None = None) -> None:
    with modelyard.start_run():
        modelyard.sklearn.log_model(
            model, "model", input_example=example, signature=signature, registered_model_name=name
        )
    client.create_endpoint(name, [ServedModel(f"models:/{name}/1")])
    wait_ready(client, name)


def test_columns_the_model_does_not_have_are_answered_without_and_logged_once(
    platform, caplog: pytest.LogCaptureFixture
) -> None:
    """A table with columns the signature lacks (an id, a label, a misspelt optional column)
    was answered without them and nothing said so. It still is, as MLflow's pyfunc answers (a
    KServe/MLServer user's MLflow model drops them so, and frames carrying ids are common), but
    the server logs it, once per set of such columns, naming them and what the model takes."""
    _server, client = platform
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 1.0]})
    _serve(client, LinearRegression().fit(frame, [1, 2]), "line3", frame[:1])
    with caplog.at_level(logging.WARNING, logger="modelyard.services.serving.model"):
        for extra in ("id", "id", "label"):
            sent = pd.DataFrame({"a": [1.0], "b": [0.0], extra: ["x"]})
            assert client.predict("line3", sent)["predictions"].tolist() == pytest.approx([1.0])
        assert client.predict("line3", frame[:1])["predictions"].tolist() == pytest.approx([1.0])
    said = [r.getMessage() for r in caplog.records if "ignores input columns" in r.getMessage()]
    assert len(said) == 2, said
    assert "['id']" in said[0] and "['label']" in said[1] and "['a', 'b']" in said[0], said


@pytest.fixture
def infer(platform) -> Iterator[Infer]:
    server, _client = platform
    with grpc.insecure_channel(server.address) as channel:
        yield grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer


def _request(name: str, **tensors: tuple[str, list[int], str, list]) -> oip.ModelInferRequest:
    """tensors: input name -> (datatype, shape, contents field, values)."""
    request = oip.ModelInferRequest(model_name=name)
    for input_name, (datatype, shape, field, values) in tensors.items():
        tensor = request.inputs.add(name=input_name, datatype=datatype, shape=shape)
        getattr(tensor.contents, field).extend(values)
    return request


def _refused(infer: Infer, request: oip.ModelInferRequest) -> str:
    with pytest.raises(grpc.RpcError) as err:
        infer(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details()


@pytest.fixture
def colors(platform) -> LogisticRegression:
    _server, client = platform
    encode = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["color", "size"]))
    model = make_pipeline(encode, LogisticRegression()).fit(COLORS, [1, 0, 1, 0])
    _serve(client, model, "colors", COLORS)
    return model


def test_text_in_one_2d_tensor_answers_as_in_columns(infer, colors) -> None:
    """A [rows, 2] BYTES tensor reached the model as bytes, which the encoder took for unknown
    categories: every answer was the same, with status OK."""
    expected = colors.predict(COLORS).tolist()
    cells = [v.encode() for row in COLORS.itertuples(index=False) for v in row]
    table = _request("colors", features=("BYTES", [4, 2], "bytes_contents", cells))
    assert list(infer(table, timeout=30).outputs[0].contents.int64_contents) == expected
    by_column = _request(
        "colors",
        color=("BYTES", [4], "bytes_contents", [v.encode() for v in COLORS["color"]]),
        size=("BYTES", [4], "bytes_contents", [v.encode() for v in COLORS["size"]]),
    )
    assert list(infer(by_column, timeout=30).outputs[0].contents.int64_contents) == expected


def test_the_sdk_refuses_missing_texts_instead_of_sending_none(platform, colors) -> None:
    """A text column with a missing value (None, or NaN as read_csv makes it) went as the text
    'None' or 'nan': a category the encoder ignored, and an answer with status OK."""
    _server, client = platform
    for missing in (None, np.nan, pd.NA):
        frame = COLORS.astype(object).copy()
        frame.loc[2, "color"] = missing
        with pytest.raises(InvalidArgument) as err:
            client.predict("colors", frame)
        assert err.value.field == "color" and "position 2" in err.value.message
    answers = client.predict("colors", COLORS.fillna("red"))["predictions"]
    assert answers.tolist() == colors.predict(COLORS).tolist()


def test_the_sdk_refuses_nullable_integers_with_missing_values(platform) -> None:
    """A pandas Int64 column with <NA> went as float64: NaN, and integers beyond 2**53 rounded
    (9007199254740993 answered as ...992, status OK), or, for a long column, a refusal speaking
    of doubles the caller never sent. It is refused naming the column and saying what to do;
    without <NA> it goes as the integers it holds."""
    _server, client = platform
    X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    _serve(client, models.Gated(), "first", X)  # answers column a
    big = 2**53 + 1
    for column in (
        pd.Series([big, None], dtype="Int64"),
        pd.Series([True, None], dtype="boolean"),
    ):
        for data in (X.assign(a=column), {"a": column, "b": X["b"]}):
            with pytest.raises(InvalidArgument) as err:
                client.predict("first", data)
            assert err.value.field == "a"
            assert "missing value (<NA>) at position 1" in str(err.value)
            assert f"({column.dtype})" in str(err.value) and "fillna" in str(err.value)
    whole = client.predict("first", X.assign(a=pd.Series([7, 8], dtype="Int64")))
    assert whole["predictions"].tolist() == [7.0, 8.0]


def test_the_sdk_takes_records_and_mlflow_payloads_as_tables(platform, colors) -> None:
    """Records (a list of dicts, MLflow's usual input) went as one tensor of the dicts' text,
    refused as "input 'input' has shape [4]"; a dict inside a column went as its text."""
    _server, client = platform
    expected = colors.predict(COLORS).tolist()
    records = COLORS.to_dict(orient="records")
    for data in (
        records,
        {"dataframe_records": records},
        {"dataframe_split": COLORS.to_dict(orient="split")},
    ):
        assert client.predict("colors", data)["predictions"].tolist() == expected
    with pytest.raises(InvalidArgument) as err:
        client.predict("colors", {"color": [{"red": 1}], "size": ["s"]})
    assert err.value.field == "color" and "holds a dict" in err.value.message
    with pytest.raises(InvalidArgument, match="dataframe_split"):
        client.predict("colors", {"dataframe_split": {"rows": []}})


def test_text_that_is_no_utf8_names_the_input(infer, colors) -> None:
    for request in (
        _request(
            "colors",
            color=("BYTES", [1], "bytes_contents", [b"\xff\xfe"]),
            size=("BYTES", [1], "bytes_contents", [b"s"]),
        ),
        _request("colors", features=("BYTES", [1, 2], "bytes_contents", [b"\xff", b"s"])),
    ):
        assert "'color'" in _refused(infer, request)


def test_requests_at_the_edges_name_the_field(infer, colors, platform) -> None:
    _server, client = platform
    X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    _serve(client, LogisticRegression().fit(X, [0, 1]), "numbers", X)
    small = _request("numbers", features=("UINT8", [1, 2], "uint_contents", [300, 1]))
    assert "value 300 does not fit UINT8" in _refused(infer, small)
    huge = _request("numbers", features=("FP64", [0, 2**62], "fp64_contents", []))
    assert "inputs[0].shape" in _refused(infer, huge)
    empty = _request("numbers", features=("FP64", [0, 2], "fp64_contents", []))
    assert "no rows" in _refused(infer, empty)
    ask = _request("numbers", features=("FP64", [1, 2], "fp64_contents", [1.0, 2.0]))
    ask.outputs.add(name="nope")
    assert "outputs[0].name" in _refused(infer, ask)
    both = _request("numbers", features=("FP64", [1, 2], "fp64_contents", [1.0, 2.0]))
    both.raw_input_contents.append(np.array([1.0, 2.0]).tobytes())
    assert "one way" in _refused(infer, both)


def test_binary_columns_stay_bytes_and_times_are_read_from_iso_text(infer, platform) -> None:
    _server, client = platform
    example = pd.DataFrame({"blob": [b"\x00\x01"], "when": [pd.Timestamp("2026-01-02")]})
    signature = Signature(
        inputs=(ColumnSpec("blob", "binary"), ColumnSpec("when", "datetime")),
        outputs=(ColumnSpec("", "string"),),
    )
    _serve(client, models.Kinds().fit(example), "kinds", example, signature)
    request = _request(
        "kinds",
        blob=("BYTES", [2], "bytes_contents", [b"\xff\x00", b"ok"]),
        when=("BYTES", [2], "bytes_contents", [b"2025-03-04T05:06:07", b"2027-01-01"]),
    )
    answer = infer(request, timeout=30).outputs[0].contents.bytes_contents
    assert list(answer) == [b"bytes/2025", b"bytes/2027"]
    bad_time = _request(
        "kinds",
        blob=("BYTES", [1], "bytes_contents", [b"x"]),
        when=("BYTES", [1], "bytes_contents", [b"yesterday"]),
    )
    assert "'when'" in _refused(infer, bad_time)
    # The SDK sends a DataFrame's times as that text (it refused datetime64, naming no input).
    frame = pd.DataFrame(
        {
            "blob": [b"\x01", b"ok"],
            "when": pd.to_datetime(["2025-03-04T05:06:07", "2027-01-01T00:00:00"]),
        }
    )
    assert client.predict("kinds", frame)["predictions"].tolist() == ["bytes/2025", "bytes/2027"]
    frame.loc[1, "when"] = pd.NaT
    with pytest.raises(InvalidArgument, match="'when' has a missing value"):
        client.predict("kinds", frame)


def test_an_optional_column_may_be_left_out(infer, platform) -> None:
    _server, client = platform
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    signature = Signature(
        inputs=(ColumnSpec("a", "double"), ColumnSpec("b", "double", required=False))
    )
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    _serve(client, model, "optional", X, signature)
    request = _request("optional", a=("FP64", [4], "fp64_contents", X["a"].tolist()))
    answer = infer(request, timeout=30).outputs[0].contents.int64_contents
    assert list(answer) == model.predict(X).tolist()


def test_odd_answers_travel_or_are_the_models_fault(infer, platform) -> None:
    _server, client = platform
    X = pd.DataFrame({"a": [1.0, 2.0]})
    for kind in ("times", "numbered", "ragged"):
        _serve(
            client, models.Answers(kind), kind, X, Signature(inputs=(ColumnSpec("a", "double"),))
        )
    request = _request("times", a=("FP64", [2], "fp64_contents", [1.0, 2.0]))
    times = infer(request, timeout=30).outputs[0]
    assert times.datatype == "BYTES"
    assert list(times.contents.bytes_contents) == [b"2026-12-06T17:30:00"] * 2
    request.model_name = "numbered"
    assert [o.name for o in infer(request, timeout=30).outputs] == ["0", "1"]
    request.model_name = "ragged"
    with pytest.raises(grpc.RpcError) as err:
        infer(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "model ragged version 1 returned list that is no tensor" in err.value.details()


def test_a_signature_with_a_type_that_does_not_exist_is_refused_when_made() -> None:
    with pytest.raises(InvalidArgument, match="'decimal'"):
        ColumnSpec("a", "decimal")
    with pytest.raises(InvalidArgument, match="'nonsense'"):
        TensorSpec("nonsense", (-1,))


def test_a_table_sent_to_a_model_logged_from_an_array_is_its_rows(platform, iris) -> None:
    """A DataFrame goes as one tensor per column; a model logged from a numpy example takes one
    array. The columns are put side by side as its rows, as MLflow's pyfunc takes a frame for a
    tensor model (the SDK asked the model's inputs first, an extra call for every predict).
    Tensors that are no table's columns are refused, saying what to send."""
    _server, client = platform
    X, y = iris
    array = X.to_numpy()
    with modelyard.start_run():
        modelyard.sklearn.log_model(
            LogisticRegression(max_iter=500).fit(array, y),
            "model",
            input_example=array[:3],
            registered_model_name="from-array",
        )
    client.create_endpoint("from-array", [ServedModel(model_uri="models:/from-array/1")])
    wait_ready(client, "from-array")
    expected = list(LogisticRegression(max_iter=500).fit(array, y).predict(array[:2]))
    assert list(client.predict("from-array", X.head(2).to_numpy())["predictions"]) == expected
    assert list(client.predict("from-array", X.head(2))["predictions"]) == expected
    columns = {c: X.head(2)[c].to_numpy() for c in X.columns}
    assert list(client.predict("from-array", columns)["predictions"]) == expected
    columns[X.columns[0]] = X.head(3)[X.columns[0]].to_numpy()  # one column longer
    with pytest.raises(InvalidArgument) as err:
        client.predict("from-array", columns)
    assert "takes one input tensor" in str(err.value) and "send the rows as one tensor" in str(
        err.value
    )


def test_a_tables_columns_are_checked_one_by_one_before_they_become_rows(platform) -> None:
    """A DataFrame's columns, put side by side for a model logged from a float64 array, were
    stacked as they came: a bool column became 1.0, and an integer beyond 2**53 beside a float
    column was rounded, each answered with status OK. Each column is cast as the model's array
    is, and refused naming it where that would change it."""
    _server, client = platform
    with modelyard.start_run():
        modelyard.sklearn.log_model(
            models.Scores(), "model", input_example=np.ones((4, 2)), registered_model_name="echo"
        )
    client.create_endpoint("echo", [ServedModel("models:/echo/1")])
    wait_ready(client, "echo")
    big = np.array([2**53 + 1, 1], dtype=np.int64)
    for column, said in (([True, False], "true/false flags"), (big, "beyond +-2**53")):
        with pytest.raises(InvalidArgument) as err:
            client.predict("echo", pd.DataFrame({"a": column, "b": [0.5, 0.25]}))
        assert err.value.field == "a" and said in err.value.message
        assert err.value.message.startswith("input 'a': ")
    small = pd.DataFrame({"a": np.array([3, 1], dtype=np.int64), "b": [0.5, 0.25]})
    assert client.predict("echo", small)["predictions"].tolist() == [[3.0, 0.5], [1.0, 0.25]]


def test_a_one_column_table_is_the_array_of_a_model_logged_from_one(infer, platform) -> None:
    """A one-column DataFrame sent to a model logged from a 1-D array (texts) or a [rows, 1]
    one was refused: "model has no input 'review'". MLflow's pyfunc takes the column as the
    array; so does serving, for a request that says its inputs are a table's columns (MLServer's
    content_type "pd", which the SDK sends). A lone tensor under another name is still refused."""
    _server, client = platform
    texts = np.array(["good film", "bad film", "great plot", "awful acting"] * 5)
    words = make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts, ["pos", "neg"] * 10)
    x = np.arange(20.0).reshape(-1, 1)
    line = LinearRegression().fit(x, 2 * x[:, 0] + 1)
    with modelyard.start_run():
        for model, example, name in ((words, texts[:3], "words"), (line, x[:3], "line")):
            modelyard.sklearn.log_model(
                model, "model", input_example=example, registered_model_name=name
            )
    for name in ("words", "line"):
        client.create_endpoint(name, [ServedModel(f"models:/{name}/1")])
        wait_ready(client, name)
    reviews = pd.DataFrame({"review": ["good plot", "awful film"]})
    for data in (reviews, reviews.to_dict(orient="records")):
        assert client.predict("words", data)["predictions"].tolist() == ["pos", "neg"]
    assert client.predict("line", pd.DataFrame({"x": [3.0, 4.0]}))["predictions"] == (
        pytest.approx([7.0, 9.0])
    )
    request = _request("words", review=("BYTES", [1], "bytes_contents", [b"good plot"]))
    assert "has no input 'review'" in _refused(infer, request)
    request.parameters["content_type"].string_param = "pd"  # as MLServer's PandasCodec sends
    assert list(infer(request, timeout=30).outputs[0].contents.bytes_contents) == [b"pos"]


def test_too_many_columns_for_a_model_logged_from_one_are_refused_naming_them(
    infer, platform
) -> None:
    """A two-column DataFrame sent to a model logged from a 1-D array of texts (or a [rows, 1]
    one) was put side by side and refused as "input 'inputs': the tensor has shape [2, 2]", an
    input no model has. It is refused saying the model takes one column, naming its input and
    the columns sent, and what to send."""
    _server, client = platform
    texts = np.array(["good film", "bad film", "great plot", "awful acting"] * 5)
    words = make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts, ["pos", "neg"] * 10)
    x = np.arange(20.0).reshape(-1, 1)
    _serve(client, words, "words", texts[:3])
    _serve(client, LinearRegression().fit(x, 2 * x[:, 0] + 1), "line", x[:3])
    sent = {
        "words": pd.DataFrame({"review": ["good plot", "awful film"], "stars": ["5", "1"]}),
        "line": pd.DataFrame({"x": [3.0, 4.0], "z": [1.0, 2.0]}),
    }
    for name, frame in sent.items():
        with pytest.raises(InvalidArgument) as err:
            client.predict(name, frame)
        assert err.value.field == "input"
        message = err.value.message
        assert f"model {name} takes one column: its one input 'input'" in message
        assert f"sent 2 columns {list(frame.columns)}" in message
        assert f"as a one-column frame (frame[[{frame.columns[0]!r}]])" in message
        assert "'inputs'" not in message
    # The same tensors sent by any Open Inference Protocol client.
    request = _request("line", x=("FP64", [2], "fp64_contents", [3.0, 4.0]))
    request.inputs.add(name="z", datatype="FP64", shape=[2]).contents.fp64_contents.extend([1, 2])
    assert "takes one column" in _refused(infer, request)
    one = client.predict("words", sent["words"][["review"]])["predictions"]
    assert one.tolist() == ["pos", "neg"]


def test_a_frame_with_two_columns_of_one_name_is_refused_naming_it(platform) -> None:
    """A DataFrame with two columns of one name failed in the SDK with "'DataFrame' object has
    no attribute 'dtype'", and columns 1 and "1" went as one input "1" (the first lost). Each
    column goes as the input of its name, so the SDK refuses the pair, naming it."""
    _server, client = platform
    _serve(
        client,
        LinearRegression().fit(pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 1.0]}), [1, 2]),
        "line2",
        pd.DataFrame({"a": [1.0], "b": [0.0]}),
    )
    for frame, name in (
        (pd.DataFrame([[1.0, 2.0, 3.0]], columns=["a", "b", "a"]), "a"),
        (pd.DataFrame([[1.0, 2.0, 3.0]], columns=["a", 1, "1"]), "1"),
    ):
        with pytest.raises(InvalidArgument) as err:
            client.predict("line2", frame)
        assert err.value.field == name
        assert f"more than one column named {name!r}" in err.value.message
        assert "rename or drop the others" in err.value.message
    answer = client.predict("line2", pd.DataFrame({"a": [1.0], "b": [0.0]}))["predictions"]
    assert answer.tolist() == pytest.approx([1.0])
