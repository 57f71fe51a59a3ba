"""Statements compiled by Django and sent together: a run's end (jobs/models.py,
Run._end) is its UPDATE, the INSERT that counts it for /metrics only if the
UPDATE applied, and the TaskResult's upsert, in one query string on PostgreSQL:
one round trip, and one transaction (the server runs a query string of several
statements as one implicit transaction, unless inside one already), as durable
as any. Each statement comes from Django's compilers; only the glue that joins
them is written here. Why: docs/architecture.md, "The hot path".

The statements of the hot path are compiled by Django once per process and
shape; after that only their parameters are prepared, as Django's compiler
prepares them: `update_where` and `insert` (values set and looked up, each by
its field), `reused` (a statement whose expressions change with a few inputs
only: a run's start, `queued_at = LEAST(COALESCE(queued_at, now), now)`),
`insert_reading` (an INSERT with one field read by a subquery of its own: a
run's job type revision) and `select` (a QuerySet's SELECT, with what makes
its rows model instances: a workflow's advance reads). For the last three, the
places of each input's parameters are found by compiling the statement twice,
with the inputs given and with other values of theirs (`_other`): a parameter
that stays the same is a constant; one that is the input, prepared by its field, both times is that
input's. A statement where a parameter is neither (computed from an input, or
a value that is not compared by equality) is compiled by Django every time.

On PostgreSQL, a statement compiled once is also planned once per connection:
the first time a connection runs it, it is PREPAREd under a name of its own,
and from then on sent as `EXECUTE name(parameters)` (`joined`). Planning was
most of what the server spent on each of them: 200 µs of a run's start read,
whose execution takes 40 (bench/run_end.py). The statements go as SQL, not
psycopg's own prepared statements, because those need server-side binding,
which sends one statement a round trip: an end would be five where it is one.
JOBS_DB_PREPARED_STATEMENTS turns it off (behind a pooler that hands one
client's statements to several server connections: docs/operations.md).
"""

import itertools
import logging
import re
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Expression, Field, Model, QuerySet
from django.db.models.constants import OnConflict
from django.db.models.query import get_related_populators
from django.db.models.sql import InsertQuery, UpdateQuery

logger = logging.getLogger(__name__)

# SQL with its parameters, as a cursor's execute() takes them.
Statement = tuple[str, Sequence]
# A statement's inputs (reused, insert_reading): by name, each value with the field that prepares it.
Inputs = dict[str, tuple[Any, Field]]


def together(using: str) -> bool:
    """Whether statements can be sent together to this database: PostgreSQL with
    client-side binding (Django's default with psycopg), which merges a query's
    parameters into its text and sends it as one simple query. SQLite runs one
    statement per execute()."""
    database = connections[using]
    return database.vendor == "postgresql" and not database.settings_dict["OPTIONS"].get("server_side_binding")


# The SQL of statements compiled once per process (update_where, insert), by their shape.
_compiled: dict[tuple, str] = {}
# reused's (select's too) and insert_reading's, by their shape: the SQL and where each parameter
# comes from (_slots), or None: compiled by Django every time.
_templates: dict[tuple, tuple[str, list] | None] = {}


# The SQL compiled once per process (_compiled, _templates, update_then_insert's glue):
# the name each is prepared under on a PostgreSQL connection, or None if it cannot be.
_names: dict[str, str | None] = {}
# The names prepared on each open PostgreSQL connection (its psycopg connection).
_prepared_on: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Each name's SQL as PREPAREd (its parameters numbered): for `unprepared`.
_prepared_sql: dict[str, str] = {}
_numbers = itertools.count()
_PLACEHOLDER = re.compile(r"%([s%])")
_EXECUTE = re.compile(r"EXECUTE (jobsite_\d+)")


def _compiled_once(sql: str) -> str:
    """Note SQL that is compiled once per process and sent again and again: `joined` prepares it."""
    if sql not in _names:
        _names.setdefault(sql, f"jobsite_{next(_numbers)}")  # one number each, whichever thread asks
    return sql


def joined(statements: Sequence[Statement], *, using: str) -> Statement:
    """Statements as one query string (to send together: `together`), each that
    is compiled once per process sent as the EXECUTE of its prepared statement,
    PREPAREd first if this connection has not yet (see the module's docstring)."""
    prepare = together(using) and settings.JOBS_DB_PREPARED_STATEMENTS
    if len(statements) == 1 and not prepare:
        return statements[0]
    texts, params = [], []
    for sql, each in statements:
        name = _names.get(sql) if prepare else None
        if name and _prepare(connections[using], name, sql, len(each)):
            sql = f"EXECUTE {name}({', '.join(['%s'] * len(each))})" if each else f"EXECUTE {name}"
        texts.append(sql)
        params.extend(each)
    return "; ".join(texts), params


