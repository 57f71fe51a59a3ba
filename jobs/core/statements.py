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


def insert_shared(
    shared: Model,
    *,
    groups: Sequence[Model],
    group_fields: Sequence[str],
    row_fields: Sequence[str],
    rows: Sequence[tuple],
    using: str,
) -> None:
    """Insert many rows of `shared`'s model that share most of their values,
    leaving out a row that a unique constraint refuses, as
    `bulk_create(ignore_conflicts=True)` does. A row is its `row_fields`' values
    followed by the index of its group in `groups`, from which it takes its
    `group_fields`; every other field's value is `shared`'s. Each value is
    prepared as Django's compiler prepares it (a shared or group value by its
    field's pre_save, then get_db_prep_save; a row's by get_db_prep_save), once
    for what is shared.

    Written here because Django has no such statement: bulk_create takes one
    model instance a row and prepares every field of every row (a thousand
    schedule ticks, forty columns each: most of planning's CPU, for values that
    differ in five). This one statement, built from the model's table and
    column names, on PostgreSQL and SQLite alike:
        INSERT [OR IGNORE] INTO <table> (<every column>)
        SELECT CAST(<the row's, its group's or the shared parameter> AS <the column's type>), ...
        FROM (VALUES (<row>), ...) AS each_row, (VALUES (<index>, <group>), ...) AS each_group
        WHERE each_group.column1 = each_row.column<n> [ON CONFLICT DO NOTHING]
    (a VALUES list names its columns column1, column2... on both). The casts
    (Django's cast types) give PostgreSQL each column's type where a parameter
    has none (a NULL); on SQLite they keep what the column's affinity keeps
    (dates are text there). Split into as many statements as the database's
    parameter limit needs (999 on SQLite as Django counts it, none on PostgreSQL)."""
    if not rows:
        return
    database = connections[using]
    opts = shared._meta
    columns, sources, shared_params = _shared_select(shared, group_fields, row_fields, database)
    head = f"{database.ops.insert_statement(on_conflict=OnConflict.IGNORE)} {database.ops.quote_name(opts.db_table)}"
    tail = database.ops.on_conflict_suffix_sql(opts.concrete_fields, OnConflict.IGNORE, None, None)
    row_prep = [opts.get_field(name) for name in row_fields]
    group_prep = [opts.get_field(name) for name in group_fields]
    prepared_groups: dict[int, list] = {}
    limit = database.features.max_query_params
    # Rows a statement, its parameters within the limit even with a group for each row.
    size = (limit - len(shared_params)) // (len(row_fields) + len(group_fields) + 2) if limit else len(rows)
    with database.cursor() as cursor:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            params = list(shared_params)
            for *values, group in chunk:
                params.extend(
                    field.get_db_prep_save(value, database) for field, value in zip(row_prep, values, strict=True)
                )
                params.append(group)
            used = sorted({row[-1] for row in chunk})
            for index in used:
                if index not in prepared_groups:
                    group = groups[index]
                    prepared_groups[index] = [f.get_db_prep_save(f.pre_save(group, True), database) for f in group_prep]
                params.extend([index, *prepared_groups[index]])
            each_row = ", ".join([f"({', '.join(['%s'] * (len(row_fields) + 1))})"] * len(chunk))
            each_group = ", ".join([f"({', '.join(['%s'] * (len(group_fields) + 1))})"] * len(used))
            cursor.execute(
                f"{head} ({', '.join(columns)}) SELECT {', '.join(sources)}"  # noqa: S608 (the model's names; values are parameters)
                f" FROM (VALUES {each_row}) AS each_row, (VALUES {each_group}) AS each_group"
                f" WHERE each_group.column1 = each_row.column{len(row_fields) + 1} {tail}",
                params,
            )


def _shared_select(
    shared: Model, group_fields: Sequence[str], row_fields: Sequence[str], database
) -> tuple[list[str], list[str], list]:
    """insert_shared's columns, what its SELECT gives each, and the parameters of
    the shared values, in the columns' order."""
    columns, sources, params = [], [], []
    for field in shared._meta.concrete_fields:
        if field.name in row_fields:
            source = f"each_row.column{row_fields.index(field.name) + 1}"
        elif field.name in group_fields:
            source = f"each_group.column{group_fields.index(field.name) + 2}"
        else:
            source = "%s"
            params.append(field.get_db_prep_save(field.pre_save(shared, True), database))
        columns.append(database.ops.quote_name(field.column))
        # Text (the fields that take an empty string) needs no cast, and a cast to
        # varchar(n) would cut a value that the INSERT refuses as too long.
        text = field.empty_strings_allowed
        sources.append(source if text else f"CAST({source} AS {field.cast_db_type(database)})")
    return columns, sources, params
