"""Keys that no store holds, from callers whose access is looked up (everyone but admins)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard import Client
from modelyard.errors import InvalidArgument
from tests.security.conftest import Secure

CALLS: dict[str, tuple[Callable[[Client], object], str]] = {
    "experiment id past int64": (lambda c: c.get_experiment("9" * 23), "experiment_id"),
    "experiment id of a superscript digit": (lambda c: c.get_experiment("\u00b2"), "experiment_id"),
    "experiment name with NUL": (lambda c: c.get_experiment_by_name("a\x00"), "experiment_name"),
    "run id with NUL": (lambda c: c.get_run("0" * 31 + "\x00"), "run_id"),
    "model name with NUL": (lambda c: c.get_registered_model("a\x00b"), "name"),
    "model version of a name with NUL": (lambda c: c.get_model_version("a\x00", 1), "name"),
}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_keys_no_store_holds_are_refused_as_for_admins(
    make_secure: Callable[..., Secure], request: pytest.FixtureRequest, backend: str
) -> None:
    """The access check looked such keys up in the database before the service could refuse
    them: PostgreSQL fails a query holding NUL, and a 19-digit id overflows its BIGINT (SQLite:
    an OverflowError), so an editor got INTERNAL where an admin got INVALID_ARGUMENT."""
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    secure = make_secure(backend_store_uri=url)
    alice = secure.user("alice", "editor")
    for what, (call, field) in CALLS.items():
        for caller in (secure.admin, alice):
            with pytest.raises(InvalidArgument) as refused:
                call(caller)
            assert field in str(refused.value), what


def test_an_experiment_id_in_other_digits_is_refused(make_secure: Callable[..., Secure]) -> None:
    """int() reads Arabic-Indic digits ("\u0661" is 1) and the id pattern took them: such an id
    named an experiment the service would return, unless the access check (keyed by the text)
    stopped the caller."""
    secure = make_secure()
    eid = secure.admin.create_experiment("private")
    other = eid.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    bob = secure.user("bob", "viewer")
    for caller in (secure.admin, bob):
        with pytest.raises(InvalidArgument, match="experiment_id"):
            caller.get_experiment(other)
