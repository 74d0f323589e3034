"""Every name and id rule refuses a value with a trailing newline: `$` matches before a final
'\\n', so 'champion\\n' passed the alias rule (a look-alike of a protected alias that needed only
EDIT), 'team\\n' passed the tag key rule, and so on for each rule written with `$`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.entities.serving import Endpoint, ServedModel
from modelyard.errors import InvalidArgument
from modelyard.services.auth.service import AuthService
from modelyard.services.common import validation as v
from modelyard.services.common.artifacts.base import is_staged_upload, staged_upload_key
from modelyard.services.feature_store.definitions import _check_name
from modelyard.services.registry.names import alias_name, model_name
from modelyard.services.serving.service import validate_endpoint
from modelyard.services.tracking.service import experiment_id, run_id

RULES: dict[str, tuple[Callable[[str], object], str, str]] = {
    "tag key": (lambda s: v.key("key", s), "key", "team"),
    "model name": (lambda s: model_name("name", s), "name", "fraud"),
    "alias": (lambda s: alias_name("alias", s), "alias", "champion"),
    "run id": (lambda s: run_id("run_id", s), "run_id", "a" * 32),
    "experiment id": (lambda s: experiment_id("experiment_id", s), "experiment_id", "12"),
    "principal name": (lambda s: AuthService._valid_name("name", s), "name", "bob"),
    "endpoint name": (
        lambda s: validate_endpoint(Endpoint(s, (ServedModel("models:/m/1"),))),
        "endpoint.name",
        "fraud",
    ),
    "served model name": (
        lambda s: validate_endpoint(Endpoint("e", (ServedModel("models:/m/1", name=s),))),
        "endpoint.served_models[0].name",
        "m-1",
    ),
    "feature view name": (lambda s: _check_name("name", "feature view", s), "name", "drivers"),
}


@pytest.mark.parametrize("rule", RULES)
def test_a_trailing_newline_is_refused(rule: str) -> None:
    check, field, valid = RULES[rule]
    check(valid)
    with pytest.raises(InvalidArgument) as err:
        check(valid + "\n")
    assert err.value.field == field


def test_a_staged_upload_key_with_a_trailing_newline_is_not_one() -> None:
    key = staged_upload_key("a" * 32, "model.pkl", "b" * 32)
    assert is_staged_upload(key)
    assert not is_staged_upload(key + "\n")
