"""Fill Process.program for the processes stored before it existed.

In batches of BATCH rows by primary key range, each batch one SELECT and one bulk
UPDATE, so a hub with millions of stored processes never holds them all in memory.
Reversing leaves the column as it is (the schema migration before drops it).
"""

from django.db import migrations

from monitoring.programs import program_key

BATCH = 2000


def fill(apps, schema_editor):
    Process = apps.get_model("monitoring", "Process")
    alias = schema_editor.connection.alias
    rows = Process.objects.using(alias).filter(program="")
    start = 0
    while True:
        chunk = list(
            rows.filter(pk__gt=start).order_by("pk").only("pk", "name", "exe", "cmdline")[:BATCH]
        )
        if not chunk:
            break
        for process in chunk:
            process.program = program_key(process.name, process.exe, process.cmdline)
        Process.objects.using(alias).bulk_update(chunk, ["program"], batch_size=BATCH)
        start = chunk[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0012_fill_process_rollups"),
    ]

    operations = [
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
    ]
