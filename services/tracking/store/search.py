"""SQL for search_runs and search_experiments: which identifiers exist, their types, and ordering.

Metrics compare against `latest_metrics` (one row per run and key), so a metric filter or order
is an indexed lookup, not a scan of the metric history. Runs missing the metric (or param/tag)
in an order-by come last, whichever the direction; NaN sorts above every number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    String,
    and_,
    bindparam,
    cast,
    false,
    func,
    null,
    select,
    true,
)

from modelyard.entities import SystemTag, ViewType
from modelyard.entities.common import LifecycleStage
from modelyard.errors import InvalidArgument
from modelyard.services.common.filters import Comparison, OrderKey
from modelyard.services.common.filters.sql import (
    NUMBER_OPS,
    bound_value,
    compare,
    key_value_lookup,
    lookup_exists,
    value_shape,
)
from modelyard.services.common.keyset import Term, after_clause, keyed
from modelyard.services.common.keyset import after_binds as after_binds
from modelyard.services.common.keyset import next_token as next_token
from modelyard.services.common.keyset import pattern as pattern
from modelyard.services.common.keyset import position_of as position_of
from modelyard.services.common.keyset import read_position as read_position
from modelyard.services.common.keyset import resume as resume
from modelyard.services.tracking.store.schema import (
    datasets,
    experiment_tags,
    experiments,
    input_tags,
    inputs,
    latest_metrics,
    params,
    runs,
    tags,
)

# The primary keys a token names a row by when its position is too long to carry (keyset).
RUN_KEY = (Term(runs.c.run_uuid),)
EXPERIMENT_KEY = (Term(experiments.c.experiment_id),)

# attribute name -> (column, kind); aliases as MLflow accepts them.
_RUN_ATTRIBUTES = {
    "run_id": (runs.c.run_uuid, "string"),
    "run_name": (runs.c.name, "string"),
    "status": (runs.c.status, "string"),
    "user_id": (runs.c.user_id, "string"),
    "artifact_uri": (runs.c.artifact_uri, "string"),
    "start_time": (runs.c.start_time, "number"),
    "end_time": (runs.c.end_time, "number"),
    "parent_run_id": (runs.c.parent_run_id, "string"),
    "experiment_id": (cast(runs.c.experiment_id, String), "string"),
}
_RUN_ATTRIBUTES |= {
    alias: _RUN_ATTRIBUTES[name]
    for alias, name in {
        "created": "start_time",
        "Created": "start_time",
        "run name": "run_name",
        "Run name": "run_name",
        "Run Name": "run_name",
    }.items()
}

_EXPERIMENT_ATTRIBUTES = {
    "name": (experiments.c.name, "string"),
    "experiment_id": (cast(experiments.c.experiment_id, String), "string"),
    "creation_time": (experiments.c.creation_time, "number"),
    "last_update_time": (experiments.c.last_update_time, "number"),
}


def stage_filter(column: ColumnElement, view_type: ViewType) -> ColumnElement[bool] | None:
    if view_type == ViewType.ACTIVE_ONLY:
        return column == LifecycleStage.ACTIVE.value
    if view_type == ViewType.DELETED_ONLY:
        return column == LifecycleStage.DELETED.value
    return None


def _attribute(table: dict, key: str, field: str) -> tuple[ColumnElement, str]:
    try:
        return table[key]
    except KeyError:
        raise InvalidArgument(
            f"{field}: unknown attribute {key!r}; use one of {', '.join(sorted(table))}",
            field=field,
        ) from None


def _exists(owner: ColumnElement, stmt: Select, nth: int = 0) -> ColumnElement[bool]:
    """The filter's `nth` lookup (lookup_exists), correlated to the run id `owner` however deep
    it is nested (SQLAlchemy correlates by itself only to the enclosing SELECT)."""
    return lookup_exists(stmt.correlate(owner.table), nth)


def _key_value_clause(
    table,
    owner: ColumnElement,
    c: Comparison,
    field: str,
    param: str | None = None,
    nth: int = 0,
) -> ColumnElement[bool]:
    """params.x / tags.x: a correlated EXISTS on (owner, key), so it uses the primary key."""
    match = select(1).where(table.c.run_uuid == owner, table.c.key == c.key)
    correlated = match.correlate(owner.table)  # see _exists
    return key_value_lookup(correlated, table.c.value, c, nth, field=field, param=param)


def _metric_clause(
    c: Comparison, field: str, param: str, owner: ColumnElement, nth: int = 0
) -> ColumnElement[bool]:
    """NaN compares as MLflow's: unequal to every number, and nothing else."""
    lm = latest_metrics
    value = compare(lm.c.value, c, "number", field=field, ops=NUMBER_OPS, param=param)
    nan = lm.c.is_nan.is_(True) if c.op == "!=" else None
    return _exists(
        owner,
        select(1).where(
            lm.c.run_uuid == owner,
            lm.c.key == c.key,
            lm.c.is_nan.is_(False) & value if nan is None else nan | value,
        ),
        nth,
    )


