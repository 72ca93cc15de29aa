"""Pull mode: the hub fetches the batches of agents it can reach that cannot reach it.

A host with a pull URL runs `ptracker agent --listen` without --hub (see
ptracker.agent_api). Each round (monitoring.tasks.run_puller, every
PTRACKER_SAMPLE_INTERVAL seconds) asks every such host for up to 100 waiting batches
at once, from a small thread pool: the threads only do HTTP, so a host that does
not answer holds up nobody else (10 s timeouts). The answers are checked and stored
here, in the caller's thread, exactly as a push of the same batches would be
(monitoring.agents), and then acknowledged, which moves the agent's spool cursor:
an unacknowledged batch is offered again and stored once. A batch the hub refuses
stores nothing of its page and is not acknowledged: it waits on the agent (the host
goes down, and its pull error says why) until hub or agent is upgraded.

The hub authenticates with the host's agent token, which it keeps sealed
(Host.pull_token). It checks the agent's certificate against the system's CAs
(SSL_CERT_FILE names a bundle for a private CA) and never follows a redirect.

A host that cannot be pulled is logged once when the trouble starts and once when
it ends; `Host.pull_error` says why meanwhile. Its silence is noticed like any
host's (check_hosts: host_down), and when the backlog arrives, ingest turns that
into a link gap (link_down, link_up), since the agent kept sampling.
"""

import http.client
import json
import logging
import ssl
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from monitoring import agents
from monitoring.models import Host
from monitoring.params import BadParameter
from ptracker.agent import NoRedirects, version

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds for an agent to answer
THREADS = 8  # agents asked at once


class PullError(Exception):
    """Why a host could not be pulled this round (its pull_error)."""


class Client:
    """The API of one host's agent."""

    def __init__(self, host: Host, context: ssl.SSLContext) -> None:
        self.base = host.pull_url.rstrip("/")
        try:
            self.token = host.pull_token()
        except ValueError as exc:
            raise PullError(f"no usable pull token: {exc}") from None
        self.opener = urllib.request.build_opener(
            NoRedirects(), urllib.request.HTTPSHandler(context=context)
        )

    def batches(self) -> dict:
        return self.request(f"/v1/batches?limit={agents.MAX_BATCHES}")

    def ack(self, body: dict) -> dict:
        return self.request("/v1/ack", body)

    def request(self, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept-Encoding": "gzip",
                "Content-Type": "application/json",
                "User-Agent": f"ptracker-hub/{version()}",
            },
        )
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                data = response.read(agents.MAX_JSON_BYTES + 1)
                gzipped = response.headers.get("Content-Encoding") == "gzip"
        except urllib.error.HTTPError as exc:
            with exc:
                raise PullError(self.refusal(exc.code, exc.read(4096))) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, TLS, a bad URL
            reason = getattr(exc, "reason", None) or exc
            raise PullError(f"cannot reach {self.base}: {reason}") from None
        if len(data) > agents.MAX_JSON_BYTES:
            raise PullError(f"{self.base}{path} answered more than {agents.MAX_JSON_BYTES} bytes")
        try:
            return agents.decode_json(data, gzipped)
        except BadParameter as exc:
            raise PullError(f"{self.base}{path} answered {exc}") from None

    def refusal(self, status: int, body: bytes) -> str:
        if status == 401:
            return f"the agent at {self.base} refuses the token: set the host's pull token again"
        try:
            error = agents.decode_json(body, False).get("error", "")
        except BadParameter:
            error = ""
        return f"{self.base} answered {status} {error}".rstrip()


def take(host: Host, page: dict) -> dict | None:
    """Check and store one page of batches; the ack to send (None: nothing to ack)."""
    if page.get("host", host.name) != host.name:
        raise PullError(f"the agent at {host.pull_url} samples {page.get('host')!r}")
    try:
        batches, dropped, agent = agents.parse(page)
    except BadParameter as exc:
        raise PullError(f"the agent sent what the hub refuses ({exc.field}: {exc})") from None
    agents.store_batches(host, batches)
    agents.note_agent(host, agent, dropped)
    if not batches and not dropped:
        return None
    return {
        "through": page["batches"][-1]["id"] if batches else None,  # the agent's order
        "dropped": dropped,
        "config": agents.agent_config(host),
    }


def pull_round() -> bool | None:
    """Pull every enabled host with a pull URL once: whether any has more waiting
    (a full page, acknowledged), or None when there is no host to pull."""
    hosts = list(Host.objects.filter(enabled=True).exclude(pull_url=""))
    if not hosts:
        return None
    pool = ThreadPoolExecutor(min(THREADS, len(hosts)), thread_name_prefix="ptracker-pull")
    try:
        return acknowledge(store(pool, fetch(pool, hosts)))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def fetch(pool: ThreadPoolExecutor, hosts: list[Host]) -> dict:
    """Ask every host for its waiting batches: {future page: (host, client)}."""
    context = ssl.create_default_context()  # one per round: it reads the CA files
    pages = {}
    for host in hosts:
        try:
            client = Client(host, context)
        except PullError as exc:
            failed(host, str(exc))
            continue
        pages[pool.submit(client.batches)] = host, client
    return pages


def store(pool: ThreadPoolExecutor, pages: dict) -> dict:
    """Store each page as it comes and send its ack: {future ack: (host, page was full)}."""
    acks = {}
    for (host, client), page in answers(pages):
        try:
            ack = take(host, page.result())
        except PullError as exc:
            failed(host, str(exc))
            continue
        if ack is None:
            succeeded(host)
        else:
            full = len(page.result()["batches"]) >= agents.MAX_BATCHES
            acks[pool.submit(client.ack, ack)] = host, full
    return acks


def acknowledge(acks: dict) -> bool:
    """Whether a host whose ack went through has more waiting."""
    more = False
    for (host, full), answer in answers(acks):
        try:
            answer.result()
        except PullError as exc:
            failed(host, f"stored, but not acknowledged: {exc}")
            continue
        succeeded(host)
        more |= full
    return more


def answers(futures: dict):
    """(key, future) of each request, finished ones first. A read times out after
    TIMEOUT s without a byte, but an answer trickling in never does: one not finished
    within 3 * TIMEOUT becomes a PullError, and its thread is left to end on its own."""
    seen = set()
    try:
        for future in as_completed(futures, timeout=3 * TIMEOUT):
            seen.add(future)
            yield futures[future], future
    except TimeoutError:
        for future, key in futures.items():
            if future in seen:
                continue
            if not future.done():
                future = Future()
                future.set_exception(PullError(f"no whole answer within {3 * TIMEOUT:g} s"))
            yield key, future


def failed(host: Host, message: str) -> None:
    message = message[: Host._meta.get_field("pull_error").max_length]
    if not host.pull_error:
        log.warning("cannot pull %s: %s", host.name, message)
    if message != host.pull_error:
        Host.objects.filter(pk=host.pk).update(pull_error=message)
        host.pull_error = message


def succeeded(host: Host) -> None:
    if host.pull_error:
        log.info("pulling %s works again", host.name)
        Host.objects.filter(pk=host.pk).update(pull_error="")
        host.pull_error = ""
