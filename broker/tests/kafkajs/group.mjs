// kafkajs 2.2 consumer group against rivulet-broker: two consumers in one group (consumer.run
// with eachMessage). Once their assignments split the topic's partitions between them, the
// script produces COUNT messages, waits until the group has consumed them, disconnects (which
// commits), reads the committed offsets and the group description with the admin client, and
// prints one JSON report on stdout for pytest to check.
//
// Env: BOOTSTRAP (host:port), TOPIC, GROUP, PARTITIONS (default 4), COUNT (default 400).

import { Kafka, logLevel } from "kafkajs";

const bootstrap = process.env.BOOTSTRAP;
const topic = process.env.TOPIC;
const groupId = process.env.GROUP;
const partitions = Number(process.env.PARTITIONS ?? 4);
const count = Number(process.env.COUNT ?? 400);
if (!bootstrap || !topic || !groupId) {
  console.error("BOOTSTRAP, TOPIC and GROUP must be set");
  process.exit(2);
}

const kafka = new Kafka({
  clientId: "rivulet-kafkajs-group",
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  connectionTimeout: 5000,
  requestTimeout: 15000,
});

const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms).unref());

async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });

const report = { members: [], joins: [], consumed: [], committed: null, described: null };
const consumers = [];
const crashes = [];
for (let i = 0; i < 2; i++) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000 });
  const me = { name: `js-${i}`, assignment: [] };
  report.members.push(me);
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    me.assignment = (e.payload.memberAssignment[topic] ?? []).slice().sort((a, b) => a - b);
    report.joins.push({ member: me.name, memberId: e.payload.memberId, isLeader: e.payload.isLeader, assignment: me.assignment });
  });
  consumer.on(consumer.events.CRASH, (e) => crashes.push(String(e.payload.error)));
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      report.consumed.push({ member: me.name, partition, offset: Number(message.offset), value: message.value.toString() });
    },
  });
  consumers.push(consumer);
}

try {
  // Both members hold a share, and together every partition exactly once.
  const split = () => {
    const all = report.members.flatMap((m) => m.assignment).sort((a, b) => a - b);
    return report.members.every((m) => m.assignment.length > 0) && JSON.stringify(all) === JSON.stringify([...Array(partitions).keys()]);
  };
  await until(() => split() || crashes.length > 0, 60000, "two members sharing the partitions");
  if (crashes.length) throw new Error(`consumer crashed: ${crashes[0]}`);

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const messages = Array.from({ length: count }, (_, i) => ({ value: `js-${i}`, partition: i % partitions }));
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();

  await until(() => report.consumed.length >= count || crashes.length > 0, 60000, `${count} messages consumed`);
  await new Promise((r) => setTimeout(r, 1000)); // duplicates, if any, would arrive now
  if (crashes.length) throw new Error(`consumer crashed: ${crashes[0]}`);
} finally {
  await Promise.race([Promise.all(consumers.map((c) => c.disconnect())), deadline(30000, "disconnect")]);
}

report.committed = await admin.fetchOffsets({ groupId, topics: [topic] });
report.described = await admin.describeGroups([groupId]);
await admin.disconnect();
process.stdout.write(JSON.stringify(report) + "\n");
