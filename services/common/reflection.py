"""Server reflection over more than one descriptor pool.

The Open Inference Protocol's `inference.*` files live in a private pool (tritonclient and KServe
define the same names in protobuf's default pool; see scripts/generate_protos.py), so reflection
must look there too for `grpcurl` and other reflection clients to resolve `ModelInfer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from grpc_reflection.v1alpha import reflection


class DescriptorPools:
    """Several pools seen as one: each lookup answers from the first pool that knows the name
    (the methods are the ones grpc_reflection calls on a DescriptorPool)."""

    def __init__(self, pools: Iterable[descriptor_pool.DescriptorPool]) -> None:
        self._pools = list(dict.fromkeys(pools))  # distinct, in order

    def _first(self, lookup: str, name: str) -> Any:
        for pool in self._pools:
            try:
                return getattr(pool, lookup)(name)
            except KeyError:
                continue
        raise KeyError(name)

    def FindFileByName(self, name: str) -> FileDescriptor:
        return self._first("FindFileByName", name)

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        return self._first("FindFileContainingSymbol", symbol)

    def FindMessageTypeByName(self, name: str) -> Descriptor:
        return self._first("FindMessageTypeByName", name)

    # Extensions belong to the pool of the message they extend.
    def FindExtensionByNumber(self, message: Descriptor, number: int) -> FieldDescriptor:
        return message.file.pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Descriptor) -> list[FieldDescriptor]:
        return message.file.pool.FindAllExtensions(message)


def enable(
    server: grpc.Server, names: Iterable[str], pools: Iterable[descriptor_pool.DescriptorPool]
) -> None:
    """Reflection for `names` (and itself), resolving in `pools` first (the services' own
    descriptors, even where a client library put the same names in the default pool), then in
    the default pool."""
    pool = DescriptorPools([*pools, descriptor_pool.Default()])
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server, pool=pool)
