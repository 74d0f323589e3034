"""Signed bearer tokens: EdDSA (Ed25519) JWTs.

The auth service signs with the private key; every service verifies with the public key, so no
call needs a database round trip to know who is calling. Verified tokens are cached until they
expire; revocation is checked separately against the cached auth state.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelyard.errors import Unauthenticated

ALGORITHM = "EdDSA"
ISSUER = "modelyard"
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Claims:
    principal: str
    token_id: str
    expires_at: float


def generate_keypair() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def ensure_keypair(directory: Path) -> tuple[Path, Path]:
    """The laptop default: a key pair under <home>/auth, created on first use (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "signing-key.pem", directory / "signing-key.pub.pem"
    if not private.exists():
        priv, pub = generate_keypair()
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(priv)
        public.write_bytes(pub)
    return private, public


class TokenSigner:
    def __init__(self, private_pem: bytes) -> None:
        self._key = serialization.load_pem_private_key(private_pem, password=None)
        # To read the claims of a caller's token (which one minted a new token, and when it
        # ends) without trusting anything the interceptor did not verify.
        self.verifier = TokenVerifier(
            self._key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(
        self, principal: str, ttl_seconds: float, token_id: str | None = None
    ) -> tuple[str, Claims]:
        now = time.time()
        claims = Claims(principal, token_id or uuid.uuid4().hex, now + ttl_seconds)
        token = jwt.encode(
            {
                "sub": principal,
                "jti": claims.token_id,
                "iat": int(now),
                "exp": int(claims.expires_at),
                "iss": ISSUER,
            },
            self._key,  # type: ignore[arg-type]
            algorithm=ALGORITHM,
        )
        return token, claims


class TokenVerifier:
    def __init__(self, public_pem: bytes) -> None:
        self._key = serialization.load_pem_public_key(public_pem)
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> Claims:
        with self._lock:
            cached = self._cache.get(token)
            if cached is not None:
                self._cache.move_to_end(token)
        if cached is not None:
            if cached.expires_at <= time.time():
                raise _expired()
            return cached
        claims = self._decode(token)
        with self._lock:
            self._cache[token] = claims
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            data = jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["sub", "jti", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise _expired() from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                "the token's signature does not verify: it was altered, or issued by another "
                "Modelyard installation; create a new one with `modelyard tokens create`"
            ) from None
        except jwt.DecodeError:
            raise Unauthenticated(
                "the bearer token is malformed; pass the token exactly as `modelyard tokens "
                "create` printed it"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(
                f"the token is not valid here ({exc}); create a new one"
            ) from None
        return Claims(str(data["sub"]), str(data["jti"]), float(data["exp"]))


def _expired() -> Unauthenticated:
    return Unauthenticated(
        "the token has expired; create a new one with `modelyard tokens create` and set "
        "MODELYARD_TOKEN"
    )
