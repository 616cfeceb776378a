/*
 * PeerDriver: the Debezium side of `bash test/bench.sh peer`.  Debezium's
 * embedded engine with its PostgreSQL connector (pgoutput), records
 * converted to CloudEvents (Debezium's CloudEventsConverter, JSON), each
 * produced to Kafka as Debezium Server's Kafka sink does: one KafkaProducer,
 * acks=all, key = the row's key (JSON), and per batch every send's future
 * awaited before the records are marked processed and the batch finished
 * (which commits the offsets, and with them the slot's confirmed position).
 *
 *   java -cp 'LIB/*:CLASSES' PeerDriver BOOTSTRAP PGHOST PGPORT DBNAME OFFSETS
 *
 * Commands on standard input, one a line: "start" starts an engine (prints
 * "running" once its task runs), "stop" closes it (prints "stopped"), "quit"
 * (or the end of input) stops and exits.  Offsets are kept in the file
 * OFFSETS, so a stopped engine resumes where it was.
 */
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.CloudEvents;
import io.debezium.engine.format.Json;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public final class PeerDriver {
    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: PeerDriver BOOTSTRAP PGHOST PGPORT DBNAME OFFSETS");
            System.exit(2);
        }
        Properties kp = new Properties();
        kp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        kp.put(ProducerConfig.ACKS_CONFIG, "all");
        kp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        kp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(kp);

        Properties p = new Properties();
        p.put("name", "peer");
        p.put("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        p.put("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
        p.put("offset.storage.file.filename", args[4]);
        p.put("offset.flush.interval.ms", "0");
        p.put("database.hostname", args[1]);
        p.put("database.port", args[2]);
        p.put("database.user", "postgres");
        p.put("database.password", "unused");
        p.put("database.dbname", args[3]);
        p.put("topic.prefix", "peer");
        p.put("plugin.name", "pgoutput");
        p.put("slot.name", "peer");
        p.put("publication.name", "peer");
        p.put("publication.autocreate.mode", "filtered");
        p.put("table.include.list", "public.tasks");
        p.put("snapshot.mode", "no_data");
        p.put("tombstones.on.delete", "false");
        p.put("key.converter.schemas.enable", "false");
        p.put("value.converter.serializer.type", "json");
        p.put("value.converter.data.serializer.type", "json");
        p.put("value.converter.json.schemas.enable", "false");

        ExecutorService executor = Executors.newSingleThreadExecutor();
        DebeziumEngine<ChangeEvent<String, String>> engine = null;
        Future<?> running = null;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null && !line.equals("quit")) {
            if (line.equals("start") && engine == null) {
                engine = DebeziumEngine.create(Json.class, CloudEvents.class)
                        .using(p)
                        .using(new DebeziumEngine.ConnectorCallback() {
                            @Override
                            public void taskStarted() {
                                say("running");
                            }
                        })
                        .using((success, message, error) -> {
                            if (!success)
                                say("engine failed: " + message + (error == null ? "" : " " + error));
                        })
                        .notifying((List<ChangeEvent<String, String>> records,
                                    DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer) -> {
                            List<Future<RecordMetadata>> sent = new ArrayList<>(records.size());
                            for (ChangeEvent<String, String> r : records)
                                sent.add(producer.send(new ProducerRecord<>(r.destination(), r.key(), r.value())));
                            for (Future<RecordMetadata> f : sent) {
                                try {
                                    f.get();
                                } catch (java.util.concurrent.ExecutionException e) {
                                    throw new RuntimeException(e.getCause());
                                }
                            }
                            for (ChangeEvent<String, String> r : records)
                                committer.markProcessed(r);
                            committer.markBatchFinished();
                        })
                        .build();
                running = executor.submit(engine);
            } else if (line.equals("stop") && engine != null) {
                engine.close();
                running.get(60, TimeUnit.SECONDS);
                engine = null;
                say("stopped");
            }
        }
        if (engine != null) {
            engine.close();
            running.get(60, TimeUnit.SECONDS);
        }
        executor.shutdown();
        producer.close();
        say("quit");
    }

    private static void say(String s) {
        System.out.println(s);
        System.out.flush();
    }
}
