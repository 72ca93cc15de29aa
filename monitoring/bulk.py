"""Many rows of one model in one statement, without a model instance per row.

bulk_create() prepares every field of every instance through the ORM: for the rows a
hub takes by the thousand a second (app-metric records) that cost ten times what the
database spent storing them. Here each row is a dict of field attnames (missing
fields get their defaults); only the fields whose value the backend cannot take as it
is (times, JSON) are prepared, by the field itself.
"""

from django.db import connection, models


def insert(model: type[models.Model], rows: list[dict]) -> None:
    if not rows:
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} "
        f"({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    plan = [(f.attname, f.get_default(), _prepare(f)) for f in fields]  # "" for text, else None
    params = [
        tuple(
            value if prepare is None else prepare(value)
            for name, default, prepare in plan
            for value in (row.get(name, default),)
        )
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _prepare(field: models.Field):
    """What a value of `field` needs before the backend takes it, or None."""
    if isinstance(field, models.DateTimeField):
        return connection.ops.adapt_datetimefield_value
    if isinstance(field, models.JSONField):
        return lambda value: field.get_db_prep_save(value, connection)
    return None
