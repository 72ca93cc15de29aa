"""The outbox: send due deliveries, once each, retrying with backoff.

A worker claims a delivery by moving its next_try forward with a conditional update
(status still pending, next_try unchanged): when two workers pick the same row, one
update matches and the other changes nothing and skips it.
"""

import logging
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from alerts.models import Delivery
from alerts.transports import TRANSPORTS, TransportError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
CLAIM = timedelta(minutes=2)  # a claimed delivery is retried if its sender died


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, 4 min, 8 min…"""
    return timedelta(seconds=30 * 2 ** (attempts - 1))


def send_due(now=None, limit: int = 100) -> int:
    now = now or timezone.now()
    sent = 0
    due = (
        Delivery.objects.filter(status=Delivery.PENDING, next_try__lte=now)
        .select_related("channel", "transition__rule", "transition__host")
        .order_by("next_try")[:limit]
    )
    for delivery in due:
        claimed = Delivery.objects.filter(
            pk=delivery.pk, status=Delivery.PENDING, next_try=delivery.next_try
        ).update(next_try=now + CLAIM, attempts=F("attempts") + 1)
        if not claimed:
            continue  # another worker has it
        delivery.attempts += 1
        if deliver(delivery, now):
            sent += 1
    return sent


def deliver(delivery: Delivery, now) -> bool:
    channel = delivery.channel
    try:
        TRANSPORTS[channel.kind](channel).notify(delivery.transition)
    except TransportError as exc:
        final = exc.permanent or delivery.attempts >= MAX_ATTEMPTS
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.FAILED if final else Delivery.PENDING,
            error=str(exc),
            next_try=now + backoff(delivery.attempts),
        )
        log.warning("alert to %s failed (attempt %d): %s", channel.name, delivery.attempts, exc)
        return False
    except Exception as exc:  # a bug in a transport must not stop the others
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        log.exception("alert to %s failed", channel.name)
        return False
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.SENT, sent_at=timezone.now(), error=""
    )
    return True