def _dataset_clause(
    c: Comparison, field: str, param: str, owner: ColumnElement, nth: int = 0
) -> ColumnElement[bool]:
    tables = inputs.join(datasets, inputs.c.dataset_uuid == datasets.c.dataset_uuid)
    if c.key in ("name", "digest"):
        column = datasets.c.name if c.key == "name" else datasets.c.digest
        cond = compare(column, c, "string", field=field, param=param)
    elif c.key == "context":
        tables = tables.join(
            input_tags,
            and_(
                input_tags.c.input_uuid == inputs.c.input_uuid,
                input_tags.c.key == SystemTag.DATASET_CONTEXT.value,
            ),
        )
        cond = compare(input_tags.c.value, c, "string", field=field, param=param)
    else:
        raise InvalidArgument(
            f"{field}: unknown dataset field {c.key!r}; use datasets.name, datasets.digest or "
            "datasets.context",
            field=field,
        )
    lookup = select(1).select_from(tables).where(inputs.c.run_uuid == owner, cond)
    return _exists(owner, lookup, nth)


def run_conditions(
    filters: Sequence[Comparison],
    view_type: ViewType,
    owner: ColumnElement = runs.c.run_uuid,
    field: str = "filter",
) -> list:
    """The view type's lifecycle stage and the filters, as clauses on `runs` whose values are
    bind parameters (`filter_binds` gives them), so the clauses, and statements built on them,
    serve every search of the same shape. Params, tags, metrics and datasets are looked up by
    `owner`, a column equal to runs.run_uuid where the clauses are used: the metric walk passes
    its own, which lets PostgreSQL test them before it reads the run's row."""
    stage = stage_filter(runs.c.lifecycle_stage, view_type)
    clauses = [] if stage is None else [stage]
    nth = 0  # lookups so far
    for i, c in enumerate(_normalized(filters)):
        param = _param(i)
        if c.entity == "metric":
            clauses.append(_metric_clause(c, field, param, owner, nth))
        elif c.entity == "param":
            clauses.append(_key_value_clause(params, owner, c, field, param, nth))
        elif c.entity == "tag":
            clauses.append(_key_value_clause(tags, owner, c, field, param, nth))
        elif c.entity == "dataset":
            clauses.append(_dataset_clause(c, field, param, owner, nth))
        else:
            column, kind = _attribute(_RUN_ATTRIBUTES, c.key, field)
            clauses.append(compare(column, c, kind, field=field, param=param))
            continue
        nth += 1
    return clauses


def filter_binds(filters: Sequence[Comparison]) -> tuple[tuple, dict[str, object]]:
    """The filters' shape (what run_conditions builds from, without the values) and the
    values of its bind parameters."""
    normalized = _normalized(filters)
    shape = tuple(value_shape(c) for c in normalized)
    return shape, {_param(i): bound_value(c) for i, c in enumerate(normalized)}


def _param(index: int) -> str:
    return f"filter_{index}"


def _normalized(filters: Sequence[Comparison]) -> list[Comparison]:
    """experiment_id compares as text (see _RUN_ATTRIBUTES): a number compares as its digits."""
    return [
        Comparison(c.entity, c.key, c.op, _as_text(c.value))
        if c.entity == "attribute" and c.key == "experiment_id"
        else c
        for c in filters
    ]


def _as_text(value: object) -> object:
    if isinstance(value, float):
        return str(int(value))
    if isinstance(value, tuple):
        return tuple(_as_text(v) for v in value)
    return value


def _optional(expr: ColumnElement[Any], ascending: bool) -> list[Term]:
    """A key some rows lack: those last, whichever the direction."""
    return [Term(expr.is_(None), missing=True), Term(expr, ascending, nullable=True)]


