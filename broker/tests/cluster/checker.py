"""The checker: a steady acks=all idempotent producer that records every acknowledged
(partition, offset, payload) from its delivery callbacks, and a verifier that reads every
partition back from the beginning and compares.

Payloads are "<run>:<partition>:<seq>" (seq counts up per partition, in send order) padded to a
fixed size. What verify() asserts, per partition, and why:

The read-back goes to the high watermark or, if a just-elected leader still reports a lower one,
on to the last acknowledged offset (bounded in time; the lower watermark is noted in the summary).

1. Offsets read back are contiguous from the log start to the high watermark. The topic is fresh
   and not transactional or compacted, so a hole can only mean lost or hidden data.
2. Every acknowledged message is present at exactly the offset its delivery report gave, with
   the same payload: an ack is a promise about that offset.
3. No payload appears twice anywhere (acked or not). The producer is idempotent, so a retry of a
   batch the broker already has must not be written again, across leader changes too.
4. Sequence numbers increase strictly with the offset: the idempotent producer keeps per
   partition order (max 5 in flight, sequence checked by the leader).
5. Nothing foreign: every record is one of this run's payloads for this partition. Between two
   consecutive acked offsets there may be unacked records of this run (a batch written whose ack
   was lost, or one that failed after the write), but only ones with a sequence number between
   the two acked ones (implied by 3 and 4) — never junk, never a duplicate.
6. Optionally (strict=True) no delivery failed: with infinite retries within message.timeout.ms,
   a cluster that keeps min.insync.replicas alive must accept everything.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition


def producer_config(bootstrap: str, **extra) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "request.timeout.ms": 5000,
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 500,
        "reconnect.backoff.max.ms": 500,
        "topic.metadata.refresh.interval.ms": 1000,
        "socket.timeout.ms": 5000,
        **extra,
    }


@dataclass
class Ack:
    partition: int
    offset: int
    seq: int
    payload: bytes


@dataclass
class Failure:
    partition: int
    seq: int
    error: str
    at: float


@dataclass
class Load:
    """A producer thread sending `rate` messages/s round-robin over `partitions`."""

    bootstrap: str
    topic: str
    partitions: int
    rate: float = 300.0
    size: int = 100
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.run_id = uuid.uuid4().hex[:8]
        self.acked: list[Ack] = []
        self.failed: list[Failure] = []
        self.latencies: list[float] = []
        self.sent_at: list[float] = []  # monotonic send time of each latencies[i]
        self.sent = 0
        self.errors_seen: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"load-{self.topic}", daemon=True)
        self._next_seq = [0] * self.partitions
        self.flush_left = 0
        self.crash: BaseException | None = None

    def payload(self, partition: int, seq: int) -> bytes:
        head = f"{self.run_id}:{partition}:{seq:09d}".encode()
        return head + b"." * max(0, self.size - len(head))

    def _on_delivery(self, sent_at: float, partition: int, seq: int):
        def cb(err, msg):
            with self._lock:
                if err is None:
                    self.acked.append(Ack(msg.partition(), msg.offset(), seq, msg.value()))
                    self.latencies.append(time.monotonic() - sent_at)
                    self.sent_at.append(sent_at)
                else:
                    self.failed.append(Failure(partition, seq, str(err), time.monotonic()))
        return cb

    def _error(self, err):
        # Client-level errors (broker down etc.) are expected during faults; keep them for reports.
        with self._lock:
            if len(self.errors_seen) < 200:
                fatal = " FATAL" if err.fatal() else ""
                self.errors_seen.append(f"{time.strftime('%H:%M:%S')}{fatal} {err}")

    def _run(self):
        try:
            self._produce_loop()
        except BaseException as e:  # reported by wait_acks()/stop(), not lost in a thread
            self.crash = e

    def _produce_loop(self):
        p = Producer(producer_config(self.bootstrap, error_cb=self._error, **self.extra))
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        part = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_at:
                p.poll(min(next_at - now, 0.05))
                continue
            next_at += interval
            if next_at < now - 1.0:  # fell behind (client blocked): do not burst to catch up
                next_at = now
            seq = self._next_seq[part]
            try:
                p.produce(self.topic, self.payload(part, seq), partition=part,
                          on_delivery=self._on_delivery(time.monotonic(), part, seq))
            except BufferError:
                p.poll(0.1)
                continue
            self._next_seq[part] += 1
            self.sent += 1
            part = (part + 1) % self.partitions
            p.poll(0)
        self.flush_left = p.flush(70)

    def start(self) -> "Load":
        self._thread.start()
        return self

    def stop(self, timeout: float = 80.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "producer did not finish flushing in time"
        assert self.crash is None, f"producer thread failed: {self.crash!r}"

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_acks(self, more: int, timeout: float, what: str = "") -> None:
        """Waits until `more` further messages have been acknowledged (data is flowing)."""
        target = self.acked_count() + more
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acked_count() >= target:
                return
            assert self.crash is None, f"producer thread failed: {self.crash!r}"
            time.sleep(0.05)
        raise AssertionError(f"only {self.acked_count()} of {target} acks after {timeout} s {what}; "
                             f"failed {len(self.failed)}; client errors: {self.errors_seen[-5:]}")


def read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0,
             min_end: dict[int, int] | None = None, notes: list[str] | None = None) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of every partition, from the beginning to the high watermark (taken now), or
    further, to min_end[p], when that is higher: an acknowledged write must become readable, but
    a leader elected a moment ago may still report a lower high watermark (it advances as the
    followers fetch). Such a lower watermark is noted in `notes`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"checker-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "isolation.level": "read_uncommitted", "enable.partition.eof": False,
                  "fetch.wait.max.ms": 100, "topic.metadata.refresh.interval.ms": 1000})
    try:
        hw = {}
        deadline = time.monotonic() + timeout
        for p in range(partitions):
            while True:
                try:
                    hw[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        for p in range(partitions):
            want = (min_end or {}).get(p, 0)
            if want > hw[p]:
                if notes is not None:
                    notes.append(f"p{p}: high watermark {hw[p]} reported below the acknowledged end {want}")
                hw[p] = want
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
        nxt = {p: 0 for p in range(partitions)}
        while any(nxt[p] < hw[p] for p in range(partitions)):
            if time.monotonic() > deadline:
                raise AssertionError(f"read back timed out: next offsets {nxt}, high watermarks {hw}")
            for m in c.consume(500, timeout=0.5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        raise AssertionError(f"consumer error: {m.error()}")
                    continue
                got[m.partition()].append((m.offset(), m.value()))
                nxt[m.partition()] = m.offset() + 1
        return got
    finally:
        c.close()


def verify(load: Load, bootstrap: str, strict: bool = True, timeout: float = 60.0) -> str:
    """Reads everything back and asserts the properties in the module docstring. Returns the
    summary (also printed)."""
    min_end: dict[int, int] = {}
    for a in load.acked:
        min_end[a.partition] = max(min_end.get(a.partition, 0), a.offset + 1)
    notes: list[str] = []
    try:
        data = read_all(bootstrap, load.topic, load.partitions, timeout, min_end, notes)
    except AssertionError as e:
        raise AssertionError(f"acknowledged records never became readable: {e}; {notes}") from e
    problems: list[str] = []
    acked_by_p: dict[int, dict[int, Ack]] = {p: {} for p in range(load.partitions)}
    for a in load.acked:
        if a.offset in acked_by_p[a.partition] and acked_by_p[a.partition][a.offset].payload != a.payload:
            problems.append(f"p{a.partition}: offset {a.offset} acknowledged twice, for seq "
                            f"{acked_by_p[a.partition][a.offset].seq} and {a.seq}")
        acked_by_p[a.partition][a.offset] = a
    seen_payloads: dict[bytes, tuple[int, int]] = {}
    lines = []
    unacked_total = 0
    for p in range(load.partitions):
        recs = data[p]
        at = dict(recs)
        offs = [o for o, _ in recs]
        # 1. contiguous offsets
        if offs:
            holes = [(a, b) for a, b in zip(offs, offs[1:]) if b != a + 1]
            if holes:
                problems.append(f"p{p}: holes in offsets read back: {holes[:5]}")
        # 2. acked present at their offsets
        missing = [a for o, a in sorted(acked_by_p[p].items()) if at.get(o) != a.payload]
        for a in missing[:10]:
            problems.append(f"p{p}: acked seq {a.seq} at offset {a.offset} LOST: offset holds "
                            f"{at.get(a.offset, b'<nothing>')[:40]!r}")
        if len(missing) > 10:
            problems.append(f"p{p}: ... {len(missing)} acked messages lost in all")
        # 3-5. duplicates, order, foreign records
        last_seq = -1
        unacked = 0
        prefix = f"{load.run_id}:{p}:".encode()
        for o, v in recs:
            if v in seen_payloads:
                problems.append(f"p{p}: payload {v[:30]!r} at offset {o} duplicates offset {seen_payloads[v]}")
            seen_payloads[v] = (p, o)
            if not v.startswith(prefix):
                problems.append(f"p{p}: foreign record at offset {o}: {v[:40]!r}")
                continue
            seq = int(v[len(prefix):len(prefix) + 9])
            if seq <= last_seq:
                problems.append(f"p{p}: order broken at offset {o}: seq {seq} after {last_seq}")
            last_seq = seq
            if o not in acked_by_p[p]:
                unacked += 1
        unacked_total += unacked
        lines.append(f"p{p}: {len(recs)} records read (offsets {offs[0] if offs else '-'}..{offs[-1] if offs else '-'}), "
                     f"{len(acked_by_p[p])} acked, {unacked} present but unacked")
    if strict and load.failed:
        problems.append(f"{len(load.failed)} deliveries failed, first: {load.failed[:3]}")
    lat = sorted(load.latencies)
    pct = (lambda q: f"{lat[min(len(lat) - 1, int(q * len(lat)))] * 1000:.0f} ms") if lat else (lambda q: "-")
    summary = (f"checker[{load.topic} run {load.run_id}]: sent {load.sent}, acked {len(load.acked)}, "
               f"failed {len(load.failed)}, unflushed {load.flush_left}, present-but-unacked {unacked_total}, "
               f"ack latency p50 {pct(0.5)} p99 {pct(0.99)} max {pct(1.0)}\n  " + "\n  ".join(lines + notes))
    print(summary)
    if problems:
        raise AssertionError("checker found problems:\n  " + "\n  ".join(problems[:40]) + "\n" + summary)
    assert load.acked, "nothing was acknowledged at all"
    return summary
