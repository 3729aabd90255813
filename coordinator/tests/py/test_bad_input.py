"""Bad input on the client port: garbage, huge and negative lengths, truncated
frames, unknown opcodes, malformed bodies and data over jute.maxbuffer close that
one connection; the server and other sessions carry on."""
import socket
import struct
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss

from servers import Rivulet, four_letter


def frame(payload):
    return struct.pack("!i", len(payload)) + payload


CONNECT = frame(struct.pack("!iqiq", 0, 0, 10000, 0) + struct.pack("!i", 16) + b"\0" * 16 + b"\0")


def raw(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    return s


def read_all(s, limit=5.0):
    s.settimeout(limit)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out, True
            out += b
    except socket.timeout:
        return out, False


@pytest.fixture
def env(tmp_path):
    srv = Rivulet(tmp_path, extra=["--jute-max-buffer", "65536"]).start()
    bystander = KazooClient(hosts=srv.hosts, timeout=10.0)
    bystander.start(timeout=15)
    bystander.create("/keep", b"intact")
    yield srv, bystander
    bystander.stop()
    bystander.close()
    srv.stop()


def still_fine(srv, bystander):
    assert four_letter(srv.port, "ruok") == "imok"
    assert bystander.get("/keep")[0] == b"intact"
    bystander.set("/keep", b"intact")
    assert srv.proc.poll() is None


@pytest.mark.parametrize("payload", [
    b"\xde\xad\xbe\xef" * 8,                       # garbage
    struct.pack("!i", 0x7FFFFFFF) + b"x" * 16,     # huge length
    struct.pack("!i", -5) + b"x" * 16,             # negative length
    struct.pack("!i", 70000),                      # just over the configured limit
    frame(b"\x00\x00"),                            # truncated connect request
])
def test_bad_first_frame_closes_connection(env, payload):
    srv, bystander = env
    s = raw(srv)
    s.sendall(payload)
    _, closed = read_all(s)
    s.close()
    assert closed
    still_fine(srv, bystander)


def handshake(srv):
    s = raw(srv)
    s.sendall(CONNECT)
    hdr = b""
    while len(hdr) < 4:
        hdr += s.recv(4 - len(hdr))
    n = struct.unpack("!i", hdr)[0]
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    _, timeout, sid = struct.unpack_from("!iiq", body)
    assert timeout > 0 and sid != 0
    return s


def test_unknown_opcode_gets_unimplemented_then_close(env):
    srv, bystander = env
    s = handshake(srv)
    s.sendall(frame(struct.pack("!ii", 7, 999)))
    out, closed = read_all(s)
    assert closed
    xid, _zxid, err = struct.unpack_from("!iqi", out, 4)
    assert (xid, err) == (7, -6)
    still_fine(srv, bystander)


@pytest.mark.parametrize("body", [
    struct.pack("!ii", 1, 4) + struct.pack("!i", 50) + b"/short",   # string longer than frame
    struct.pack("!ii", 1, 1) + struct.pack("!i", -7),                  # negative string length
    struct.pack("!ii", 1, 14) + struct.pack("!iBi", 1, 0, -1),         # multi cut short
    struct.pack("!i", 1),                                              # header cut short
])
def test_malformed_request_closes_connection(env, body):
    srv, bystander = env
    s = handshake(srv)
    s.sendall(frame(body))
    _, closed = read_all(s)
    assert closed
    still_fine(srv, bystander)


def test_truncated_frame_then_hangup(env):
    srv, bystander = env
    s = handshake(srv)
    s.sendall(struct.pack("!i", 100) + b"only-part")
    s.close()
    time.sleep(0.2)
    still_fine(srv, bystander)


def test_data_over_limit(env):
    srv, bystander = env
    c = KazooClient(hosts=srv.hosts, timeout=10.0, connection_retry={"max_tries": 0},
                    command_retry={"max_tries": 0})
    c.start(timeout=15)
    with pytest.raises(ConnectionLoss):
        c.create("/big", b"x" * 70000)
    c.stop()
    c.close()
    assert bystander.exists("/big") is None
    bystander.create("/fits", b"x" * 60000)
    assert len(bystander.get("/fits")[0]) == 60000
    still_fine(srv, bystander)


def test_many_bad_connections_do_not_hurt(env):
    srv, bystander = env
    for i in range(50):
        s = raw(srv)
        s.sendall(bytes((i * 37 + k) % 256 for k in range(64)))
        s.close()
    still_fine(srv, bystander)


def test_pipelined_requests_are_answered_in_order(env):
    """A client that pipelines thousands of requests before reading gets every
    reply, in order (the server stops reading past its in-flight limit rather than
    queueing without bound)."""
    import threading

    srv, bystander = env
    s = handshake(srv)
    n = 5000
    reqs = b"".join(frame(struct.pack("!ii", i, 3) + struct.pack("!i", 5) + b"/keep" + b"\0")
                    for i in range(1, n + 1))
    sender = threading.Thread(target=s.sendall, args=(reqs,), daemon=True)
    sender.start()
    s.settimeout(30)
    buf, xids = b"", []
    while len(xids) < n:
        chunk = s.recv(1 << 16)
        assert chunk, "connection closed early"
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from("!i", buf)[0]:
            ln = struct.unpack_from("!i", buf)[0]
            xid, _z, err = struct.unpack_from("!iqi", buf, 4)
            assert err == 0
            xids.append(xid)
            buf = buf[4 + ln:]
    sender.join(30)
    s.close()
    assert xids == list(range(1, n + 1))
    still_fine(srv, bystander)