def _prepare(database, name: str, sql: str, count: int) -> bool:
    """Whether `sql` is prepared as `name` on this connection now: PREPAREd
    if it was not. A prepared statement outlives a transaction rolled back, and
    goes with the connection. Sent by psycopg itself, not Django's cursor: it
    is not one of the caller's statements (tests count those), once a connection.
    A statement the server will not prepare (a parameter whose type it cannot
    tell) is sent as it is from then on, in this process; a connection that
    turns out dropped raises, as the statement itself would have."""
    database.ensure_connection()
    connection = database.connection
    prepared = _prepared_on.setdefault(connection, set())
    if name in prepared:
        return True
    from psycopg.pq import TransactionStatus  # PostgreSQL's (together)

    if _PLACEHOLDER.findall(sql).count("s") != count:  # not the parameters it was compiled for
        _names[sql] = None
        return False
    if connection.info.transaction_status == TransactionStatus.INERROR:
        return False  # sent as it is, to fail as it would have
    numbers = itertools.count(1)
    numbered = _PLACEHOLDER.sub(lambda match: f"${next(numbers)}" if match[1] == "s" else "%", sql)
    # Inside a transaction (begun, or to begin with this statement), a refused
    # PREPARE must not abort it: a savepoint of its own.
    inside = not connection.autocommit
    try:
        with database.wrap_database_errors:
            if inside:
                connection.execute("SAVEPOINT jobsite_prepare")
            connection.execute(f"PREPARE {name} AS {numbered}")
            if inside:
                connection.execute("RELEASE SAVEPOINT jobsite_prepare")
    except DatabaseError:
        if connection.closed or connection.broken:
            raise  # the connection is gone, not the statement refused: as the statement itself would fail
        logger.warning("Statement not prepared, sent as it is from now on: %s", sql, exc_info=True)
        if inside:
            with database.wrap_database_errors:
                connection.execute("ROLLBACK TO SAVEPOINT jobsite_prepare")
        _names[sql] = None
        return False
    prepared.add(name)
    _prepared_sql[name] = numbered
    return True


def unprepared(sql: str) -> str:
    """A query string as it is sent with JOBS_DB_PREPARED_STATEMENTS off: each
    EXECUTE of a statement prepared here replaced by the statement, its
    arguments in the places of its parameters (for tests, which read what was
    sent, and for reading a log)."""
    shown, position = [], 0
    while match := _EXECUTE.search(sql, position):
        shown.append(sql[position : match.start()])
        arguments, position = _arguments(sql, match.end())
        if match[1] not in _prepared_sql:  # not prepared by this process: left as it is
            shown.append(sql[match.start() : position])
            continue
        fill = lambda number, given=arguments: given[int(number[1]) - 1]  # noqa: E731
        shown.append(re.sub(r"\$(\d+)", fill, _prepared_sql[match[1]]))
    shown.append(sql[position:])
    return "".join(shown)


def _arguments(sql: str, position: int) -> tuple[list[str], int]:
    """The arguments of an EXECUTE whose name ends at `position`, each as
    written, and where the EXECUTE ends."""
    if not sql.startswith("(", position):
        return [], position
    arguments, depth, start, at = [], 0, position + 1, position
    while True:
        char = sql[at]
        if char == "'":  # a string literal: a quote inside it is doubled
            at = sql.index("'", at + 1)
            while sql.startswith("''", at):
                at = sql.index("'", at + 2)
        elif char == "(":
            depth += 1
        elif char == ")" or (char == "," and depth == 1):
            if char == ")":
                depth -= 1
            if depth == 0 or char == ",":
                arguments.append(sql[start:at].strip())
                start = at + 1
                if depth == 0:
                    return arguments, at + 1
        at += 1


def execute(statement: Statement, *, using: str) -> int:
    """Run one statement, as a QuerySet's update() runs its own; its row count."""
    with transaction.mark_for_rollback_on_error(using=using), connections[using].cursor() as cursor:
        cursor.execute(*joined([statement], using=using))
        return cursor.rowcount


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
        _compiled[shape] = _compiled_once(sql)
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
        _compiled[shape] = _compiled_once(sql)
    return sql, params


