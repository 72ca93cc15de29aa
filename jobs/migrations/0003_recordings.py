import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_heartbeats"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Recording",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "uploaded",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
                ("command", models.TextField(blank=True)),
                ("hostname", models.CharField(blank=True, max_length=255)),
                ("started", models.DateTimeField(blank=True, null=True)),
                ("duration_s", models.FloatField(blank=True, null=True)),
                ("exit_code", models.IntegerField(blank=True, null=True)),
                ("end_reason", models.CharField(blank=True, max_length=30)),
                ("process_count", models.PositiveIntegerField(default=0)),
                ("cpu_avg", models.FloatField(blank=True, null=True)),
                ("cpu_max", models.FloatField(blank=True, null=True)),
                ("rss_max", models.BigIntegerField(blank=True, null=True)),
                ("gpu_memory_max", models.BigIntegerField(blank=True, null=True)),
                ("data", models.JSONField()),
                (
                    "owner",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="recordings",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-uploaded"]},
        ),
    ]
