"""ServingClient: endpoints (modelyard.serving.v1) and inference (Open Inference Protocol)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any, Literal, overload

import numpy as np
import pandas as pd

from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard._gen.inference import grpc_predict_v2_pb2_grpc
from modelyard._gen.serving.v1 import serving_pb2 as pb
from modelyard._gen.serving.v1 import serving_pb2_grpc
from modelyard.client._transport import Transport
from modelyard.convert.common import grant_to_entity, grant_to_proto, id_arg, page_size_arg
from modelyard.convert.serving import endpoint_to_entity, endpoint_to_proto, record_to_entity
from modelyard.convert.tensors import CONTENT_TYPE, TABLE, datatype_of, from_raw, to_raw
from modelyard.entities.common import Grant, PermissionLevel
from modelyard.entities.serving import (
    Endpoint,
    InferenceLogConfig,
    InferenceRecord,
    MissingFeaturePolicy,
    ServedModel,
    ServedModelState,
)
from modelyard.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from modelyard.models.uri import parse_models_uri

ServedModels = ServedModel | str | Sequence[ServedModel | str]


def served_models_arg(served_models: ServedModels) -> list[ServedModel]:
    """What a caller names as an endpoint's models: ServedModels, or model URIs as MLflow and
    KServe users write them ("models:/fraud/3", optionally "=PERCENT"), one or a list. URIs
    without a percentage share the traffic the others leave; an explicit =0 stays 0 (a model
    asked for by name only). Anything else is InvalidArgument naming the argument."""
    items = [served_models] if isinstance(served_models, ServedModel | str) else served_models
    if not isinstance(items, Sequence):  # an empty one is the server's to refuse
        raise InvalidArgument(
            f'served_models is {served_models!r}; give a model URI ("models:/fraud/3"), a '
            "ServedModel, or a list of them",
            field="served_models",
        )
    given: list[ServedModel | None] = []
    for i, item in enumerate(items):
        if isinstance(item, ServedModel):
            given.append(item)
            continue
        if not isinstance(item, str):
            raise InvalidArgument(
                f"served_models[{i}] is {item!r} ({type(item).__name__}); give a model URI "
                '("models:/fraud/3", or "models:/fraud/3=80" for 80% of the traffic) or a '
                "ServedModel",
                field=f"served_models[{i}]",
            )
        # Model names and aliases hold no '=': what follows one is the traffic share.
        uri, sep, text = item.rpartition("=")
        if sep and not text.isdigit():
            raise InvalidArgument(
                f"served_models[{i}] {item!r}: the traffic share after '=' must be a whole "
                f"percentage (0-100), e.g. {uri}=80",
                field=f"served_models[{i}]",
            )
        given.append(ServedModel(uri, int(text)) if sep else None)
    unset = [i for i, s in enumerate(given) if s is None]
    rest = 100 - sum(s.traffic_percent for s in given if s is not None)
    share, extra = divmod(rest, len(unset)) if unset else (0, 0)
    for n, i in enumerate(unset):
        given[i] = ServedModel(str(items[i]), max(0, share + (1 if n < extra else 0)))
    return [s for s in given if s is not None]


def missing_features_arg(policy: MissingFeaturePolicy | str) -> MissingFeaturePolicy:
    """The policy, also given as its name in any case ("impute")."""
    try:
        return MissingFeaturePolicy(str(policy).upper())
    except ValueError:
        raise InvalidArgument(
            f"missing_features is {policy!r}; it must be FAIL or IMPUTE",
            field="missing_features",
        ) from None


def _endpoint(
    name: str,
    served_models: ServedModels,
    inference_log: InferenceLogConfig | None,
    missing_features: MissingFeaturePolicy | str,
) -> pb.Endpoint:
    if inference_log is not None and not isinstance(inference_log, InferenceLogConfig):
        raise InvalidArgument(
            f"inference_log is {inference_log!r}; give InferenceLogConfig(enabled=True, "
            "sampling_rate=...) or None",
            field="inference_log",
        )
    log = inference_log or InferenceLogConfig()
    served = tuple(served_models_arg(served_models))
    policy = missing_features_arg(missing_features)
    return endpoint_to_proto(Endpoint(name, served, log, policy))


def _output_array(tensor: Any, raw: bytes) -> np.ndarray:
    """An output tensor as an array; BYTES elements as text, as the model returned them."""
    array = from_raw(tensor.name, tensor.datatype, tensor.shape, raw)
    if tensor.datatype != "BYTES":
        return array
    text = [item.decode(errors="replace") for item in array.reshape(-1)]
    return np.array(text, dtype=object).reshape(array.shape)


def _mlflow_input(data: Any) -> Any:
    """Records (a list of dicts), or MLflow's scoring payloads of a table ({"dataframe_split":
    {"columns": ..., "data": ...}}, {"dataframe_records": [...]}), as the DataFrame they stand
    for. Records went as one tensor of their dicts' text, refused as a wrong shape."""
    if isinstance(data, dict) and len(data) == 1:
        ((key, value),) = data.items()
        split = key == "dataframe_split" and isinstance(value, dict)
        if split or (key == "dataframe_records" and isinstance(value, list)):
            try:
                return pd.DataFrame(**value) if split else pd.DataFrame(value)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(
                    f"data[{key!r}] is not an MLflow {key} payload: {exc}", field=key
                ) from None
    if isinstance(data, list | tuple) and data and all(isinstance(r, dict) for r in data):
        return pd.DataFrame(list(data))
    return data


