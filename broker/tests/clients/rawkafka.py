"""Hand-built Kafka requests over raw sockets, for input no well-behaved client would send:
a v2 record batch encoder (with CRC32C), request framing, and a few response decoders."""

from __future__ import annotations

import socket
import struct
import time


def _crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record(offset_delta: int, key: bytes | None, value: bytes | None, headers=(), ts_delta: int = 0) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += varint(ts_delta) + varint(offset_delta)
    for part in (key, value):
        body += varint(-1) if part is None else varint(len(part)) + part
    body += varint(len(headers))
    for hk, hv in headers:
        hk = hk.encode()
        body += varint(len(hk)) + hk
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(records: list[tuple[bytes | None, bytes | None]], base_ts: int | None = None, magic: int = 2,
                 count_override: int | None = None, producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1) -> bytes:
    """An uncompressed v2 batch with a correct CRC (unless tampered with afterwards)."""
    ts = int(time.time() * 1000) if base_ts is None else base_ts
    recs = b"".join(record(i, k, v) for i, (k, v) in enumerate(records))
    count = len(records) if count_override is None else count_override
    after_crc = struct.pack(
        ">hiqqqhii", 0, len(records) - 1, ts, ts, producer_id, producer_epoch, base_sequence, count
    ) + recs
    crc = crc32c(after_crc)
    after_len = struct.pack(">ibI", 0, magic, crc) + after_crc  # partitionLeaderEpoch, magic, crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def corrupt_crc_region(batch: bytes) -> bytes:
    """Flips one byte inside the CRC-covered region (the last record's value)."""
    b = bytearray(batch)
    b[-2] ^= 0x55
    return bytes(b)


def _str(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    e = s.encode()
    return struct.pack(">h", len(e)) + e


def request(api_key: int, version: int, correlation_id: int, body: bytes, client_id: str = "raw-test") -> bytes:
    """Request header v1 (non-flexible) + body, length-prefixed."""
    msg = struct.pack(">hhi", api_key, version, correlation_id) + _str(client_id) + body
    return struct.pack(">i", len(msg)) + msg


def produce_v3_body(topic: str, partition: int, batch: bytes, acks: int = -1, timeout_ms: int = 10000) -> bytes:
    return (
        _str(None)  # transactional id
        + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1)
        + _str(topic)
        + struct.pack(">i", 1)
        + struct.pack(">ii", partition, len(batch))
        + batch
    )


def connect(bootstrap: str, timeout: float = 10.0) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_response(s: socket.socket) -> tuple[int, bytes]:
    """Reads one response: (correlation id, body after the v0 response header)."""
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    data = recv_exact(s, size)
    (corr,) = struct.unpack(">i", data[:4])
    return corr, data[4:]