def order_runs(
    stmt: Select, order_by: Sequence[OrderKey], field: str = "order_by"
) -> tuple[Select, list[Term]]:
    """`stmt` joined to what the order needs, and the order's terms, MLflow's: runs without a
    key last, a metric's NaN after its numbers; ties (and no order) newest first, then by run
    id, so every run has a place of its own (keyed applies them)."""
    terms: list[Term] = []
    for i, key in enumerate(order_by):
        if key.entity == "metric":
            lm = latest_metrics.alias(f"order_metric_{i}")
            stmt = stmt.outerjoin(lm, and_(lm.c.run_uuid == runs.c.run_uuid, lm.c.key == key.key))
            flag, value = _optional(lm.c.value, key.ascending)
            terms += [flag, Term(lm.c.is_nan, nullable=True), value]
        elif key.entity in ("param", "tag"):
            table = (params if key.entity == "param" else tags).alias(f"order_{key.entity}_{i}")
            stmt = stmt.outerjoin(
                table, and_(table.c.run_uuid == runs.c.run_uuid, table.c.key == key.key)
            )
            terms += _optional(table.c.value, key.ascending)
        elif key.entity == "attribute":
            column, _ = _attribute(_RUN_ATTRIBUTES, key.key, field)
            terms += _optional(column, key.ascending)
        else:
            raise InvalidArgument(
                f"{field}: cannot order runs by {key.entity}s; use metrics., params., tags. or "
                "attributes.",
                field=field,
            )
    terms += [Term(runs.c.start_time, ascending=False), Term(runs.c.run_uuid)]
    return stmt, terms


# -- runs ordered by one metric -----------------------------------------------------------------
#
# The plain query (order_runs) joins every run of the experiments to its metric and sorts all the
# matches to return one page. When the order is a single metric of a single experiment, these
# read the experiment's values of that metric in result order instead, through
# ix_latest_metrics_order_asc/desc, test each run's filters as they come, and stop once the page
# is full. The filters look params, tags and metrics up by the walked run id, so a run that fails
# them costs no read of its runs row (PostgreSQL tests them first; 20% fewer buffers read for the
# benchmark's search). On PostgreSQL the walk is capped and each value's run is joined LATERAL
# with OFFSET 0: it then stays a per-value lookup rather than a join whose plan depends on fresh
# statistics. SQLite walks the index first by itself (its order is the query's). Runs without the
# metric follow (runs_missing_metric), as in the plain query.


# Built once: an alias's columns are set up on first use, which costs more than the query's run.
_WALK = latest_metrics.alias("walk")  # not latest_metrics: metric filters correlate to that
_HAS_METRIC = latest_metrics.alias("has_metric")


def metric_walk_terms(columns: Any, ascending: bool) -> list[Term]:
    """Numbers up (ASC) or down (DESC), then NaN; ties newest first, then by run id: the
    terms order_runs gives a single metric, less its flag (every walked run has the metric)."""
    return [
        Term(columns.is_nan),
        Term(columns.value, ascending),
        Term(columns.start_time, ascending=False),
        Term(columns.run_uuid),
    ]


# Where the walk's and the rest's terms start among order_runs' for one metric (flag, is_nan,
# value, start_time, run_uuid): a token one of them issues serves the other and the plain query.
WALK_FROM, REST_FROM = 1, 3


def runs_in_metric_order(
    key: OrderKey,
    filters: Sequence[Comparison],
    view_type: ViewType,
    capped: bool,
    lateral: bool,
    after: Sequence[object] | None = None,
) -> Select:
    """The runs rows of an experiment's runs that have metric `key`, meet the filters and sort
    after `after` (a position of metric_walk_terms), in search order, keyed as order_runs' are.
    Bind parameters: `experiment_id`, `limit`, the filters' (`filter_binds`), the position's
    (`after_binds`), and with `capped` `cap`, the number of the metric's values walked at
    most; one statement serves every experiment and every position of its pattern. `lateral`
    (PostgreSQL; SQLite has no LATERAL) joins each value's run LATERAL."""
    walk = _WALK
    of_key: tuple[ColumnElement[bool], ...] = (
        walk.c.experiment_id == bindparam("experiment_id"),
        walk.c.key == key.key,
    )
    if after is not None:
        of_key += (after_clause(metric_walk_terms(walk.c, key.ascending), after),)
    if capped:
        walked: FromClause = (
            select(walk.c.run_uuid, walk.c.is_nan, walk.c.value, walk.c.start_time)
            .where(*of_key)
            .order_by(*(t.order() for t in metric_walk_terms(walk.c, key.ascending)))
            .limit(bindparam("cap"))
            .subquery()
        )
        of_key = ()
    else:
        walked = walk
    columns = walked.c
    conditions = run_conditions(filters, view_type, owner=columns.run_uuid)
    if lateral:
        run = select(runs).where(runs.c.run_uuid == columns.run_uuid, *conditions).offset(0)
        joined = run.lateral("run")
        stmt = select(joined).select_from(walked.join(joined, true())).where(*of_key)
    else:
        on = runs.c.run_uuid == columns.run_uuid
        stmt = select(runs).select_from(walked.join(runs, on)).where(*of_key, *conditions)
    walked_terms = metric_walk_terms(columns, key.ascending)
    terms = [Term(false(), missing=True), *walked_terms]
    return keyed(stmt, terms, walked_terms).limit(bindparam("limit"))


