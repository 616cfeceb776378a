"""The contract suite's checks of schema/ itself (validate.py --check), and the
generated blocks of schema/asyncapi.yaml (validate.py --write-asyncapi).

Prints "ok N - ..." / "not ok N - ..." per check.  Each rule of the schemas
is shown to hold both ways: events as the extension writes them pass, and an
event broken in that one rule is refused (so no check here can pass by
refusing nothing, or by accepting everything)."""
import copy
import json
import os
import re

from jsonschema import Draft202012Validator

import validate as v

ASYNCAPI = os.path.join(v.SCHEMA, "asyncapi.yaml")
TASK = "0b5c1a52-6a3e-4c1e-9a57-3f1c2d4e5f60"
USER = "7d4e2f10-1b2c-4d3e-8f4a-5b6c7d8e9f01"
WHEN = "2026-12-02T13:47:41.083853Z"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# ------------------------------------------------------------ asyncapi.yaml

def _blocks(c):
    """The text of each generated block of asyncapi.yaml, by block name."""
    q = json.dumps
    by_topic = {t: [] for t in v.TOPICS}
    for t in sorted(c.types):
        by_topic.setdefault(c.types[t].get("x-topic"), []).append(t)
    out = {}
    for topic, types in by_topic.items():
        out[topic] = "".join(f"      {t}:\n        $ref: {q('#/components/messages/' + t)}\n" for t in types)
    msgs = ""
    for t in sorted(c.types):
        d = c.types[t].get("description", "")
        summary = re.split(r"(?<=\.)\s", d, maxsplit=1)[0]
        msgs += (f"    {t}:\n"
                 f"      name: {t}\n"
                 f"      title: {t}\n"
                 f"      summary: {q(summary, ensure_ascii=False)}\n"
                 f"      description: {q(d, ensure_ascii=False)}\n"
                 f"      traits:\n"
                 f"        - $ref: '#/components/messageTraits/cloudEvent'\n"
                 f"      payload:\n"
                 f"        allOf:\n"
                 f"          - $ref: cloudevent.json\n"
                 f"          - type: object\n"
                 f"            properties:\n"
                 f"              type:\n"
                 f"                const: {t}\n"
                 f"              data:\n"
                 f"                $ref: data/{t}.json\n")
    out["messages"] = msgs
    return out


def _render(c, text):
    blocks = _blocks(c)

    def fill(m):
        name = m.group(2)
        return m.group(1) + blocks.get(name, "") + m.group(3)
    return re.sub(r"(^ *# generated: (\S+) \(begin\)\n)(?:.*\n)*?(^ *# generated: \2 \(end\)\n)",
                  fill, text, flags=re.M)


def write_asyncapi(c):
    with open(ASYNCAPI, encoding="utf-8") as f:
        text = f.read()
    new = _render(c, text)
    with open(ASYNCAPI, "w", encoding="utf-8") as f:
        f.write(new)
    print("schema/asyncapi.yaml: " + ("rewritten" if new != text else "already up to date"))
    return 0


# ------------------------------------------------------------ sample events

def event(type_, **data):
    """An event of the type as the extension writes it for the reference table."""
    action = type_.split(".")[1]
    if type_ == "sync.task":
        action = data.pop("action", "created")
    ev = {"specversion": "1.0", "id": "78f8f0c2-8617-478a-a57e-9a7528e2bf7a", "source": "pakaura/api",
          "type": type_, "time": WHEN, "subject": TASK, "datacontenttype": "application/json",
          "traceid": "req-7f3a"}
    d = {"task_id": TASK, "user_id": USER, "action": action}
    if type_.startswith("task."):
        d.update(title='Buy milk "2%"', completed=(type_ == "task.completed"),
                 changes={"title": {"old": "Buy milk", "new": 'Buy milk "2%"'}} if type_ == "task.updated" else {})
    elif type_.startswith("reminder."):
        d["due_date"] = None if type_ == "reminder.cancelled" else "2030-01-01T09:00:00.500000Z"
    d.update(data)
    d["timestamp"] = WHEN
    ev["data"] = d
    return ev


TOPIC = {"task": "task-events", "sync": "task-updates", "reminder": "reminders"}


