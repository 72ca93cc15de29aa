"""The agent's disk spool: order, a durable cursor, torn records, the size cap."""

import logging

import pytest

from ptracker.spool import HEADER, Spool, SpoolBusy


def batches(n: int, start: int = 0, size: int = 10) -> list[dict]:
    return [{"id": f"b{i}", "pad": "x" * size} for i in range(start, start + n)]


def ids(chunk) -> list[str]:
    return [b["id"] for b in chunk.batches]


def fill(spool: Spool, items: list[dict]) -> None:
    for item in items:
        spool.append(item)


def segment_files(path) -> list:
    return sorted(path.glob("*.seg"))


def test_batches_come_back_oldest_first_until_the_hub_acknowledges_them(tmp_path):
    spool = Spool(tmp_path, max_bytes=2**20)
    fill(spool, batches(5))
    first = spool.head(3)
    assert ids(first) == ["b0", "b1", "b2"]
    assert ids(spool.head(3)) == ["b0", "b1", "b2"]  # not acknowledged: sent again
    spool.commit(first)
    rest = spool.head(3)
    assert ids(rest) == ["b3", "b4"]
    spool.commit(rest)
    assert spool.head(3) is None


def test_the_cursor_survives_a_restart(tmp_path):
    spool = Spool(tmp_path, max_bytes=2**20)
    fill(spool, batches(4))
    spool.commit(spool.head(3))
    spool.close()
    again = Spool(tmp_path, max_bytes=2**20)
    assert ids(again.head(10)) == ["b3"]


def test_segments_are_read_in_order_and_deleted_once_sent(tmp_path):
    spool = Spool(tmp_path, max_bytes=2**20, segment_bytes=200)
    fill(spool, batches(10, size=40))
    seen = []
    while chunk := spool.head(100):
        seen += ids(chunk)
        spool.commit(chunk)
    assert seen == [f"b{i}" for i in range(10)]
    assert len(segment_files(tmp_path)) == 1  # acknowledged segments are deleted


def torn_header(data: bytes) -> bytes:
    return data + HEADER.pack(500, 0)[:5]


def torn_payload(data: bytes) -> bytes:
    return data + HEADER.pack(500, 0) + b'{"id": "half'


def flipped_byte(data: bytes) -> bytes:
    return data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:]


@pytest.mark.parametrize("damage", [torn_header, torn_payload, flipped_byte])
def test_a_torn_last_record_is_cut_with_one_log_line(tmp_path, caplog, damage):
    spool = Spool(tmp_path, max_bytes=2**20)
    fill(spool, batches(3))
    spool.close()
    (segment,) = segment_files(tmp_path)
    segment.write_bytes(damage(segment.read_bytes()))

    with caplog.at_level(logging.WARNING, logger="ptracker.spool"):
        spool = Spool(tmp_path, max_bytes=2**20)
    assert len(caplog.records) == 1
    assert "cut (an append was interrupted)" in caplog.records[0].getMessage()
    spool.append({"id": "after"})
    survivors = ["b0", "b1", "b2"] if damage is not flipped_byte else ["b0", "b1"]
    assert ids(spool.head(10)) == [*survivors, "after"]
    spool.close()

    caplog.clear()
    assert ids(Spool(tmp_path, max_bytes=2**20).head(10)) == [*survivors, "after"]
    assert caplog.records == []  # cut once, readable since


def test_the_cap_drops_the_oldest_batches_and_counts_them(tmp_path):
    spool = Spool(tmp_path, max_bytes=1000, segment_bytes=250)
    fill(spool, batches(40, size=30))  # 56 bytes a record, 4 a segment
    assert sum(f.stat().st_size for f in segment_files(tmp_path)) <= 1000
    chunk = spool.head(100)
    oldest_kept = int(chunk.batches[0]["id"][1:])
    assert oldest_kept > 0
    assert spool.dropped == oldest_kept  # everything older went, and was counted


def test_a_full_spool_whose_oldest_batches_were_all_sent_reports_no_drop(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=100, segment_bytes=50)  # a segment per record
    with caplog.at_level(logging.WARNING, logger="ptracker.spool"):
        for item in batches(5, size=30):
            spool.append(item)  # the second segment passes the cap: the first one goes
            spool.commit(spool.head(1))
    assert spool.dropped == 0
    assert caplog.records == []


def test_the_dropped_count_lasts_until_a_push_reports_it(tmp_path):
    spool = Spool(tmp_path, max_bytes=1000, segment_bytes=250)
    fill(spool, batches(40, size=30))
    dropped = spool.dropped
    spool.close()
    spool = Spool(tmp_path, max_bytes=1000, segment_bytes=250)
    assert spool.dropped == dropped
    chunk = spool.head(100)
    spool.append({"id": "late"})  # not yet over the cap: nothing more dropped
    spool.commit(chunk, reported_dropped=dropped)
    assert spool.dropped == 0


def test_a_chunk_in_flight_when_the_cap_deletes_it_is_not_counted_as_dropped(tmp_path):
    spool = Spool(tmp_path, max_bytes=1000, segment_bytes=250)
    fill(spool, batches(4, size=30))
    in_flight = spool.head(100)  # the sender is pushing these…
    fill(spool, batches(20, start=4, size=30))  # …while the hub is slow and ticks go on
    assert spool.dropped >= len(in_flight.batches)
    counted = spool.dropped
    spool.commit(in_flight)  # the hub took them after all
    assert spool.dropped == counted - len(in_flight.batches)
    assert spool.head(1).batches[0]["id"] != "b0"


def test_a_batch_the_hub_can_never_take_is_skipped_and_counted(tmp_path):
    spool = Spool(tmp_path, max_bytes=2**20)
    fill(spool, batches(3))
    spool.drop(spool.head(1))
    assert spool.dropped == 1
    assert ids(spool.head(10)) == ["b1", "b2"]


def test_a_second_agent_cannot_use_the_same_spool(tmp_path):
    spool = Spool(tmp_path, max_bytes=2**20)
    with pytest.raises(SpoolBusy, match="another agent"):
        Spool(tmp_path, max_bytes=2**20)
    spool.close()
    Spool(tmp_path, max_bytes=2**20).close()  # free again once closed
