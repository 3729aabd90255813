"""Network partitions, with every node (coordinator, 3 brokers, the test client) in its own
network namespace joined by a bridge (netns.py). Skips, with the reason, where namespaces are
unavailable (not root, no iproute2)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from checker import Load, verify
from cluster import Cluster, unique_topic
from harness import SESSION_TIMEOUT_MS, ClusterModeMissing, raw_metadata, wait_until
from netns import Net, unavailable_reason

sys.path.append(str(Path(__file__).resolve().parent.parent / "clients"))
import rawkafka as raw  # noqa: E402

pytestmark = pytest.mark.netns

NODES = ["coordinator", "broker-0", "broker-1", "broker-2", "client"]


@pytest.fixture
def netcluster(tmp_path, request):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network partition tests need network namespaces: {reason}")
    net = Net(NODES).create()
    c = None
    try:
        net.enter("client")
        c = Cluster(tmp_path / "cluster", coordinator_host=net.addr["coordinator"],
                    hosts=[net.addr[f"broker-{i}"] for i in range(3)],
                    netns={n: net.ns[n] for n in NODES if n != "client"}, fixed_ports=True)
        request.node._clusters = [c]
        try:
            c.start()
        except ClusterModeMissing as e:
            pytest.fail(f"rivulet-broker refused cluster mode: {e}")
        yield c, net
    finally:
        if c is not None:
            c.stop()
        net.destroy()


def node_of(cluster: Cluster, broker_id: int) -> str:
    return f"broker-{broker_id}"


def view(cluster: Cluster, broker_id: int, topic: str):
    """(leader, isr) of partition 0 as broker `broker_id` itself reports it."""
    return raw_metadata(cluster.broker(broker_id).bootstrap, topic)[0]


def view_or_refusal(cluster: Cluster, broker_id: int, topic: str):
    """Like `view`, for a broker that may be fenced: a fenced broker closes the connection on
    Metadata instead of answering with stale leadership."""
    try:
        return view(cluster, broker_id, topic)
    except ConnectionError:
        return "no answer: it closed the connection (fenced)"


def test_follower_cut_off_leaves_isr_and_writes_go_on(netcluster):
    cluster, net = netcluster
    topic = unique_topic("cut-follower")
    cluster.create_topic(topic, partitions=1, rf=3, min_insync=2)
    load = Load(cluster.bootstrap, topic, 1, rate=200).start()
    load.wait_acks(100, 20, "before the partition")
    leader = cluster.leader(topic, 0)
    follower = next(b.broker_id for b in cluster.brokers if b.broker_id != leader)
    net.isolate(node_of(cluster, follower))
    t0 = time.monotonic()
    wait_until(lambda: follower not in view(cluster, leader, topic)[1], 30,
               what=f"isolated follower {follower} out of the ISR (as leader {leader} reports it)")
    print(f"isolated follower {follower} left the ISR after {time.monotonic() - t0:.1f} s")
    load.wait_acks(300, 30, "with a follower cut off")
    net.heal_isolation(node_of(cluster, follower))
    wait_until(lambda: follower in view(cluster, cluster.leader(topic, 0), topic)[1], 40,
               what=f"follower {follower} back in the ISR after the partition healed")
    load.stop()
    verify(load, cluster.bootstrap)


def raw_produce(bootstrap: str, topic: str, values: list[bytes], acks: int, timeout: float = 4.0):
    """One Produce v3 straight to one broker: (error code, base offset), or None on timeout."""
    try:
        with raw.connect(bootstrap, timeout) as s:
            batch = raw.record_batch([(None, v) for v in values])
            s.sendall(raw.request(0, 3, 1, raw.produce_v3_body(topic, 0, batch, acks=acks, timeout_ms=3000)))
            _, body = raw.recv_response(s)
            [(_, _, err, base)] = raw.parse_produce_v3(body)
            return err, base
    except OSError:
        return None


def test_leader_cut_off_is_fenced_and_its_tail_truncated(netcluster):
    cluster, net = netcluster
    topic = unique_topic("fenced")
    cluster.create_topic(topic, partitions=1, rf=3, min_insync=2)
    load = Load(cluster.bootstrap, topic, 1, rate=200).start()
    load.wait_acks(100, 20, "before the partition")
    old = cluster.leader(topic, 0)
    old_node = node_of(cluster, old)
    old_addr = cluster.broker(old).bootstrap
    peers = ["coordinator"] + [node_of(cluster, b.broker_id) for b in cluster.brokers if b.broker_id != old]
    # The old leader still hears clients, but neither the coordinator nor the other brokers.
    net.cut(old_node, peers)

    # Right away, before it can know it is cut off, write an unreplicated tail to it (acks=1:
    # acknowledged by the leader alone, which Kafka allows to be lost).
    tail_tag = f"tail-{load.run_id}".encode()
    tail = [raw_produce(old_addr, topic, [tail_tag + f"-{i}".encode()], acks=1) for i in range(5)]
    tail_written = [t for t in tail if t is not None and t[0] == 0]
    print(f"unreplicated tail written to the old leader {old}: {tail}")

    # Elsewhere a new leader is elected from the ISR, and the acks=all load goes on through it.
    others = [b.broker_id for b in cluster.brokers if b.broker_id != old]
    (new,) = wait_until(lambda: (lead := view(cluster, others[0], topic)[0]) in others and (lead,),
                        SESSION_TIMEOUT_MS / 1000 + 20, what=f"a new leader among {others} after leader {old} was cut off")
    print(f"leader moved {old} -> {new}")

    # The old leader is fenced: it stops accepting writes (an error, or no answer), even acks=1.
    def refused():
        r = raw_produce(old_addr, topic, [tail_tag + b"-late"], acks=1, timeout=2.0)
        return r is None or r[0] != 0 or r
    result = wait_until(lambda: refused() is True, SESSION_TIMEOUT_MS / 1000 + 15, interval=0.5,
                        what=f"cut-off old leader {old} to refuse writes")
    assert result is True

    net.heal_cut(old_node, peers)
    wait_until(lambda: old in view(cluster, cluster.leader(topic, 0), topic)[1], 40,
               what=f"old leader {old} back in the ISR after the partition healed")
    load.wait_acks(200, 30, "after healing")
    load.stop()
    # Every acks=all acknowledgement survived, and the tail is nowhere (verify() rejects any
    # record that is not one of the load's own).
    verify(load, cluster.bootstrap)
    # And on the old leader's own disk the tail was truncated away.
    pdir = cluster.broker(old).partition_dir(topic, 0)
    leftovers = [f.name for f in pdir.glob("*.log") if tail_tag in f.read_bytes()]
    assert not leftovers, f"old leader {old} still holds its unreplicated tail in {leftovers}"
    print(f"tail of {len(tail_written)} unreplicated records truncated on {old}")


def test_clients_move_off_a_fenced_leader(netcluster):
    """While the old leader stays cut off from the coordinator and the brokers (but reachable by
    clients), an acks=all producer must find the new leader and go on: the fenced broker must
    not keep sending clients back to itself."""
    cluster, net = netcluster
    topic = unique_topic("fenced-flow")
    cluster.create_topic(topic, partitions=1, rf=3, min_insync=2)
    load = Load(cluster.bootstrap, topic, 1, rate=200).start()
    load.wait_acks(100, 20, "before the partition")
    old = cluster.leader(topic, 0)
    peers = ["coordinator"] + [node_of(cluster, b.broker_id) for b in cluster.brokers if b.broker_id != old]
    net.cut(node_of(cluster, old), peers)
    others = [b.broker_id for b in cluster.brokers if b.broker_id != old]
    wait_until(lambda: view(cluster, others[0], topic)[0] in others, SESSION_TIMEOUT_MS / 1000 + 20,
               what=f"a new leader among {others} after leader {old} was cut off")
    try:
        load.wait_acks(300, 30, f"with the fenced old leader {old} still reachable by the client "
                       f"(it reports {view_or_refusal(cluster, old, topic)} for partition 0)")
    finally:
        net.heal_cut(node_of(cluster, old), peers)
    load.stop()
    verify(load, cluster.bootstrap)
