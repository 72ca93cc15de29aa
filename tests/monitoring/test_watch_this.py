""" "Watch this" on a process page: a watch of its program (the pattern escaped for RE2),
reused when identical, only for users who may add watches, only by a POST with CSRF."""

import pytest
from django.test import Client
from django.utils import timezone

from monitoring import ingest
from monitoring.models import Process, WatchedProcess
from monitoring.patterns import compile_pattern
from tests.conftest import batch, proc
from tests.monitoring.conftest import grant, signed_in

pytestmark = pytest.mark.django_db

EXE = "/opt/app (v2)/bin/serve+gpu.py"


@pytest.fixture
def served(host):
    ingest.store(
        host,
        batch(
            timezone.now(),
            [
                proc(10, name="serve+gpu.py", exe=EXE),
                proc(11, name="serve+gpu.py", exe=EXE, create_time=2000.0),
                proc(12, name="kthreadd", exe=""),
            ],
        ),
    )
    return {p.pid: p for p in Process.objects.all()}


def test_the_page_offers_the_button_to_who_may_add_watches(alice_client, bob, served):
    url = f"/processes/{served[10].pk}/"
    assert "Watch this</button>" in alice_client.get(url).content.decode()
    assert "Watch this</button>" not in signed_in(bob).get(url).content.decode()


def test_it_creates_a_watch_of_the_executable_on_this_host(alice_client, served):
    response = alice_client.post(f"/processes/{served[10].pk}/watch")
    watch = WatchedProcess.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/monitoring/watchedprocess/{watch.pk}/change/"
    assert (watch.name, watch.field) == ("serve+gpu.py", "exe")
    assert list(watch.hosts.all()) == [served[10].host]
    regex = compile_pattern(watch.pattern)
    assert regex.search(EXE) and not regex.search(EXE + "x")
    assert not regex.search("/opt/app v2/bin/servegpu.py")


def test_a_process_without_an_executable_is_watched_by_its_exact_name(alice_client, served):
    alice_client.post(f"/processes/{served[12].pk}/watch")
    watch = WatchedProcess.objects.get()
    assert (watch.field, watch.pattern) == ("name", "^kthreadd$")


def test_an_identical_watch_is_reused(alice_client, served):
    first = alice_client.post(f"/processes/{served[10].pk}/watch")
    second = alice_client.post(f"/processes/{served[11].pk}/watch")
    assert WatchedProcess.objects.count() == 1
    assert first["Location"] == second["Location"]


def test_a_name_taken_by_another_watch_gets_the_host_added(alice_client, served):
    WatchedProcess.objects.create(name="serve+gpu.py", pattern="serve")
    alice_client.post(f"/processes/{served[10].pk}/watch")
    assert WatchedProcess.objects.filter(name="serve+gpu.py on gpu-box").exists()


def test_it_needs_the_permission_to_add_watches(bob, carol, served):
    assert signed_in(bob).post(f"/processes/{served[10].pk}/watch").status_code == 403
    grant(carol, "add_watchedprocess")
    assert signed_in(carol).post(f"/processes/{served[10].pk}/watch").status_code == 302
    assert WatchedProcess.objects.count() == 1


def test_it_needs_the_csrf_token(alice, served):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/processes/{served[10].pk}/watch").status_code == 403
    assert not WatchedProcess.objects.exists()


def test_a_get_changes_nothing(alice_client, served):
    assert alice_client.get(f"/processes/{served[10].pk}/watch").status_code == 405
    assert not WatchedProcess.objects.exists()


def test_an_unknown_process_is_a_404(alice_client, served):
    assert alice_client.post("/processes/999999/watch").status_code == 404


def test_anonymous_users_are_sent_to_sign_in(client, served):
    response = client.post(f"/processes/{served[10].pk}/watch")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
