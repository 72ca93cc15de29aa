"""The packed form of raw process samples: what goes in comes out, in few bytes."""

import random
import zlib

import pytest

from monitoring import chunks

BASE = 1_790_000_000_000_000  # microseconds since the epoch
MIB = 2**20


def row(tick: int, pid: int, cpu=1.5, rss=100 * MIB, status="sleeping", **more) -> tuple:
    values = {
        "vms": 400 * MIB,
        "mem_percent": 1.234,
        "threads": 8,
        "read_bps": 2048.0,
        "write_bps": 0.0,
        "gpu_memory": None,
    }
    values.update(more)
    return (
        BASE + tick * 5_000_000,
        pid,
        cpu,
        rss,
        values["vms"],
        values["mem_percent"],
        values["threads"],
        values["read_bps"],
        values["write_bps"],
        values["gpu_memory"],
        status,
    )


def test_rows_come_back_as_they_went_in_by_process_then_time():
    rows = [
        row(1, 7, cpu=250.25, gpu_memory=3 * 2**30, status="running"),
        row(0, 7, cpu=None, rss=None),
        row(0, 3, read_bps=None, write_bps=1e9, threads=None),
        row(2, 3, mem_percent=0.001, vms=2**47),
    ]
    chunk = chunks.decode(chunks.encode(rows))
    assert list(chunk.rows()) == sorted(rows, key=lambda r: (r[1], r[0]))
    assert len(chunk) == 4


def test_values_keep_the_precision_the_sampler_stores():
    # CPU to 0.01 %, memory share to 0.001 %, I/O to whole bytes a second.
    [back] = chunks.decode(chunks.encode([row(0, 1, cpu=12.3456, mem_percent=0.12345,
                                              read_bps=10.6)])).rows()  # fmt: skip
    assert back[2] == 12.35 and back[5] == 0.123 and back[7] == 11.0


def test_a_process_sampled_twice_at_one_time_keeps_the_later_row():
    chunk = chunks.decode(chunks.encode([row(0, 1, cpu=1.0), row(0, 1, cpu=2.0)]))
    assert [r[2] for r in chunk.rows()] == [2.0]


def test_reading_a_window_and_some_processes_only():
    rows = [row(t, pid) for t in range(10) for pid in (1, 2, 3)]
    chunk = chunks.decode(chunks.encode(rows))
    got = list(chunk.rows(BASE + 3 * 5_000_000, BASE + 6 * 5_000_000, process_ids=[3, 9]))
    assert [(r[0], r[1]) for r in got] == [(BASE + t * 5_000_000, 3) for t in (3, 4, 5)]
    assert list(chunk.rows(process_ids=[42])) == []
    assert chunk.row(0) == rows[0]


def test_an_hour_of_a_busy_host_takes_a_few_bytes_a_sample():
    # 48 of 60 processes a tick for an hour at 5 s, with noisy CPU and drifting RSS,
    # as bench/bench_storage.py stores them: the packed form must stay far below the
    # ~155 B a row costs.
    rng = random.Random(7)
    rss = {pid: rng.randint(10 * MIB, 2000 * MIB) for pid in range(60)}
    rows = []
    for tick in range(720):
        for pid in rng.sample(range(60), 48):
            rss[pid] += rng.choice((0, 0, 4096, -4096))
            rows.append(row(tick, pid, cpu=round(rng.random() * 40, 2), rss=rss[pid]))
    blob = chunks.encode(rows)
    assert len(blob) / len(rows) < 16
    assert len(list(chunks.decode(blob).rows())) == len(rows)


def test_a_damaged_or_unknown_blob_is_a_clear_error():
    blob = chunks.encode([row(0, 1)])
    with pytest.raises(chunks.ChunkError, match="damaged"):
        chunks.decode(blob[:-3] + b"xyz")
    newer = zlib.compress(bytes([99]) + zlib.decompress(blob)[1:])
    with pytest.raises(chunks.ChunkError, match="version 99.1"):
        chunks.decode(newer)
    short = zlib.compress(zlib.decompress(blob)[:30])
    with pytest.raises(chunks.ChunkError):
        chunks.decode(short)