def valid_cases():
    """(what, event or JSON text) that must pass."""
    cases = []
    for t in ("task.created", "task.updated", "task.completed", "task.uncompleted", "task.deleted",
              "sync.task", "reminder.scheduled", "reminder.rescheduled", "reminder.cancelled"):
        cases.append((t, event(t)))
        e = event(t)
        e["traceparent"] = TRACEPARENT
        e.update(topic=TOPIC[t.split(".")[0]], pubsubname="pubsub-kafka", tracestate="")
        cases.append((f"{t} with traceparent, as daprd publishes it (topic, pubsubname, tracestate)", e))
    for a in ("updated", "completed", "uncompleted", "deleted"):
        cases.append((f"sync.task of action {a}", event("sync.task", action=a)))
    e = event("task.created", task_id=42, user_id=7)
    e["subject"] = "42"
    cases.append(("numeric ids are JSON numbers", e))
    e = event("task.updated", task_id="NaN", changes={"id": {"old": 1.5, "new": "NaN"}})
    e["subject"] = "NaN"
    cases.append(("a NaN numeric id is a string", e))
    cases.append(("text ids, null user, title and completed",
                  event("task.created", task_id="T-1", user_id=None, title=None, completed=None)))
    cases.append(("changes keep JSON types; NaN, Infinity, intervals, bytea as strings",
                  event("task.updated", changes={
                      "score": {"old": "NaN", "new": "-Infinity"}, "weight": {"old": 0.30000000000000004, "new": 1e300},
                      "meta": {"old": {"a": [1, None, True]}, "new": None}, "blob": {"old": None, "new": "\\x00ff"},
                      "spent": {"old": "P1DT2H", "new": "PT0S"}, "due_date": {"old": "infinity", "new": "-0043-03-15T12:00:00.000000Z"},
                      "tags": {"old": "{\"2026-12-02 10:00:00.5+00\"}", "new": "{}"}})))
    cases.append(("a title with quotes, backslashes, control characters and emoji",
                  event("task.created", title="a \"b\" \\ \n\t\u0001 🥛 <html> &")))
    cases.append(("task.uncompleted to null", event("task.uncompleted", completed=None)))
    e = event("task.created")
    e["topic"] = "te2"
    cases.append(("a topic renamed by taskevents.topic_task_events", e))
    for due in ("+10000-01-01T00:00:00.000000Z", "-0043-03-15T12:00:00.000000Z",
                "0000-12-31T23:59:59.999999Z", "infinity", "-infinity", "2030-01-01T09:00:00.000000Z"):
        cases.append((f"due date {due}", event("reminder.rescheduled", due_date=due)))
    return cases