def closed_by_peer(s: socket.socket, timeout: float = 10.0) -> bool:
    """True once the broker has closed the connection (EOF or reset); False if it stays open
    and silent for `timeout` seconds."""
    s.settimeout(timeout)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def parse_api_versions_v0(body: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    (err, n) = struct.unpack(">hi", body[:6])
    apis = {}
    off = 6
    for _ in range(max(n, 0)):
        k, lo, hi = struct.unpack(">hhh", body[off : off + 6])
        apis[k] = (lo, hi)
        off += 6
    return err, apis


def parse_produce_v3(body: bytes) -> list[tuple[str, int, int, int]]:
    """[(topic, partition, error_code, base_offset)]"""
    out = []
    off = 0
    (nt,) = struct.unpack(">i", body[off : off + 4])
    off += 4
    for _ in range(nt):
        (ln,) = struct.unpack(">h", body[off : off + 2])
        off += 2
        name = body[off : off + ln].decode()
        off += ln
        (np_,) = struct.unpack(">i", body[off : off + 4])
        off += 4
        for _ in range(np_):
            part, err, base, _log_append = struct.unpack(">ihqq", body[off : off + 22])
            off += 22
            out.append((name, part, err, base))
    return out


def api_versions(bootstrap: str, version: int = 0) -> tuple[int, dict[int, tuple[int, int]]]:
    with connect(bootstrap) as s:
        s.sendall(request(18, version, 7, b""))
        corr, body = recv_response(s)
        assert corr == 7
        return parse_api_versions_v0(body)


def init_producer_id_v0(s: socket.socket, correlation_id: int) -> tuple[int, int, int]:
    """InitProducerId v0 for an idempotent (non-transactional) producer: (error, id, epoch)."""
    s.sendall(request(22, 0, correlation_id, _str(None) + struct.pack(">i", 60000)))
    corr, body = recv_response(s)
    assert corr == correlation_id
    _throttle, err, pid, epoch = struct.unpack(">ihqh", body[:16])
    return err, pid, epoch


def produce_v3(s: socket.socket, correlation_id: int, topic: str, partition: int, batch: bytes) -> tuple[int, int]:
    """One acks=-1 Produce v3 round trip: (error code, base offset)."""
    s.sendall(request(0, 3, correlation_id, produce_v3_body(topic, partition, batch)))
    corr, body = recv_response(s)
    assert corr == correlation_id
    [(_, _, err, base)] = parse_produce_v3(body)
    return err, base


def _read_nullable_str(body: bytes, off: int) -> tuple[str | None, int]:
    (ln,) = struct.unpack(">h", body[off : off + 2])
    off += 2
    if ln < 0:
        return None, off
    return body[off : off + ln].decode(), off + ln


def parse_produce_v8(body: bytes) -> list[dict]:
    """Produce v8 (KIP-467, not flexible): one dict per partition with error_code, base_offset,
    record_errors [(batch_index, message)] and error_message."""
    out = []
    off = 0
    (nt,) = struct.unpack(">i", body[off : off + 4])
    off += 4
    for _ in range(nt):
        name, off = _read_nullable_str(body, off)
        (np_,) = struct.unpack(">i", body[off : off + 4])
        off += 4
        for _ in range(np_):
            part, err, base, _append_time, _log_start = struct.unpack(">ihqqq", body[off : off + 30])
            off += 30
            (ne,) = struct.unpack(">i", body[off : off + 4])
            off += 4
            record_errors = []
            for _ in range(max(ne, 0)):
                (idx,) = struct.unpack(">i", body[off : off + 4])
                msg, off = _read_nullable_str(body, off + 4)
                record_errors.append((idx, msg))
            message, off = _read_nullable_str(body, off)
            out.append({"topic": name, "partition": part, "error_code": err, "base_offset": base,
                        "record_errors": record_errors, "error_message": message})
    return out


def produce(s: socket.socket, correlation_id: int, version: int, topic: str, partition: int, batch: bytes) -> bytes:
    """One acks=-1 Produce round trip at a non-flexible `version` (3..8); returns the body."""
    s.sendall(request(0, version, correlation_id, produce_v3_body(topic, partition, batch)))
    corr, body = recv_response(s)
    assert corr == correlation_id
    return body

def _uvarint(b: bytes, off: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        c = b[off]
        off += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, off
        shift += 7


def _skip_tags(b: bytes, off: int) -> int:
    count, off = _uvarint(b, off)
    for _ in range(count):
        _tag, off = _uvarint(b, off)
        size, off = _uvarint(b, off)
        off += size
    return off


def describe_log_dirs_v4(bootstrap: str) -> list[tuple[int, str, int, int]]:
    """DescribeLogDirs v4 (flexible; the first version with the filesystem's total and usable
    bytes) for every topic: [(error code, log dir, total bytes, usable bytes)]."""
    header = struct.pack(">hhi", 35, 4, 11) + _str("raw-test") + b"\x00"  # request header v2
    body = b"\x00" + b"\x00"  # topics: null (compact nullable array), no tagged fields
    with connect(bootstrap) as s:
        s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        corr, b = recv_response(s)
    assert corr == 11
    off = _skip_tags(b, 0)  # response header v1
    _throttle, err = struct.unpack(">ih", b[off : off + 6])
    off += 6
    assert err == 0, f"DescribeLogDirs error {err}"
    n, off = _uvarint(b, off)
    out = []
    for _ in range(n - 1):
        (rerr,) = struct.unpack(">h", b[off : off + 2])
        off += 2
        ln, off = _uvarint(b, off)
        log_dir = b[off : off + ln - 1].decode()
        off += ln - 1
        nt, off = _uvarint(b, off)
        for _ in range(nt - 1):
            ln, off = _uvarint(b, off)
            off += ln - 1
            npart, off = _uvarint(b, off)
            for _ in range(npart - 1):
                off += 4 + 8 + 8 + 1  # index, size, offset lag, is-future
                off = _skip_tags(b, off)
            off = _skip_tags(b, off)
        total, usable = struct.unpack(">qq", b[off : off + 16])
        off += 16
        off = _skip_tags(b, off)
        out.append((rerr, log_dir, total, usable))
    return out
