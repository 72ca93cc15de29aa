"""The spool read by a hub that pulls: pending batches across segments, acks by id."""

import logging

from ptracker.spool import Spool


def batches(n: int, size: int = 40) -> list[dict]:
    return [{"id": f"b{i}", "pad": "x" * size} for i in range(n)]


def spool_of(tmp_path, n: int) -> Spool:
    spool = Spool(tmp_path, max_bytes=2**20, segment_bytes=200)  # about 3 batches a segment
    for item in batches(n):
        spool.append(item)
    return spool


def ids(items: list[dict]) -> list[str]:
    return [b["id"] for b in items]


def test_pending_batches_run_across_segments_oldest_first(tmp_path):
    spool = spool_of(tmp_path, 10)
    assert len(list(tmp_path.glob("*.seg"))) > 2
    assert ids(spool.pending(100)) == [f"b{i}" for i in range(10)]
    assert ids(spool.pending(4)) == ["b0", "b1", "b2", "b3"]
    assert ids(spool.pending(3, after="b4")) == ["b5", "b6", "b7"]
    assert ids(spool.pending(2, after="unknown")) == ["b0", "b1"]  # from the oldest
    assert spool.pending_count() == 10


def test_an_ack_moves_the_cursor_past_the_batch_and_deletes_sent_segments(tmp_path):
    spool = spool_of(tmp_path, 10)
    assert spool.ack("b6") == 7
    assert ids(spool.pending(100)) == ["b7", "b8", "b9"]
    assert spool.pending_count() == 3
    assert len(list(tmp_path.glob("*.seg"))) == 2  # b6's (b7 in it too), and b8 and b9's
    assert spool.ack("b6") == 0  # acknowledged before: nothing more
    assert spool.ack("b2") == 0
    assert ids(spool.pending(100)) == ["b7", "b8", "b9"]
    spool.close()

    again = Spool(tmp_path, max_bytes=2**20, segment_bytes=200)
    assert ids(again.pending(100)) == ["b7", "b8", "b9"]


def test_an_ack_takes_the_dropped_count_the_hub_was_told_of(tmp_path):
    spool = Spool(tmp_path, max_bytes=600, segment_bytes=200)
    for item in batches(20):
        spool.append(item)
    dropped = spool.dropped
    assert dropped > 0
    spool.ack(None, reported_dropped=dropped)
    assert spool.dropped == 0


def test_pulls_stop_before_a_damaged_record_then_skip_it_with_a_log_line(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=2**20)
    for item in batches(3):  # in one segment
        spool.append(item)
    segment = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    data[data.index(b'"b1"') + 1] ^= 0xFF  # b1's checksum no longer matches
    segment.write_bytes(bytes(data))

    assert ids(spool.pending(100)) == ["b0"]
    assert not caplog.records
    spool.ack("b0")
    with caplog.at_level(logging.ERROR, logger="ptracker.spool"):
        assert spool.pending(100) == []  # the damaged rest of the segment is skipped
    assert "wrong checksum" in caplog.text
    spool.append({"id": "b3"})  # in a new segment: never after damage
    assert ids(spool.pending(100)) == ["b3"]