def _unique_columns(frame: pd.DataFrame) -> None:
    """Refuse a DataFrame with two columns of one name (as the server's inputs are named): the
    pair failed here with AttributeError, and 1 beside "1" went as one input, a column lost."""
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        raise InvalidArgument(
            f"the DataFrame has more than one column named {twice!r} (columns {names}); each "
            "column goes as the input of its name: rename or drop the others (frame.columns)",
            field=twice,
        )


def _frame_column(name: str, column: pd.Series) -> np.ndarray:
    """A pandas column's values as sent (a DataFrame's, or a Series in a dict). A nullable
    integer or boolean column (Int64, UInt8, boolean, int64[pyarrow]) with a missing value
    (pd.NA) is refused naming it: its to_numpy() was float64 with NaN (integers beyond 2**53
    rounded on the way) or objects, and the model got other values than the column's, or a
    refusal about a double column."""
    dtype = column.dtype
    if not isinstance(dtype, pd.api.extensions.ExtensionDtype) or dtype.kind not in "iub":
        return column.to_numpy()
    missing = np.flatnonzero(column.isna().to_numpy())
    if missing.size:
        kind = "a true/false" if dtype.kind == "b" else "an integer"
        raise InvalidArgument(
            f"column {name!r} ({dtype}) has a missing value (<NA>) at position {missing[0]}, "
            f"which {kind} tensor cannot hold; fill it first (frame[{name!r}].fillna(...)), or "
            f"send the column as float (frame[{name!r}].astype('float64')) if the model takes "
            "NaN as missing",
            field=name,
        )
    return column.to_numpy(dtype=dtype.numpy_dtype)


def _sendable_input(name: str, array: np.ndarray) -> np.ndarray:
    """An input as the protocol can carry it. Times go as ISO 8601 text, which the server reads
    for a datetime column and answers times in (datetime64 was refused here, naming no input).
    A missing value (None, NaN, NaT, pd.NA) among texts or times is refused naming the input:
    BYTES have no missing value, and it went as the text 'None' or 'nan', a category the model
    never saw, with an answer as if all were well."""
    kind = array.dtype.kind
    if kind not in "OM":
        return array
    odd = next((v for v in array.flat if isinstance(v, dict | list | tuple | set)), None)
    if odd is not None:  # it went as its Python text
        raise InvalidArgument(
            f"input {name!r} holds a {type(odd).__name__} ({odd!r:.60}); send numbers, text or "
            "bytes: a table as a DataFrame or a list of records, an array as a numpy array",
            field=name,
        )
    missing = np.flatnonzero(pd.isna(array))
    if missing.size:
        raise InvalidArgument(
            f"input {name!r} has a missing value (None, NaN or NaT) at position {missing[0]}: "
            "the protocol's texts and times have no missing value; fill them first (for a "
            f"DataFrame: frame[{name!r}].fillna(...)), or leave out an optional column",
            field=name,
        )
    if kind == "M":
        return np.datetime_as_string(array).astype(object)
    return array


def _never_at(endpoint: Endpoint, version: int | None) -> None:
    """FailedPrecondition if a served model pinned to another version (models:/fraud/3) is
    loaded: it never moves, and waiting for `version` once took the whole timeout."""
    for s in endpoint.served_models:
        pinned = parse_models_uri(s.model_uri)[1] == "version"
        if version is not None and pinned and s.version and s.version != version:
            raise FailedPrecondition(
                f"endpoint {endpoint.name!r} serves {s.model_uri} (version {s.version}), which "
                f"never becomes version {version}; update the endpoint to that version, or wait "
                "for the version it serves",
                resource_type="endpoint",
                resource_name=endpoint.name,
            )


class ServingClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._serving = transport.stub(serving_pb2_grpc.ServingServiceStub)
        self._inference = transport.stub(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub)

    def create_endpoint(
        self,
        name: str,
        served_models: ServedModels,
        inference_log: InferenceLogConfig | None = None,
        missing_features: MissingFeaturePolicy | str = MissingFeaturePolicy.FAIL,
    ) -> Endpoint:
        """`served_models`: see served_models_arg (a model URI will do)."""
        endpoint = _endpoint(name, served_models, inference_log, missing_features)
        request = pb.CreateEndpointRequest(endpoint=endpoint)
        return endpoint_to_entity(self._t.call(self._serving.CreateEndpoint, request).endpoint)

    def get_endpoint(self, name: str) -> Endpoint:
        response = self._t.call(self._serving.GetEndpoint, pb.GetEndpointRequest(name=name))
        return endpoint_to_entity(response.endpoint)

    def watch_endpoint(self, name: str, timeout: float | None = None) -> Iterator[Endpoint]:
        """The endpoint now, then after every change (until `timeout` seconds, or deletion)."""
        request = pb.WatchEndpointRequest(name=name)
        for reply in self._t.stream(self._serving.WatchEndpoint, request, timeout=timeout):
            yield endpoint_to_entity(reply.endpoint)

    def wait_endpoint_ready(
        self, name: str, version: int | None = None, timeout: float = 300
    ) -> Endpoint:
        """Block until every served model is READY (at `version`, when given); a served model
        that FAILED to load, or was UNLOADED on request, raises, with why."""
        try:
            for endpoint in self.watch_endpoint(name, timeout=timeout):
                states = [(s.state, s.version, s.reason) for s in endpoint.served_models]
                if any(state == ServedModelState.UNLOADED for state, _v, _r in states):
                    raise FailedPrecondition(
                        f"endpoint {name!r} was unloaded on request and serves nothing until it "
                        "is loaded again (RepositoryModelLoad, tritonclient's load_model) or "
                        "updated",
                        resource_type="endpoint",
                        resource_name=name,
                    )
                failed = [r for state, _v, r in states if state == ServedModelState.FAILED]
                if failed:
                    raise FailedPrecondition(
                        f"endpoint {name!r} cannot serve: {failed[0]}; fix the model version "
                        "and update the endpoint",
                        resource_type="endpoint",
                        resource_name=name,
                    )
                if all(
                    state == ServedModelState.READY and (version is None or v == version)
                    for state, v, _r in states
                ):
                    return endpoint
                _never_at(endpoint, version)
        except DeadlineExceeded:
            raise DeadlineExceeded(
                f"endpoint {name!r} was not ready within {timeout:g}s; see `modelyard endpoints "
                f"get {name}` for each served model's state",
                resource_type="endpoint",
                resource_name=name,
            ) from None
        # The watch ends only when the endpoint is deleted: this was once reported as the
        # timeout passing, at once.
        raise NotFound(
            f"endpoint {name!r} was deleted while waiting for it to be ready",
            resource_type="endpoint",
            resource_name=name,
        )

    def list_endpoints(self) -> list[Endpoint]:
        response = self._t.call(self._serving.ListEndpoints, pb.ListEndpointsRequest())
        return [endpoint_to_entity(e) for e in response.endpoints]

    def update_endpoint(
        self,
        name: str,
        served_models: ServedModels,
        inference_log: InferenceLogConfig | None = None,
        missing_features: MissingFeaturePolicy | str = MissingFeaturePolicy.FAIL,
    ) -> Endpoint:
        """Replace the endpoint's spec; `served_models` as for create_endpoint."""
        endpoint = _endpoint(name, served_models, inference_log, missing_features)
        request = pb.UpdateEndpointRequest(endpoint=endpoint)
        return endpoint_to_entity(self._t.call(self._serving.UpdateEndpoint, request).endpoint)

    def delete_endpoint(self, name: str) -> None:
        self._t.call(self._serving.DeleteEndpoint, pb.DeleteEndpointRequest(name=name))

    def set_endpoint_permission(self, name: str, principal: str, level: PermissionLevel) -> None:
        grant = grant_to_proto(Grant(principal, level))
        self._t.call(
            self._serving.SetEndpointPermission,
            pb.SetEndpointPermissionRequest(name=name, grant=grant),
        )

    def delete_endpoint_permission(self, name: str, principal: str) -> None:
        request = pb.DeleteEndpointPermissionRequest(name=name, principal=principal)
        self._t.call(self._serving.DeleteEndpointPermission, request)

    def list_endpoint_permissions(self, name: str) -> list[Grant]:
        response = self._t.call(
            self._serving.ListEndpointPermissions, pb.ListEndpointPermissionsRequest(name=name)
        )
        return [grant_to_entity(g) for g in response.grants]

    def get_inference_log(
        self,
        endpoint: str,
        since_record_id: int = 0,
        max_results: int = 1000,
        as_frame: bool = True,
        newest_first: bool = False,
    ) -> pd.DataFrame | list[InferenceRecord]:
        """The endpoint's logged requests, oldest first (newest_first: the latest first), with
        any ground truth logged for them. Pages the server cut short (it bounds them by bytes)
        are followed until `max_results` records or the end of the log."""
        max_results = page_size_arg(max_results, "max_results")
        records: list[InferenceRecord] = []
        while True:
            request = pb.GetInferenceLogRequest(
                endpoint=endpoint,
                since_record_id=id_arg(since_record_id, "since_record_id"),
                max_results=max_results - len(records),
                newest_first=newest_first,
            )
            page = self._t.call(self._serving.GetInferenceLog, request)
            records += [record_to_entity(r) for r in page.records]
            if not page.records or len(records) >= max_results:
                break
            since_record_id = page.last_record_id
        if not as_frame:
            return records
        frame = pd.DataFrame([asdict(r) for r in records])
        if not frame.empty:
            frame["request_time"] = pd.to_datetime(frame["request_time"], unit="ms", utc=True)
        return frame

    @overload
    def log_ground_truth(
        self, endpoint: str, values: dict[str, Any], skip_unlogged: Literal[False] = False
    ) -> int: ...
    @overload
    def log_ground_truth(
        self, endpoint: str, values: dict[str, Any], skip_unlogged: Literal[True]
    ) -> list[str]: ...
    def log_ground_truth(
        self, endpoint: str, values: dict[str, Any], skip_unlogged: bool = False
    ) -> int | list[str]:
        """Record outcomes by request id (the id sent with `predict`), e.g. {"req-1": 3.5}; the
        number recorded. An id the endpoint's inference log does not hold refuses them all,
        unless skip_unlogged (an endpoint that logs a sample): then the others are recorded and
        the ids skipped are returned."""
        request = pb.LogGroundTruthRequest(
            endpoint=endpoint,
            ground_truth=[
                pb.GroundTruth(request_id=rid, value_json=json.dumps(value, default=str))
                for rid, value in values.items()
            ],
            skip_unlogged=skip_unlogged,
        )
        response = self._t.call(self._serving.LogGroundTruth, request)
        return list(response.unlogged_request_ids) if skip_unlogged else response.recorded

    def model_inputs(self, endpoint: str, served_model: str | None = None) -> dict[str, list[int]]:
        """The input tensors the endpoint's model takes (ModelMetadata), name -> shape (-1: any
        size): one per column for a table, a single one for a model that takes an array."""
        request = oip.ModelMetadataRequest(name=endpoint, version=served_model or "")
        response = self._t.call(self._inference.ModelMetadata, request)
        return {t.name: list(t.shape) for t in response.inputs}

    def predict(
        self,
        endpoint: str,
        data: pd.DataFrame | np.ndarray | dict[str, Any] | list[Any],
        request_id: str | None = None,
        served_model: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Call an endpoint: a DataFrame goes as one tensor per column, an array as one tensor,
        a dict as a tensor per key. Records (a list of dicts) and MLflow's scoring
        payloads ({"dataframe_split": ...}, {"dataframe_records": ...}, {"inputs": ...},
        {"instances": ...}) are read as MLflow reads them."""
        request = oip.ModelInferRequest(
            model_name=endpoint, model_version=served_model or "", id=request_id or uuid.uuid4().hex
        )
        data = _mlflow_input(data)
        if isinstance(data, pd.DataFrame):
            # A model logged from an array takes the columns as its rows' values (the server
            # puts them side by side; one column is the array), as MLflow's pyfunc takes a
            # frame for a tensor model: the request says they are a table's, whatever their names.
            _unique_columns(data)
            columns = {str(c): _frame_column(str(c), data[c]) for c in data.columns}
            request.parameters[CONTENT_TYPE].string_param = TABLE
        elif isinstance(data, dict):
            columns = {
                k: _frame_column(k, v) if isinstance(v, pd.Series) else np.asarray(v)
                for k, v in data.items()
            }
        else:
            columns = {"input": np.asarray(data)}
        for name, values in columns.items():
            column = _sendable_input(name, values)
            datatype = datatype_of(column)
            request.inputs.add(name=name, datatype=datatype, shape=list(column.shape))
            request.raw_input_contents.append(to_raw(column, datatype))
        response = self._t.call(self._inference.ModelInfer, request)
        return {
            out.name: _output_array(out, raw)
            for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        }
