// Reads every record test/real/kafka/KafkaTool.java wrote (FILE, one JSON
// line per Kafka record) with the official CloudEvents SDK for JavaScript
// (npm cloudevents, its Kafka binding, then validate()) and checks that the
// SDK sees what the record holds: id, source, type, subject, time (to the
// millisecond: the SDK keeps a JavaScript Date's precision), specversion,
// datacontenttype, the traceid and traceparent extensions, the data, and the
// key as partitionkey.  daprd writes no content-type header, so a record in
// structured mode gets the one the Kafka binding needs to know it is
// (application/cloudevents+json) when it has none.
//   node sdk_js.mjs NODE_MODULES_DIR FILE
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const [modules, file] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), 'x.js'));
const { Kafka } = require('cloudevents');
const version = require('cloudevents/package.json').version;

const ms = (t) => new Date(t).getTime();
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let n = 0, bad = 0;
for (const line of readFileSync(file, 'utf8').split('\n')) {
  if (!line) continue;
  const rec = JSON.parse(line);
  const raw = JSON.parse(rec.value);
  const headers = { ...(rec.headers ?? {}) };
  if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
    headers['content-type'] = 'application/cloudevents+json; charset=utf-8';
  const problems = [];
  n++;
  try {
    const ev = Kafka.toEvent({ key: rec.key, value: rec.value, headers, timestamp: String(rec.timestamp) });
    ev.validate();
    for (const a of ['id', 'source', 'type', 'subject', 'specversion', 'datacontenttype', 'traceid', 'traceparent'])
      if (ev[a] !== raw[a]) problems.push(`${a}: SDK ${ev[a]}, record ${raw[a]}`);
    if (ms(ev.time) !== ms(raw.time)) problems.push(`time: SDK ${ev.time}, record ${raw.time}`);
    if (!same(ev.data, raw.data)) problems.push('data differs');
    if (ev.partitionkey !== rec.key || rec.key !== raw.subject) problems.push(`key ${rec.key}: SDK partitionkey ${ev.partitionkey}`);
  } catch (e) {
    problems.push(`the SDK cannot read it: ${e.message} ${JSON.stringify(e.errors ?? '')}`);
  }
  if (problems.length) {
    bad++;
    if (bad <= 10) console.log(`record ${rec.topic}/${rec.partition}/${rec.offset}: ${problems.join('; ')}`);
  }
}
console.log(`javascript cloudevents ${version}: ${n} records, ${n - bad} read as sent, ${bad} not`);
process.exit(bad || !n ? 1 : 0);
