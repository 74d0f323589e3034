"""LIKE and ILIKE mean the same on every backend: a backslash escapes %, _ and itself.

PostgreSQL's LIKE escapes with a backslash by default and SQLite's has no escape character, so
without an explicit ESCAPE the same filter found different runs on the two stacks. Each case
runs over real gRPC on both (conftest.py's `stack`), in every kind of search the grammar serves.
"""

from __future__ import annotations

import pytest

from modelyard import Client
from modelyard.entities import ViewType
from modelyard.errors import InvalidArgument
from modelyard.services.common.filters.grammar import like_literal

# The stored values; each case names the ones its pattern matches.
VALUES = ("50%off", "50\\%off", "a_b", "axb", "a\\b", "a\\_b", "A_B")

# (pattern as written inside the filter's quotes, operator, values it matches)
CASES = [
    ("50%off", "LIKE", {"50%off", "50\\%off"}),  # % is any run of characters
    ("50\\%off", "LIKE", {"50%off"}),  # \% is a literal %
    ("%\\%%", "LIKE", {"50%off", "50\\%off"}),  # contains a literal %
    ("50\\\\%", "LIKE", {"50\\%off"}),  # \\ is a literal backslash
    ("a_b", "LIKE", {"a_b", "axb", "a\\b"}),  # _ is any one character
    ("a\\_b", "LIKE", {"a_b"}),  # \_ is a literal _
    ("a\\\\b", "LIKE", {"a\\b"}),
    ("a\\\\\\_b", "LIKE", {"a\\_b"}),  # literal backslash, then literal _
    ("a\\xb", "LIKE", {"axb"}),  # a backslash before any other character keeps it as is
    ("a\\_b", "ILIKE", {"a_b", "A_B"}),
    ("%\\\\%", "ILIKE", {"50\\%off", "a\\b", "a\\_b"}),
]


@pytest.fixture
def runs(stack: Client) -> tuple[str, dict[str, str]]:
    """An experiment with one run per value (as param p and tag t): its id and run id -> value."""
    eid = stack.create_experiment("like")
    by_run = {}
    for value in VALUES:
        run = stack.create_run(eid, tags={"t": value})
        stack.log_param(run.info.run_id, "p", value)
        by_run[run.info.run_id] = value
    return eid, by_run


def test_run_searches_escape_with_backslash(
    stack: Client, runs: tuple[str, dict[str, str]]
) -> None:
    eid, by_run = runs
    for pattern, op, expected in CASES:
        for key in ("params.p", "tags.t"):
            found = stack.search_runs([eid], f"{key} {op} '{pattern}'")
            assert {by_run[r.info.run_id] for r in found} == expected, (key, op, pattern)


def test_equality_takes_backslashes_literally(
    stack: Client, runs: tuple[str, dict[str, str]]
) -> None:
    eid, by_run = runs
    found = stack.search_runs([eid], "params.p = '50\\%off'")
    assert [by_run[r.info.run_id] for r in found] == ["50\\%off"]


def test_experiment_and_model_searches_escape_with_backslash(stack: Client) -> None:
    for i, value in enumerate(VALUES):
        stack.create_experiment(f"x-{value}")
        # Model names take no % or backslash: the values go in a tag.
        stack.create_registered_model(f"m{i}", tags={"t": value})
    for pattern, op, expected in CASES:
        experiments = stack.search_experiments(
            view_type=ViewType.ALL, filter_string=f"name {op} 'x-{pattern}'"
        )
        assert {e.name.removeprefix("x-") for e in experiments} == expected, (op, pattern)
        models = stack.search_registered_models(f"tags.t {op} '{pattern}'")
        assert {VALUES[int(m.name[1:])] for m in models} == expected, (op, pattern)
    # User text searched for as a substring (the web UI's search box) matches only itself.
    for text, expected_names in [
        ("50%o", {"50%off"}),
        ("a\\_", {"a\\_b"}),
        ("_", {"a_b", "a\\_b", "A_B"}),
    ]:
        pattern = f"%{like_literal(text)}%"
        found = stack.search_experiments(filter_string=f"name ILIKE 'x-{pattern}'")
        assert {e.name.removeprefix("x-") for e in found} == expected_names, text


@pytest.mark.parametrize("op", ["LIKE", "ILIKE"])
def test_pattern_ending_in_escape_is_refused(stack: Client, op: str) -> None:
    eid = stack.create_experiment("e")
    run = stack.create_run(eid)
    stack.log_param(run.info.run_id, "p", "ab\\")
    with pytest.raises(InvalidArgument, match=r"ends with an escaping backslash"):
        stack.search_runs([eid], f"params.p {op} 'ab\\'")
    # An escaped backslash at the end is a pattern like any other.
    found = stack.search_runs([eid], f"params.p {op} 'ab\\\\'")
    assert [r.info.run_id for r in found] == [run.info.run_id]


@pytest.mark.parametrize("op", ["LIKE", "ILIKE"])
def test_an_overlong_pattern_is_refused_naming_the_field(stack: Client, op: str) -> None:
    """SQLite fails patterns over 50,000 bytes as an internal error; both backends refuse them
    as the caller's mistake."""
    eid = stack.create_experiment("long")
    with pytest.raises(InvalidArgument, match=r"longer than 12000 characters") as refused:
        stack.search_runs([eid], f"params.p {op} '%{'é' * 12_000}%'")
    assert refused.value.field == "filter"
    with pytest.raises(InvalidArgument, match=r"longer than 12000"):
        stack.search_experiments(filter_string=f"name {op} '{'a' * 50_010}'")
    assert not stack.search_runs([eid], f"params.p {op} '{'é' * 12_000}'")
