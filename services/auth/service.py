"""AuthService: principals, tokens and the audit log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelyard.entities.auth import AuditEvent, Principal, TokenInfo
from modelyard.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from modelyard.services.auth.process_tokens import PROCESS_TOKEN_TTL, ProcessToken
from modelyard.services.auth.store.sql import SqlAuthStore
from modelyard.services.common import identity
from modelyard.services.common.auth.policy import SERVICE_ROLES, USER_ROLES
from modelyard.services.common.auth.state import PrincipalState, Snapshot
from modelyard.services.common.auth.tokens import TokenSigner
from modelyard.services.common.pagination import page_size

_NAME = re.compile(r"^[A-Za-z0-9._@\-]{1,256}\Z")
DAY = 24 * 3600
DEFAULT_TTL = 90 * DAY
MAX_TTL = 366 * DAY
SERVICE_TOKEN_TTL = 366 * DAY


@dataclass(frozen=True)
class Bootstrapped:
    principal: Principal
    token: str
    # "created", "restored" (an existing user made an enabled admin) or "existing".
    outcome: str


def service_principal(service: str) -> str:
    """The principal a service acts as when it calls other services."""
    return f"svc-{service}"


class AuthService:
    def __init__(self, store: SqlAuthStore, signer: TokenSigner | None) -> None:
        self.store = store
        self.signer = signer
        # The tokens of this process's services, revoked when it closes.
        self._process_tokens: list[ProcessToken] = []

    def close(self) -> None:
        """Revoke this process's service tokens: the next start mints its own."""
        try:
            for token in self._process_tokens:
                token.revoke()
            self._process_tokens.clear()
        finally:
            self.store.close()

    # -- bootstrap -----------------------------------------------------------------------------

    def ensure_service_principals(self, services: Sequence[str]) -> None:
        for service in services:
            name = service_principal(service)
            if self.store.find_principal(name) is None:
                self.store.create_principal(name, "service", [f"service:{service}"])

    def bootstrap_admin(self, name: str) -> Bootstrapped:
        """An admin and a token for it, for whoever can reach the database and signing key (so
        it adds no power): the first admin; break-glass when admin access is lost (a new token
        for an existing admin whose tokens expired, were revoked or died with a rotated key;
        or, when no enabled admin is left, `name` made one)."""
        self._valid_name("name", name)
        if self.signer is None:
            raise FailedPrecondition(
                "this server cannot sign tokens (no private key); run bootstrap where the auth "
                "service's signing key is"
            )
        principal, outcome = self.store.bootstrap_admin(name)
        token, _ = self._issue(name, "bootstrap admin token", DEFAULT_TTL)
        # No RPC, so no interceptor records it: the break-glass path must leave a trace.
        event = AuditEvent(
            int(time.time() * 1000), name, "cli", "AdminBootstrap", f"principal/{name}", "OK"
        )
        self.store.record_audit([event])
        return Bootstrapped(principal, token, outcome)

    def mint_service_token(self, service: str) -> str:
        """A long-lived token for `service`, kept in a cluster's Secret and renewed by the
        chart's CronJob before it expires."""
        token, _info = self._issue(
            service_principal(service), f"{service} service identity", SERVICE_TOKEN_TTL
        )
        return token

    def process_token(self, service: str, clock: Callable[[], float] = time.time) -> ProcessToken:
        """The renewing token `service` calls the others with from this process."""
        token = ProcessToken(
            lambda: self._issue(
                service_principal(service), f"{service} service identity", PROCESS_TOKEN_TTL
            ),
            self.store.revoke_token,
            self.store.delete_tokens,
            clock,
        )
        self._process_tokens.append(token)
        return token

    # -- principals ----------------------------------------------------------------------------

    @staticmethod
    def _valid_name(field: str, name: str) -> str:
        if not _NAME.match(name or ""):
            raise InvalidArgument(
                f"{field} {name!r} must be 1-256 letters, digits, '.', '_', '@' or '-'", field=field
            )
        return name

    @staticmethod
    def _valid_roles(kind: str, roles: Sequence[str]) -> list[str]:
        allowed = USER_ROLES if kind == "user" else SERVICE_ROLES
        unknown = [r for r in roles if r not in allowed]
        if unknown or not roles:
            raise InvalidArgument(
                f"roles {list(roles)} are not valid for a {kind}; use one or more of "
                f"{sorted(allowed)}",
                field="roles",
            )
        return list(roles)

    def whoami(self) -> Principal:
        me = identity.current()
        if not me.enforced:
            return Principal(name=me.name, kind="user", roles=("admin",))
        return self.store.get_principal(me.name)

    def create_principal(self, name: str, kind: str, roles: Sequence[str]) -> Principal:
        self._valid_name("name", name)
        if kind not in ("user", "service"):
            raise InvalidArgument("kind must be USER or SERVICE", field="kind")
        return self.store.create_principal(name, kind, self._valid_roles(kind, roles))

    def list_principals(self) -> list[Principal]:
        return self.store.list_principals()

    def update_principal(self, name: str, roles: Sequence[str], disabled: bool | None) -> Principal:
        """New roles when `roles` is non-empty; `disabled` None leaves that state alone."""
        current = self.store.get_principal(self._valid_name("name", name))
        new_roles = self._valid_roles(current.kind, roles) if roles else None
        return self.store.update_principal(name, new_roles, disabled)

    # -- tokens --------------------------------------------------------------------------------

    def _target(self, principal: str) -> str:
        me = identity.current()
        target = principal or me.name
        if target != me.name and not me.unrestricted:
            raise PermissionDenied(f"only admins can manage tokens of {target!r}")
        return target

    def _signer(self) -> TokenSigner:
        if self.signer is None:
            raise FailedPrecondition(
                "this server cannot sign tokens (no private key); ask the auth service"
            )
        return self.signer

    def _issue(
        self, principal: str, description: str, ttl: float, parent: str | None = None
    ) -> tuple[str, TokenInfo]:
        token, claims = self._signer().sign(principal, ttl)
        info = self.store.add_token(
            claims.token_id, principal, description, int(claims.expires_at * 1000), parent
        )
        return token, info

    def create_token(
        self, principal: str, description: str, ttl_seconds: int
    ) -> tuple[str, TokenInfo]:
        target = self._target(principal)
        if ttl_seconds < 0 or ttl_seconds > MAX_TTL:
            raise InvalidArgument(
                f"ttl_seconds must be between 1 and {MAX_TTL} (366 days)", field="ttl_seconds"
            )
        if len(description) > 1000:
            raise InvalidArgument("description is longer than 1000 characters", field="description")
        found = self.store.get_principal(target)
        if found.disabled:
            raise FailedPrecondition(f"principal {target!r} is disabled; enable it first")
        ttl: float = ttl_seconds or DEFAULT_TTL
        me = identity.current()
        parent = None
        if target == me.name and me.token is not None:
            # A token minting one for its own principal: the new one is its child, revoked
            # with it, and (but for admins, who could make any principal anyway) it ends no
            # later than its parent. Capped rather than refused: the default 90 days would
            # otherwise fail from any token with less left; the response's expiry says so.
            calling = self._signer().verifier.verify(me.token)
            parent = calling.token_id
            if not me.unrestricted:
                ttl = min(ttl, calling.expires_at - time.time())
        return self._issue(target, description, ttl, parent)

    def list_tokens(self, principal: str) -> list[TokenInfo]:
        """NOT_FOUND for a principal that does not exist: a mistyped name is not "no tokens"."""
        target = self.store.get_principal(self._target(principal)).name
        return self.store.list_tokens(target)

    def revoke_token(self, token_id: str) -> None:
        if not token_id:
            raise InvalidArgument("token_id is required", field="token_id")
        info = self.store.get_token(token_id)
        self._target(info.principal)
        self.store.revoke_token(token_id)

    # -- state and audit -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(
            revoked=frozenset(self.store.revoked_token_ids()),
            principals={
                p.name: PrincipalState(frozenset(p.roles), p.disabled)
                for p in self.store.list_principals()
            },
        )

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        if len(events) > 10_000:
            raise InvalidArgument("send at most 10000 audit events per call", field="events")
        self.store.record_audit(events)

    def list_audit(
        self, principal: str, service: str, method: str, since_event_id: int, max_results: int
    ) -> list[AuditEvent]:
        if since_event_id < 0:
            raise InvalidArgument("since_event_id must not be negative", field="since_event_id")
        size = page_size(max_results, default=1000, maximum=10000, field="max_results")
        return self.store.list_audit(principal, service, method, since_event_id, size)