def insert_rows(model: type[Model], objs: Sequence[Model], *, using: str, batch_size: int) -> list[Statement]:
    """The INSERTs that `bulk_create(objs, batch_size=batch_size)` sends for rows
    whose primary key is set, compiled, not run: as many rows a statement as
    the database's bound on parameters allows (999 on SQLite as Django counts
    it), as bulk_create splits them. Compiled before a transaction, they keep
    Django's preparing of every field of every row out of it.

    Each statement's SQL is Django's, compiled once per process, shape and row
    count; then only the rows' values are prepared, as Django's compiler
    prepares them (each field's pre_save, then get_db_prep_save), and a value
    that is the same object as the row before's (a bulk trigger's job type,
    status, options) only once. Django's compiler, for a thousand runs' forty
    fields, was a third to a half of a bulk trigger's time before its first message
    (bench/throughput.py --bulk). Values the database computes (expressions),
    and fields with placeholders of their own, are compiled by Django every time."""
    fields = [field for field in model._meta.concrete_fields if not field.generated]
    size = min(batch_size, max(connections[using].ops.bulk_batch_size(fields, objs), 1))
    compiled, prepare = [], _RowPreparer(fields, connections[using])
    for start in range(0, len(objs), size):
        compiled.extend(_insert_chunk(model, fields, objs[start : start + size], using, prepare))
    return compiled


class _RowPreparer:
    """Prepares rows of `fields`' values for the database; a value that is the
    same object as the one before it in its field is prepared once."""

    def __init__(self, fields: Sequence[Field], database):
        self.fields, self.database = fields, database
        self.last: list[tuple[Any, Any]] = [(_UNSET, None)] * len(fields)

    def __call__(self, values: Sequence) -> list:
        prepared = []
        for index, (field, value) in enumerate(zip(self.fields, values, strict=True)):
            last, done = self.last[index]
            if value is not last:
                done = field.get_db_prep_save(value, self.database)
                self.last[index] = (value, done)
            prepared.append(done)
        return prepared


_UNSET = object()


def _insert_chunk(model: type[Model], fields: list[Field], objs: Sequence[Model], using: str, prepare) -> list:
    values = [[field.pre_save(obj, True) for field in fields] for obj in objs]
    computed = any(_computed(value) for row in values for value in row)
    shape = ("insert_rows", model, using, tuple(fields), len(objs))
    known = _row_statements.get(shape)
    if computed or not known:
        statement = InsertQuery(model)
        # raw: each field's value as pre_save left it above (an auto_now field's is set once).
        statement.insert_values(fields, objs, raw=True)
        compiled = statement.get_compiler(using).as_sql()
        if known is None and not computed:
            _row_statements[shape] = _row_layout(compiled, fields, len(objs))
        return compiled
    sql, by_columns = known
    rows = [prepare(row) for row in values]
    if by_columns:  # PostgreSQL's INSERT ... SELECT * FROM UNNEST(...): an array a field
        return [(sql, tuple(list(column) for column in zip(*rows, strict=True)))]
    return [(sql, tuple(value for row in rows for value in row))]


# insert_rows's statements by shape and row count: (SQL, whether its parameters
# are a field's values a parameter), or False: Django compiles each.
_row_statements: dict[tuple, tuple[str, bool] | bool] = {}


def _row_layout(compiled: list, fields: Sequence[Field], count: int) -> tuple[str, bool] | bool:
    """How Django's compiled INSERT of `count` rows takes its parameters: a
    value a parameter, row by row, or (UNNEST) a field's values a parameter;
    False for anything else (several statements, placeholders of a field's own)."""
    if len(compiled) != 1 or any(hasattr(field, "get_placeholder") for field in fields):
        return False
    sql, params = compiled[0]
    if len(params) == count * len(fields):
        return sql, False
    if len(params) == len(fields) and all(isinstance(each, list) and len(each) == count for each in params):
        return sql, True
    return False


def reused(shape: tuple, build: Callable[..., Statement], inputs: Inputs, *, using: str) -> Statement:
    """`build(**values)`, a statement compiled by Django from the values of
    `inputs` (name: (value, the field that prepares it)), compiled once per
    `shape` and database: afterwards only the inputs are prepared (each by its
    field's get_db_prep_save) and put in their places among the constant
    parameters. `build` must give the same statement for the same values: the
    shape names everything else it depends on. How the places are found: the
    module's docstring."""
    database = connections[using]
    prepared = _prepared(inputs, database)
    key = ("reused", using, *shape)
    if key in _templates:
        template = _templates[key]
        if template is not None:
            sql, slots = template
            return sql, _filled(slots, prepared)
        return build(**_values(inputs))
    statement = build(**_values(inputs))
    others = _others(inputs)
    _templates[key] = _template(statement, build(**_values(others)), prepared, _prepared(others, database))
    return statement


