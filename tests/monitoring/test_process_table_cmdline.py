"""The process table's Command column: the program's basename first, shortened, the
whole command on hover, and redacted for readers without view_full_cmdline."""

import pytest
from django.utils import timezone

from monitoring import ingest
from tests.conftest import batch, proc

pytestmark = pytest.mark.django_db

TRAIN = "/opt/conda/envs/ml/bin/python3 train.py --epochs 3 --password=hunter2"
LONG = "/usr/bin/python3 -m worker " + " ".join(f"--opt{i}=value{i}" for i in range(20))


@pytest.fixture
def sampled(host):
    rows = [
        proc(10, name="python3", cmdline=TRAIN),
        proc(11, name="python3", cmdline=LONG),
        proc(12, name="kworker/0:1", cmdline=""),
    ]
    ingest.store(host, batch(timezone.now(), rows))
    return host


def command_cell(html: str, pid: int) -> str:
    row = html.split(f'<tr data-pid="{pid}">')[1].split("</tr>")[0]
    return row.split('<td class="cmd"')[1].split("</td>")[0]


def test_the_table_has_a_command_column_with_the_basename_first(alice_client, sampled):
    html = alice_client.get(f"/hosts/{sampled.pk}/processes").content.decode()
    assert "<th>Command</th>" in html
    assert "<code>python3 train.py --epochs 3 --password=hunter2</code>" in command_cell(html, 10)


def test_a_long_command_is_shortened_and_whole_on_hover(alice_client, sampled):
    cell = command_cell(alice_client.get(f"/hosts/{sampled.pk}/processes").content.decode(), 11)
    shown = cell.split("<code>")[1].split("</code>")[0]
    assert shown.startswith("python3 -m worker --opt0=value0") and shown.endswith("…")
    assert len(shown) == 72
    assert f'title="{LONG}"' in cell


def test_a_process_without_a_command_line_shows_a_dash(alice_client, sampled):
    html = alice_client.get(f"/hosts/{sampled.pk}/processes").content.decode()
    assert "<code>–</code>" in command_cell(html, 12)


def test_a_plain_user_sees_the_command_redacted_in_the_column_and_the_tooltip(client, bob, sampled):
    client.force_login(bob)
    html = client.get(f"/hosts/{sampled.pk}/processes").content.decode()
    cell = command_cell(html, 10)
    assert "--password=***" in cell and "hunter2" not in html


def test_the_host_page_shows_the_column_in_tree_view_too(alice_client, sampled):
    html = alice_client.get(f"/hosts/{sampled.pk}/", {"view": "tree"}).content.decode()
    assert "python3 train.py --epochs 3" in command_cell(html, 10)
