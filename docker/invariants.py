"""The invariants of docker/ that no validator knows, because they tie its
files to each other and to the rest of the repository: one settings file
(the extension's own settings, the ConfigMap holding it verbatim, mounted
where the image includes it), versions in step (the Dockerfile, compose,
the StatefulSet and the Helm values follow the newest PostgreSQL the tests
run), names in step (the pubsub component, the topics, the app id, the API
token, the Dapr Configuration), and what the deployment must keep (PGDATA on
a volume, the Dapr annotations, the exporter's metrics and alerts).

    python3 docker/invariants.py DOCKER_DIR

The shape of each file (the compose specification, the Kubernetes API, the
Dapr kinds, YAML itself) is docker/validate.sh's validators' job.  Prints
one line per check ("ok   ...", "FAIL ...", "skip ..."), then "done".
"""
import os
import re
import shlex
import sys

import yaml

D = sys.argv[1]
ROOT = os.path.dirname(D)


def path(*p):
    return os.path.join(D, *p)


def read(*p):
    with open(path(*p), encoding="utf-8") as f:
        return f.read()


def check(desc):
    """Runs the decorated function at once; it fails by raising."""
    def run(fn):
        try:
            r = fn()
        except Exception as e:  # every failure, whatever its kind, is reported
            msg = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"
            print(f"FAIL {desc}: {msg}")
        else:
            print(f"{'skip' if r == 'skip' else 'ok  '} {desc}")
        return fn
    return run


def need(cond, msg):
    if not cond:
        raise AssertionError(msg)


docs = {}
for dirpath, _, filenames in os.walk(D):
    for fn in filenames:
        if fn.endswith((".yaml", ".yml")):
            with open(os.path.join(dirpath, fn), encoding="utf-8") as f:
                docs[os.path.relpath(os.path.join(dirpath, fn), D)] = [d for d in yaml.safe_load_all(f) if d]


def one(rel):
    need(rel in docs, f"docker/{rel} missing or unparsable")
    return docs[rel][0]


def k8s_docs():
    out = []
    for rel, ds in docs.items():
        if rel.startswith("k8s/") and rel != "k8s/helm-values.yaml":
            out += [(rel, d) for d in ds]
    return out


def k8s_find(kind, name=None):
    return [d for _, d in k8s_docs()
            if isinstance(d, dict) and d.get("kind") == kind
            and (name is None or d.get("metadata", {}).get("name") == name)]


# --- the settings file ------------------------------------------------------
SETTING_RE = re.compile(r"^\s*(#?)\s*([a-z_]+(?:\.[a-z_]+)?)\s*=\s*(.*?)\s*(?:#.*)?$")


def conf_lines():
    out = []
    for line in read("postgresql.taskevents.conf").splitlines():
        m = SETTING_RE.match(line)
        if m:
            out.append((m.group(1) == "", m.group(2), m.group(3)))
    return out


def conf_default(name):
    for active, n, v in conf_lines():
        if n == name:
            return v.strip("'")
    raise AssertionError(f"{name} not in postgresql.taskevents.conf")


@check("postgresql.taskevents.conf sets nothing but shared_preload_libraries and taskevents.* (test-safe)")
def _():
    text = read("postgresql.taskevents.conf")
    bad = [n for active, n, v in conf_lines()
           if active and n != "shared_preload_libraries" and not n.startswith("taskevents.")]
    need(not bad, f"active settings: {bad}")
    need(not re.search(r"^\s*include", text, re.M), "has an include directive")


@check("postgresql.taskevents.conf names exactly the settings src/settings.c defines")
def _():
    src = os.path.join(ROOT, "src", "settings.c")
    if not os.path.exists(src):
        return "skip"
    with open(src, encoding="utf-8") as f:
        defined = set(re.findall(r'DefineCustom\w+Variable\(\s*"(taskevents\.[a-z_]+)"', f.read()))
    need(defined, "no DefineCustom*Variable(\"taskevents.*\") in src/settings.c")
    session = {"taskevents.trace_id", "taskevents.traceparent"}
    named = {n for _, n, _ in conf_lines() if n.startswith("taskevents.")}
    unknown = named - defined
    undocumented = defined - session - named
    need(not unknown, f"not defined by the extension: {sorted(unknown)}")
    need(not undocumented, f"defined but not in the file: {sorted(undocumented)}")


