"""Where the SDK and CLI find the server: arguments first, then the URI `set_tracking_uri` set,
then MODELYARD_* environment variables.

This is the one place the client side reads the environment, and the one place the URI
`modelyard.set_tracking_uri` set is kept, so `Client()` and `FeatureStoreClient()` follow it as
MlflowClient() follows mlflow.set_tracking_uri (fluent.py imports this module, not the reverse).
"""

from __future__ import annotations

import math
import os

from modelyard.errors import InvalidArgument

DEFAULT_URI = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 60.0
TIMEOUT_ENV = "MODELYARD_TIMEOUT"

_set_uri: str | None = None
_set_timeout: float | None = None


def set_uri(uri: str | None) -> None:
    """Record the process-wide URI (`modelyard.set_tracking_uri`); None forgets it."""
    global _set_uri
    _set_uri = uri or None


def uri_is_set() -> bool:
    """Whether the URI was chosen (set in this process, or MODELYARD_URI), not the default."""
    return _set_uri is not None or bool(os.environ.get("MODELYARD_URI"))


def default_uri() -> str:
    """The URI set in this process, else MODELYARD_URI, else the local default."""
    return _set_uri or os.environ.get("MODELYARD_URI") or DEFAULT_URI


def default_token() -> str | None:
    return os.environ.get("MODELYARD_TOKEN") or None


def default_tls_ca() -> str | None:
    return os.environ.get("MODELYARD_TLS_CA") or None


def default_tls_cert() -> str | None:
    """Client certificate for servers that require mutual TLS."""
    return os.environ.get("MODELYARD_TLS_CERT") or None


def default_tls_key() -> str | None:
    return os.environ.get("MODELYARD_TLS_KEY") or None


def set_timeout(seconds: float | None) -> None:
    """Record the process-wide per-call deadline (the CLI's --timeout); None forgets it."""
    global _set_timeout
    _set_timeout = seconds or None


def default_timeout() -> float:
    """Seconds each call may take: the one set in this process, else MODELYARD_TIMEOUT, else
    60. A hung server then fails a call after that long, not after the built-in minute."""
    if _set_timeout is not None:
        return _set_timeout
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidArgument(
            f"{TIMEOUT_ENV}={raw!r} is not a number of seconds above 0; set it to one (e.g. 30) "
            "or unset it for the default of 60",
            field=TIMEOUT_ENV,
        )
    return seconds
