// kafkajs 2.2 against rivulet-broker with kafkajs's default protocol versions (never flexible).
// Creates a topic, produces with a plain (gzip) and an idempotent producer, reads offsets and
// metadata with the admin client, and prints one JSON report on stdout for the caller (pytest)
// to check against what a second client (confluent-kafka) reads back.
//
// kafkajs can only consume through a consumer group. With CONSUME=1 (set by the caller when the
// broker advertises the group APIs) it also reads everything back with a group consumer.
//
// Env: BOOTSTRAP (host:port), TOPIC, PARTITIONS (default 3), COUNT per producer (default 300).

import { Kafka, CompressionTypes, logLevel } from "kafkajs";

const bootstrap = process.env.BOOTSTRAP;
const topic = process.env.TOPIC;
const partitions = Number(process.env.PARTITIONS ?? 3);
const count = Number(process.env.COUNT ?? 300);
const consume = process.env.CONSUME === "1";
if (!bootstrap || !topic) {
  console.error("BOOTSTRAP and TOPIC must be set");
  process.exit(2);
}

const b64 = (v) => (v === null || v === undefined ? null : Buffer.from(v).toString("base64"));

// Deterministic messages: keys, text and binary values, a null value now and then, and headers
// with a repeated key (kafkajs sends an array value as one header per element).
function message(phase, i) {
  const value =
    i % 50 === 7 ? null : i % 3 === 0 ? Buffer.from(Array.from({ length: i % 200 }, (_, j) => (j * 7 + i) & 0xff)) : `${phase}-value-${i}`;
  return {
    key: `${phase}-key-${i}`,
    value,
    partition: i % partitions,
    headers: { phase, dup: ["one", "two"], seq: String(i) },
  };
}

function describe(phase, msgs) {
  return msgs.map((m) => ({
    phase,
    partition: m.partition,
    key: b64(m.key),
    value: b64(m.value),
    headers: [["phase", b64(m.headers.phase)], ["dup", b64("one")], ["dup", b64("two")], ["seq", b64(m.headers.seq)]],
  }));
}

const kafka = new Kafka({
  clientId: "rivulet-kafkajs-test",
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  connectionTimeout: 5000,
  requestTimeout: 15000,
});

const report = { sent: [], produceResults: [], offsets: null, metadata: null, consumed: null };
const admin = kafka.admin();
await admin.connect();
try {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  if (!created) throw new Error(`createTopics reported ${topic} as already existing`);

  // 1. A plain producer, acks=-1, gzip-compressed batches.
  const plain = kafka.producer({ allowAutoTopicCreation: false });
  await plain.connect();
  const plainMsgs = Array.from({ length: count }, (_, i) => message("plain", i));
  const r1 = await plain.sendBatch({ acks: -1, compression: CompressionTypes.GZIP, topicMessages: [{ topic, messages: plainMsgs }] });
  await plain.disconnect();
  report.sent.push(...describe("plain", plainMsgs));
  report.produceResults.push(...r1);

  // 2. The idempotent producer (InitProducerId, sequence numbers), uncompressed, in small sends.
  const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await idem.connect();
  const idemMsgs = Array.from({ length: count }, (_, i) => message("idem", i));
  for (let i = 0; i < idemMsgs.length; i += 50) {
    report.produceResults.push(...(await idem.send({ topic, acks: -1, messages: idemMsgs.slice(i, i + 50) })));
  }
  await idem.disconnect();
  report.sent.push(...describe("idem", idemMsgs));

  report.offsets = await admin.fetchTopicOffsets(topic);
  report.metadata = await admin.fetchTopicMetadata({ topics: [topic] });
} finally {
  await admin.disconnect();
}

if (consume) {
  const consumer = kafka.consumer({ groupId: `rivulet-kafkajs-${process.pid}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const got = [];
  const want = report.sent.length;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed ${got.length} of ${want} within 60 s`)), 60000);
    // A crashed consumer (e.g. a group API it cannot use) fails the run now, not at the timeout.
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
            headers: Object.entries(m.headers ?? {}).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => [k, b64(x)])),
          });
          if (got.length >= want) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  report.consumed = got;
}

process.stdout.write(JSON.stringify(report) + "\n");