# --- Dockerfile -------------------------------------------------------------
def supported_versions():
    """The PostgreSQL major versions the tests run (PGV_SUPPORTED in
    test/pgversions.sh), oldest first."""
    with open(os.path.join(ROOT, "test", "pgversions.sh"), encoding="utf-8") as f:
        m = re.search(r"^PGV_SUPPORTED=\(([0-9 ]+)\)", f.read(), re.M)
    need(m, "no PGV_SUPPORTED=(...) in test/pgversions.sh")
    return [int(v) for v in m.group(1).split()]


def dockerfile_stages(build_args=None):
    """[(from_image, alias, [(instruction, args)])], continuations joined,
    comment lines dropped, global ARGs (their defaults, or build_args as
    `docker build --build-arg` gives them) substituted into later ARG
    defaults and into FROM."""
    return dockerfile_parse(build_args)[1]


def dockerfile_args(build_args=None):
    """The global ARGs (before the first FROM) as the build sees them."""
    return dockerfile_parse(build_args)[0]


def dockerfile_parse(build_args=None):
    build_args = build_args or {}
    logical, cur = [], ""
    for line in read("Dockerfile").splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            logical.append(cur.strip())
        cur = ""
    args, stages = {}, []

    def subst(text):
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), text)

    for ln in logical:
        instr, _, rest = ln.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            k = k.strip()
            args[k] = build_args[k] if k in build_args else subst(v.strip().strip('"'))
        elif instr == "FROM":
            words = subst(rest).split()
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append((words[0], alias, []))
        elif stages:
            stages[-1][2].append((instr, rest))
    return args, stages


def official_image_major(image):
    """The major version of an official postgres image reference, else None."""
    m = re.fullmatch(r"(?:docker\.io/)?(?:library/)?postgres:(\d+)(?:\.\d+)*(?:-[a-z0-9.]+)?", image)
    return int(m.group(1)) if m else None


@check("Dockerfile: ARG PG_MAJOR defaults to the newest PostgreSQL the tests run (test/pgversions.sh)")
def _():
    newest = supported_versions()[-1]
    got = dockerfile_args().get("PG_MAJOR")
    need(got == str(newest), f"PG_MAJOR defaults to {got!r}, the newest tested is {newest}")


@check("Dockerfile: with every tested PG_MAJOR, both the build and the final stage are FROM that official postgres image")
def _():
    for v in supported_versions():
        st = dockerfile_stages({"PG_MAJOR": str(v)})
        need(len(st) >= 2, f"{len(st)} stage(s)")
        for what, image in (("build", st[0][0]), ("final", st[-1][0])):
            need(official_image_major(image) == v, f"--build-arg PG_MAJOR={v}: {what} stage FROM {image}")


# --- compose ------------------------------------------------------------------
def svc(name):
    s = one("compose.yaml").get("services", {})
    need(name in s, f"no service {name}")
    return s[name]


def argv(v):
    if v is None:
        return []
    return shlex.split(v) if isinstance(v, str) else [str(x) for x in v]


def flag(args, name):
    for i, a in enumerate(args):
        if a in (f"--{name}", f"-{name}") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith((f"--{name}=", f"-{name}=")):
            return a.split("=", 1)[1]
    return None


def env(service):
    e = service.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, None) for x in e)
    return {k: (None if v is None else str(v)) for k, v in e.items()}


def depends(service):
    d = service.get("depends_on") or {}
    return {k: {} for k in d} if isinstance(d, list) else d


def topics():
    return [conf_default(f"taskevents.topic_{t}") for t in ("task_events", "task_updates", "reminders")]


@check("compose: daprd shares postgres's network namespace")
def _():
    need(svc("daprd").get("network_mode") == "service:postgres",
         f"network_mode = {svc('daprd').get('network_mode')!r}")
    need("ports" not in svc("daprd"), "daprd cannot publish ports in another service's namespace")


@check("compose: daprd image is pinned to a release >= 1.17")
def _():
    img = svc("daprd").get("image", "")
    m = re.fullmatch(r"(?:docker\.io/)?daprio/daprd:(\d+)\.(\d+)\.(\d+)", img)
    need(m, f"image {img!r} is not daprio/daprd:<x.y.z>")
    need((int(m.group(1)), int(m.group(2))) >= (1, 17), f"{img} is older than 1.17")


