"""The agent's disk spool: every batch is written here first, then pushed from here.

A directory of append-only segment files (`<number>.seg`, numbered in order) and a
`cursor` file: where the first batch the hub has not acknowledged starts, and how
many batches the size cap threw away that the hub has not been told about yet.
Each record is its payload's length and CRC32 (4 bytes each, big-endian), then the
payload: the batch as JSON.

Durability: an append is fsync'd before it returns. At one batch per tick (5 s)
that is one small write in thousands of milliseconds, and it means a batch is on
disk before anyone could have sent it. The cursor is replaced atomically (temporary
file, fsync, rename, fsync of the directory) and only after the hub's 200, so a
kill -9 at any moment loses nothing the hub has not stored. A crash between the
200 and the cursor write sends that chunk again, which is harmless: the hub stores
each batch id once.

A kill -9 or a power cut in the middle of an append leaves a torn record at the end
of the newest segment. Opening the spool finds it by its length and CRC, logs one
line and truncates the segment there, so later appends stay readable.

The cap: when the segments together pass `max_bytes`, the oldest segment goes, and
the unsent batches in it are counted in `dropped` (kept in the cursor file) until a
push that reports them is acknowledged.

In pull mode (no hub to push to) the hub reads the batches waiting here with
`pending` and acknowledges them by id with `ack`, which moves the same cursor.

Appends (the tick thread) and reads and commits (the sender thread, or the threads
serving the hub's pulls) share one lock.
"""

import fcntl
import json
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")  # payload length, CRC32 of the payload
SEGMENT_BYTES = 4 * 2**20
MAX_RECORD = 64 * 2**20  # a larger length can only be a torn or corrupt header
SUFFIX = ".seg"


class SpoolBusy(Exception):
    """Another agent uses this spool directory."""


class Corrupt(Exception):
    """A record that fails its length or CRC check."""


@dataclass(frozen=True)
class Chunk:
    """Batches read from the head of the spool, all from one segment.

    `start` and `end` are byte offsets in that segment: committing the chunk moves
    the cursor from `start` to `end`."""

    segment: int
    start: int
    end: int
    batches: list[dict]


@dataclass
class Cursor:
    segment: int
    offset: int
    dropped: int = 0


