"""ZooKeeper requests kazoo has no high-level API for (containers, TTL nodes,
persistent watches, getEphemerals, getAllChildrenNumber, multiRead, remove/check
watches), sent through kazoo's own connection, plus a tap on every watch
notification a client receives."""
from collections import namedtuple
import threading

from kazoo.protocol.serialization import (Create2, Watch, int_struct, long_struct,
                                          multiheader_struct, read_buffer, read_string,
                                          stat_struct, write_buffer, write_string)
from kazoo.exceptions import EXCEPTIONS
from kazoo.protocol.states import ZnodeStat


def _acl_bytes(acl):
    b = bytearray(int_struct.pack(len(acl)))
    for a in acl:
        b.extend(int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id))
    return b


class CreateContainer(Create2):
    type = 19


class CreateTTL(namedtuple("CreateTTL", "path data acl flags ttl")):
    type = 21

    def serialize(self):
        b = bytearray(write_string(self.path))
        b.extend(write_buffer(self.data))
        b.extend(_acl_bytes(self.acl))
        b.extend(int_struct.pack(self.flags))
        b.extend(long_struct.pack(self.ttl))
        return b

    @classmethod
    def deserialize(cls, bytes, offset):
        return Create2.deserialize(bytes, offset)


class AddWatch(namedtuple("AddWatch", "path mode")):
    type = 106

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.mode)

    @classmethod
    def deserialize(cls, bytes, offset):
        return True


class RemoveWatches(namedtuple("RemoveWatches", "path kind")):
    type = 18

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.kind)

    @classmethod
    def deserialize(cls, bytes, offset):
        return True


class CheckWatches(RemoveWatches):
    type = 17


class GetEphemerals(namedtuple("GetEphemerals", "prefix")):
    type = 103

    def serialize(self):
        return write_string(self.prefix)

    @classmethod
    def deserialize(cls, bytes, offset):
        n = int_struct.unpack_from(bytes, offset)[0]
        offset += 4
        out = []
        for _ in range(max(n, 0)):
            s, offset = read_string(bytes, offset)
            out.append(s)
        return sorted(out)


class GetAllChildrenNumber(namedtuple("GetAllChildrenNumber", "path")):
    type = 104

    def serialize(self):
        return write_string(self.path)

    @classmethod
    def deserialize(cls, bytes, offset):
        return int_struct.unpack_from(bytes, offset)[0]


class MultiRead(namedtuple("MultiRead", "ops")):
    """ops: list of ("get", path) / ("children", path)."""
    type = 22

    def serialize(self):
        b = bytearray()
        for kind, path in self.ops:
            t = 4 if kind == "get" else 8
            b.extend(multiheader_struct.pack(t, False, -1))
            b.extend(write_string(path) + bytes([0]))
        b.extend(multiheader_struct.pack(-1, True, -1))
        return b

    @classmethod
    def deserialize(cls, bytes, offset):
        results = []
        while True:
            t, done, err = multiheader_struct.unpack_from(bytes, offset)
            offset += multiheader_struct.size
            if done:
                return results
            if t == -1:
                e = int_struct.unpack_from(bytes, offset)[0]
                offset += 4
                results.append(EXCEPTIONS[e]())
            elif t == 4:
                data, offset = read_buffer(bytes, offset)
                stat = ZnodeStat._make(stat_struct.unpack_from(bytes, offset))
                offset += stat_struct.size
                results.append((data, stat))
            elif t == 8:
                n = int_struct.unpack_from(bytes, offset)[0]
                offset += 4
                kids = []
                for _ in range(n):
                    s, offset = read_string(bytes, offset)
                    kids.append(s)
                results.append(sorted(kids))


def call(client, request, timeout=10):
    ar = client.handler.async_result()
    client._call(request, ar)
    return ar.get(timeout=timeout)


def tap_events(client):
    """Records (type, path) of every notification the client receives, in order.
    Must be called after start() (the tap is on the live connection)."""
    client.raw_events = []
    client.raw_cond = threading.Condition()
    conn = client._connection
    orig = conn._read_watch_event

    def tapped(buffer, offset):
        w, _ = Watch.deserialize(buffer, offset)
        with client.raw_cond:
            client.raw_events.append((w.type, w.path))
            client.raw_cond.notify_all()
        return orig(buffer, offset)

    conn._read_watch_event = tapped
