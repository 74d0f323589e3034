"""`modelyard admin|tokens|users|audit ...`: identities, tokens and the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli.output import console, done, ms, print_events, print_json, say, table
from modelyard.cli.tracking import Json, Token, Uri, client_for
from modelyard.entities.auth import AuditEvent

admin = typer.Typer(help="Set up the first admin.", no_args_is_help=True)
tokens = typer.Typer(help="API tokens (MODELYARD_TOKEN).", no_args_is_help=True)
users = typer.Typer(help="Users and service accounts (admins).", no_args_is_help=True)


@admin.command("bootstrap")
def admin_bootstrap(
    name: Annotated[str, typer.Option(help="The admin's user name.")] = "admin",
    home: Annotated[
        Path | None, typer.Option(help="State directory (default ~/.modelyard).")
    ] = None,
    backend_store_uri: Annotated[str | None, typer.Option(help="Metadata database URL.")] = None,
    as_json: Json = False,
) -> None:
    """Create the first admin and print its token. Runs against the database directly.

    Also the way back in when admin access is lost: for an existing admin it prints a new
    token; when no enabled admin is left it makes --name one (creating it if needed)."""
    from modelyard.services.auth.app import open_service
    from modelyard.services.common.runtime import Runtime
    from modelyard.services.common.settings import Settings

    flags = {"home": home, "backend_store_uri": backend_store_uri}
    settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    service = open_service(settings, Runtime(settings))
    try:
        made = service.bootstrap_admin(name)
    finally:
        service.store.close()
    principal = made.principal
    if as_json:  # a script reads the token from a field, not from the text around it
        print_json(
            {
                "name": principal.name,
                "roles": principal.roles,
                "token": made.token,
                "outcome": made.outcome,
            }
        )
        return
    say(
        {
            "created": f"Created admin {principal.name!r}.",
            "restored": f"No enabled admin was left: {principal.name!r} is an enabled admin again.",
            "existing": f"{principal.name!r} is an admin: here is a new token for it (its "
            "others still work; revoke lost ones with `modelyard tokens revoke`).",
        }[made.outcome]
        + " Its token (shown only now):\n"
    )
    console.print(made.token, soft_wrap=True, highlight=False)
    console.print("\nexport MODELYARD_TOKEN=<the token above>   # for the SDK and CLI")


@tokens.command("create")
def tokens_create(
    principal: Annotated[str | None, typer.Option(help="For someone else (admins).")] = None,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    ttl_days: Annotated[
        # 0 would reach the service as "unset" and get the default: refused here instead.
        int, typer.Option(min=1, max=366, help="Lifetime in days, 1 to 366.")
    ] = 90,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Create a token; it is shown only once. Your own is revoked with the token you create it
    with and, unless you are an admin, ends no later than that token."""
    secret, info = client_for(uri, token).create_token(principal, description, ttl_days * 86400)
    if as_json:
        print_json({"token": secret, "info": info})
        return
    # Server times both; a minute's slack for the moment between signing and storing.
    capped = info.expires < info.created + ttl_days * 86400 * 1000 - 60_000
    note = " (no later than the token that created it)" if capped else ""
    say(f"Token {info.token_id} for {info.principal}, expires {ms(info.expires)}{note}:")
    console.print(secret, soft_wrap=True, highlight=False)


@tokens.command("list")
def tokens_list(
    principal: Annotated[str | None, typer.Option(help="Someone else's (admins).")] = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """List tokens (never their secret values)."""
    found = client_for(uri, token).list_tokens(principal)
    if as_json:
        print_json({"tokens": found})
        return
    table(
        None,
        ["token id", "principal", "created", "expires", "revoked", "description"],
        [
            (
                t.token_id,
                t.principal,
                ms(t.created),
                ms(t.expires),
                "yes" if t.revoked else "",
                t.description,
            )
            for t in found
        ],
    )


@tokens.command("revoke")
def tokens_revoke(
    token_id: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Revoke a token; servers refuse it within auth.refresh_seconds (default 5 s)."""
    client_for(uri, token).revoke_token(token_id)
    done(as_json, f"Revoked token {token_id}", token_id=token_id, revoked=True)


@users.command("list")
def users_list(uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """List users and service accounts."""
    found = client_for(uri, token).list_principals()
    if as_json:
        print_json({"principals": found})
        return
    table(
        None,
        ["name", "kind", "roles", "disabled", "created"],
        [
            (p.name, p.kind, " ".join(p.roles), "yes" if p.disabled else "", ms(p.created))
            for p in found
        ],
    )


@users.command("create")
def users_create(
    name: str,
    role: Annotated[
        list[str], typer.Option("--role", help="viewer, editor or admin; repeatable.")
    ] = ["viewer"],  # noqa: B006
    service: Annotated[bool, typer.Option("--service", help="A service account.")] = False,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Create a user (or a service account with --service)."""
    principal = client_for(uri, token).create_principal(
        name, role, "service" if service else "user"
    )
    if as_json:
        print_json(principal)
    else:
        say(f"Created {principal.kind} {principal.name} with roles {', '.join(principal.roles)}")


@users.command("update")
def users_update(
    name: str,
    role: Annotated[list[str] | None, typer.Option("--role", help="New roles; repeatable.")] = None,
    disable: Annotated[
        bool | None,
        typer.Option(
            "--disable/--enable",
            help="--disable stops all of its tokens; --enable revokes them and lets it get "
            "new ones. Neither: left as it is.",
        ),
    ] = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Change a principal's roles, or disable or enable it."""
    principal = client_for(uri, token).update_principal(name, role, disable)
    if as_json:
        print_json(principal)
        return
    state = "disabled" if principal.disabled else "enabled"
    say(f"{principal.name}: roles {', '.join(principal.roles)}, {state}")


def audit(
    principal: Annotated[str | None, typer.Option(help="Only this caller.")] = None,
    service: Annotated[
        str | None, typer.Option(help="e.g. modelyard.tracking.v1.TrackingService")
    ] = None,
    method: Annotated[str | None, typer.Option(help="e.g. DeleteExperiment")] = None,
    since: Annotated[int, typer.Option("--since", help="Only events after this id.")] = 0,
    max_results: Annotated[
        int, typer.Option("--max-results", help="Events to read at most.")
    ] = 1000,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Read the audit log of mutating calls (admins)."""
    events = client_for(uri, token).list_audit_events(
        principal, service, method, since, max_results
    )
    print_events(events, since, max_results, as_json, _audit_table)


def _audit_table(events: list[AuditEvent]) -> None:
    table(
        None,
        ["id", "time", "principal", "method", "resource", "outcome"],
        [
            (
                e.event_id,
                ms(e.timestamp),
                e.principal,
                f"{e.service.rsplit('.', 1)[-1]}/{e.method}",
                e.resource,
                e.outcome,
            )
            for e in events
        ],
    )
