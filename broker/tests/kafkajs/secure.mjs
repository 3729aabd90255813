// kafkajs over SASL_SSL or mutual TLS: produce and read back through a consumer group,
// authenticating with SASL (MECHANISM = scram-sha-512 | scram-sha-256 | plain) or, with
// MECHANISM = tls, with the client certificate CERT and key KEY on an SSL listener; the broker is
// verified against CA. Prints {"sent": n, "received": [...]} on success; exits 1 with the error
// otherwise.
//
// Env: BOOTSTRAP, TOPIC, MECHANISM, USERNAME, PASSWORD (SASL), CERT, KEY (tls), CA (PEM file).

import { readFileSync } from "node:fs";
import { Kafka, logLevel } from "kafkajs";

const { BOOTSTRAP, TOPIC, MECHANISM, USERNAME, PASSWORD, CERT, KEY, CA } = process.env;
const mtls = MECHANISM === "tls";
const ssl = { ca: [readFileSync(CA, "utf8")] };
if (mtls) {
  ssl.cert = readFileSync(CERT, "utf8");
  ssl.key = readFileSync(KEY, "utf8");
}
const kafka = new Kafka({
  clientId: "rivulet-kafkajs-secure",
  brokers: [BOOTSTRAP],
  ssl,
  ...(mtls ? {} : { sasl: { mechanism: MECHANISM, username: USERNAME, password: PASSWORD } }),
  logLevel: logLevel.NOTHING,
  retry: { retries: 3 },
});

const count = 10;
try {
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({
    topic: TOPIC,
    messages: Array.from({ length: count }, (_, i) => ({ value: `v${i}` })),
  });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `g-${TOPIC}` });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
  const received = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out consuming")), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        received.push(message.value.toString());
        if (received.length >= count) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ sent: count, received }));
} catch (e) {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
}
