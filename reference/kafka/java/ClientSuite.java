import java.io.FileReader;
import java.io.IOException;
import java.io.Reader;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.SecurityDisabledException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java Kafka client (kafka-clients 4.x) against a running cluster: producer, consumer groups,
 * admin. Each case prints "PASS name", "FAIL name: why" or "SKIP name: why"; the last line is
 * "N passed, N failed, N skipped" and the exit status is 1 when anything failed.
 *
 * Usage: java ClientSuite BOOTSTRAP BROKER_COUNT [--client-config=FILE] [case ...]
 *
 * --client-config: Java client properties (security.protocol, sasl.*, ssl.*) every client of
 * the suite uses, e.g. a super user's SASL_SSL login; the acls case needs one with SASL.
 */
public final class ClientSuite {
    private final String bootstrap;
    private final int brokers;
    /** Properties every client gets (security settings), from --client-config. */
    private final Map<String, Object> common;
    private final Admin admin;

    static final class Skip extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Skip(String why) {
            super(why);
        }
    }

    interface Case {
        void run() throws Exception;
    }

    private ClientSuite(String bootstrap, int brokers, Map<String, Object> common) {
        this.bootstrap = bootstrap;
        this.brokers = brokers;
        this.common = common;
        Properties p = new Properties();
        p.putAll(common);
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        this.admin = Admin.create(p);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: ClientSuite BOOTSTRAP BROKER_COUNT [case ...]");
            System.exit(2);
        }
        Map<String, Object> common = new HashMap<>();
        List<String> rest = new ArrayList<>();
        for (String a : List.of(args).subList(2, args.length)) {
            if (a.startsWith("--client-config=")) {
                common.putAll(readProperties(a.substring("--client-config=".length())));
            } else {
                rest.add(a);
            }
        }
        ClientSuite s = new ClientSuite(args[0], Integer.parseInt(args[1]), common);
        Map<String, Case> cases = new LinkedHashMap<>();
        cases.put("describe_cluster", s::describeCluster);
        cases.put("idempotent_producer", s::idempotentProducer);
        cases.put("compression_gzip", () -> s.compression("gzip"));
        cases.put("compression_snappy", () -> s.compression("snappy"));
        cases.put("compression_lz4", () -> s.compression("lz4"));
        cases.put("compression_zstd", () -> s.compression("zstd"));
        cases.put("group_cooperative_sticky", s::groupCooperativeSticky);
        cases.put("admin_topics", s::adminTopics);
        cases.put("admin_configs", s::adminConfigs);
        cases.put("create_partitions", s::createPartitions);
        cases.put("describe_log_dirs", s::describeLogDirs);
        cases.put("reassignment", s::reassignment);
        cases.put("offsets_for_times", s::offsetsForTimes);
        cases.put("delete_records", s::deleteRecords);
        cases.put("acls", s::acls);
        Set<String> only = new HashSet<>(rest);
        int passed = 0, failed = 0, skipped = 0;
        for (Map.Entry<String, Case> e : cases.entrySet()) {
            if (!only.isEmpty() && !only.contains(e.getKey())) {
                continue;
            }
            long t0 = System.nanoTime();
            try {
                e.getValue().run();
                passed++;
                System.out.printf("PASS %s (%d ms)%n", e.getKey(), (System.nanoTime() - t0) / 1_000_000);
            } catch (Skip sk) {
                skipped++;
                System.out.printf("SKIP %s: %s%n", e.getKey(), sk.getMessage());
            } catch (Throwable t) {
                failed++;
                System.out.printf("FAIL %s: %s%n", e.getKey(), t);
                t.printStackTrace(System.out);
            }
            System.out.flush();
        }
        s.admin.close(Duration.ofSeconds(5));
        System.out.printf("%d passed, %d failed, %d skipped%n", passed, failed, skipped);
        System.exit(failed == 0 ? 0 : 1);
    }

    // ---- helpers -------------------------------------------------------------------------

    static Map<String, Object> readProperties(String path) throws IOException {
        Properties p = new Properties();
        try (Reader r = new FileReader(path, java.nio.charset.StandardCharsets.UTF_8)) {
            p.load(r);
        }
        Map<String, Object> out = new HashMap<>();
        p.forEach((k, v) -> out.put((String) k, v));
        return out;
    }

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static void eventually(BooleanSupplier cond, long timeoutMs, String what) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < deadline) {
            try {
                if (cond.getAsBoolean()) {
                    return;
                }
            } catch (RuntimeException e) {
                // not yet (a metadata change still propagating)
            }
            Thread.sleep(200);
        }
        throw new AssertionError("timed out after " + timeoutMs + " ms waiting for " + what);
    }

    static <T> T get(KafkaFuture<T> f) throws Exception {
        return f.get(30, TimeUnit.SECONDS);
    }

    static String topic(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    int rf() {
        return Math.min(3, brokers);
    }

    String newTopic(String prefix, int partitions, Map<String, String> configs) throws Exception {
        String t = topic(prefix);
        get(admin.createTopics(List.of(new NewTopic(t, partitions, (short) rf()).configs(configs))).all());
        eventually(() -> {
            try {
                TopicDescription d = get(admin.describeTopics(List.of(t)).allTopicNames()).get(t);
                return d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(p -> p.leader() != null && p.isr().size() == rf());
            } catch (Exception e) {
                return false;
            }
        }, 30000, t + ": every partition led with a full ISR");
        return t;
    }

    KafkaProducer<byte[], byte[]> producer(Map<String, Object> extra) {
        Properties p = new Properties();
        p.putAll(common);
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    KafkaConsumer<byte[], byte[]> consumer(String group, Map<String, Object> extra) {
        Properties p = new Properties();
        p.putAll(common);
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        p.putAll(extra);
        return new KafkaConsumer<>(p);
    }

    /** Every record of the partitions from offset `from` up to `end` (exclusive), by assign(). */
    List<ConsumerRecord<byte[], byte[]>> readRange(TopicPartition tp, long from, long end) throws Exception {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer(null, Map.of())) {
            c.assign(List.of(tp));
            c.seek(tp, from);
            long deadline = System.currentTimeMillis() + 30000;
            while (c.position(tp) < end) {
                check(System.currentTimeMillis() < deadline,
                        "read " + tp + " timed out at " + c.position(tp) + " of " + end);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    out.add(r);
                }
            }
        }
        return out;
    }

    /** Sends n records (key i, value prefix+i) to one partition and returns their metadata. */
    List<RecordMetadata> send(KafkaProducer<byte[], byte[]> p, String topic, int partition, int n, String prefix,
            Long timestamp0) throws Exception {
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Long ts = timestamp0 == null ? null : timestamp0 + i * 1000L;
            fs.add(p.send(new ProducerRecord<>(topic, partition, ts, ("k" + i).getBytes(), (prefix + i).getBytes())));
        }
        p.flush();
        List<RecordMetadata> out = new ArrayList<>();
        for (Future<RecordMetadata> f : fs) {
            out.add(f.get(30, TimeUnit.SECONDS));
        }
        return out;
    }

    // ---- cases ---------------------------------------------------------------------------

    void describeCluster() throws Exception {
        DescribeClusterResult r = admin.describeCluster();
        Collection<Node> nodes = get(r.nodes());
        check(nodes.size() == brokers, "expected " + brokers + " brokers, got " + nodes);
        Node ctl = get(r.controller());
        check(ctl != null && nodes.stream().anyMatch(n -> n.id() == ctl.id()), "controller " + ctl + " not among " + nodes);
        check(get(r.clusterId()) != null, "no cluster id");
    }

    /** The Java default since 3.0: enable.idempotence=true, acks=all. */
    void idempotentProducer() throws Exception {
        String t = newTopic("j-idem", 3, Map.of("min.insync.replicas", String.valueOf(Math.min(2, rf()))));
        Map<Integer, List<RecordMetadata>> acks = new HashMap<>();
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5,
                ProducerConfig.LINGER_MS_CONFIG, 1))) {
            for (int part = 0; part < 3; part++) {
                acks.put(part, send(p, t, part, 500, "v" + part + "-", null));
            }
        }
        for (int part = 0; part < 3; part++) {
            List<RecordMetadata> md = acks.get(part);
            for (int i = 0; i < md.size(); i++) {
                check(md.get(i).offset() == i, "p" + part + " record " + i + " acknowledged at offset " + md.get(i).offset());
            }
            List<ConsumerRecord<byte[], byte[]>> got = readRange(new TopicPartition(t, part), 0, 500);
            check(got.size() == 500, "p" + part + ": read " + got.size() + " of 500");
            for (int i = 0; i < 500; i++) {
                check(new String(got.get(i).value()).equals("v" + part + "-" + i), "p" + part + " offset " + i + " holds "
                        + new String(got.get(i).value()));
            }
        }
    }

    void compression(String codec) throws Exception {
        String t = newTopic("j-" + codec, 1, Map.of());
        StringBuilder big = new StringBuilder();
        for (int i = 0; i < 50; i++) {
            big.append("compressible-").append(codec).append('-');
        }
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 20, ProducerConfig.BATCH_SIZE_CONFIG, 65536))) {
            List<RecordMetadata> md = send(p, t, 0, 300, big.toString(), null);
            check(md.get(299).offset() == 299, "last offset " + md.get(299).offset());
        }
        List<ConsumerRecord<byte[], byte[]>> got = readRange(new TopicPartition(t, 0), 0, 300);
        check(got.size() == 300, "read " + got.size() + " of 300");
        for (int i = 0; i < 300; i++) {
            check(new String(got.get(i).value()).equals(big.toString() + i), "offset " + i + " differs");
            check(got.get(i).offset() == i, "record " + i + " at offset " + got.get(i).offset());
        }
        // The codec survives the broker: the log's size is well below the raw bytes.
        long raw = 300L * big.length();
        Map<Integer, Map<String, LogDirDescription>> dirs = get(admin.describeLogDirs(List.of(0)).allDescriptions());
        long onDisk = 0;
        for (Map<String, LogDirDescription> byDir : dirs.values()) {
            for (LogDirDescription d : byDir.values()) {
                ReplicaInfo ri = d.replicaInfos().get(new TopicPartition(t, 0));
                if (ri != null) {
                    onDisk = Math.max(onDisk, ri.size());
                }
            }
        }
        if (onDisk > 0) { // broker 0 may hold no replica of a 1-partition topic when RF < brokers
            check(onDisk < raw / 4, codec + ": " + onDisk + " bytes on disk for " + raw + " raw bytes");
        }
    }

    /** Classic group protocol, CooperativeStickyAssignor: a second member joining takes half the
     * partitions and the first gives up only those (incremental rebalance); commits are seen by admin. */
    void groupCooperativeSticky() throws Exception {
        int parts = 6;
        String t = newTopic("j-group", parts, Map.of());
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            for (int part = 0; part < parts; part++) {
                send(p, t, part, 10, "g", null);
            }
        }
        String group = "j-group-" + UUID.randomUUID().toString().substring(0, 8);
        Map<String, Object> cfg = Map.of(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic",
                ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName(),
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10000, ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        List<TopicPartition> revokedFromA = Collections.synchronizedList(new ArrayList<>());
        try (KafkaConsumer<byte[], byte[]> a = consumer(group, cfg); KafkaConsumer<byte[], byte[]> b = consumer(group, cfg)) {
            a.subscribe(List.of(t), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    revokedFromA.addAll(ps);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {}
            });
            int[] readA = {0};
            eventually(() -> {
                readA[0] += a.poll(Duration.ofMillis(200)).count();
                return a.assignment().size() == parts && readA[0] == parts * 10;
            }, 30000, "member A assigned all " + parts + " partitions and read 60 records");
            a.commitSync();
            Set<TopicPartition> before = new HashSet<>(a.assignment());
            b.subscribe(List.of(t));
            eventually(() -> {
                a.poll(Duration.ofMillis(100));
                b.poll(Duration.ofMillis(100));
                return a.assignment().size() == parts / 2 && b.assignment().size() == parts / 2;
            }, 40000, "partitions split 3/3 between A and B");
            Set<TopicPartition> kept = new HashSet<>(a.assignment());
            check(before.containsAll(kept), "A's new assignment " + kept + " not a subset of " + before);
            for (TopicPartition tp : revokedFromA) {
                check(!kept.contains(tp), "A had " + tp + " revoked although it kept it: eager, not cooperative");
            }
            check(new HashSet<>(revokedFromA).size() == parts / 2, "A revoked " + revokedFromA + ", expected 3 partitions");
            Set<TopicPartition> union = new HashSet<>(kept);
            union.addAll(b.assignment());
            check(union.size() == parts, "assignments overlap: A " + kept + " B " + b.assignment());
            ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
            check(d.groupState() == GroupState.STABLE, "group state " + d.groupState());
            check(d.members().size() == 2, "members " + d.members());
            check(d.partitionAssignor().equals("cooperative-sticky"), "assignor " + d.partitionAssignor());
            Map<TopicPartition, OffsetAndMetadata> committed = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            check(committed.size() == parts, "committed " + committed);
            for (OffsetAndMetadata om : committed.values()) {
                check(om.offset() == 10, "committed offset " + om);
            }
        }
        check(get(admin.listGroups().all()).stream().anyMatch(g -> g.groupId().equals(group)), "listGroups misses " + group);
        eventually(() -> {
            try {
                get(admin.deleteConsumerGroups(List.of(group)).all());
                return true;
            } catch (Exception e) {
                return false; // members still leaving
            }
        }, 20000, "group deleted");
    }

    void adminTopics() throws Exception {
        String t = newTopic("j-topics", 4, Map.of("retention.ms", "3600000", "cleanup.policy", "delete"));
        check(get(admin.listTopics().names()).contains(t), "listTopics misses " + t);
        TopicDescription d = get(admin.describeTopics(List.of(t)).allTopicNames()).get(t);
        check(!d.isInternal(), "internal");
        check(d.topicId() != null, "no topic id");
        for (TopicPartitionInfo p : d.partitions()) {
            check(p.replicas().size() == rf(), "partition " + p.partition() + " replicas " + p.replicas());
        }
        // Duplicate creation is refused with TopicExistsException.
        try {
            get(admin.createTopics(List.of(new NewTopic(t, 1, (short) 1))).all());
            throw new AssertionError("creating " + t + " twice succeeded");
        } catch (ExecutionException e) {
            check(e.getCause() instanceof org.apache.kafka.common.errors.TopicExistsException, "second create: " + e.getCause());
        }
        get(admin.deleteTopics(List.of(t)).all());
        eventually(() -> {
            try {
                return !get(admin.listTopics().names()).contains(t);
            } catch (Exception e) {
                return false;
            }
        }, 30000, t + " gone from listTopics");
    }

    void adminConfigs() throws Exception {
        String t = newTopic("j-configs", 1, Map.of("retention.ms", "3600000"));
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, t);
        Config c = get(admin.describeConfigs(List.of(r)).all()).get(r);
        ConfigEntry e = c.get("retention.ms");
        check(e != null && e.value().equals("3600000"), "retention.ms " + e);
        check(e.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "source " + e.source());
        check(c.get("cleanup.policy") != null && c.get("cleanup.policy").value().equals("delete"), "cleanup.policy default " + c.get("cleanup.policy"));
        get(admin.incrementalAlterConfigs(Map.of(r, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "2000000"), AlterConfigOp.OpType.SET)))).all());
        eventually(() -> {
            try {
                Config c2 = get(admin.describeConfigs(List.of(r)).all()).get(r);
                return c2.get("retention.ms").value().equals("7200000") && c2.get("max.message.bytes").value().equals("2000000");
            } catch (Exception ex) {
                return false;
            }
        }, 20000, "altered configs visible");
        get(admin.incrementalAlterConfigs(Map.of(r, List.of(
                new AlterConfigOp(new ConfigEntry("max.message.bytes", ""), AlterConfigOp.OpType.DELETE)))).all());
        eventually(() -> {
            try {
                ConfigEntry m = get(admin.describeConfigs(List.of(r)).all()).get(r).get("max.message.bytes");
                return m.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG;
            } catch (Exception ex) {
                return false;
            }
        }, 20000, "max.message.bytes back to its default");
        // An unknown config name is refused.
        try {
            get(admin.incrementalAlterConfigs(Map.of(r, List.of(
                    new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all());
            throw new AssertionError("no.such.config accepted");
        } catch (ExecutionException ex) {
            check(ex.getCause() instanceof org.apache.kafka.common.errors.InvalidConfigurationException
                    || ex.getCause() instanceof org.apache.kafka.common.errors.InvalidRequestException,
                    "unknown config: " + ex.getCause());
        }
        ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, "0");
        Config bc = get(admin.describeConfigs(List.of(broker)).all()).get(broker);
        check(bc.entries().size() > 10, "broker 0 has " + bc.entries().size() + " configs");
        check(bc.get("log.retention.hours") != null || bc.get("log.retention.ms") != null, "broker config lacks retention");
    }

    void createPartitions() throws Exception {
        String t = newTopic("j-parts", 3, Map.of());
        get(admin.createPartitions(Map.of(t, NewPartitions.increaseTo(5))).all());
        eventually(() -> {
            try {
                TopicDescription d = get(admin.describeTopics(List.of(t)).allTopicNames()).get(t);
                return d.partitions().size() == 5 && d.partitions().stream().allMatch(p -> p.leader() != null);
            } catch (Exception e) {
                return false;
            }
        }, 30000, t + " grown to 5 led partitions");
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            check(send(p, t, 4, 5, "new", null).get(4).offset() == 4, "produce to the new partition 4");
        }
        try {
            get(admin.createPartitions(Map.of(t, NewPartitions.increaseTo(2))).all());
            throw new AssertionError("shrinking to 2 partitions accepted");
        } catch (ExecutionException e) {
            check(e.getCause() instanceof org.apache.kafka.common.errors.InvalidPartitionsException, "shrink: " + e.getCause());
        }
    }

    void describeLogDirs() throws Exception {
        String t = newTopic("j-logdirs", 2, Map.of());
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            send(p, t, 0, 100, "x", null);
        }
        List<Integer> ids = new ArrayList<>();
        for (Node n : get(admin.describeCluster().nodes())) {
            ids.add(n.id());
        }
        Map<Integer, Map<String, LogDirDescription>> all = get(admin.describeLogDirs(ids).allDescriptions());
        check(all.keySet().equals(new HashSet<>(ids)), "log dirs of " + all.keySet() + ", asked " + ids);
        int replicasOfP0 = 0;
        for (Map.Entry<Integer, Map<String, LogDirDescription>> e : all.entrySet()) {
            check(!e.getValue().isEmpty(), "broker " + e.getKey() + " reports no log dir");
            for (LogDirDescription d : e.getValue().values()) {
                check(d.error() == null, "log dir error " + d.error());
                ReplicaInfo ri = d.replicaInfos().get(new TopicPartition(t, 0));
                if (ri != null) {
                    replicasOfP0++;
                    check(ri.size() > 100, "broker " + e.getKey() + ": " + t + "-0 size " + ri.size());
                }
                check(d.totalBytes().orElse(1L) > 0, "total bytes " + d.totalBytes());
            }
        }
        // Followers' copies appear once they have fetched.
        check(replicasOfP0 == rf(), t + "-0 found on " + replicasOfP0 + " brokers, RF " + rf());
    }

    void reassignment() throws Exception {
        if (brokers < 3) {
            throw new Skip("needs 3 brokers");
        }
        String t = topic("j-reassign");
        get(admin.createTopics(List.of(new NewTopic(t, Map.of(0, List.of(0, 1))))).all());
        eventually(() -> {
            try {
                TopicPartitionInfo p = get(admin.describeTopics(List.of(t)).allTopicNames()).get(t).partitions().get(0);
                return p.leader() != null && p.isr().size() == 2;
            } catch (Exception e) {
                return false;
            }
        }, 30000, t + " led with ISR of 2");
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            send(p, t, 0, 200, "r", null);
        }
        TopicPartition tp = new TopicPartition(t, 0);
        get(admin.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(1, 2))))).all());
        eventually(() -> {
            try {
                Map<TopicPartition, PartitionReassignment> ongoing = get(admin.listPartitionReassignments().reassignments());
                TopicPartitionInfo p = get(admin.describeTopics(List.of(t)).allTopicNames()).get(t).partitions().get(0);
                List<Integer> replicas = new ArrayList<>();
                p.replicas().forEach(n -> replicas.add(n.id()));
                Collections.sort(replicas);
                return !ongoing.containsKey(tp) && replicas.equals(List.of(1, 2)) && p.isr().size() == 2;
            } catch (Exception e) {
                return false;
            }
        }, 60000, tp + " moved to replicas [1, 2]");
        List<ConsumerRecord<byte[], byte[]>> got = readRange(tp, 0, 200);
        check(got.size() == 200 && new String(got.get(199).value()).equals("r199"), "read back after the move: " + got.size());
    }

    void offsetsForTimes() throws Exception {
        String t = newTopic("j-times", 1, Map.of("message.timestamp.type", "CreateTime"));
        long t0 = System.currentTimeMillis() - 3_600_000L; // an hour ago: inside the default timestamp bounds
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            send(p, t, 0, 20, "ts", t0);
        }
        TopicPartition tp = new TopicPartition(t, 0);
        try (KafkaConsumer<byte[], byte[]> c = consumer(null, Map.of())) {
            Map<TopicPartition, OffsetAndTimestamp> r = c.offsetsForTimes(Map.of(tp, t0 + 5500), Duration.ofSeconds(30));
            check(r.get(tp) != null && r.get(tp).offset() == 6 && r.get(tp).timestamp() == t0 + 6000, "t0+5.5s -> " + r.get(tp));
            r = c.offsetsForTimes(Map.of(tp, t0), Duration.ofSeconds(30));
            check(r.get(tp) != null && r.get(tp).offset() == 0, "t0 -> " + r.get(tp));
            r = c.offsetsForTimes(Map.of(tp, t0 + 60_000), Duration.ofSeconds(30));
            check(r.get(tp) == null, "after the last record -> " + r.get(tp));
            check(c.beginningOffsets(List.of(tp)).get(tp) == 0, "beginning");
            check(c.endOffsets(List.of(tp)).get(tp) == 20, "end");
        }
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> lo = get(admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).all());
        check(lo.get(tp).offset() == 19 && lo.get(tp).timestamp() == t0 + 19000, "maxTimestamp -> " + lo.get(tp));
        lo = get(admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(t0 + 10_000))).all());
        check(lo.get(tp).offset() == 10, "admin forTimestamp -> " + lo.get(tp));
        lo = get(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all());
        check(lo.get(tp).offset() == 20, "latest -> " + lo.get(tp));
    }

    void deleteRecords() throws Exception {
        String t = newTopic("j-delrec", 1, Map.of());
        TopicPartition tp = new TopicPartition(t, 0);
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            send(p, t, 0, 100, "d", null);
        }
        long low = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(40))).lowWatermarks().get(tp)).lowWatermark();
        check(low == 40, "low watermark " + low);
        try (KafkaConsumer<byte[], byte[]> c = consumer(null, Map.of())) {
            check(c.beginningOffsets(List.of(tp)).get(tp) == 40, "beginning offset " + c.beginningOffsets(List.of(tp)));
        }
        List<ConsumerRecord<byte[], byte[]>> got = readRange(tp, 40, 100);
        check(got.size() == 60 && got.get(0).offset() == 40 && new String(got.get(0).value()).equals("d40"), "read from 40: " + got.size());
        // Deleting beyond the high watermark is refused.
        try {
            get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(1000))).all());
            throw new AssertionError("deleteRecords beyond the end accepted");
        } catch (ExecutionException e) {
            check(e.getCause() instanceof org.apache.kafka.common.errors.OffsetOutOfRangeException, "beyond end: " + e.getCause());
        }
    }

    /** Kafka's exception for a refused topic, wherever the client wraps it. */
    static boolean topicAuthorizationFailed(Throwable t) {
        for (; t != null; t = t.getCause()) {
            if (t instanceof TopicAuthorizationException) {
                return true;
            }
        }
        return false;
    }

    /**
     * ACLs with the authorizer on, as an authenticated user would meet them: Admin
     * createAcls/describeAcls/deleteAcls round trip; a user (created here with
     * alterUserScramCredentials) with ALLOW Write/Read/Describe on its topic and Read on its group
     * produces and consumes there; on a topic without ACLs its producer and consumer get
     * TopicAuthorizationException and nothing is written (checked as the suite's super user); once
     * its ACLs are deleted it is refused on its own topic too. Skipped without an authorizer
     * (SECURITY_DISABLED) and without a SASL client config to log in as another user.
     */
    void acls() throws Exception {
        try {
            get(admin.describeAcls(AclBindingFilter.ANY).values());
        } catch (ExecutionException e) {
            if (e.getCause() instanceof SecurityDisabledException || e.getCause() instanceof UnsupportedVersionException) {
                throw new Skip("no authorizer on the brokers: " + e.getCause().getClass().getSimpleName() + ": "
                        + e.getCause().getMessage());
            }
            throw e;
        }
        Object mechanism = common.get("sasl.mechanism");
        if (mechanism == null || !String.valueOf(common.get("security.protocol")).startsWith("SASL")) {
            throw new Skip("the authorizer is on, but the suite has no SASL client config (--client-config) "
                    + "to log in as another user");
        }
        String user = "j-user-" + UUID.randomUUID().toString().substring(0, 8);
        String password = UUID.randomUUID().toString();
        get(admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(user,
                new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password))).all());
        String principal = "User:" + user;
        String granted = newTopic("j-acl", 1, Map.of());
        String denied = newTopic("j-noacl", 1, Map.of());
        String group = topic("j-acl-group");

        List<AclBinding> bindings = new ArrayList<>();
        for (AclOperation op : List.of(AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE)) {
            bindings.add(new AclBinding(new ResourcePattern(ResourceType.TOPIC, granted, PatternType.LITERAL),
                    new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW)));
        }
        bindings.add(new AclBinding(new ResourcePattern(ResourceType.GROUP, group, PatternType.LITERAL),
                new AccessControlEntry(principal, "*", AclOperation.READ, AclPermissionType.ALLOW)));
        get(admin.createAcls(bindings).all());

        AclBindingFilter byUser = new AclBindingFilter(ResourcePatternFilter.ANY,
                new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
        Collection<AclBinding> described = get(admin.describeAcls(byUser).values());
        check(new HashSet<>(described).equals(new HashSet<>(bindings)), "describeAcls by principal: " + described);
        AclBindingFilter byTopic = new AclBindingFilter(
                new ResourcePatternFilter(ResourceType.TOPIC, granted, PatternType.MATCH), AccessControlEntryFilter.ANY);
        described = get(admin.describeAcls(byTopic).values());
        check(described.size() == 3 && described.stream().allMatch(b -> b.entry().principal().equals(principal)),
                "describeAcls by topic: " + described);

        Map<String, Object> asUser = new HashMap<>();
        asUser.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + user + "\" password=\"" + password + "\";");
        asUser.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 15000);
        asUser.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 20000);
        asUser.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        // Idempotence would need IdempotentWrite on the cluster or Write on some topic (KIP-679)
        // before the first send: keep the case about topic ACLs.
        asUser.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
        Map<String, Object> consumerAsUser = new HashMap<>(asUser);
        consumerAsUser.keySet().removeIf(k -> k.startsWith("max.block") || k.startsWith("delivery") || k.startsWith("enable.idem"));

        // Allowed: produce 10, consume them in the group and commit.
        try (KafkaProducer<byte[], byte[]> p = producer(asUser)) {
            List<RecordMetadata> md = send(p, granted, 0, 10, "acl", null);
            check(md.get(9).offset() == 9, "last offset " + md.get(9).offset());
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer(group, consumerAsUser)) {
            c.subscribe(List.of(granted));
            List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 30000;
            while (got.size() < 10 && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    got.add(r);
                }
            }
            check(got.size() == 10 && new String(got.get(0).value()).equals("acl0"), "consumed " + got.size());
            c.commitSync();
        }
        TopicPartition grantedTp = new TopicPartition(granted, 0);
        Map<TopicPartition, OffsetAndMetadata> committed = get(admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata());
        check(committed.get(grantedTp) != null && committed.get(grantedTp).offset() == 10, "committed " + committed);

        // No ACL on the other topic: the producer and the consumer are refused.
        TopicPartition deniedTp = new TopicPartition(denied, 0);
        try (KafkaProducer<byte[], byte[]> p = producer(asUser)) {
            try {
                p.send(new ProducerRecord<>(denied, 0, null, "k".getBytes(), "must-not-land".getBytes()))
                        .get(30, TimeUnit.SECONDS);
                throw new AssertionError("produce to " + denied + " without ACLs succeeded");
            } catch (ExecutionException e) {
                check(topicAuthorizationFailed(e), "produce without ACLs: " + e.getCause());
            }
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer(null, consumerAsUser)) {
            c.assign(List.of(deniedTp));
            c.seekToBeginning(List.of(deniedTp));
            boolean refused = false;
            long deadline = System.currentTimeMillis() + 20000;
            while (!refused && System.currentTimeMillis() < deadline) {
                try {
                    c.poll(Duration.ofMillis(500));
                } catch (RuntimeException e) {
                    check(topicAuthorizationFailed(e), "consume without ACLs: " + e);
                    refused = true;
                }
            }
            check(refused, "a consumer without ACLs was not refused");
        }
        long end = get(admin.listOffsets(Map.of(deniedTp, OffsetSpec.latest())).all()).get(deniedTp).offset();
        check(end == 0, denied + " holds " + end + " records after a refused produce");

        // deleteAcls removes exactly the user's bindings, and the user is refused from then on.
        Collection<AclBinding> deleted = get(admin.deleteAcls(List.of(byUser)).all());
        check(new HashSet<>(deleted).equals(new HashSet<>(bindings)), "deleteAcls: " + deleted);
        check(get(admin.describeAcls(byUser).values()).isEmpty(), "ACLs left after deleteAcls");
        // (In cluster mode a broker may take a moment to reload the ACLs: sends it still accepts
        // are counted, and must be all that lands.)
        java.util.concurrent.atomic.AtomicInteger late = new java.util.concurrent.atomic.AtomicInteger();
        try (KafkaProducer<byte[], byte[]> p = producer(asUser)) {
            eventually(() -> {
                try {
                    p.send(new ProducerRecord<>(granted, 0, null, "k".getBytes(), "late".getBytes())).get(30, TimeUnit.SECONDS);
                    late.incrementAndGet();
                    return false;
                } catch (ExecutionException e) {
                    return topicAuthorizationFailed(e);
                } catch (Exception e) {
                    return false;
                }
            }, 30000, "the user refused on " + granted + " once its ACLs are deleted");
        }
        end = get(admin.listOffsets(Map.of(grantedTp, OffsetSpec.latest())).all()).get(grantedTp).offset();
        check(end == 10 + late.get(), granted + " holds " + end + " records; expected the 10 allowed ones and "
                + late.get() + " accepted before the deletion reached the leader");
    }
}
