"""Rows of a model inserted in one statement, without a model instance per row.

bulk_create() and create() prepare every field of every instance through the ORM: for
the rows a hub takes by the thousand a second (app-metric records, agents' host
samples) that cost more than the database spent storing them. Here each row is a dict
of field attnames (missing fields get their defaults); only the fields whose value the
backend cannot take as it is (times, JSON) are prepared, by the field itself.
"""

from django.db import connection, models


def insert(model: type[models.Model], rows: list[dict]) -> None:
    if not rows:
        return
    fields = _fields(model)
    plan = _plan(fields)
    write(model._meta.db_table, [f.column for f in fields], [_params(plan, row) for row in rows])


def write(table: str, columns: list[str], rows: list[tuple]) -> None:
    """Rows of values (as the backend takes them) into `table`'s `columns`: on PostgreSQL
    with one COPY, elsewhere with executemany().

    PostgreSQL runs an INSERT once per row of executemany(), each with its own bind and
    executor start: for a batch's 50 process samples COPY took a quarter less of the
    server's CPU and half of ours (bench_fleet's batches, 1,500 of them, committed one
    by one)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Errors as django.db's, as executemany() raises them (cursor.copy is the
            # driver's own, outside Django's wrapper).
            copy_sql = f"COPY {_into(table, columns)} FROM STDIN"
            with connection.wrap_database_errors, cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(_insert_sql(table, columns), rows)


def insert_one(model: type[models.Model], row: dict) -> int:
    """Insert one row; its primary key."""
    sql, plan = _statement(model)
    with connection.cursor() as cursor:
        if not connection.features.can_return_columns_from_insert:
            cursor.execute(sql, _params(plan, row))
            return cursor.lastrowid
        pk = connection.ops.quote_name(model._meta.pk.column)
        cursor.execute(f"{sql} RETURNING {pk}", _params(plan, row))
        return cursor.fetchone()[0]


def _fields(model: type[models.Model]) -> list[models.Field]:
    """Every column but the primary key."""
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def _plan(fields: list[models.Field]) -> list:
    """How to get each field's value from a row."""
    return [(f.attname, f.get_default(), _prepare(f)) for f in fields]


def _statement(model: type[models.Model]) -> tuple[str, list]:
    """(the INSERT of every column but the primary key, how to get each value)."""
    fields = _fields(model)
    return _insert_sql(model._meta.db_table, [f.column for f in fields]), _plan(fields)


def _into(table: str, columns: list[str]) -> str:
    quote = connection.ops.quote_name
    return f"{quote(table)} ({', '.join(quote(c) for c in columns)})"


def _insert_sql(table: str, columns: list[str]) -> str:
    return f"INSERT INTO {_into(table, columns)} VALUES ({', '.join(['%s'] * len(columns))})"


def _params(plan: list, row: dict) -> tuple:
    return tuple(
        value if prepare is None else prepare(value)
        for name, default, prepare in plan
        for value in (row.get(name, default),)
    )


def _prepare(field: models.Field):
    """What a value of `field` needs before the backend takes it, or None."""
    if isinstance(field, models.DateTimeField):
        return connection.ops.adapt_datetimefield_value
    if isinstance(field, models.JSONField):
        return lambda value: field.get_db_prep_save(value, connection)
    return None
