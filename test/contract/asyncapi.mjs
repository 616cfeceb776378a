// Parses schema/asyncapi.yaml with the AsyncAPI project's own parser
// (@asyncapi/parser, from npm: test/contract/run.sh installs it) and checks
// what consumers rely on: no error or warning, the three topics, one message
// per event type with the CloudEvents content type and the Kafka key binding,
// and payloads that are the schemas of schema/ (resolved from the files).
//   node asyncapi.mjs NODE_MODULES_DIR SCHEMA_DIR
import { createRequire } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const [modules, schemaDir] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), 'x.js'));
const { Parser, fromFile } = require('@asyncapi/parser');

let n = 0, failed = 0;
function ok(cond, what, detail) {
  n++;
  if (!cond) failed++;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
  if (!cond && detail) for (const l of String(detail).split('\n').slice(0, 15)) console.log(`#   ${l}`);
}

const file = path.join(schemaDir, 'asyncapi.yaml');
const { document, diagnostics } = await fromFile(new Parser(), file).parse();
const serious = diagnostics.filter((d) => d.severity <= 1);   // 0 error, 1 warning
ok(document && serious.length === 0, 'schema/asyncapi.yaml: @asyncapi/parser finds no error or warning',
  serious.map((d) => `${d.severity ? 'warning' : 'error'} ${d.code} at ${d.path.join('.')}: ${d.message}`).join('\n'));
if (!document) process.exit(1);

ok(document.version() === '3.0.0', `AsyncAPI version ${document.version()}`);
const types = readdirSync(path.join(schemaDir, 'data')).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
const byTopic = {};
for (const t of types) {
  const s = JSON.parse(readFileSync(path.join(schemaDir, 'data', `${t}.json`), 'utf8'));
  (byTopic[s['x-topic']] ??= []).push(t);
}
const channels = document.channels().all();
ok(channels.map((c) => c.address()).sort().join(' ') === 'reminders task-events task-updates',
  'channels: task-events, task-updates, reminders');
for (const c of channels) {
  const names = c.messages().all().map((m) => m.name()).sort();
  ok(names.join(' ') === (byTopic[c.address()] ?? []).sort().join(' '),
    `channel ${c.address()}: messages ${names.join(', ')}`);
  const ops = c.operations().all();
  ok(ops.length === 1 && ops[0].action() === 'send', `channel ${c.address()}: one send operation`);
}
const envelope = JSON.parse(readFileSync(path.join(schemaDir, 'cloudevent.json'), 'utf8'));
for (const m of document.messages().all()) {
  const key = m.bindings().get('kafka')?.value()?.key;
  const payload = m.payload().json();
  const [env, own] = payload.allOf ?? [];
  const problems = [];
  if (m.contentType() !== 'application/cloudevents+json') problems.push(`content type ${m.contentType()}`);
  if (!key || key.type !== 'string') problems.push('no Kafka key binding (string)');
  if (env?.$id !== envelope.$id) problems.push(`payload's envelope is ${env?.$id}`);
  if (own?.properties?.type?.const !== m.name()) problems.push('payload type is not the message name');
  if (own?.properties?.data?.$id !== `${envelope.$id.replace(/cloudevent\.json$/, '')}data/${m.name()}.json`)
    problems.push(`payload data is ${own?.properties?.data?.$id}`);
  ok(problems.length === 0, `message ${m.name()}: CloudEvents content type, key = task id, payload = cloudevent.json + data/${m.name()}.json`,
    problems.join('\n'));
}
process.exit(failed ? 1 : 0);
