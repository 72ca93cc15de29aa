"""A foreign key whose column leads another index of its table gets no index of its own.

Every one of these was covered by a composite index beginning with the same column
(ProcessSample.process by (process, ts), HostSample.host by (host, ts), ...), so the
single-column index found nothing the other could not, and cost one more index entry
for each row written: 2 of the 5 entries of every process sample an agent pushes.

Only the indexes are dropped, by name. Django's own AlterField would rebuild each
table on SQLite to do it: a copy of every sample a user has.
"""

import django.db.models.deletion
from django.db import migrations, models

# (model, foreign key): its related_name
FIELDS = {
    ("event", "host"): "events",
    ("gpusample", "host"): "gpu_samples",
    ("hostchunk", "host"): "+",
    ("hostsample", "host"): "samples",
    ("process", "host"): "processes",
    ("processchunk", "host"): "+",
    ("processrollup", "host"): "+",
    ("processrollup", "process"): "rollups",
    ("processsample", "host"): "+",
    ("processsample", "process"): "samples",
    ("rollup", "host"): "rollups",
    ("rollupstate", "host"): None,
    ("service", "host"): "services",
}


def drop_indexes(apps, schema_editor):
    for model_name, field_name in FIELDS:
        model = apps.get_model("monitoring", model_name)
        column = model._meta.get_field(field_name).column
        names = schema_editor._constraint_names(
            model, [column], index=True, unique=False, primary_key=False
        )
        for name in names:
            schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_indexes(apps, schema_editor):
    for model_name, field_name in FIELDS:
        model = apps.get_model("monitoring", model_name)
        field = model._meta.get_field(field_name)
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


def _field(field_name: str, related_name: str | None = None):
    to = "monitoring.process" if field_name == "process" else "monitoring.host"
    extra = {"related_name": related_name} if related_name else {}
    return models.ForeignKey(
        db_index=False, on_delete=django.db.models.deletion.CASCADE, to=to, **extra
    )


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0018_process_last_seen_unindexed"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name=model_name,
                    name=field_name,
                    field=_field(field_name, related_name),
                )
                for (model_name, field_name), related_name in FIELDS.items()
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
