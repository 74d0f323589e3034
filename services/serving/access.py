"""Who may call each serving RPC: endpoints carry READ < USE < EDIT < MANAGE grants."""

from __future__ import annotations

from modelyard.entities.common import PermissionLevel as L
from modelyard.services.common.auth.policy import (
    Rule,
    authenticated,
    create,
    filtered,
    grant_change,
    on,
)

ENDPOINT = "endpoint"

SERVING_RULES: dict[str, Rule] = {
    # Creating needs the editor role, and USE on every model put behind the endpoint (checked
    # by the service against the registry, as the caller).
    "CreateEndpoint": create(),
    "GetEndpoint": on(L.READ, ENDPOINT, "name"),
    "WatchEndpoint": on(L.READ, ENDPOINT, "name"),
    "ListEndpoints": filtered(),
    "UpdateEndpoint": on(L.EDIT, ENDPOINT, lambda r: r.endpoint.name, mutating=True),
    "DeleteEndpoint": on(L.MANAGE, ENDPOINT, "name", mutating=True),
    # Logged requests hold real inputs: reading them needs EDIT, not just READ.
    "GetInferenceLog": on(L.EDIT, ENDPOINT, "endpoint"),
    "LogGroundTruth": on(L.EDIT, ENDPOINT, "endpoint", mutating=True),
    "SetEndpointPermission": grant_change(ENDPOINT, "name"),
    "DeleteEndpointPermission": grant_change(ENDPOINT, "name"),
    "ListEndpointPermissions": on(L.READ, ENDPOINT, "name"),
}

INFERENCE_RULES: dict[str, Rule] = {
    "ServerLive": authenticated(),
    "ServerReady": authenticated(),
    "ServerMetadata": authenticated(),
    "ModelReady": on(L.READ, ENDPOINT, "name"),
    "ModelMetadata": on(L.READ, ENDPOINT, "name"),
    "ModelInfer": on(L.USE, ENDPOINT, "model_name"),
    # Each request of the stream names its endpoint: the servicer checks each as ModelInfer's.
    "ModelStreamInfer": authenticated(),
    "ModelConfig": on(L.READ, ENDPOINT, "name"),
    # No name: every endpoint the caller may read (the service filters).
    "ModelStatistics": on(L.READ, ENDPOINT, "name"),
    "RepositoryIndex": filtered(),
    "RepositoryModelLoad": on(L.EDIT, ENDPOINT, "model_name", mutating=True),
    "RepositoryModelUnload": on(L.EDIT, ENDPOINT, "model_name", mutating=True),
    # No shared memory, tracing or run-time log settings: these answer what there is (nothing)
    # or refuse with what to do instead, for any caller.
    "SystemSharedMemoryStatus": authenticated(),
    "SystemSharedMemoryRegister": authenticated(),
    "SystemSharedMemoryUnregister": authenticated(),
    "CudaSharedMemoryStatus": authenticated(),
    "CudaSharedMemoryRegister": authenticated(),
    "CudaSharedMemoryUnregister": authenticated(),
    "TraceSetting": on(L.READ, ENDPOINT, "model_name"),
    "LogSettings": authenticated(),
}
