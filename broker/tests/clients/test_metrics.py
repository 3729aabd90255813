"""The admin HTTP surface: health, readiness and Prometheus metrics with per-API request counters."""

from __future__ import annotations

import re

from kafka_helpers import create_topic, producer, unique_topic

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def samples(text: str) -> dict[str, float]:
    """{'name{labels}': value} for every sample line of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def is_produce_request_series(series: str) -> bool:
    name, _, labels = series.partition("{")
    if "request" not in name.lower() or not (name.endswith("_total") or name.endswith("_count")):
        return False
    return bool(re.search(r'="produce"|api_key="0"', labels, re.IGNORECASE))


def test_health_and_readiness(broker):
    assert broker.http_get("/healthz")[0] == 200
    assert broker.http_get("/readyz")[0] == 200
    assert broker.http_get("/no-such-page")[0] == 404


def test_metrics_count_requests_per_api(broker):
    status, text = broker.http_get("/metrics")
    assert status == 200
    before = samples(text)
    assert before, "no samples in /metrics"

    topic = unique_topic("metrics")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, linger_ms=0, acks="all")
    for i in range(20):
        p.produce(topic, value=b"m", partition=0)
        assert p.flush(10) == 0  # one Produce request each

    after = samples(broker.http_get("/metrics")[1])
    deltas = {s: after[s] - before.get(s, 0.0) for s in after if is_produce_request_series(s)}
    assert deltas, "no request counter labelled with the Produce API in /metrics:\n" + "\n".join(sorted(after)[:80])
    assert max(deltas.values()) >= 20, deltas