def read_record(f, limit: int) -> tuple[bytes, int] | None:
    """The next record's payload and its size on disk; None at the end of the data
    (`limit` bytes into the file); Corrupt for a torn or damaged record."""
    start = f.tell()
    if start >= limit:
        return None
    header = f.read(HEADER.size)
    if len(header) < HEADER.size:
        raise Corrupt(f"a torn record header at byte {start}")
    length, crc = HEADER.unpack(header)
    if length > MAX_RECORD or start + HEADER.size + length > limit:
        raise Corrupt(f"a torn record at byte {start} (length {length})")
    payload = f.read(length)
    if len(payload) < length or zlib.crc32(payload) != crc:
        raise Corrupt(f"a record with a wrong checksum at byte {start}")
    return payload, HEADER.size + length


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int | None = None) -> None:
        """`segment_bytes` defaults to 4 MiB, smaller for a small cap so that the cap
        drops at most about a quarter of the spool at a time."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Two agents appending to one spool would interleave records: one at a time.
        self._lock_file = open(self.dir / "lock", "a")  # noqa: SIM115 (held while open)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusy(f"another agent is using the spool in {self.dir}") from None
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(1, min(SEGMENT_BYTES, max_bytes // 4))
        self._lock = threading.Lock()
        self._sizes = {
            int(p.stem): p.stat().st_size
            for p in self.dir.iterdir()
            if p.suffix == SUFFIX and p.stem.isdigit()
        }
        self.cursor = self._load_cursor()
        for number in [n for n in self._sizes if n < self.cursor.segment]:
            self._delete(number)  # acknowledged or dropped before a crash
        if not self._sizes:
            self._sizes[self.cursor.segment] = 0
            self._path(self.cursor.segment).touch(mode=0o600)
        if self.cursor.segment not in self._sizes:
            self.cursor = Cursor(min(self._sizes), 0, self.cursor.dropped)
        self._repair(max(self._sizes))
        self.cursor.offset = min(self.cursor.offset, self._sizes[self.cursor.segment])
        self._file = open(self._path(max(self._sizes)), "ab")  # noqa: SIM115 (kept open)

    # -- the tick thread --------------------------------------------------------------
    def append(self, batch: dict) -> None:
        """Write one batch and fsync it; then apply the cap."""
        payload = json.dumps(batch, separators=(",", ":")).encode()
        record = HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            last = max(self._sizes)
            if self._sizes[last] and self._sizes[last] + len(record) > self.segment_bytes:
                last = self._rotate()
            try:
                self._file.write(record)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                # A full disk: cut the partial record so that later appends stay readable.
                self._file.truncate(self._sizes[last])
                raise
            self._sizes[last] += len(record)
            self._apply_cap()

    # -- the sender thread ------------------------------------------------------------
    def head(self, limit: int) -> Chunk | None:
        """Up to `limit` of the oldest unacknowledged batches, or None when all are."""
        with self._lock:
            while True:
                self._leave_finished_segments()
                segment, start = self.cursor.segment, self.cursor.offset
                size = self._sizes[segment]
                if start >= size:
                    return None
                batches, end = [], start
                with open(self._path(segment), "rb") as f:
                    f.seek(start)
                    try:
                        while len(batches) < limit and (record := read_record(f, size)):
                            batches.append(json.loads(record[0]))
                            end += record[1]
                    except (Corrupt, ValueError) as exc:
                        if not batches:
                            self._skip_damage(segment, start, size, exc)
                            continue
                return Chunk(segment, start, end, batches)

    def commit(self, chunk: Chunk, reported_dropped: int = 0) -> None:
        """The hub acknowledged `chunk` and a push that reported `reported_dropped`."""
        with self._lock:
            cursor = self.cursor
            cursor.dropped = max(0, cursor.dropped - reported_dropped)
            if (chunk.segment, chunk.start) == (cursor.segment, cursor.offset):
                cursor.offset = chunk.end
            elif chunk.segment < cursor.segment:
                # The cap deleted this segment while its chunk was in flight and
                # counted the chunk as dropped: it arrived after all.
                cursor.dropped = max(0, cursor.dropped - len(chunk.batches))
            self._leave_finished_segments()
            self._save_cursor()

    # -- pull mode: the hub reads the spool over HTTP (ptracker.agent_api) ------------
    def pending(self, limit: int, after: str | None = None) -> list[dict]:
        """Up to `limit` unacknowledged batches, oldest first: those after the batch
        with id `after` when it is one of them, else from the oldest."""
        with self._lock:
            self._leave_finished_segments()
            found = self._find(after) if after else None
            start = found[:2] if found else None
            batches = []
            for _, _, payload in self._records(start):
                if len(batches) == limit:
                    break
                batches.append(json.loads(payload))
            return batches

    def ack(self, batch_id: str | None, reported_dropped: int = 0) -> int:
        """The hub stored every batch up to and with `batch_id`, and was told of
        `reported_dropped` dropped ones: move the cursor past them. Returns how many
        batches that acknowledged (0 for an id that is not waiting: acknowledged
        before, or unknown)."""
        with self._lock:
            self._leave_finished_segments()
            found = self._find(batch_id) if batch_id else None
            cursor = self.cursor
            cursor.dropped = max(0, cursor.dropped - reported_dropped)
            if found:
                cursor.segment, cursor.offset = found[:2]
                self._leave_finished_segments()
            self._save_cursor()  # before deleting: a crash in between deletes them on open
            for number in [n for n in self._sizes if n < cursor.segment]:
                self._delete(number)
            return found[2] if found else 0

    def pending_count(self) -> int:
        """How many batches wait, from the record headers alone: a health check may
        ask often, and reading the whole spool each time (up to its cap) would not do."""
        count = 0
        with self._lock:
            for number, size in self._sizes.items():
                if number < self.cursor.segment:
                    continue
                with open(self._path(number), "rb") as f:
                    f.seek(self.cursor.offset if number == self.cursor.segment else 0)
                    while len(header := f.read(HEADER.size)) == HEADER.size:
                        count += 1
                        if f.seek(HEADER.unpack(header)[0], os.SEEK_CUR) >= size:
                            break
        return count

    @property
    def dropped(self) -> int:
        with self._lock:
            return self.cursor.dropped

    def drop(self, chunk: Chunk) -> None:
        """Give up on `chunk` (the hub can never accept it): skip it and count it."""
        with self._lock:
            self.cursor.dropped += len(chunk.batches)
        self.commit(chunk)

    def backlog_bytes(self) -> int:
        with self._lock:
            after = sum(size for n, size in self._sizes.items() if n >= self.cursor.segment)
            return after - self.cursor.offset

    def close(self) -> None:
        with self._lock:
            self._file.close()
            self._lock_file.close()

    # -- internals (called with the lock held) ------------------------------------------
    def _path(self, number: int) -> Path:
        return self.dir / f"{number:012d}{SUFFIX}"

    def _load_cursor(self) -> Cursor:
        try:
            data = json.loads((self.dir / "cursor").read_text())
            return Cursor(int(data["segment"]), int(data["offset"]), int(data["dropped"]))
        except FileNotFoundError:
            return Cursor(min(self._sizes, default=1), 0)
        except (ValueError, KeyError, TypeError) as exc:
            # Written atomically, so only a hand edit breaks it: resending is safe.
            log.warning("spool cursor unreadable (%s): sending the whole spool again", exc)
            return Cursor(min(self._sizes, default=1), 0)

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        with open(tmp, "w") as f:
            json.dump(vars(self.cursor), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / "cursor")
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _repair(self, number: int) -> None:
        """Truncate the newest segment after its last whole record (a torn append)."""
        size, good = self._sizes[number], 0
        with open(self._path(number), "rb") as f:
            try:
                while record := read_record(f, size):
                    good += record[1]
            except Corrupt as exc:
                log.warning(
                    "spool: %s in %s, %d bytes cut (an append was interrupted)",
                    exc,
                    self._path(number).name,
                    size - good,
                )
        if good < size:
            os.truncate(self._path(number), good)
            self._sizes[number] = good

    def _skip_damage(self, segment: int, start: int, size: int, exc: Exception) -> None:
        log.error(
            "spool: %s in %s; the rest of that segment cannot be read and is skipped",
            exc,
            self._path(segment).name,
        )
        self.cursor.offset = size
        if segment == max(self._sizes):
            self._rotate()  # never append after damage
        self._save_cursor()

    def _rotate(self) -> int:
        number = max(self._sizes) + 1
        self._file.close()
        self._file = open(self._path(number), "ab")  # noqa: SIM115 (kept open)
        os.chmod(self._path(number), 0o600)
        self._sizes[number] = 0
        self._fsync_dir()
        return number

    def _records(self, start: tuple[int, int] | None = None):
        """(segment, end offset, payload) of each record from `start` (segment, offset;
        default: the cursor), oldest first, up to the first damaged one: a later
        pull then starts there, at the cursor, and skips it (`_skip_damage`)."""
        first, offset = start or (self.cursor.segment, self.cursor.offset)
        for number in sorted(n for n in self._sizes if n >= first):
            end, size = offset if number == first else 0, self._sizes[number]
            with open(self._path(number), "rb") as f:
                f.seek(end)
                try:
                    while record := read_record(f, size):
                        end += record[1]
                        yield number, end, record[0]
                except Corrupt as exc:
                    if (number, end) != (self.cursor.segment, self.cursor.offset):
                        return
                    self._skip_damage(number, end, size, exc)

    def _find(self, batch_id: str) -> tuple[int, int, int] | None:
        """Where the waiting batch `batch_id` ends (segment, offset), and how many
        batches up to and with it wait; None when it is not waiting."""
        # Records are compact JSON: the id's bytes pick the candidates, a parse confirms.
        needle = b'"id":' + json.dumps(batch_id).encode()
        for count, (number, end, payload) in enumerate(self._records(), 1):
            if needle in payload and json.loads(payload).get("id") == batch_id:
                return number, end, count
        return None

    def _leave_finished_segments(self) -> None:
        """Move the cursor past fully sent segments and delete them."""
        cursor = self.cursor
        moved = False
        while cursor.offset >= self._sizes[cursor.segment] and cursor.segment < max(self._sizes):
            cursor.segment = min(n for n in self._sizes if n > cursor.segment)
            cursor.offset = 0
            moved = True
        if moved:
            self._save_cursor()  # before deleting: a crash in between deletes them on open
            for number in [n for n in self._sizes if n < cursor.segment]:
                self._delete(number)

    def _apply_cap(self) -> None:
        while sum(self._sizes.values()) > self.max_bytes and len(self._sizes) > 1:
            oldest = min(self._sizes)
            if oldest == self.cursor.segment:
                lost = self._count(oldest, self.cursor.offset)
                self.cursor.dropped += lost
                self.cursor.segment = min(n for n in self._sizes if n > oldest)
                self.cursor.offset = 0
                self._save_cursor()
                if lost:  # else the segment was all sent: nothing is lost
                    log.warning(
                        "spool full (%.3g MiB): the %d oldest unsent batches are dropped",
                        self.max_bytes / 2**20,
                        lost,
                    )
            self._delete(oldest)

    def _count(self, number: int, start: int) -> int:
        count, size = 0, self._sizes[number]
        with open(self._path(number), "rb") as f:
            f.seek(start)
            try:
                while read_record(f, size):
                    count += 1
            except Corrupt:
                pass  # whatever follows is unreadable anyway
        return count

    def _delete(self, number: int) -> None:
        self._path(number).unlink(missing_ok=True)
        self._sizes.pop(number, None)