@check("compose: daprd runs with app id taskevents-db, /components resources and config")
def _():
    d = svc("daprd")
    args = argv(d.get("entrypoint")) + argv(d.get("command"))
    need(flag(args, "app-id") == "taskevents-db", f"--app-id {flag(args, 'app-id')}")
    need(flag(args, "resources-path") == "/components", f"--resources-path {flag(args, 'resources-path')}")
    need(flag(args, "config") == "/components/config.yaml", f"--config {flag(args, 'config')}")
    mounts = [v for v in d.get("volumes", []) if isinstance(v, str)]
    src = [m.split(":")[0] for m in mounts if m.split(":")[1] == "/components"]
    need(src, "nothing mounted at /components")
    host = os.path.normpath(os.path.join(D, src[0]))
    for f in ("pubsub-kafka.yaml", "config.yaml"):
        need(os.path.exists(os.path.join(host, f)), f"{src[0]}/{f} missing")


@check("compose: postgres has DAPR_HTTP_PORT=3500 and daprd listens there")
def _():
    port = env(svc("postgres")).get("DAPR_HTTP_PORT")
    need(port == "3500", f"DAPR_HTTP_PORT = {port!r}")
    d = svc("daprd")
    given = flag(argv(d.get("entrypoint")) + argv(d.get("command")), "dapr-http-port")
    need(given in (None, port), f"daprd --dapr-http-port {given} != {port}")


@check("compose: DAPR_API_TOKEN reaches daprd and postgres from the same source")
def _():
    a = env(svc("postgres")).get("DAPR_API_TOKEN")
    b = env(svc("daprd")).get("DAPR_API_TOKEN")
    need(a is not None and a == b, f"postgres {a!r} vs daprd {b!r}")


@check("compose: postgres is built from docker/Dockerfile and has a healthcheck")
def _():
    p = svc("postgres")
    b = p.get("build") or {}
    ctx = os.path.normpath(os.path.join(D, b.get("context", ".")))
    df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
    need(os.path.samefile(df, path("Dockerfile")), f"builds {df}")
    test = (p.get("healthcheck") or {}).get("test")
    need(test, "no healthcheck")
    need("pg_isready" in " ".join(argv(test)), "healthcheck does not use pg_isready")


