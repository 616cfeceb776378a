#!/usr/bin/env python3
"""The consumer's contract (schema/): validate events against the JSON Schemas.

  validate.py --fakedapr FILE...   every publish request test/sidecar/fakedapr
                                   recorded (--record): each CloudEvent, its
                                   content type, topic and partition key
  validate.py --kafka FILE...      every record test/real/kafka/KafkaTool.java
                                   read: each value, its topic and key
  validate.py --subscriber FILE... every event test/real/subscriber/app.py got from
                                   its daprd (route, body)
  validate.py --events FILE...     one CloudEvent JSON text per line
  validate.py --check              the schemas' own checks (the contract suite)
  validate.py --write-asyncapi     rewrite the generated blocks of schema/asyncapi.yaml

An event is valid when its JSON text is strict JSON (no NaN or Infinity, no
duplicate names), its envelope matches schema/cloudevent.json, its data
matches schema/data/<its type>.json, and it travelled on the topic that file
names (x-topic) keyed by its subject (and its "topic" attribute, which
daprd adds, names that topic); a topic renamed by its setting is not checked.  Prints one line per file; exits 1
when any event is invalid.  Uses jsonschema (PyPI) with the draft 2020-12
validator and format checking; test/run-tests.sh puts a pinned copy in
test/contract/pylib.
"""
import json
import os
import re
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SCHEMA = os.path.join(TOP, "schema")
BASE = "https://taskevents.example/schema/v1/"
TOPICS = ("task-events", "task-updates", "reminders")
CE_CONTENT_TYPE = "application/cloudevents+json"

for p in (os.environ.get("TASKEVENTS_PYLIB"), os.path.join(HERE, "pylib")):
    if p and os.path.isdir(p):
        sys.path.insert(0, p)
try:
    import jsonschema
    from jsonschema import Draft202012Validator, FormatChecker, RefResolver
except ImportError as e:
    sys.exit(f"validate.py: jsonschema is not installed ({e}); test/run-tests.sh installs it "
             "into test/contract/pylib, or: pip install jsonschema==4.17.3 rfc3339-validator")


def strict_json(text):
    """Parse JSON as RFC 8259 has it: NaN/Infinity and repeated names are errors."""
    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    def pairs(items):
        d = {}
        for k, v in items:
            if k in d:
                raise ValueError(f"the name {k!r} appears twice in an object")
            d[k] = v
        return d
    return json.loads(text, parse_constant=no_constant, object_pairs_hook=pairs)


ANY = "<any key>"   # a key not to check (a string: it crosses to the pool's processes intact)


class NotJson:
    """A text that strict_json() refused."""

    def __init__(self, error):
        self.error = error


class Contract:
    """The schemas of schema/, loaded once."""

    def __init__(self):
        self.store = {}
        self.files = {}
        for d, _, names in os.walk(SCHEMA):
            for n in sorted(names):
                if n.endswith(".json"):
                    path = os.path.join(d, n)
                    with open(path, encoding="utf-8") as f:
                        s = strict_json(f.read())
                    rel = os.path.relpath(path, SCHEMA)
                    self.files[rel] = s
                    self.store[s.get("$id", BASE + rel)] = s
        self.types = {n[len("data/"):-len(".json")]: s for n, s in self.files.items()
                      if n.startswith("data/")}
        self.checker = FormatChecker()
        missing = {"date-time", "uuid"} - set(self.checker.checkers)
        if missing:                     # jsonschema would pass such formats unchecked
            sys.exit(f"validate.py: jsonschema cannot check the formats {sorted(missing)} "
                     "(pip install rfc3339-validator)")
        self.validators = {}

    def validator(self, rel):
        if rel not in self.validators:
            s = self.files[rel]
            resolver = RefResolver(s["$id"], s, store=self.store)
            self.validators[rel] = Draft202012Validator(s, resolver=resolver, format_checker=self.checker)
        return self.validators[rel]

    def problems(self, text, topic=None, key=ANY, content_type=None):
        """Why one event (its JSON text, or already parsed) is not as published; [] when it is.
        topic, key and content_type are checked when given (key may be None: no key)."""
        if isinstance(text, NotJson):
            return [f"not JSON: {text.error}"]
        if isinstance(text, (bytes, str)):
            try:
                ev = strict_json(text)
            except ValueError as e:
                return [f"not JSON: {e}"]
        else:
            ev = text
        out = []
        if content_type is not None and content_type.split(";")[0].strip().lower() != CE_CONTENT_TYPE:
            out.append(f"content type {content_type!r}, not {CE_CONTENT_TYPE}")
        if not isinstance(ev, dict):
            return out + ["not a JSON object"]
        for e in self.validator("cloudevent.json").iter_errors(ev):
            out.append(f"envelope: {_where(e)}: {e.message}")
        t = ev.get("type")
        if t not in self.types:
            out.append(f"type {t!r} has no schema/data/{t}.json")
            return out
        for e in self.validator(f"data/{t}.json").iter_errors(ev.get("data")):
            out.append(f"data of {t}: {_where(e)}: {e.message}")
        # Topic names are settings (taskevents.topic_*): a type must be on
        # its topic when the three have their default names; a topic of
        # another name is not checked.
        want = self.types[t].get("x-topic")
        if topic in TOPICS and topic != want:
            out.append(f"{t} on topic {topic!r}, its schema says {want!r}")
        if ev.get("topic") in TOPICS and ev["topic"] != want:
            out.append(f"{t} with the topic attribute {ev['topic']!r}, its schema says {want!r}")
        if key != ANY and key != ev.get("subject"):
            out.append(f"key {key!r} is not the subject {ev.get('subject')!r}")
        return out


