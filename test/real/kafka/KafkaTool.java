/*
 * KafkaTool: what the real-pipeline tests need from Kafka, on the broker's
 * own client library, plus the official CloudEvents Java SDK.
 *
 *   java -cp 'LIB/*:CLASSES' KafkaTool topics BOOTSTRAP PARTITIONS[:REPLICAS[:MIN_ISR]] TOPIC...
 *       create the topics (those present are kept) with that many partitions,
 *       replicas (1 by default) and min.insync.replicas, and wait until every
 *       partition has a leader and all its replicas in sync; waits for the
 *       brokers to answer first.  BOOTSTRAP may list several host:port.
 *   java -cp 'LIB/*:CLASSES' KafkaTool describe BOOTSTRAP TOPIC...
 *       one line per partition: topic, partition, leader's node id (-1: none),
 *       in-sync replicas (node ids, comma-separated).
 *   java -cp 'LIB/*:CLASSES' KafkaTool consume BOOTSTRAP OUTFILE TOPIC...
 *       read every partition of the topics from the beginning, without a
 *       consumer group, until stopped; one JSON line per record into OUTFILE:
 *       topic, partition, offset, key, timestamp (the record's, ms),
 *       received_us (when this consumer got it, µs since the epoch), headers,
 *       value (the record's bytes as text), and either ce (the CloudEvent as
 *       the SDK read it: its attributes, extensions and data) or ce_error.
 *
 * Nothing here interprets the events beyond what the SDK does: the tests
 * compare what users' services would see with what the extension sent.
 */
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.cloudevents.CloudEvent;
import io.cloudevents.core.format.EventFormat;
import io.cloudevents.core.provider.EventFormatProvider;
import io.cloudevents.jackson.JsonFormat;
import java.io.FileOutputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class KafkaTool {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static volatile boolean stopping = false;

    public static void main(String[] args) throws Exception {
        if (args.length >= 4 && args[0].equals("topics")) {
            String[] spec = args[2].split(":");
            topics(args[1], Integer.parseInt(spec[0]), spec.length > 1 ? Short.parseShort(spec[1]) : 1,
                    spec.length > 2 ? spec[2] : null, Arrays.asList(args).subList(3, args.length));
        } else if (args.length >= 3 && args[0].equals("describe")) {
            describe(args[1], Arrays.asList(args).subList(2, args.length));
        } else if (args.length >= 4 && args[0].equals("consume")) {
            consume(args[1], args[2], Arrays.asList(args).subList(3, args.length));
        } else {
            System.err.println("usage: KafkaTool topics BOOTSTRAP PARTITIONS[:REPLICAS[:MIN_ISR]] TOPIC... | describe BOOTSTRAP TOPIC... | consume BOOTSTRAP OUTFILE TOPIC...");
            System.exit(2);
        }
    }

    private static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60000);
        return Admin.create(p);
    }

    /* Create the topics and wait until each partition has a leader and every replica in sync (up to a minute). */
    private static void topics(String bootstrap, int partitions, short replicas, String minIsr, List<String> names)
            throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        try (Admin admin = admin(bootstrap)) {
            for (String name : names) {
                NewTopic t = new NewTopic(name, partitions, replicas);
                if (minIsr != null)
                    t.configs(Map.of("min.insync.replicas", minIsr));
                try {
                    admin.createTopics(List.of(t)).all().get();
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException))
                        throw e;
                }
            }
            while (true) {
                boolean ready = true;
                try {
                    Map<String, TopicDescription> d = admin.describeTopics(names).allTopicNames().get();
                    for (TopicDescription t : d.values())
                        for (TopicPartitionInfo i : t.partitions())
                            ready &= i.leader() != null && !i.leader().isEmpty()
                                    && i.isr().size() == i.replicas().size();
                } catch (ExecutionException e) {
                    /* a topic just created may not be known to the broker yet */
                    if (!(e.getCause() instanceof UnknownTopicOrPartitionException))
                        throw e;
                    ready = false;
                }
                if (ready)
                    break;
                if (System.nanoTime() > deadline)
                    throw new IllegalStateException("partitions without a leader or replicas out of sync after 60 s");
                Thread.sleep(100);
            }
            for (String name : names)
                System.out.println("topic " + name + " partitions " + partitions + " replicas " + replicas);
        }
    }

    /* Each partition's leader and in-sync replicas. */
    private static void describe(String bootstrap, List<String> names) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            Map<String, TopicDescription> d = admin.describeTopics(names).allTopicNames().get();
            for (String name : names)
                for (TopicPartitionInfo i : d.get(name).partitions()) {
                    StringBuilder isr = new StringBuilder();
                    for (var n : i.isr())
                        isr.append(isr.length() > 0 ? "," : "").append(n.id());
                    System.out.println(name + " " + i.partition() + " "
                            + (i.leader() == null || i.leader().isEmpty() ? -1 : i.leader().id()) + " " + isr);
                }
        }
    }

    /* Read the topics from the beginning until SIGTERM, writing one JSON line per record. */
    private static void consume(String bootstrap, String outFile, List<String> names) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
        EventFormat format = EventFormatProvider.getInstance().resolveFormat(JsonFormat.CONTENT_TYPE);
        if (format == null)
            throw new IllegalStateException("the CloudEvents SDK has no JSON format");

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p);
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopping = true;
            consumer.wakeup();
            try {
                main.join(5000);
            } catch (InterruptedException e) {
                /* exiting anyway */
            }
        }));

        List<TopicPartition> parts = new ArrayList<>();
        for (String name : names) {
            List<PartitionInfo> info = consumer.partitionsFor(name, Duration.ofSeconds(60));
            if (info == null || info.isEmpty())
                throw new IllegalStateException("no partitions for topic " + name);
            for (PartitionInfo i : info)
                parts.add(new TopicPartition(name, i.partition()));
        }
        consumer.assign(parts);
        consumer.seekToBeginning(parts);

        try (OutputStream out = new FileOutputStream(outFile, true)) {
            System.out.println("consuming " + parts.size() + " partitions");
            System.out.flush();
            while (!stopping) {
                var records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty())
                    continue;
                StringBuilder lines = new StringBuilder();
                for (ConsumerRecord<byte[], byte[]> r : records)
                    lines.append(JSON.writeValueAsString(describe(r, format))).append('\n');
                out.write(lines.toString().getBytes(StandardCharsets.UTF_8));
                out.flush();
            }
        } catch (org.apache.kafka.common.errors.WakeupException e) {
            /* stopping */
        } finally {
            consumer.close();
        }
    }

    /* One record as a JSON object, with the SDK's reading of its value. */
    private static ObjectNode describe(ConsumerRecord<byte[], byte[]> r, EventFormat format) {
        Instant now = Instant.now();
        ObjectNode o = JSON.createObjectNode();
        o.put("topic", r.topic());
        o.put("partition", r.partition());
        o.put("offset", r.offset());
        o.put("key", r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8));
        o.put("timestamp", r.timestamp());
        o.put("received_us", now.getEpochSecond() * 1_000_000L + now.getNano() / 1000);
        ObjectNode headers = o.putObject("headers");
        for (Header h : r.headers())
            headers.put(h.key(), h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8));
        o.put("value", r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8));
        try {
            CloudEvent ev = format.deserialize(r.value());
            ObjectNode ce = o.putObject("ce");
            ce.put("specversion", ev.getSpecVersion().toString());
            ce.put("id", ev.getId());
            ce.put("type", ev.getType());
            ce.put("source", ev.getSource() == null ? null : ev.getSource().toString());
            ce.put("subject", ev.getSubject());
            ce.put("time", ev.getTime() == null ? null
                    : DateTimeFormatter.ISO_INSTANT.format(ev.getTime().toInstant()));
            ce.put("datacontenttype", ev.getDataContentType());
            ce.put("dataschema", ev.getDataSchema() == null ? null : ev.getDataSchema().toString());
            ObjectNode ext = ce.putObject("extensions");
            Set<String> names = ev.getExtensionNames();
            for (String n : names) {
                Object v = ev.getExtension(n);
                ext.put(n, v == null ? null : v.toString());
            }
            ce.put("data", ev.getData() == null ? null
                    : new String(ev.getData().toBytes(), StandardCharsets.UTF_8));
        } catch (RuntimeException e) {
            o.put("ce_error", String.valueOf(e));
        }
        return o;
    }
}