def insert_reading(
    model: type[Model],
    fields: Sequence[Field],
    obj: Model,
    read: tuple[Field, Callable[..., Expression], Inputs],
    *,
    using: str,
) -> Statement:
    """The INSERT of one row (`obj`'s `fields`) that `obj.save(force_insert=True)`
    would send, where one of the fields, `read` = (field, expression, inputs),
    takes the value of `expression(**values of inputs)`, a subquery the INSERT
    itself reads: compiled once per shape and database, as `insert` and `reused`
    are (the other fields' values prepared by their fields, the inputs at their
    places). `obj`'s attribute for that field is left unset: read from the row
    if asked for."""
    read_field, expression, inputs = read
    database = connections[using]
    position = list(fields).index(read_field)
    plain = [field for field in fields if field is not read_field]
    values = [field.pre_save(obj, True) for field in plain]
    computed = any(_computed(value) for value in values)
    prepared = _prepared(inputs, database)
    if not computed:
        row = [field.get_db_prep_save(value, database) for field, value in zip(plain, values, strict=True)]
    key = ("insert_reading", model, using, tuple(fields), read_field)
    template = _templates.get(key)
    if template is not None and not computed:
        sql, slots = template
        obj.__dict__.pop(read_field.attname, None)
        return sql, [*row[:position], *_filled(slots, prepared), *row[position:]]

    def compiled(inputs: Inputs) -> Statement:
        setattr(obj, read_field.attname, expression(**_values(inputs)))
        statement = InsertQuery(model)
        statement.insert_values(list(fields), [obj])
        [compiled] = statement.get_compiler(using).as_sql()
        obj.__dict__.pop(read_field.attname)
        return compiled

    statement = compiled(inputs)
    if key not in _templates and not computed:
        others = _others(inputs)
        sql, params = statement
        other_sql, other_params = compiled(others)
        end = len(params) - (len(row) - position)  # the subquery's parameters: params[position:end]
        template = None
        # The other fields' values, in the places of their columns, as prepared here.
        if (
            len(params) == len(other_params)
            and end >= position
            and all(map(_alike, params[:position] + params[end:], row))
            and all(map(_alike, other_params[:position] + other_params[end:], row))
        ):
            subquery, other_subquery = (sql, params[position:end]), (other_sql, other_params[position:end])
            template = _template(subquery, other_subquery, prepared, _prepared(others, database))
        _templates[key] = template
    return statement


class Rows:
    """What makes a QuerySet's rows its model instances, as its ModelIterable
    makes them (converters, `from_db`, select_related's populators), taken once
    from its compiler, once that has compiled: a SELECT of `select`'s."""

    def __init__(self, compiler, using: str):
        select, klass_info = compiler.select, compiler.klass_info
        self.model = klass_info["model"]
        self.start, self.end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start : self.end]]
        self.related = get_related_populators(klass_info, select, using)
        self.converters = list(compiler.get_converters([column[0] for column in select[: compiler.col_count]]).items())
        self.using = using

    def __call__(self, rows: Sequence[Sequence]) -> list[Model]:
        connection = connections[self.using]
        instances = []
        for row in map(list, rows):
            for position, (converters, expression) in self.converters:
                for converter in converters:
                    row[position] = converter(row[position], expression, connection)
            instance = self.model.from_db(self.using, self.init_list, row[self.start : self.end])
            for populator in self.related:
                populator.populate(row, instance)
            instances.append(instance)
        return instances


@dataclass
class Reading:
    """A SELECT and what makes its rows model instances (`select`), to run with `read`."""

    statement: Statement
    rows: Rows


# select's Rows, by shape and database: taken from one compile of its QuerySet.
_rows: dict[tuple, Rows] = {}


