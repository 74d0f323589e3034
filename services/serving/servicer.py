"""ServingServicer: modelyard.serving.v1 over gRPC."""

from __future__ import annotations

from modelyard._gen.serving.v1 import serving_pb2 as pb
from modelyard._gen.serving.v1 import serving_pb2_grpc
from modelyard.convert.common import grant_to_proto, level_to_entity
from modelyard.convert.serving import (
    endpoint_to_entity,
    endpoint_to_proto,
    policy_to_entity,
    record_to_proto,
)
from modelyard.errors import InvalidArgument
from modelyard.services.serving.service import ServingService


def _endpoint(request_endpoint):
    if policy_to_entity(request_endpoint.missing_features) is None:
        raise InvalidArgument(
            f"missing_features {request_endpoint.missing_features} is not FAIL or IMPUTE",
            field="endpoint.missing_features",
        )
    return endpoint_to_entity(request_endpoint)


class ServingServicer(serving_pb2_grpc.ServingServiceServicer):
    def __init__(self, service: ServingService) -> None:
        self.service = service

    def CreateEndpoint(self, request, context):
        endpoint = self.service.create_endpoint(_endpoint(request.endpoint))
        return pb.CreateEndpointResponse(endpoint=endpoint_to_proto(endpoint))

    def GetEndpoint(self, request, context):
        return pb.GetEndpointResponse(
            endpoint=endpoint_to_proto(self.service.get_endpoint(request.name))
        )

    def ListEndpoints(self, request, context):
        return pb.ListEndpointsResponse(
            endpoints=[endpoint_to_proto(e) for e in self.service.list_endpoints()]
        )

    def UpdateEndpoint(self, request, context):
        endpoint = self.service.update_endpoint(_endpoint(request.endpoint))
        return pb.UpdateEndpointResponse(endpoint=endpoint_to_proto(endpoint))

    def WatchEndpoint(self, request, context):
        for endpoint in self.service.watch_endpoint(request.name, context.is_active):
            yield pb.WatchEndpointResponse(endpoint=endpoint_to_proto(endpoint))

    def DeleteEndpoint(self, request, context):
        self.service.delete_endpoint(request.name)
        return pb.DeleteEndpointResponse()

    def GetInferenceLog(self, request, context):
        records = self.service.get_inference_log(
            request.endpoint, request.since_record_id, request.max_results, request.newest_first
        )
        return pb.GetInferenceLogResponse(
            records=[record_to_proto(r) for r in records],
            last_record_id=records[-1].record_id if records else request.since_record_id,
        )

    def LogGroundTruth(self, request, context):
        recorded, unlogged = self.service.log_ground_truth(
            request.endpoint,
            [(g.request_id, g.value_json) for g in request.ground_truth],
            skip_unlogged=request.skip_unlogged,
        )
        return pb.LogGroundTruthResponse(recorded=recorded, unlogged_request_ids=unlogged)

    def SetEndpointPermission(self, request, context):
        self.service.set_permission(
            request.name, request.grant.principal, level_to_entity(request.grant.level)
        )
        return pb.SetEndpointPermissionResponse()

    def DeleteEndpointPermission(self, request, context):
        self.service.delete_permission(request.name, request.principal)
        return pb.DeleteEndpointPermissionResponse()

    def ListEndpointPermissions(self, request, context):
        grants = self.service.list_permissions(request.name)
        return pb.ListEndpointPermissionsResponse(grants=[grant_to_proto(g) for g in grants])
