"""Where the SDK and CLI find the server: arguments first, then MODELYARD_* environment variables.

This is the one place the client side reads the environment.
"""

from __future__ import annotations

import os

DEFAULT_URI = "127.0.0.1:50051"


def default_uri() -> str:
    return os.environ.get("MODELYARD_URI") or DEFAULT_URI


def default_token() -> str | None:
    return os.environ.get("MODELYARD_TOKEN") or None


def default_tls_ca() -> str | None:
    return os.environ.get("MODELYARD_TLS_CA") or None


def default_tls_cert() -> str | None:
    """Client certificate for servers that require mutual TLS."""
    return os.environ.get("MODELYARD_TLS_CERT") or None


def default_tls_key() -> str | None:
    return os.environ.get("MODELYARD_TLS_KEY") or None