def _where(e):
    return "/" + "/".join(str(p) for p in e.absolute_path)


def fakedapr_events(path):
    """(label, body, topic, key, content type) of each CloudEvent in a fakedapr record file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                continue                    # still being written
            try:
                r = strict_json(line)           # the body is embedded as it came
            except ValueError as e:
                yield f"record line {line[:60]!r}", NotJson(e), None, ANY, None
                continue
            m = re.match(r"^/v1\.0/publish/(bulk/)?[^/]+/([^/?]+)$", r.get("path") or "")
            if not m:
                continue
            topic = urllib.parse.unquote(m.group(2))
            label = f"request {r['n']} {r['path']}"
            if m.group(1):
                body = r.get("body")
                if not isinstance(body, list):
                    yield label, "bulk body is not a JSON array", topic, ANY, None
                    continue
                for i, entry in enumerate(body):
                    ev = entry.get("event") if isinstance(entry, dict) else None
                    key = ((entry.get("metadata") or {}).get("partitionKey")
                           if isinstance(entry, dict) else None)
                    yield (f"{label} entry {i}", ev, topic, key if key is not None else "(none)",
                           entry.get("contentType") if isinstance(entry, dict) else None)
            else:
                q = urllib.parse.parse_qs(r.get("query") or "")
                key = q.get("metadata.partitionKey", ["(none)"])[0]
                yield label, r.get("body"), topic, key, r.get("content_type") or "(none)"


def kafka_events(path):
    """(label, value, topic, key, None) of each record KafkaTool consume wrote."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                continue
            r = json.loads(line)
            yield (f"record {r['topic']}/{r['partition']}/{r['offset']}", r.get("value"),
                   r["topic"], r.get("key"), None)


def subscriber_events(path):
    """(label, body, ...) of each delivery test/real/subscriber/app.py recorded."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.endswith("\n"):
                r = json.loads(line)
                yield f"delivery {i} to {r['route']}", r["body"], None, ANY, r.get("content_type")


def line_events(path):
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                yield f"line {i}", line, None, ANY, None


_contract = None


def _check_batch(batch):
    """[(label, problems)] of a batch of events that are not as published."""
    global _contract
    if _contract is None:
        _contract = Contract()
    out = []
    for label, body, topic, key, ctype in batch:
        if isinstance(body, str) or body is None:
            text = body if body is not None else "null"
        else:
            text = body                 # fakedapr embeds a JSON body as JSON
        probs = _contract.problems(text, topic=topic, key=key, content_type=ctype)
        if probs:
            out.append((label, probs))
    return out


def _batches(events, size=2000):
    batch = []
    for e in events:
        batch.append(e)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def validate_files(reader, files):
    """Every event of the files, in batches checked by one process per core
    (jsonschema is pure Python: a backfill's 300,000 events take a minute
    of one core)."""
    import multiprocessing
    bad_total = 0
    with multiprocessing.Pool(min(os.cpu_count() or 1, 4)) as pool:
        for path in files:
            n = bad = 0
            for batch, found in _batched_results(pool, _batches(reader(path))):
                n += len(batch)
                for label, probs in found:
                    bad += 1
                    if bad <= 10:
                        print(f"INVALID {path}: {label}: " + "; ".join(probs[:5]))
            bad_total += bad
            print(f"{path}: {n} events, {n - bad} valid, {bad} invalid against schema/")
    return 1 if bad_total else 0


def _batched_results(pool, batches, ahead=8):
    """(batch, its problems) in order, with up to ahead batches in flight."""
    pending = []
    for batch in batches:
        pending.append((batch, pool.apply_async(_check_batch, (batch,))))
        if len(pending) >= ahead:
            b, r = pending.pop(0)
            yield b, r.get()
    for b, r in pending:
        yield b, r.get()


def main(argv):
    readers = {"--fakedapr": fakedapr_events, "--kafka": kafka_events, "--subscriber": subscriber_events,
               "--events": line_events}
    if len(argv) >= 2 and argv[0] in readers:
        reader = readers[argv[0]]
        return validate_files(reader, argv[1:])
    if argv == ["--check"]:
        import selfcheck
        return 1 if selfcheck.run(Contract()).failed else 0
    if argv == ["--write-asyncapi"]:
        import selfcheck
        return selfcheck.write_asyncapi(Contract())
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main(sys.argv[1:]))
