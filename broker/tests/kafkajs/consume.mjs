// kafkajs 2.2 reads a topic back through a consumer group and prints one JSON line per run:
// { consumed: [{ partition, offset, key, value, headers, timestamp }] } (bytes as base64).
// Optionally produces first (PRODUCE_CODEC = none | gzip, the codecs kafkajs has built in).
//
// Env: BOOTSTRAP, TOPIC, COUNT (messages to read), PRODUCE (messages to send first, default 0),
// PRODUCE_CODEC.

import { Kafka, CompressionTypes, logLevel } from "kafkajs";

const bootstrap = process.env.BOOTSTRAP;
const topic = process.env.TOPIC;
const count = Number(process.env.COUNT ?? 0);
const produce = Number(process.env.PRODUCE ?? 0);
const codec = process.env.PRODUCE_CODEC === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None;
if (!bootstrap || !topic) {
  console.error("BOOTSTRAP and TOPIC must be set");
  process.exit(2);
}

const b64 = (v) => (v === null || v === undefined ? null : Buffer.from(v).toString("base64"));
const kafka = new Kafka({ clientId: "rivulet-kafkajs-consume", brokers: [bootstrap], logLevel: logLevel.WARN });

if (produce > 0) {
  const p = kafka.producer({ allowAutoTopicCreation: false });
  await p.connect();
  const messages = Array.from({ length: produce }, (_, i) => ({
    key: `kjs-${i}`,
    value: i % 9 === 4 ? null : `kafkajs value ${i} `.repeat(1 + (i % 4)),
    partition: 0,
    timestamp: String(1_700_000_000_000 + i * 3),
    headers: { dup: ["x", "y"], n: String(i) },
  }));
  await p.send({ topic, acks: -1, compression: codec, messages });
  await p.disconnect();
}

const consumer = kafka.consumer({ groupId: `rivulet-kafkajs-consume-${process.pid}` });
await consumer.connect();
await consumer.subscribe({ topics: [topic], fromBeginning: true });
const got = [];
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`consumed ${got.length} of ${count} within 60 s`)), 60000);
  consumer.on(consumer.events.CRASH, (e) => {
    clearTimeout(timer);
    reject(e.payload.error);
  });
  consumer
    .run({
      eachMessage: async ({ partition, message: m }) => {
        got.push({
          partition,
          offset: m.offset,
          key: b64(m.key),
          value: b64(m.value),
          timestamp: m.timestamp,
          headers: Object.entries(m.headers ?? {}).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => [k, b64(x)])),
        });
        if (got.length >= count) {
          clearTimeout(timer);
          resolve();
        }
      },
    })
    .catch(reject);
});
await consumer.disconnect();
process.stdout.write(JSON.stringify({ consumed: got }) + "\n");
