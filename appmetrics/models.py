"""Raw app-metric records and their 1-minute rollups (with mergeable histograms)."""

from datetime import UTC, datetime, timedelta

from django.db import models

from monitoring.models import Host, Process

KINDS = ["llm", "checkpoint", "counter", "gauge", "histogram", "dropped"]


class AppMetric(models.Model):
    """One record as the SDK sent it. `duration` is seconds (LLM calls, checkpoints);
    `value` is a counter's increment, a gauge's or a histogram's value, or for
    `dropped` the number of records the SDK dropped while the hub was away."""

    app = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=[(k, k) for k in KINDS])
    name = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    value = models.FloatField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    size = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    output_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    total_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    ttft = models.FloatField(null=True, blank=True, help_text="time to first token, s")
    success = models.BooleanField(default=True)
    ts = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL)
    pid = models.PositiveIntegerField(null=True, blank=True)
    create_time = models.FloatField(null=True, blank=True, help_text="process start, epoch s")
    tags = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["app", "ts"]), models.Index(fields=["ts"])]

    def __str__(self) -> str:
        return f"{self.app} {self.kind} {self.name or self.model} at {self.ts:%Y-%m-%d %H:%M:%S}"

    # A record belongs to the hub's Process of its host and pid whose start time is
    # within this many seconds of its create_time: psutil's create time is rounded
    # differently by the SDK and by the sampler.
    SAME_START = 1.0

    @classmethod
    def of_process(cls, host_id: int, pid: int, create_time: datetime):
        """The records a process sent (see SAME_START)."""
        started = create_time.timestamp()
        return cls.objects.filter(
            host_id=host_id,
            pid=pid,
            create_time__gte=started - cls.SAME_START,
            create_time__lte=started + cls.SAME_START,
        )

    @classmethod
    def senders(cls, host_id: int, pid: int, create_time: float):
        """The hub's processes that records of this host, pid and create_time came
        from (see SAME_START)."""
        started = datetime.fromtimestamp(create_time, UTC)
        window = timedelta(seconds=cls.SAME_START)
        return Process.objects.filter(
            host_id=host_id,
            pid=pid,
            create_time__gte=started - window,
            create_time__lte=started + window,
        )


class AppMetricSeries(models.Model):
    """One series (app, kind, name or model and provider) over one bucket: counts, sums
    and a log-scale histogram of durations (or values) as ptracker.sdk.histogram keys
    them, so quantiles over any span come from summed histograms."""

    app = models.CharField(max_length=100)
    kind = models.CharField(max_length=12)
    name = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    count = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    sum_duration = models.FloatField(default=0)
    sum_value = models.FloatField(default=0)
    last_value = models.FloatField(null=True, blank=True)
    sum_size = models.FloatField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    histogram = models.JSONField(default=dict)
    ttft_histogram = models.JSONField(default=dict)

    class Meta:
        abstract = True


class AppMetricMinute(AppMetricSeries):
    """All records of one series in one minute."""

    minute = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["app", "minute"]), models.Index(fields=["minute"])]

    def __str__(self) -> str:
        return f"{self.app} {self.kind} {self.name or self.model} {self.minute:%H:%M}"


class LlmPrice(models.Model):
    """What a model's tokens cost, for the cost column of the Apps page and the summary.
    An empty provider matches any provider of that model."""

    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200)
    input_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, help_text="price of 1,000,000 input tokens"
    )
    output_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, help_text="price of 1,000,000 output tokens"
    )
    currency = models.CharField(max_length=3, default="USD")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="one_price_per_model")
        ]
        verbose_name = "LLM price"

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model}"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * float(self.input_per_million)
            + output_tokens * float(self.output_per_million)
        ) / 1e6


class AppMetricHour(AppMetricSeries):
    """AppMetricMinute's rows of one series in one hour, merged (histograms summed)."""

    hour = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["app", "hour"]), models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"{self.app} {self.kind} {self.name or self.model} {self.hour:%Y-%m-%d %H}h"