def compose_default(value):
    """A compose value with its ${VAR:-default} and ${VAR-default} given
    their defaults (what compose uses when VAR is not set)."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", str(value))


@check("compose: postgres builds the Dockerfile's default PG_MAJOR unless PG_MAJOR is set, and is tagged with it")
def _():
    p = svc("postgres")
    arg = str(((p.get("build") or {}).get("args") or {}).get("PG_MAJOR", ""))
    m = re.fullmatch(r"\$\{PG_MAJOR:-(\d+)\}", arg)
    need(m, f"build.args.PG_MAJOR = {arg!r}, not ${{PG_MAJOR:-<version>}}")
    need(m.group(1) == dockerfile_args().get("PG_MAJOR"),
         f"defaults to {m.group(1)}, the Dockerfile to {dockerfile_args().get('PG_MAJOR')}")
    image = str(p.get("image", ""))
    need(image.endswith(":" + arg), f"image {image!r} is not tagged {arg}")
    w = str(svc("writer").get("image", ""))
    need(official_image_major(compose_default(w)) == int(m.group(1)) and "${PG_MAJOR:-" in w,
         f"writer image {w!r} does not follow PG_MAJOR")


@check("compose: PGDATA is set and lies on the pgdata volume for every version (the 18 image's default does not)")
def _():
    p = svc("postgres")
    pgdata = env(p).get("PGDATA")
    need(pgdata, "PGDATA not set: the image's default differs between versions (18: /var/lib/postgresql/18/docker)")
    mounts = [v.split(":") for v in p.get("volumes", []) if isinstance(v, str)]
    named = [m[1] for m in mounts if m[0] in (one("compose.yaml").get("volumes") or {})]
    for v in supported_versions():
        d = re.sub(r"\$\{PG_MAJOR:?-[^}]*\}", str(v), pgdata)
        need(any(d.startswith(m.rstrip("/") + "/") for m in named),
             f"PG_MAJOR={v}: PGDATA {d} is not on a named volume ({named})")


@check("compose: writer waits for a healthy postgres and its script exists")
def _():
    w = svc("writer")
    need(depends(w).get("postgres", {}).get("condition") == "service_healthy",
         "writer does not wait for service_healthy postgres")
    scripts = [a for a in argv(w.get("entrypoint")) + argv(w.get("command")) if a.startswith("/writer/")]
    need(scripts, "no /writer/ script in entrypoint or command")
    mounts = [v.split(":") for v in w.get("volumes", []) if isinstance(v, str)]
    for s in scripts:
        host = [os.path.join(D, m[0], os.path.relpath(s, m[1])) for m in mounts if s.startswith(m[1] + "/")]
        need(host and os.path.exists(os.path.normpath(host[0])), f"{s} not found on the host")


@check("compose: kafka-init creates the three topics the settings name")
def _():
    ki = svc("kafka-init")
    text = "\n".join(argv(ki.get("entrypoint")) + [str(x) for x in (ki.get("command") or [])])
    # topic names on --describe/--list lines create nothing
    text = "\n".join(l for l in text.splitlines() if not re.search(r"--(describe|list)\b", l))
    need("--create" in text, "no --create")
    for t in topics():
        need(re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(t), text), f"topic {t} not created")
    need(depends(ki).get("kafka", {}).get("condition") == "service_healthy", "does not wait for a healthy kafka")
    need(depends(svc("daprd")).get("kafka-init", {}).get("condition") == "service_completed_successfully",
         "daprd does not wait for kafka-init")


@check("compose: consumer prints keys of all three topics")
def _():
    c = svc("consumer")
    args = argv(c.get("entrypoint")) + argv(c.get("command"))
    need("print.key=true" in args, "no --property print.key=true")
    inc = flag(args, "include") or flag(args, "whitelist")
    tops = [flag(args, "topic")] if flag(args, "topic") else []
    for t in topics():
        ok = t in tops or (inc and re.fullmatch(inc.replace("$$", "$"), t))
        need(ok, f"topic {t} not consumed")


@check("components/pubsub-kafka.yaml: named as taskevents.pubsub, of type pubsub.kafka, its brokers compose services")
def _():
    c = one("components/pubsub-kafka.yaml")
    need(c["metadata"]["name"] == conf_default("taskevents.pubsub"),
         f"name {c['metadata']['name']} != taskevents.pubsub {conf_default('taskevents.pubsub')}")
    need(c["spec"]["type"] == "pubsub.kafka", f"type {c['spec']['type']}")
    brokers = [m.get("value") for m in c["spec"]["metadata"] if m["name"] == "brokers"]
    for b in str(brokers[0]).split(","):
        host = b.strip().rsplit(":", 1)[0]
        need(host in one("compose.yaml")["services"], f"broker host {host} is not a compose service")


@check("components/config.yaml: a Configuration that allows the publish API")
def _():
    c = one("components/config.yaml")
    allowed = ((c.get("spec") or {}).get("api") or {}).get("allowed")
    if allowed is not None:
        need(any(a.get("name") == "publish" and a.get("protocol", "http") == "http" for a in allowed),
             "api.allowed blocks the publish API")


# --- Kubernetes -------------------------------------------------------------
def sts():
    s = k8s_find("StatefulSet")
    need(len(s) == 1, f"{len(s)} StatefulSets in docker/k8s")
    return s[0]


def pod(s):
    return s["spec"]["template"]


def pg_container(s):
    cs = [c for c in pod(s)["spec"]["containers"] if c["name"] == "postgres"]
    need(cs, "no container named postgres")
    return cs[0]


@check("k8s: StatefulSet has the Dapr annotations")
def _():
    a = pod(sts())["metadata"].get("annotations") or {}
    need(a.get("dapr.io/enabled") == "true", f"dapr.io/enabled = {a.get('dapr.io/enabled')!r}")
    for k in ("dapr.io/app-id", "dapr.io/api-token-secret", "dapr.io/enable-api-logging", "dapr.io/config"):
        need(a.get(k), f"no {k}")
    need(a.get("dapr.io/enable-native-sidecar") == "true", "no dapr.io/enable-native-sidecar: \"true\"")
    need(not a.get("dapr.io/app-port"), "dapr.io/app-port set: nothing listens for the sidecar")


@check("k8s: dapr.io/api-token-secret names a Secret with key token, also given to postgres as DAPR_API_TOKEN")
def _():
    s = sts()
    name = pod(s)["metadata"]["annotations"]["dapr.io/api-token-secret"]
    secrets = k8s_find("Secret", name)
    need(secrets, f"no Secret {name}")
    keys = set((secrets[0].get("stringData") or {})) | set((secrets[0].get("data") or {}))
    need("token" in keys, f"Secret {name} has no key token")
    envs = {e["name"]: e for e in pg_container(s).get("env", [])}
    ref = ((envs.get("DAPR_API_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    need(ref.get("name") == name and ref.get("key") == "token",
         f"postgres DAPR_API_TOKEN secretKeyRef = {ref}")


@check("k8s: dapr.io/config names a Configuration in docker/k8s")
def _():
    name = pod(sts())["metadata"]["annotations"]["dapr.io/config"]
    need(k8s_find("Configuration", name), f"no Configuration {name}")


@check("k8s: the Configuration's spec is the compose sidecar's (components/config.yaml)")
def _():
    name = pod(sts())["metadata"]["annotations"]["dapr.io/config"]
    k = k8s_find("Configuration", name)
    need(k, f"no Configuration {name}")
    need(k[0].get("spec") == one("components/config.yaml").get("spec"), "specs differ")


@check("k8s: ConfigMap holds docker/postgresql.taskevents.conf verbatim")
def _():
    want = read("postgresql.taskevents.conf")
    found = [cm for cm in k8s_find("ConfigMap")
             if (cm.get("data") or {}).get("postgresql.taskevents.conf") is not None]
    need(found, "no ConfigMap with key postgresql.taskevents.conf")
    got = found[0]["data"]["postgresql.taskevents.conf"]
    if got != want:
        gl, wl = got.splitlines(), want.splitlines()
        n = next((i for i, (a, b) in enumerate(zip(gl, wl)) if a != b), min(len(gl), len(wl)))
        raise AssertionError(f"differs from line {n + 1}")


@check("k8s: the ConfigMap is mounted (no subPath) where the image includes the settings from")
def _():
    final = dockerfile_stages()[-1][2]
    dest = next((a.split()[-1] for i, a in final if i == "COPY" and "docker/postgresql.taskevents.conf" in a), None)
    need(dest, "the image does not install docker/postgresql.taskevents.conf")
    s = sts()
    cm = [cm["metadata"]["name"] for cm in k8s_find("ConfigMap")
          if "postgresql.taskevents.conf" in (cm.get("data") or {})][0]
    vols = {v["name"]: v for v in pod(s)["spec"].get("volumes", [])}
    mounts = [m for m in pg_container(s).get("volumeMounts", [])
              if (vols.get(m["name"]) or {}).get("configMap", {}).get("name") == cm]
    need(mounts, f"ConfigMap {cm} not mounted in postgres")
    m = mounts[0]
    need("subPath" not in m, "mounted with subPath: edits would never reach the pod")
    need(os.path.join(m["mountPath"], "postgresql.taskevents.conf") == dest,
         f"mounted at {m['mountPath']}, the image includes {dest}")


@check("k8s: postgres has a pg_isready readiness probe and a PVC template holding the PGDATA it sets")
def _():
    s = sts()
    c = pg_container(s)
    probe = " ".join(argv(((c.get("readinessProbe") or {}).get("exec") or {}).get("command")))
    need("pg_isready" in probe, "no pg_isready readinessProbe")
    tpl = [t["metadata"]["name"] for t in s["spec"].get("volumeClaimTemplates", [])]
    need(tpl, "no volumeClaimTemplates")
    mounted = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    need(tpl[0] in mounted, f"PVC {tpl[0]} not mounted")
    pgdata = {e["name"]: e.get("value") for e in c.get("env", [])}.get("PGDATA")
    need(pgdata, "PGDATA not set: the image's default differs between versions (18: /var/lib/postgresql/18/docker)")
    need(pgdata.startswith(mounted[tpl[0]]), f"PGDATA {pgdata} is not on the PVC ({mounted[tpl[0]]})")


@check("k8s: the StatefulSet's image and helm-values.yaml's tag are the Dockerfile's default PG_MAJOR")
def _():
    major = dockerfile_args().get("PG_MAJOR")
    image = pg_container(sts()).get("image", "")
    need(image.rsplit(":", 1)[-1] == major, f"StatefulSet image {image}, Dockerfile PG_MAJOR {major}")
    tag = str(one("k8s/helm-values.yaml")["postgres"]["image"]["tag"])
    need(tag == major, f"helm-values.yaml postgres.image.tag {tag}, Dockerfile PG_MAJOR {major}")


@check("k8s: Services select the pod, serviceName is a headless Service, one namespace")
def _():
    s = sts()
    labels = pod(s)["metadata"].get("labels") or {}
    need(s["spec"]["selector"]["matchLabels"].items() <= labels.items(), "selector does not match pod labels")
    svcs = k8s_find("Service")
    need(svcs, "no Service")
    for v in svcs:
        sel = v["spec"].get("selector") or {}
        need(sel and sel.items() <= labels.items(), f"Service {v['metadata']['name']} does not select the pod")
    head = [v for v in svcs if v["metadata"]["name"] == s["spec"].get("serviceName")]
    need(head and head[0]["spec"].get("clusterIP") == "None", "serviceName is not a headless Service")
    nss = {d["metadata"].get("namespace") for _, d in k8s_docs() if d.get("kind") != "Namespace"}
    need(len(nss) == 1, f"namespaces {nss}")


@check("k8s: component.yaml is pubsub-kafka (pubsub.kafka) and its scopes admit the app id")
def _():
    c = k8s_find("Component", conf_default("taskevents.pubsub"))
    need(c, f"no Component {conf_default('taskevents.pubsub')}")
    need(c[0]["spec"]["type"] == "pubsub.kafka", f"type {c[0]['spec']['type']}")
    app = pod(sts())["metadata"]["annotations"]["dapr.io/app-id"]
    scopes = c[0].get("scopes")
    need(scopes is None or app in scopes, f"scopes {scopes} exclude {app}")


@check("k8s/helm-values.yaml: the API's publisher is off and the pod annotations match the StatefulSet")
def _():
    v = one("k8s/helm-values.yaml")
    need(str(v["api"]["env"]["DAPR_ENABLED"]).lower() == "false",
         "api.env.DAPR_ENABLED is not \"false\": every event would be published twice")
    want = pod(sts())["metadata"]["annotations"]
    got = v["postgres"]["podAnnotations"]
    diff = {k for k in set(want) | set(got) if k.startswith("dapr.io/") and k not in
            ("dapr.io/sidecar-cpu-request", "dapr.io/sidecar-memory-request", "dapr.io/sidecar-memory-limit")
            and want.get(k) != got.get(k)}
    need(not diff, f"differ: {sorted(diff)}")


# --- postgres_exporter ------------------------------------------------------
USAGES = {"LABEL", "COUNTER", "GAUGE", "MAPPEDMETRIC", "DURATION", "DISCARD", "HISTOGRAM"}


@check("postgres_exporter.yaml: every query has query and metrics, each metric a column it returns")
def _():
    q = one("postgres_exporter.yaml")
    need(isinstance(q, dict) and q, "not a mapping of queries")
    for name, spec in q.items():
        need(re.fullmatch(r"[a-z_][a-z0-9_]*", name), f"{name}: not a metric namespace")
        need(isinstance(spec, dict) and "query" in spec and "metrics" in spec, f"{name}: needs query and metrics")
        sql = spec["query"]
        need(isinstance(sql, str) and re.match(r"\s*(SELECT|WITH)\b", sql, re.I), f"{name}: query is not a SELECT")
        need(sql.count("(") == sql.count(")"), f"{name}: unbalanced parentheses")
        need(";" not in sql.strip().rstrip(";"), f"{name}: more than one statement")
        for m in spec["metrics"]:
            need(isinstance(m, dict) and len(m) == 1, f"{name}: metric entry {m!r}")
            (col, opts), = m.items()
            need((opts or {}).get("usage") in USAGES, f"{name}.{col}: usage {(opts or {}).get('usage')!r}")
            need((opts or {}).get("description"), f"{name}.{col}: no description")
            need(re.search(r"\bAS\s+%s\b" % re.escape(col), sql, re.I) or re.search(r"\b%s\b" % re.escape(col), sql),
                 f"{name}.{col}: not returned by the query")


@check("postgres_exporter.yaml: exposes the status columns and documents the alerts")
def _():
    q = one("postgres_exporter.yaml")
    cols = {c for spec in q.values() for m in spec["metrics"] for c in m}
    for want in ("queue_depth", "published", "retried", "dead", "sidecar_reachable"):
        need(want in cols, f"no {want} metric")
    need(any(c.startswith("oldest_waiting_age") for c in cols), "no oldest_waiting_age metric")
    need(any("taskevents.status" in spec["query"] for spec in q.values()), "no query reads taskevents.status")
    text = read("postgres_exporter.yaml")
    need(re.search(r"oldest_waiting_age_seconds\s*>\s*60", text), "no alert on oldest waiting age > 60 s")
    need(re.search(r"dead\w*\s*>\s*0|increase\(taskevents_dead", text), "no alert on dead letters")


print("done")
