"""Recordings on the hub: the upload API, the pages, and `ptracker record --hub`."""

import json
import os
import subprocess

import pytest
from django.test import Client

from jobs.models import Recording
from monitoring.models import ApiToken
from tests.ptracker.test_record import ROOT, record_command

T_REPORT = {
    "format": "ptracker-recording",
    "version": 1,
    "command": "python train.py --epochs 3",
    "pids": [4242],
    "exit_code": 0,
    "end_reason": "process ended",
    "started": "2026-11-26T20:00:00+00:00",
    "ended": "2026-11-26T20:00:02+00:00",
    "duration_s": 2.0,
    "interval_s": 1.0,
    "options": {"gpu": True, "io": True, "gpu_indices": None},
    "host": {"hostname": "gpu-box", "gpus": []},
    "fields": ["cpu_percent", "rss", "threads", "read_bps", "write_bps", "gpu_memory"],
    "summary": {
        "total": {
            "cpu_percent": {"min": 50.0, "max": 150.0, "avg": 100.0},
            "rss": {"min": 100, "max": 300 * 2**20, "avg": 200},
            "gpu_memory": None,
        },
        "processes": 1,
        "gpus": {},
    },
    "processes": [{"pid": 4242, "ppid": 1, "name": "python", "cmdline": "python train.py"}],
    "samples": [
        {
            "t": t,
            "ts": "2026-11-26T20:00:00+00:00",
            "total": {"cpu_percent": 100.0, "rss": 300 * 2**20, "processes": 1},
            "gpus": [],
            "host": {},
            "processes": {"4242": [100.0, 300 * 2**20, 4, 0.0, 0.0, None]},
        }
        for t in (0.0, 1.0, 2.0)
    ],
}


def bearer(secret: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {secret}"})


@pytest.fixture
def jobs_token(bob) -> str:
    return ApiToken.issue(bob, "cron", scope=ApiToken.JOBS)[1]


def upload(client: Client, report=T_REPORT):
    return client.post("/api/v1/recordings/", json.dumps(report), content_type="application/json")


@pytest.mark.django_db
def test_a_jobs_token_uploads_a_recording_and_the_page_lists_it(jobs_token, alice_client):
    answer = upload(bearer(jobs_token))
    assert answer.status_code == 201, answer.content
    recording = Recording.objects.get()
    assert answer.json()["url"] == f"/recordings/{recording.pk}/"
    assert recording.owner.username == "bob" and recording.hostname == "gpu-box"
    assert recording.cpu_max == 150.0 and recording.rss_max == 300 * 2**20
    page = alice_client.get("/recordings/").content.decode()
    assert "python train.py --epochs 3" in page and f'href="/recordings/{recording.pk}/"' in page


@pytest.mark.django_db
def test_a_read_only_token_may_list_but_not_upload(api):
    assert upload(api).status_code == 403
    assert api.get("/api/v1/recordings/").status_code == 200


@pytest.mark.django_db
def test_a_malformed_report_is_a_400_naming_the_field(jobs_token):
    answer = upload(bearer(jobs_token), {**T_REPORT, "version": 9})
    assert answer.status_code == 400 and "version" in answer.json()
    answer = upload(bearer(jobs_token), {**T_REPORT, "samples": "x"})
    assert answer.status_code == 400 and "samples" in answer.json()
    assert not Recording.objects.exists()


@pytest.mark.django_db
def test_the_detail_and_compare_pages_need_a_login_and_load_their_scripts(alice_client, alice):
    a = Recording.from_report(T_REPORT, alice)
    a.save()
    b = Recording.from_report({**T_REPORT, "exit_code": 3}, alice)
    b.save()
    for url in (f"/recordings/{a.pk}/", f"/recordings/compare?a={a.pk}&b={b.pk}", "/recordings/"):
        assert Client().get(url).status_code == 302  # to the login page
    detail = alice_client.get(f"/recordings/{a.pk}/").content.decode()
    assert 'id="recording-data" type="application/json"' in detail
    assert '/static/js/recording.js"' in detail and "chart.umd.min.js" in detail
    compare = alice_client.get(f"/recordings/compare?a={a.pk}&b={b.pk}").content.decode()
    assert 'data-recording="recording-a"' in compare and 'data-recording="recording-b"' in compare
    assert alice_client.get(f"/recordings/compare?a={a.pk}&b=x").status_code == 400
    assert alice_client.get(f"/recordings/compare?a={a.pk}&b={b.pk + 100}").status_code == 404
    assert alice_client.get(f"/recordings/{b.pk + 100}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_record_uploads_to_the_hub_and_a_bad_token_still_writes_the_report(
    live_server_url, bob, tmp_path
):
    secret = ApiToken.issue(bob, "cron", scope=ApiToken.JOBS)[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PTRACKER_TOKEN": secret}
    env.pop("PTRACKER_TOKEN_FILE", None)
    out = tmp_path / "up.json"
    args = ["--quiet", "--interval", 0.2, "--hub", live_server_url, "-o", out, "--", "sleep", "0.5"]
    done = subprocess.run(
        record_command(*args), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    recording = Recording.objects.get()
    assert recording.command == "sleep 0.5" and recording.exit_code == 0
    assert recording.data["samples"] == json.loads(out.read_text())["samples"]

    out.unlink()
    env["PTRACKER_TOKEN"] = "pt_not-a-token"
    done = subprocess.run(
        record_command(*args), env=env, capture_output=True, text=True, timeout=60
    )
    assert "not uploaded" in done.stderr and "refused the token" in done.stderr
    assert "Traceback" not in done.stderr
    assert out.exists()  # the local report is written all the same
    assert Recording.objects.count() == 1
