// kafkajs's admin reassignment calls against a cluster, for the cluster suite
// (broker/tests/cluster/test_reassignment.py). Prints one JSON line.
//   node reassign.mjs <bootstrap> alter <topic> <partition> <broker,broker,...>
//   node reassign.mjs <bootstrap> list
import { Kafka, logLevel } from 'kafkajs'

const [bootstrap, command, topic, partition, replicas] = process.argv.slice(2)
const kafka = new Kafka({
  clientId: 'rivulet-reassign-test',
  brokers: bootstrap.split(','),
  logLevel: logLevel.NOTHING,
  retry: { retries: 3 },
})
const admin = kafka.admin()
await admin.connect()
try {
  if (command === 'alter') {
    await admin.alterPartitionReassignments({
      topics: [
        {
          topic,
          partitionAssignment: [
            { partition: Number(partition), replicas: replicas.split(',').map(Number) },
          ],
        },
      ],
      timeout: 5000,
    })
    console.log(JSON.stringify({ ok: true }))
  } else if (command === 'list') {
    const { topics } = await admin.listPartitionReassignments({ timeout: 5000 })
    console.log(JSON.stringify({ ok: true, topics }))
  } else {
    throw new Error(`unknown command ${command}`)
  }
} catch (e) {
  const errors = (e.errors || [e]).map(x => ({ type: x.type, message: x.message }))
  console.log(JSON.stringify({ ok: false, errors }))
} finally {
  await admin.disconnect()
}
