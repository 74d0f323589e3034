"""SqlAuthStore: principals, tokens and audit events on SQLAlchemy Core."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.entities.auth import AuditEvent, Principal, TokenInfo
from modelyard.errors import AlreadyExists, FailedPrecondition, NotFound
from modelyard.services.auth.store.schema import audit_events, principals, tokens
from modelyard.services.common.db import Database


def _now() -> int:
    return int(time.time() * 1000)


def _principal(row) -> Principal:
    return Principal(
        name=row.name,
        kind=row.kind,
        roles=tuple(row.roles.split()),
        disabled=row.disabled,
        created=row.create_time,
    )


def _token(row) -> TokenInfo:
    return TokenInfo(
        token_id=row.token_id,
        principal=row.principal,
        description=row.description,
        created=row.create_time,
        expires=row.expire_time,
        revoked=row.revoked,
    )


def _kept(value: str, limit: int) -> str:
    """`value` as a column of `limit` characters holds it: an audit record is kept, cut short
    and with any NUL (which PostgreSQL text cannot hold) shown as U+FFFD, never refused."""
    return value[:limit].replace("\x00", "\ufffd")


def _enabled_admin(row) -> bool:
    return not row.disabled and "admin" in row.roles.split()


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"principal {name!r} does not exist; list them with `modelyard users list`",
        resource_type="principal",
        resource_name=name,
    )


class SqlAuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        self.db.dispose()

    # -- principals ----------------------------------------------------------------------------

    def create_principal(self, name: str, kind: str, roles: Sequence[str]) -> Principal:
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(principals).values(
                        name=name,
                        kind=kind,
                        roles=" ".join(sorted(set(roles))),
                        disabled=False,
                        create_time=_now(),
                    )
                )
        except IntegrityError:
            raise AlreadyExists(
                f"principal {name!r} already exists", resource_type="principal", resource_name=name
            ) from None
        return self.get_principal(name)

    def find_principal(self, name: str) -> Principal | None:
        with self.db.read() as conn:
            row = conn.execute(select(principals).where(principals.c.name == name)).first()
        return _principal(row) if row else None

    def get_principal(self, name: str) -> Principal:
        found = self.find_principal(name)
        if found is None:
            raise _not_found(name)
        return found

    def list_principals(self) -> list[Principal]:
        with self.db.read() as conn:
            rows = conn.execute(select(principals).order_by(principals.c.name)).all()
        return [_principal(r) for r in rows]

    def update_principal(
        self, name: str, roles: Sequence[str] | None, disabled: bool | None
    ) -> Principal:
        """Refused when it would leave no enabled admin: nobody could manage principals any
        more. Checked with the other principal writers held off, so two admins demoting each
        other at once cannot both succeed."""
        with self.db.write_serialized(principals.name) as conn:
            rows = conn.execute(select(principals)).all()
            row = next((r for r in rows if r.name == name), None)
            if row is None:
                raise _not_found(name)
            new_roles = set(roles) if roles is not None else set(row.roles.split())
            stays_admin = "admin" in new_roles and not (
                disabled if disabled is not None else row.disabled
            )
            others = [r.name for r in rows if r.name != name and _enabled_admin(r)]
            if _enabled_admin(row) and not stays_admin and not others:
                raise FailedPrecondition(
                    f"{name!r} is the last enabled admin; make another user an admin first "
                    "(`modelyard users update <user> --role admin`)",
                    resource_type="principal",
                    resource_name=name,
                )
            self._update(conn, row, roles, disabled)
        return self.get_principal(name)

    @staticmethod
    def _update(conn: Connection, row, roles: Iterable[str] | None, disabled: bool | None) -> None:
        """Enabling a disabled principal revokes the tokens it had: they must not come back
        with it (a leaked one may be why it was disabled). They are revoked then rather than
        when disabling, so that while disabled its tokens are refused as "disabled", which
        tells their holder to ask an admin."""
        values: dict[str, object] = {}
        if roles is not None:
            values["roles"] = " ".join(sorted(set(roles)))
        if disabled is not None:
            values["disabled"] = disabled
        if values:
            conn.execute(update(principals).where(principals.c.name == row.name).values(**values))
        if row.disabled and disabled is False:
            conn.execute(
                update(tokens)
                .where(tokens.c.principal == row.name, tokens.c.revoked.is_(False))
                .values(revoked=True)
            )

    def bootstrap_admin(self, name: str) -> tuple[Principal, str]:
        """`name` as an enabled admin user, and how: "created" (new), "restored" (an existing
        user made an enabled admin, allowed only when no enabled admin is left) or "existing"
        (an enabled admin already). Decided and written in one transaction with the other
        principal writers held off, so concurrent bootstraps make one admin."""
        with self.db.write_serialized(principals.name) as conn:
            rows = conn.execute(select(principals)).all()
            row = next((r for r in rows if r.name == name), None)
            admins = [r.name for r in rows if _enabled_admin(r)]
            if row is not None and row.kind != "user":
                raise FailedPrecondition(
                    f"{name!r} is a service account, not a user; name a user with --name",
                    resource_type="principal",
                    resource_name=name,
                )
            if row is not None and name in admins:
                outcome = "existing"
            elif admins:
                raise FailedPrecondition(
                    f"enabled admins exist ({', '.join(admins)}) and {name!r} is not one; ask "
                    "one of them for a token, or run `modelyard admin bootstrap --name "
                    f"{admins[0]}` for a new token of that admin",
                    resource_type="principal",
                    resource_name=name,
                )
            elif row is None:
                conn.execute(
                    insert(principals).values(
                        name=name, kind="user", roles="admin", disabled=False, create_time=_now()
                    )
                )
                outcome = "created"
            else:
                self._update(conn, row, {*row.roles.split(), "admin"}, False)
                outcome = "restored"
        return self.get_principal(name), outcome

    # -- tokens --------------------------------------------------------------------------------

    def add_token(
        self,
        token_id: str,
        principal: str,
        description: str,
        expires_ms: int,
        parent_token_id: str | None = None,
    ) -> TokenInfo:
        with self.db.write() as conn:
            conn.execute(
                insert(tokens).values(
                    token_id=token_id,
                    principal=principal,
                    description=description,
                    create_time=_now(),
                    expire_time=expires_ms,
                    revoked=False,
                    parent_token_id=parent_token_id,
                )
            )
        return self.get_token(token_id)

    def get_token(self, token_id: str) -> TokenInfo:
        with self.db.read() as conn:
            row = conn.execute(select(tokens).where(tokens.c.token_id == token_id)).first()
        if row is None:
            raise NotFound(
                f"token {token_id!r} does not exist; list tokens with `modelyard tokens list`",
                resource_type="token",
                resource_name=token_id,
            )
        return _token(row)

    def list_tokens(self, principal: str) -> list[TokenInfo]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(tokens).where(tokens.c.principal == principal).order_by(tokens.c.create_time)
            ).all()
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> None:
        """Revokes the tokens it minted too, and theirs: a leaked token must not live on in a
        token it minted."""
        with self.db.write() as conn:
            level = [token_id]
            while level:
                conn.execute(
                    update(tokens).where(tokens.c.token_id.in_(level)).values(revoked=True)
                )
                level = list(
                    conn.execute(
                        select(tokens.c.token_id).where(
                            tokens.c.parent_token_id.in_(level), tokens.c.revoked.is_(False)
                        )
                    ).scalars()
                )

    def delete_tokens(self, token_ids: list[str]) -> None:
        """Forget tokens that have expired (a revoked one still valid must stay listed as
        revoked, or it would pass checks again)."""
        with self.db.write() as conn:
            conn.execute(
                delete(tokens).where(
                    tokens.c.token_id.in_(token_ids), tokens.c.expire_time <= _now()
                )
            )

    def revoked_token_ids(self) -> list[str]:
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(tokens.c.token_id).where(
                        tokens.c.revoked.is_(True), tokens.c.expire_time > _now()
                    )
                ).scalars()
            )

    # -- audit ---------------------------------------------------------------------------------

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        with self.db.write() as conn:
            self.db.ids_in_commit_order(conn, audit_events.name)
            conn.execute(
                insert(audit_events),
                [
                    {
                        "event_time": e.timestamp,
                        "principal": _kept(e.principal, 256),
                        "service": _kept(e.service, 200),
                        "method": _kept(e.method, 200),
                        "resource": _kept(e.resource, 600),
                        "outcome": _kept(e.outcome, 32),
                        "request_id": _kept(e.request_id, 128),
                    }
                    for e in events
                ],
            )

    def list_audit(
        self, principal: str, service: str, method: str, since_event_id: int, max_results: int
    ) -> list[AuditEvent]:
        a = audit_events.c
        stmt = select(audit_events).where(a.event_id > since_event_id)
        if principal:
            stmt = stmt.where(a.principal == principal)
        if service:
            stmt = stmt.where(a.service == service)
        if method:
            stmt = stmt.where(a.method == method)
        with self.db.read() as conn:
            rows = conn.execute(stmt.order_by(a.event_id).limit(max_results)).all()
        return [
            AuditEvent(
                timestamp=r.event_time,
                principal=r.principal,
                service=r.service,
                method=r.method,
                resource=r.resource,
                outcome=r.outcome,
                request_id=r.request_id,
                event_id=r.event_id,
            )
            for r in rows
        ]
