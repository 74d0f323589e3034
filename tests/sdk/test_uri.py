"""How a server URI becomes a gRPC target: the port `modelyard up` listens on when none is given
(443 only for TLS, as gRPC's default), and a port no socket can have refused before dialling."""

from __future__ import annotations

import pytest

from modelyard import Client
from modelyard.client._transport import parse_uri
from modelyard.errors import InvalidArgument


@pytest.mark.parametrize(
    ("uri", "target", "tls"),
    [
        ("127.0.0.1:50052", "127.0.0.1:50052", False),
        ("127.0.0.1", "127.0.0.1:50051", False),  # gRPC alone would dial 443
        ("localhost:", "localhost:50051", False),
        ("tracking.internal", "tracking.internal:50051", False),
        ("[::1]", "[::1]:50051", False),
        ("[::1]:7000", "[::1]:7000", False),
        ("grpc://127.0.0.1", "127.0.0.1:50051", False),
        ("grpc://127.0.0.1:65535", "127.0.0.1:65535", False),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", False),
        ("grpcs://modelyard.example.com", "modelyard.example.com:443", True),
        ("https://modelyard.example.com", "modelyard.example.com:443", True),
        ("grpcs://localhost:50051", "localhost:50051", True),
        ("unix:/run/modelyard.sock", "unix:/run/modelyard.sock", False),  # gRPC's own targets
    ],
)
def test_uris_become_targets(uri: str, target: str, tls: bool) -> None:
    assert parse_uri(uri) == (target, tls)


@pytest.mark.parametrize(
    "uri",
    [
        "127.0.0.1:99999",  # dialled 34463 (99999 mod 65536) before
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:port",
        "127.0.0.1:-1",
        "grpc://127.0.0.1:70000",
        "grpcs://[::1]:123456",
    ],
)
def test_ports_outside_the_valid_range_are_refused(uri: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_uri(uri)
    assert repr(uri) in err.value.message and "1 to 65535" in err.value.message
    assert err.value.field == "uri"


def test_a_uri_without_a_host_is_refused() -> None:
    for uri in (":50051", "grpc://:50051"):
        with pytest.raises(InvalidArgument, match="names no host"):
            parse_uri(uri)


def test_the_client_refuses_a_bad_port_before_dialling() -> None:
    with pytest.raises(InvalidArgument, match="1 to 65535"):
        Client("127.0.0.1:99999")