def metric_values_within(key: OrderKey, after: Sequence[object] | None = None) -> Select:
    """How many values of the metric the experiment has after `after` (as in
    runs_in_metric_order), counting no further than the walk's cap. Bind parameters:
    `experiment_id`, `cap`, the position's."""
    lm = latest_metrics
    of_key = [lm.c.experiment_id == bindparam("experiment_id"), lm.c.key == key.key]
    if after is not None:
        of_key.append(after_clause(metric_walk_terms(lm.c, key.ascending), after))
    values = select(lm.c.run_uuid).where(*of_key).limit(bindparam("cap")).subquery()
    return select(func.count()).select_from(values)


def missing_metric_terms() -> list[Term]:
    """The terms of order_runs' for one metric from REST_FROM on: newest first, then by id."""
    return [Term(runs.c.start_time, ascending=False), Term(runs.c.run_uuid)]


def runs_missing_metric(
    key: OrderKey, conditions: Sequence, after: Sequence[object] | None = None
) -> Select:
    """The runs rows of the experiment's runs that meet `conditions` (run_conditions) but lack
    the metric, newest first, then by run id, from after `after` (a position of their last two
    terms), keyed as order_runs' are. Bind parameters: `experiment_id`, the filters', the
    position's, and `limit`."""
    has = _HAS_METRIC
    rest = missing_metric_terms()
    where = [
        runs.c.experiment_id == bindparam("experiment_id"),
        *conditions,
        ~select(1).where(has.c.run_uuid == runs.c.run_uuid, has.c.key == key.key).exists(),
    ]
    if after is not None:
        where.append(after_clause(rest, after))
    lacking = [Term(true(), missing=True), Term(null(), nullable=True), Term(null(), nullable=True)]
    return keyed(select(runs).where(*where), [*lacking, *rest], rest).limit(bindparam("limit"))


def experiment_filter_clauses(filters: Sequence[Comparison], field: str = "filter") -> list:
    clauses = []
    nth = 0  # lookups so far
    for c in filters:
        if c.entity == "tag":
            match = select(1).where(
                experiment_tags.c.experiment_id == experiments.c.experiment_id,
                experiment_tags.c.key == c.key,
            )
            clauses.append(key_value_lookup(match, experiment_tags.c.value, c, nth, field=field))
            nth += 1
        elif c.entity == "attribute":
            column, kind = _attribute(_EXPERIMENT_ATTRIBUTES, c.key, field)
            if c.key == "experiment_id":
                c = Comparison(c.entity, c.key, c.op, _as_text(c.value))
            clauses.append(compare(column, c, kind, field=field))
        else:
            raise InvalidArgument(
                f"{field}: experiments can be filtered by "
                f"{', '.join(sorted(_EXPERIMENT_ATTRIBUTES))} and tags.<key>, not "
                f"{c.entity}s.{c.key}",
                field=field,
            )
    return clauses


def experiment_order(order_by: Sequence[OrderKey], field: str = "order_by") -> list[Term]:
    """The order's terms (keyed applies them), newest first by default; ties by id, so every
    experiment has a place of its own."""
    terms: list[Term] = []
    for key in order_by:
        if key.entity != "attribute":
            raise InvalidArgument(
                f"{field}: experiments can be ordered by name, experiment_id, creation_time or "
                "last_update_time",
                field=field,
            )
        column, _ = _attribute(_EXPERIMENT_ATTRIBUTES, key.key, field)
        if key.key == "experiment_id":
            column = experiments.c.experiment_id  # numeric order, not text order
        terms.append(Term(column, key.ascending))
    if not order_by:
        terms.append(Term(experiments.c.creation_time, ascending=False))
    terms.append(Term(experiments.c.experiment_id))
    return terms