def invalid_cases():
    """(what, event or JSON text, topic, key, content type, a text the problems must contain)."""
    ANY = v.ANY
    good = json.dumps(event("task.updated"))
    out = []

    def bad(what, ev, want, topic=None, key=ANY, ctype=None):
        out.append((what, ev, topic, key, ctype, want))

    def edit(type_, f, **data):
        e = event(type_, **data)
        f(e)
        return e
    bad("a data field renamed (title -> name)",
        edit("task.created", lambda e: e["data"].__setitem__("name", e["data"].pop("title"))), "'title' is a required")
    bad("an envelope attribute missing (subject)", edit("task.created", lambda e: e.pop("subject")), "'subject' is a required")
    bad("an attribute nobody sends", edit("task.created", lambda e: e.__setitem__("dataschema", "x")), "dataschema")
    bad("time without microseconds", edit("task.created", lambda e: e.__setitem__("time", "2026-12-02T13:47:41Z")), "/time")
    bad("time with an offset", edit("task.created", lambda e: e.__setitem__("time", "2026-12-02T13:47:41.083853+00:00")), "/time")
    bad("time in month 13 (format date-time)", edit("task.created", lambda e: e.__setitem__("time", "2026-13-02T13:47:41.083853Z")), "is not a 'date-time'")
    bad("data timestamp not RFC 3339",
        edit("task.created", lambda e: e["data"].__setitem__("timestamp", "2026-12-02 13:47:41.083853+00")), "/timestamp")
    bad("an id in upper case", edit("task.created", lambda e: e.__setitem__("id", e["id"].upper())), "/id")
    bad("an id that is not version 4", edit("task.created", lambda e: e.__setitem__("id", "78f8f0c2-8617-178a-a57e-9a7528e2bf7a")), "/id")
    bad("specversion 0.3", edit("task.created", lambda e: e.__setitem__("specversion", "0.3")), "/specversion")
    bad("datacontenttype text/plain", edit("task.created", lambda e: e.__setitem__("datacontenttype", "text/plain")), "/datacontenttype")
    bad("data as a string", edit("task.created", lambda e: e.__setitem__("data", json.dumps(e["data"]))), "is not of type 'object'")
    bad("a type without a schema", edit("task.created", lambda e: e.__setitem__("type", "task.archived")), "has no schema/data/task.archived.json")
    bad("an action that is not the type's", event("task.created", action="updated"), "/action")
    bad("task.updated with no changes", event("task.updated", changes={}), "/changes")
    bad("task.created with changes", event("task.created", changes={"title": {"old": "a", "new": "b"}}), "/changes")
    bad("a change without its new value", event("task.updated", changes={"title": {"old": "a"}}), "'new' is a required")
    bad("a change with more than old and new", event("task.updated", changes={"title": {"old": "a", "new": "b", "at": 1}}), "/changes/title")
    bad("a change that is a bare value", event("task.updated", changes={"title": "b"}), "/changes/title")
    bad("task.completed not completed", event("task.completed", completed=False), "/completed")
    bad("reminder.scheduled without a due date", event("reminder.scheduled", due_date=None), "/due_date")
    bad("reminder.cancelled with a due date", event("reminder.cancelled", due_date="2030-01-01T09:00:00.000000Z"), "/due_date")
    bad("a due date in PostgreSQL's text form", event("reminder.scheduled", due_date="2030-01-01 09:00:00+00"), "/due_date")
    bad("a due date in month 13", event("reminder.scheduled", due_date="2030-13-01T09:00:00.000000Z"), "/due_date")
    bad("sync.task with a title", event("sync.task", title="x"), "'title' was unexpected")
    bad("a null task id", event("task.created", task_id=None), "/task_id")
    bad("a boolean user id", event("task.created", user_id=True), "/user_id")
    bad("completed as a string", event("task.created", completed="false"), "/completed")
    bad("an empty traceid", edit("task.created", lambda e: e.__setitem__("traceid", "")), "/traceid")
    bad("a traceparent in upper case", edit("task.created", lambda e: e.__setitem__("traceparent", TRACEPARENT.upper())), "/traceparent")
    bad("a traceparent of version ff", edit("task.created", lambda e: e.__setitem__("traceparent", "ff" + TRACEPARENT[2:])), "/traceparent")
    bad("a traceparent with an all-zero trace id", edit("task.created", lambda e: e.__setitem__("traceparent", "00-" + "0" * 32 + TRACEPARENT[35:])), "/traceparent")
    bad("a bare NaN in the JSON text", good.replace('"new": "Buy milk \\"2%\\""', '"new": NaN'), "NaN is not JSON")
    bad("a name twice in an object", good.replace('"action": "updated"', '"action": "updated", "action": "updated"'), "appears twice")
    bad("task.created on the topic reminders", event("task.created"), "on topic 'reminders'", topic="reminders")
    bad("a key that is not the subject", event("task.created"), "is not the subject", topic="task-events", key="other")
    bad("a topic attribute (daprd's) that is not the type's topic",
        edit("task.created", lambda e: e.__setitem__("topic", "reminders")), "topic attribute 'reminders'")
    bad("sent as application/json", event("task.created"), "content type", topic="task-events", key=TASK, ctype="application/json")
    return out


# ------------------------------------------------------------ the checks

class Tap:
    def __init__(self):
        self.n = self.failed = 0

    def ok(self, cond, what, detail=""):
        self.n += 1
        if not cond:
            self.failed += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - {what}")
        if not cond and detail:
            for line in str(detail).splitlines()[:10]:
                print(f"#   {line}")


