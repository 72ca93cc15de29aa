"""Batch.to_dict()/from_dict(): the versioned wire format of a sample."""

import json

import pytest

from monitoring.sampling import WIRE_VERSION, Batch, BatchFormatError, Sampler


@pytest.fixture(scope="module")
def batch() -> Batch:
    sampler = Sampler(top_n=5)
    sampler.prime()
    return sampler.sample()


def wire(batch: Batch) -> dict:
    return json.loads(json.dumps(batch.to_dict()))


def test_a_real_batch_survives_json_unchanged(batch):
    assert batch.processes and batch.host["mem_total"] > 0
    assert Batch.from_dict(wire(batch)) == batch
    batch.id = "0f3c9a"
    assert Batch.from_dict(wire(batch)).id == "0f3c9a"
    batch.id = None


def test_the_wire_dict_says_its_version(batch):
    assert wire(batch)["version"] == WIRE_VERSION == 1


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.pop("ts"), "ts"),
        (lambda d: d.update(ts="2026-11-26T10:00:00"), "ts"),
        (lambda d: d.update(ts="yesterday"), "ts"),
        (lambda d: d.update(host=[]), "host"),
        (lambda d: d.update(id=7), "id"),
        (lambda d: d.update(id="x" * 65), "id"),
        (lambda d: d.update(gpus=[1]), "gpus"),
        (lambda d: d.update(watched_running=["a"]), "watched_running"),
        (lambda d: d["processes"].append("x"), "processes[5]"),
        (lambda d: d["processes"][0].pop("pid"), "processes[0].pid"),
        (lambda d: d["processes"][0].update(pid="12"), "processes[0].pid"),
        (lambda d: d["processes"][0].update(pid=2**70), "processes[0].pid"),
        (lambda d: d["processes"][0].update(rss=True), "processes[0].rss"),
        (lambda d: d["processes"][0].update(name=None), "processes[0].name"),
        (lambda d: d["processes"][0].update(evil=1), "processes[0]"),
    ],
)
def test_a_malformed_batch_is_refused_naming_the_field(batch, change, field):
    data = wire(batch)
    data["processes"] = (data["processes"] * 5)[:5]
    change(data)
    with pytest.raises(BatchFormatError) as refused:
        Batch.from_dict(data)
    assert str(refused.value).startswith(field)


def test_not_an_object_is_refused():
    with pytest.raises(BatchFormatError, match="JSON object"):
        Batch.from_dict([])


def test_optional_fields_may_be_null_and_defaults_may_be_left_out(batch):
    data = wire(batch)
    row = data["processes"][0]
    row.update(cpu_percent=None, rss=None)
    row.pop("on_gpu")
    row.pop("watched_id")
    parsed = Batch.from_dict(data).processes[0]
    assert parsed.cpu_percent is None and parsed.on_gpu is False and parsed.watched_id is None