def select(shape: tuple, build: Callable[..., QuerySet], inputs: Inputs, *, using: str) -> Reading:
    """The SELECT of the QuerySet `build(**values)` (values of `inputs`), compiled
    once per `shape` and database as `reused` compiles its statements, and what
    makes its rows model instances without Django's compiler. `build` must give
    the same query for the same values, without annotations, and the shape names
    everything else it depends on. Building and compiling the two reads of a
    workflow's advance (a dozen columns of the run, its job type's) was about as
    much CPU as the rest of a step hop's end together."""
    key = (using, *shape)
    if key not in _rows:
        compiler = build(**_values(inputs)).query.get_compiler(using)
        compiler.as_sql()  # which sets up what it selects, as Rows reads it
        _rows[key] = Rows(compiler, using)

    def compiled(**values) -> Statement:
        return build(**values).query.get_compiler(using).as_sql()

    return Reading(reused(("select", *shape), compiled, inputs, using=using), _rows[key])


def read(readings: Sequence[Reading], *, using: str) -> list[list[Model]]:
    """Run SELECTs one after another, each seeing what was committed before it
    began (a later one sees what committed while an earlier one waited for a
    lock); each one's model instances. On PostgreSQL (`together`) one query
    string, one round trip: inside a transaction, as a lock it takes must be
    held after it."""
    with connections[using].cursor() as cursor:
        if not together(using):
            found = []
            for reading in readings:
                cursor.execute(*reading.statement)
                found.append(cursor.fetchall())
        else:
            cursor.execute(*joined([reading.statement for reading in readings], using=using))
            found = [cursor.fetchall()]
            while cursor.nextset():
                found.append(cursor.fetchall())
    return [reading.rows(rows) for reading, rows in zip(readings, found, strict=True)]


def _values(inputs: Inputs) -> dict:
    return {name: value for name, (value, _) in inputs.items()}


def _prepared(inputs: Inputs, database) -> dict:
    """Each input's value as its field prepares it for the database."""
    return {name: field.get_db_prep_save(value, database) for name, (value, field) in inputs.items()}


def _others(inputs: Inputs) -> Inputs:
    """The inputs with other values of theirs (_other), to compile a statement with a second time."""
    return {name: (_other(field.to_python(value)), field) for name, (value, field) in inputs.items()}


def _template(statement: Statement, other: Statement, prepared: dict, other_prepared: dict) -> tuple[str, list] | None:
    """A statement's SQL and its parameters' places (_slots), from two compiles
    of it with different inputs; None if they differ otherwise, or a parameter
    is neither an input's nor constant."""
    (sql, params), (other_sql, other_params) = statement, other
    if sql != other_sql or len(params) != len(other_params):
        return None
    slots = _slots(params, other_params, prepared, other_prepared)
    return (_compiled_once(sql), slots) if slots is not None else None


def _slots(params: Sequence, other_params: Sequence, prepared: dict, other_prepared: dict) -> list | None:
    """Where each parameter comes from: (None, value), a constant, or (key, None),
    the prepared value `prepared[key]` (the same place held `other_prepared[key]`
    in the other compile). None if a parameter is neither, or could be several."""
    slots = []
    for value, other_value in zip(params, other_params, strict=True):
        keys = [key for key in prepared if _alike(value, prepared[key]) and _alike(other_value, other_prepared[key])]
        if len(keys) == 1:
            slots.append((keys[0], None))
        elif not keys and _alike(value, other_value):
            slots.append((None, value))
        else:
            return None
    return slots


def _filled(slots: list, prepared: dict) -> list:
    return [value if key is None else prepared[key] for key, value in slots]


def _alike(value, other) -> bool:
    """Whether two prepared parameters are the same value (psycopg's JSON
    wrappers compare by the object they wrap)."""
    if value == other:
        return True
    return type(value) is type(other) and hasattr(value, "obj") and value.obj == other.obj


def _other(value):
    """A value of `value`'s type that differs from it, and in every part of it
    (a date, a time, a prefix), to find where an input is in a statement."""
    if isinstance(value, datetime):
        return value + timedelta(days=400, seconds=3661, microseconds=1)
    if isinstance(value, str):
        return f"{value}·"
    if isinstance(value, int) and not isinstance(value, bool):
        return value + 1
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int ^ (1 << 64 | 1))
    raise TypeError(f"no other sample of {value!r} to compile a statement with")


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
    sql = f"WITH updated AS ({update_sql} RETURNING 1) {head} SELECT {placeholders[:-1]} FROM updated"  # noqa: S608 (compiled SQL, values are parameters)
    if _names.get(update_sql) and _names.get(insert_sql):
        _compiled_once(sql)
    with connections[using].cursor() as cursor:
        cursor.execute(*joined([(sql, [*update_params, *insert_params]), *then], using=using))
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