def run(c):
    t = Tap()
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for rel, s in sorted(c.files.items()):
        errs = [e.message for e in meta.iter_errors(s)]
        if s.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            errs.append(f"$schema is {s.get('$schema')!r}")
        if s.get("$id") != v.BASE + rel:
            errs.append(f"$id is {s.get('$id')!r}, not {v.BASE + rel}: relative $refs would resolve elsewhere")
        if rel.startswith("data/"):
            if s.get("x-topic") not in v.TOPICS:
                errs.append(f"x-topic {s.get('x-topic')!r} is not one of {v.TOPICS}")
            if not s.get("description") or s.get("title") != f"data of {rel[5:-5]}":
                errs.append("a data schema needs a description and the title 'data of <type>'")
        t.ok(not errs, f"schema/{rel}: a valid draft 2020-12 schema, $id {s.get('$id')}", "\n".join(errs))
    for rel, s in sorted(c.files.items()):
        refs = re.findall(r'"\$ref": "([^"#]*)', json.dumps(s))
        missing = [r for r in refs if r and os.path.normpath(os.path.join(os.path.dirname(rel), r)) not in c.files]
        if missing:
            t.ok(False, f"schema/{rel}: every $ref names a file of schema/", ", ".join(missing))
    types = set(c.types)
    t.ok(types >= {"task.created", "task.updated", "task.completed", "task.uncompleted", "task.deleted",
                   "sync.task", "reminder.scheduled", "reminder.rescheduled", "reminder.cancelled"},
         f"schema/data/ has every event type ({len(types)})", sorted(types))

    with open(ASYNCAPI, encoding="utf-8") as f:
        text = f.read()
    names = re.findall(r"^ *# generated: (\S+) \(begin\)$", text, re.M)
    t.ok(sorted(names) == sorted(list(v.TOPICS) + ["messages"]) and _render(c, text) == text,
         "schema/asyncapi.yaml lists one message per schema/data/ file, on its x-topic's channel",
         "out of date: run python3 test/contract/validate.py --write-asyncapi")

    readme = open(os.path.join(v.TOP, "README.md"), encoding="utf-8").read()
    shown = [m.group(0) for m in re.finditer(r'^\{\n  "specversion".*?^\}$', readme, re.M | re.S)]
    probs = [p for e in shown for p in c.problems(e)]
    t.ok(len(shown) >= 2 and not probs, f"the {len(shown)} CloudEvents the README shows are valid", "\n".join(probs))

    for what, ev in valid_cases():
        probs = c.problems(json.dumps(ev, ensure_ascii=False) if not isinstance(ev, str) else ev)
        t.ok(not probs, f"valid: {what}", "\n".join(probs))
    for what, ev, topic, key, ctype, want in invalid_cases():
        probs = c.problems(ev if isinstance(ev, str) else json.dumps(ev), topic=topic, key=key, content_type=ctype)
        t.ok(any(want in p for p in probs), f"refused: {what}",
             f"expected a problem containing {want!r}, got: {probs}")

    # the readers of the suites' files: fakedapr's records (single and bulk) and Kafka's
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        good = event("task.created")
        rec = os.path.join(d, "fakedapr.jsonl")
        with open(rec, "w") as f:
            for n, (path, q, ct, body) in enumerate([
                    ("/v1.0/publish/pubsub-kafka/task-events", f"metadata.partitionKey={TASK}", v.CE_CONTENT_TYPE, good),
                    ("/v1.0/publish/bulk/pubsub-kafka/task-events", "", "application/json",
                     [{"entryId": "1", "event": good, "contentType": v.CE_CONTENT_TYPE, "metadata": {"partitionKey": TASK}},
                      {"entryId": "2", "event": good, "contentType": v.CE_CONTENT_TYPE, "metadata": {"partitionKey": "x"}}]),
                    ("/v1.0/publish/pubsub-kafka/reminders", f"metadata.partitionKey={TASK}", v.CE_CONTENT_TYPE, good),
                    ("/v1.0/publish/pubsub-kafka/task-events", "", "text/plain", "not json")], 1):
                f.write(json.dumps({"n": n, "path": path, "query": q, "content_type": ct, "status": 204, "body": body}) + "\n")
            f.write('{"n":5,"path":"/v1.0/publish/pubsub-kafka/task-events","query":"","content_type":"'
                    + v.CE_CONTENT_TYPE + '","status":204,"body":{"specversion":NaN}}\n')
        found = {label: c.problems(b, topic=tp, key=k, content_type=ct)
                 for label, b, tp, k, ct in v.fakedapr_events(rec)}
        flagged = sorted(label for label, p in found.items() if p)
        t.ok(len(found) == 6 and flagged == sorted(list(found)[2:]),
             "fakedapr records: a good request and bulk entry pass; a wrong key, topic, body or JSON is caught",
             json.dumps(found, indent=1))
        kaf = os.path.join(d, "kafka.jsonl")
        with open(kaf, "w") as f:
            for n, (topic, key, value) in enumerate([("task-events", TASK, json.dumps(good)),
                                                      ("task-updates", TASK, json.dumps(good)),
                                                      ("task-events", None, json.dumps(good)),
                                                      ("task-events", TASK, '{"id":1,"id":2}')]):
                f.write(json.dumps({"topic": topic, "partition": 0, "offset": n, "key": key, "value": value}) + "\n")
        found = [c.problems(b, topic=tp, key=k) for _, b, tp, k, _ in v.kafka_events(kaf)]
        t.ok([bool(p) for p in found] == [False, True, True, True],
             "Kafka records: a good one passes; a wrong topic, a missing key, a repeated name are caught",
             json.dumps(found, indent=1))
    print(f"# schema/: {len(c.files)} JSON Schemas, {len(types)} event types")
    return t


if __name__ == "__main__":
    raise SystemExit("run validate.py --check")
