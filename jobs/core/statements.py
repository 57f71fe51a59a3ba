"""Statements compiled by Django and sent together: a run's end (jobs/models.py,
Run._end) is its UPDATE, the INSERT that counts it for /metrics only if the
UPDATE applied, and the TaskResult's upsert, in one query string on PostgreSQL:
one round trip, and one transaction (the server runs a query string of several
statements as one implicit transaction, unless inside one already), as durable
as any. Each statement comes from Django's compilers; only the glue that joins
them is written here. Why: docs/architecture.md, "The hot path".
"""

from collections.abc import Sequence

from django.db import connections
from django.db.models import Field, Model, QuerySet
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery, UpdateQuery

# SQL with its parameters, as a cursor's execute() takes them.
Statement = tuple[str, Sequence]


def together(using: str) -> bool:
    """Whether statements can be sent together to this database: PostgreSQL with
    client-side binding (Django's default with psycopg), which merges a query's
    parameters into its text and sends it as one simple query. SQLite runs one
    statement per execute()."""
    database = connections[using]
    return database.vendor == "postgresql" and not database.settings_dict["OPTIONS"].get("server_side_binding")


# The SQL of statements compiled once per process (update_where, insert), by their shape.
_compiled: dict[tuple, str] = {}


def update(query: QuerySet, changes: dict) -> Statement:
    """`query.update(**changes)`, compiled, not run."""
    statement = query.query.chain(UpdateQuery)
    statement.add_update_values(changes)
    return statement.get_compiler(query.db).as_sql()


def _computed(value) -> bool:
    return hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save")


def update_where(model: type[Model], filters: dict, changes: dict, *, using: str) -> Statement:
    """`model.objects.filter(**filters).update(**changes)`, compiled, not run.

    With plain values (no expressions, no model instances) and filters that are
    `name=value` or `name__in=values`, Django compiles it once per shape (which
    fields are set, which of them to NULL, how many values each filter has), and
    only the parameters are prepared again, as Django's compiler prepares them:
    each value set by its field's get_db_prep_save, each value looked up by its
    field's get_prep_value and get_db_prep_value. Building and compiling a run's
    end's statements again for each run (this UPDATE and the TaskResult's INSERT)
    was about a third of the end's CPU (bench/run_end.py)."""
    if any(_computed(value) for value in changes.values()):
        return update(model._default_manager.db_manager(using).filter(**filters), changes)
    database = connections[using]
    opts = model._meta
    values = [opts.get_field(name).get_db_prep_save(value, database) for name, value in changes.items()]
    where, counts = [], []
    for key, value in sorted(filters.items()):  # the order of the conditions of Q(**filters)
        name, _, lookup = key.partition("__")
        field = opts.pk if name == "pk" else opts.get_field(name)
        looked_up = list(value) if lookup == "in" else [value]
        where.extend(field.get_db_prep_value(field.get_prep_value(each), database, prepared=True) for each in looked_up)
        counts.append((key, len(looked_up)))
    nulls = tuple((name, value is None) for name, value in zip(changes, values, strict=True))
    shape = ("update", model, using, nulls, *counts)
    params = [*(value for value in values if value is not None), *where]  # a None is written `= NULL`
    sql = _compiled.get(shape)
    if sql is None:
        sql, compiled_params = update(model._default_manager.db_manager(using).filter(**filters), changes)
        # What the parameters prepared here rely on, checked on the compiled statement.
        if len(compiled_params) != len(params) or list(compiled_params[len(params) - len(where) :]) != where:
            raise ValueError(f"update_where: {sql} takes other parameters than {params}")
        _compiled[shape] = sql
    return sql, params


def insert(
    model: type[Model],
    fields: Sequence[Field],
    obj: Model,
    *,
    using: str,
    update_fields: Sequence[Field] = (),
    unique_fields: Sequence[Field] = (),
) -> Statement:
    """The INSERT of one row (`obj`'s `fields`) that `bulk_create` would send,
    compiled, not run; with `update_fields` and `unique_fields`, the upsert that
    `bulk_create(update_conflicts=True, ...)` would send. Compiled once per
    shape and database; then only the parameters are prepared again, as
    Django's compiler prepares them (each field's pre_save, then get_db_prep_save)."""
    shape = ("insert", model, using, tuple(fields), tuple(update_fields), tuple(unique_fields))
    sql = _compiled.get(shape)
    if sql is not None:
        values = [field.pre_save(obj, True) for field in fields]
        if not any(_computed(value) for value in values):
            database = connections[using]
            return sql, [field.get_db_prep_save(value, database) for field, value in zip(fields, values, strict=True)]
    statement = InsertQuery(
        model,
        on_conflict=OnConflict.UPDATE if update_fields else None,
        update_fields=list(update_fields),
        unique_fields=list(unique_fields),
    )
    statement.insert_values(list(fields), [obj])
    [(sql, params)] = statement.get_compiler(using).as_sql()
    if len(params) == len(fields):  # one parameter a field: none computed by the database
        _compiled[shape] = sql
    return sql, params


def update_then_insert(update: Statement, insert: Statement, *, then: Sequence[Statement] = (), using: str) -> bool:
    """Run `update`; `insert` (one row) only if the update changed a row; then the
    statements `then`, whatever the update did: one query string, one round trip,
    one transaction (only when `together(using)`). Whether the update applied.

    The glue, in full:
        WITH updated AS (<update> RETURNING 1)
        INSERT INTO <table> (<columns>) SELECT <insert's placeholders> FROM updated;
        <then>...
    so that the INSERT's row count says whether the run's row was updated."""
    update_sql, update_params = update
    insert_sql, insert_params = insert
    head, placeholders = insert_sql.rsplit(" VALUES (", 1)
    if not placeholders.endswith(")") or ")" in placeholders[:-1]:
        raise ValueError(f"not an INSERT of one row: {insert_sql}")
    sql = [f"WITH updated AS ({update_sql} RETURNING 1) {head} SELECT {placeholders[:-1]} FROM updated"]  # noqa: S608 (compiled SQL, values are parameters)
    params = [*update_params, *insert_params]
    for then_sql, then_params in then:
        sql.append(then_sql)
        params.extend(then_params)
    with connections[using].cursor() as cursor:
        cursor.execute("; ".join(sql), params)
        return cursor.rowcount > 0  # the first statement's: the INSERT's
