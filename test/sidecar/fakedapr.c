/*
 * fakedapr.c - a fake Dapr sidecar for the taskevents tests, demo and
 * benchmarks.  Single file, libc only, single-threaded epoll.
 *
 *   cc -O2 -Wall -Wextra -Werror -o fakedapr fakedapr.c
 *   fakedapr --port N [--control-port M] [--record FILE] [--times FILE]
 *            [--token TOKEN] [--pubsub NAME] [--max-body BYTES] [--bind ADDR]
 *
 * The reference is the real daprd with Apache Kafka: test/real/ runs the
 * product against them (lifecycle, broker outage, sidecar killed and frozen,
 * 403/401/404 refusals, records too large for Kafka).  This fake is kept only
 * for what reality cannot produce on demand: an exact error code or text at
 * the moment a test wants it, garbage answers (an HTML 500, bytes that are not
 * HTTP, a reset, a hang, a refused port), and a fast sink for the benchmarks.
 * It answers what taskevents sends, as daprd 1.18 answers it; it does not
 * check what taskevents never sends.
 *
 * Dapr port:
 *   POST /v1.0/publish/{pubsub}/{topic}       204, empty body
 *   POST /v1.0/publish/bulk/{pubsub}/{topic}  body: a JSON array of entries
 *        {"entryId":…,"event":…,…}; 204 when every entry is published
 *   GET  /v1.0/healthz/outbound               204 (or the healthz knob)
 *   Errors are daprd's JSON {"errorCode":…,"message":…}:
 *   - token configured and dapr-api-token missing or wrong (healthz exempt):
 *     401 text/plain "invalid api token\n"
 *   - another pubsub name: 404 ERR_PUBSUB_NOT_FOUND "pubsub <p> is not found"
 *   - a body over --max-body (default 4 MiB, daprd's): 500
 *     ERR_PUBSUB_PUBLISH_MESSAGE "error when publishing to topic <t> in
 *     pubsub <p>: stream too large"; bulk: 400 ERR_PUBSUB_EVENTS_SER "error
 *     when unmarshaling the request for topic <t> pubsub <p>: stream too large"
 *   - bulk body not a JSON array: 400 ERR_PUBSUB_EVENTS_SER
 *   - fail mode (below): the code asked for, with daprd's message for it;
 *     bulk: 500 {"failedEntries":[{"entryId":…,"error":…}],"errorCode":…}
 *     listing the targeted entries, except 403 ERR_PUBSUB_FORBIDDEN and
 *     ERR_PUBSUB_NOT_FOUND, which are about the whole request.
 *
 * Control port (HTTP/1.1 on --control-port, never affected by the modes):
 *   POST /mode   body: k=v pairs separated by '&' or newlines, values
 *                %XX-decoded; answers as /stats does, 400 on a bad key or
 *                value (and then changes nothing).
 *     mode=ok|fail|garbage|slow|hang|reset|down  resets the other keys
 *                      (healthz aside) to their defaults
 *     status=200..599  fail, garbage: the HTTP status (default 500)
 *     code=ERR_...     fail: the errorCode (default ERR_PUBSUB_PUBLISH_MESSAGE;
 *                      empty: an answer with no body)
 *     message=TEXT     fail: the message instead of daprd's; garbage: the body
 *     error=TEXT       fail: the broker's error inside daprd's message, and
 *                      each failed bulk entry's error
 *     count=N          only the next N targeted publish requests, then ok
 *                      (empty: unlimited)
 *     match=SUBSTR     only requests (bulk: entries) containing SUBSTR
 *     ms=MILLIS        slow: the delay (default 1000); fail, garbage: a delay
 *     raw=1            garbage: bytes that are not HTTP, then close
 *     healthz=STATUS   what /v1.0/healthz/outbound answers, in any mode
 *     nobulk=0|1       1: no bulk publish route (404 text/plain), as a daprd
 *                      before 1.17 or one whose API allowlist lacks publish;
 *                      kept across modes like healthz
 *   hang, reset, garbage and slow hit publish requests before the token
 *   check; fail only requests daprd would have published; down closes the
 *   Dapr port (connections refused) until another mode reopens it.
 *   GET /stats, POST /reset-stats: {"requests","published","failed","events",
 *   "connections","mode"}; requests counts publish requests, events the
 *   CloudEvents published.
 *
 * --record FILE: one JSON line per request on the Dapr port except healthz:
 *   n, t, method, path, query, content_type, token (null when absent),
 *   status (0 when no HTTP answer, with "action": hang|reset|raw), response
 *   (an error answer's JSON: bulk failedEntries), body (embedded when it is a
 *   JSON object or array, else a JSON string).
 * --times FILE: per CloudEvent of a 2xx answer, "<receive time> <its time>".
 * stdout line 1: "port=N control=M".  SIGTERM or SIGINT: exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX (64 * 1024)
#define BODY_CAP (64ULL << 20)     /* largest body read */
#define CTL_BODY_MAX (1 << 20)
#define OUT_HIWAT (256 * 1024)     /* stop answering while this much is unsent */
#define APP_ID "taskevents-db"     /* docker/compose.yaml's --app-id */
#define DEFAULT_ERROR "fakedapr: simulated failure"

static struct {
    const char *bind, *record, *times, *token, *pubsub;
    int port, ctl_port;
    unsigned long long max_body; /* 0: no limit */
} cfg = {"127.0.0.1", NULL, NULL, NULL, "pubsub-kafka", -1, 0, 4194304ULL};

/* ------------------------------------------------------------------ buffers */

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra)
        nc *= 2;
    if (!(b->p = realloc(b->p, nc))) {
        fputs("fakedapr: out of memory\n", stderr);
        exit(2);
    }
    b->cap = nc;
}

static void buf_add(buf_t *b, const void *s, size_t n)
{
    buf_reserve(b, n + 1);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0; /* always a C string too */
}

static void buf_adds(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    buf_reserve(b, 128);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    if (n > 0 && (size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n + 1);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
    }
    b->len += n > 0 ? (size_t)n : 0;
    va_end(ap2);
    va_end(ap);
}

/* ------------------------------------------------------------------ JSON */

/* length of the valid UTF-8 sequence at s, 0 if there is none */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] >= 0x90))
        return 0; /* overlong, surrogate, beyond U+10FFFF */
    return len;
}

/* s as a JSON string; bytes that are not UTF-8 become U+FFFD */
static void json_str(buf_t *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\')
            j++;
        buf_add(b, s + i, j - i);
        if ((i = j) >= n)
            break;
        size_t l = u[i] >= 0x80 ? utf8_len(u + i, n - i) : 0;
        if (l) {
            buf_add(b, s + i, l);
            i += l;
        } else if (u[i] >= 0x80) {
            buf_adds(b, "\\ufffd");
            i++;
        } else if (u[i] == '"' || u[i] == '\\') {
            char e[2] = {'\\', s[i++]};
            buf_add(b, e, 2);
        } else {
            buf_printf(b, "\\u%04x", u[i++]);
        }
    }
    buf_add(b, "\"", 1);
}

static void json_cstr(buf_t *b, const char *s) { json_str(b, s, strlen(s)); }

static const char *json_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* the end of the JSON string at p (at '"'), NULL if it is not one */
static const char *json_skip_str(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++p >= e)
                return NULL;
            if (*p == 'u') {
                for (int k = 0; k < 4; k++)
                    if (++p >= e || !strchr("0123456789abcdefABCDEF", *p) || !*p)
                        return NULL;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        } else if (c >= 0x80) {
            size_t l = utf8_len((const unsigned char *)p, (size_t)(e - p));
            if (!l)
                return NULL;
            p += l - 1;
        }
    }
    return NULL;
}

static const char *json_skip_digits(const char *p, const char *e)
{
    const char *s = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p == s ? NULL : p;
}

/* the end of the JSON value at p (whitespace first), NULL if it is not one */
static const char *json_skip(const char *p, const char *e, int depth)
{
    p = json_ws(p, e);
    if (p >= e || depth > 1000)
        return NULL;
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (p >= e || *p != '"' || !(p = json_skip_str(p, e)))
                    return NULL;
                p = json_ws(p, e);
                if (p >= e || *p++ != ':')
                    return NULL;
            }
            if (!(p = json_skip(p, e, depth + 1)))
                return NULL;
            p = json_ws(p, e);
            if (p < e && *p == ',')
                p = json_ws(p + 1, e);
            else if (p < e && *p == close)
                return p + 1;
            else
                return NULL;
        }
    }
    if (*p == '"')
        return json_skip_str(p, e);
    static const char *lit[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lit[k]);
        if ((size_t)(e - p) >= l && !memcmp(p, lit[k], l))
            return p + l;
    }
    if (*p == '-')
        p++;
    if (!(p = json_skip_digits(p, e)))
        return NULL;
    if (p < e && *p == '.' && !(p = json_skip_digits(p + 1, e)))
        return NULL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        p = json_skip_digits(p, e);
    }
    return p;
}

/* is s one JSON object or array (whitespace around it allowed)? */
static int json_container(const char *s, size_t n)
{
    const char *e = s + n, *p = json_ws(s, e);
    if (p >= e || (*p != '{' && *p != '['))
        return 0;
    p = json_skip(p, e, 0);
    return p && json_ws(p, e) == e;
}

/* ------------------------------------------------------------------ mode and stats */

enum { M_OK, M_FAIL, M_GARBAGE, M_SLOW, M_HANG, M_RESET, M_DOWN };
static const char *mode_names[] = {"ok", "fail", "garbage", "slow", "hang", "reset", "down"};

typedef struct {
    int mode, status, ms, raw, healthz;
    long count; /* -1: unlimited */
    char code[128], message[4096], error[4096], match[4096];
    int nobulk;
} mode_t_;

static mode_t_ md;
static int g_mode_spent; /* count ran out: back to ok once the answer is built */

/* the defaults of a mode (healthz kept) */
static void mode_reset(mode_t_ *m, int mode)
{
    int hz = m->healthz, nobulk = m->nobulk;
    memset(m, 0, sizeof *m);
    m->mode = mode;
    m->count = -1;
    m->healthz = hz;
    m->nobulk = nobulk;
    m->ms = mode == M_SLOW ? 1000 : 0;
    strcpy(m->code, "ERR_PUBSUB_PUBLISH_MESSAGE");
}

static void consume_count(void)
{
    if (md.count > 0 && --md.count == 0)
        g_mode_spent = 1;
}

/* does the mode hit a request (bulk: an entry) with this text? */
static int targeted(const char *s, size_t n)
{
    return !md.match[0] || memmem(s, n, md.match, strlen(md.match)) != NULL;
}

static struct {
    unsigned long long requests, published, failed, events, connections;
} st;

/* ------------------------------------------------------------------ the answer being built */

enum { A_RESPOND, A_HANG, A_RESET, A_RAW };

static struct {
    int status, action, delay_ms;
    const char *ctype;
    buf_t body;
} R;

static void answer_reset(void)
{
    R.status = 0;
    R.action = A_RESPOND;
    R.delay_ms = 0;
    R.ctype = NULL;
    R.body.len = 0;
}

static void answer_text(int status, const char *ctype, const char *text)
{
    R.status = status;
    R.ctype = ctype;
    R.body.len = 0;
    buf_adds(&R.body, text);
}

/* daprd's error answer: {"errorCode":…,"message":…} */
static void answer_error(int status, const char *code, const char *msg)
{
    R.status = status;
    R.ctype = "application/json";
    R.body.len = 0;
    buf_adds(&R.body, "{\"errorCode\":");
    json_cstr(&R.body, code);
    buf_adds(&R.body, ",\"message\":");
    json_cstr(&R.body, msg);
    buf_adds(&R.body, "}");
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 413: return "Request Entity Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* R as HTTP/1.1 */
static void serialize(buf_t *o, int close)
{
    if (R.status == 204 && !close) {
        buf_adds(o, "HTTP/1.1 204 No Content\r\n\r\n");
        return;
    }
    buf_printf(o, "HTTP/1.1 %d %s\r\n", R.status, reason(R.status));
    if (R.ctype)
        buf_printf(o, "Content-Type: %s\r\n", R.ctype);
    if (R.status != 204)
        buf_printf(o, "Content-Length: %zu\r\n", R.body.len);
    if (close)
        buf_adds(o, "Connection: close\r\n");
    buf_adds(o, "\r\n");
    if (R.status != 204)
        buf_add(o, R.body.p, R.body.len);
}

/* ------------------------------------------------------------------ connections */

enum { K_DAPR, K_CTL, K_LISTEN_DAPR, K_LISTEN_CTL, K_SIGNAL };
enum { S_READ, S_WAIT, S_HANG };

typedef struct {
    size_t m_off, m_len, p_off, p_len, q_off, q_len, ct_off, ct_len, tok_off, tok_len;
    int has_ct, has_tok, close;
    size_t head_len;
    unsigned long long clen;
} req_t;

typedef struct conn {
    int kind, fd, state, close_after, rd_eof;
    unsigned events;
    buf_t in, out, delayed;
    size_t out_off;
    uint64_t due;
    int have_head, delayed_close;
    req_t rq;
    struct conn *next, *prev;
} conn_t;

static int g_ep = -1;
static conn_t g_dapr_l = {.kind = K_LISTEN_DAPR, .fd = -1}, g_ctl_l = {.kind = K_LISTEN_CTL, .fd = -1},
              g_sig = {.kind = K_SIGNAL, .fd = -1};
static int g_dapr_port, g_ctl_port;
static conn_t *g_conns;   /* open client connections */
static conn_t *g_closed;  /* freed after each epoll batch */
static FILE *g_rec, *g_times;
static unsigned long long g_rec_n;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void conn_close(conn_t *c)
{
    if (c->fd < 0)
        return;
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = g_closed;
    g_closed = c;
}

static void free_closed(void)
{
    while (g_closed) {
        conn_t *c = g_closed;
        g_closed = c->next;
        free(c->in.p);
        free(c->out.p);
        free(c->delayed.p);
        free(c);
    }
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* %XX-decode s into out (cleared first); -1 on a bad escape */
static int unescape(const char *s, size_t n, buf_t *out)
{
    out->len = 0;
    buf_add(out, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            buf_add(out, s + i, 1);
            continue;
        }
        int h = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int l = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
        if (h < 0 || l < 0)
            return -1;
        char ch = (char)(h * 16 + l);
        buf_add(out, &ch, 1);
        i += 2;
    }
    return 0;
}

/* ------------------------------------------------------------------ recording */

static void rec_field(buf_t *b, const char *name, const char *s, size_t n, int has)
{
    buf_printf(b, ",\"%s\":", name);
    if (has)
        json_str(b, s, n);
    else
        buf_adds(b, "null");
}

/* --times: "<receive time> <the event's time>" per CloudEvent of the body */
static void record_times(const char *body, size_t blen)
{
    static const char key[] = "\"time\":\"";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const char *p = body, *end = body + blen;
    while ((p = memmem(p, (size_t)(end - p), key, sizeof key - 1))) {
        p += sizeof key - 1;
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            break;
        fprintf(g_times, "%lld.%06ld %.*s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000, (int)(q - p), p);
        p = q;
    }
}

/* the --record line of a request and its answer */
static void record(const conn_t *c, const char *body, size_t blen)
{
    static const char *actions[] = {NULL, "hang", "reset", "raw"};
    static buf_t b;
    const req_t *q = &c->rq;
    const char *in = c->in.p;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    b.len = 0;
    buf_printf(&b, "{\"n\":%llu,\"t\":%lld.%06ld", ++g_rec_n, (long long)ts.tv_sec, ts.tv_nsec / 1000);
    rec_field(&b, "method", in + q->m_off, q->m_len, 1);
    rec_field(&b, "path", in + q->p_off, q->p_len, 1);
    rec_field(&b, "query", in + q->q_off, q->q_len, 1);
    rec_field(&b, "content_type", in + q->ct_off, q->ct_len, q->has_ct);
    rec_field(&b, "token", in + q->tok_off, q->tok_len, q->has_tok);
    buf_printf(&b, ",\"status\":%d", R.action == A_RESPOND ? R.status : 0);
    if (actions[R.action])
        buf_printf(&b, ",\"action\":\"%s\"", actions[R.action]);
    if (R.action == A_RESPOND && (R.status < 200 || R.status > 299) && R.ctype &&
        !strcmp(R.ctype, "application/json")) {
        buf_adds(&b, ",\"response\":");
        buf_add(&b, R.body.p, R.body.len);
    }
    buf_adds(&b, ",\"body\":");
    if (json_container(body, blen)) {
        size_t o = b.len;
        buf_add(&b, body, blen);
        for (size_t i = o; i < b.len; i++)
            if (b.p[i] == '\n' || b.p[i] == '\r')
                b.p[i] = ' ';
    } else {
        json_str(&b, body, blen);
    }
    buf_adds(&b, "}\n");
    fwrite(b.p, 1, b.len, g_rec);
    fflush(g_rec);
    if (b.cap > (8u << 20)) { /* keep no huge buffer around */
        free(b.p);
        memset(&b, 0, sizeof b);
    }
}

/* ------------------------------------------------------------------ the Dapr port */

/* the answer of fail mode to a whole request: the code asked for, daprd's message */
static void fail_answer(const char *pubsub, const char *topic)
{
    static buf_t msg;
    int status = md.status ? md.status : 500;
    const char *code = md.code, *e = md.error[0] ? md.error : DEFAULT_ERROR;
    R.delay_ms = md.ms;
    if (!code[0]) {
        R.status = status; /* no body */
        return;
    }
    msg.len = 0;
    if (md.message[0])
        buf_adds(&msg, md.message);
    else if (!strcmp(code, "ERR_PUBSUB_PUBLISH_MESSAGE"))
        buf_printf(&msg, "error when publishing to topic %s in pubsub %s: %s", topic, pubsub, e);
    else if (!strcmp(code, "ERR_PUBSUB_FORBIDDEN"))
        buf_printf(&msg, "topic %s is not allowed for app id %s", topic, APP_ID);
    else if (!strcmp(code, "ERR_PUBSUB_NOT_FOUND"))
        buf_printf(&msg, "pubsub %s is not found", pubsub);
    else if (!strcmp(code, "ERR_PUBSUB_CLOUD_EVENTS_SER"))
        buf_adds(&msg, "cannot create cloudevent");
    else if (!strcmp(code, "ERR_TOPIC_NAME_EMPTY"))
        buf_printf(&msg, "topic is empty in pubsub %s", pubsub);
    else if (!strcmp(code, "ERR_PUBSUB_EMPTY"))
        buf_adds(&msg, "pubsub name is empty");
    else
        buf_adds(&msg, e);
    answer_error(status, code, msg.p);
}

typedef struct {
    size_t off, len, id_off, id_len; /* the entry, its entryId token (quotes included) */
    int failed;
} entry_t;

static entry_t *g_ents;
static size_t g_nents, g_ents_cap;

/* the entries of a bulk body into g_ents; -1 if it is not a JSON array */
static int bulk_entries(const char *s, size_t n)
{
    const char *e = s + n, *p = json_ws(s, e);
    g_nents = 0;
    if (p >= e || *p != '[')
        return -1;
    p = json_ws(p + 1, e);
    if (p < e && *p == ']')
        return json_ws(p + 1, e) == e ? 0 : -1;
    for (;;) {
        if (g_nents == g_ents_cap) {
            g_ents_cap = g_ents_cap ? 2 * g_ents_cap : 512;
            if (!(g_ents = realloc(g_ents, g_ents_cap * sizeof *g_ents)))
                exit(2);
        }
        entry_t *en = &g_ents[g_nents++];
        memset(en, 0, sizeof *en);
        en->off = (size_t)(p - s);
        if (p < e && *p == '{') {
            const char *k = json_ws(p + 1, e);
            while (k < e && *k == '"') {
                const char *ke = json_skip_str(k, e), *v = ke ? json_ws(ke, e) : NULL;
                if (!v || v >= e || *v != ':')
                    return -1;
                v = json_ws(v + 1, e);
                const char *ve = json_skip(v, e, 1);
                if (!ve)
                    return -1;
                if (ke - k == 9 && !memcmp(k, "\"entryId\"", 9) && *v == '"') {
                    en->id_off = (size_t)(v - s);
                    en->id_len = (size_t)(ve - v);
                }
                k = json_ws(ve, e);
                if (k < e && *k == ',')
                    k = json_ws(k + 1, e);
            }
        }
        if (!(p = json_skip(p, e, 0)))
            return -1;
        en->len = (size_t)(p - s) - en->off;
        p = json_ws(p, e);
        if (p < e && *p == ',') {
            p = json_ws(p + 1, e);
            continue;
        }
        if (p < e && *p == ']' && json_ws(p + 1, e) == e)
            return 0;
        return -1;
    }
}

static void publish_bulk(const char *pubsub, const char *topic, const char *body, size_t blen)
{
    static buf_t msg;
    msg.len = 0;
    if (bulk_entries(body, blen) < 0) {
        buf_printf(&msg, "error when unmarshaling the request for topic %s pubsub %s: "
                         "not a JSON array of entries", topic, pubsub);
        answer_error(400, "ERR_PUBSUB_EVENTS_SER", msg.p);
        return;
    }
    size_t nfail = 0;
    if (md.mode == M_FAIL)
        for (size_t i = 0; i < g_nents; i++)
            nfail += (size_t)(g_ents[i].failed = targeted(body + g_ents[i].off, g_ents[i].len));
    if (!nfail) {
        R.status = 204;
        st.events += g_nents;
        return;
    }
    consume_count();
    if (!md.code[0] || !strcmp(md.code, "ERR_PUBSUB_FORBIDDEN") || !strcmp(md.code, "ERR_PUBSUB_NOT_FOUND")) {
        fail_answer(pubsub, topic); /* about the whole request */
        return;
    }
    buf_t *b = &R.body;
    b->len = 0;
    buf_adds(b, "{\"failedEntries\":[");
    for (size_t i = 0, first = 1; i < g_nents; i++) {
        if (!g_ents[i].failed)
            continue;
        buf_adds(b, first ? "{\"entryId\":" : ",{\"entryId\":");
        first = 0;
        if (g_ents[i].id_len)
            buf_add(b, body + g_ents[i].id_off, g_ents[i].id_len);
        else
            buf_adds(b, "\"\"");
        buf_adds(b, ",\"error\":");
        json_cstr(b, md.error[0] ? md.error : DEFAULT_ERROR);
        buf_adds(b, "}");
    }
    buf_adds(b, "],\"errorCode\":");
    json_cstr(b, md.code);
    buf_adds(b, "}");
    R.status = md.status ? md.status : 500;
    R.ctype = "application/json";
    R.delay_ms = md.ms;
    st.events += g_nents - nfail;
}

static int span_eq(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && !memcmp(s, lit, n);
}

/* a request on the Dapr port, its body read in full: fill R */
static void handle_dapr(conn_t *c, const char *body, size_t blen)
{
    static buf_t pubsub, topic;
    const req_t *q = &c->rq;
    const char *in = c->in.p, *path = in + q->p_off;
    size_t plen = q->p_len;
    int post = span_eq(in + q->m_off, q->m_len, "POST");
    int get = span_eq(in + q->m_off, q->m_len, "GET");
    answer_reset();

    if (get && span_eq(path, plen, "/v1.0/healthz/outbound")) {
        if (md.healthz >= 200 && md.healthz < 300)
            R.status = md.healthz;
        else
            answer_error(md.healthz, "ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready");
        return;
    }

    /* POST /v1.0/publish/[bulk/]{pubsub}/{topic} */
    static const char pfx[] = "/v1.0/publish/";
    int is_pub = 0, bulk = 0;
    if (post && plen > sizeof pfx - 1 && !memcmp(path, pfx, sizeof pfx - 1)) {
        const char *r = path + sizeof pfx - 1, *end = path + plen;
        if (end - r > 5 && !memcmp(r, "bulk/", 5)) {
            bulk = 1;
            r += 5;
            if (md.nobulk)
                r = end; /* no such route */
        }
        const char *slash = memchr(r, '/', (size_t)(end - r));
        is_pub = slash && slash > r && slash + 1 < end &&
                 unescape(r, (size_t)(slash - r), &pubsub) == 0 &&
                 unescape(slash + 1, (size_t)(end - slash - 1), &topic) == 0;
    }

    int m = md.mode;
    if (is_pub && (m == M_HANG || m == M_RESET || m == M_GARBAGE) && targeted(body, blen)) {
        consume_count();
        if (m == M_HANG) {
            R.action = A_HANG;
        } else if (m == M_RESET) {
            R.action = A_RESET;
        } else if (md.raw) {
            R.action = A_RAW;
        } else {
            answer_text(md.status ? md.status : 500, "text/html; charset=utf-8",
                        md.message[0] ? md.message : "<html>oops</html>");
            R.delay_ms = md.ms;
        }
    } else if (cfg.token && !(q->has_tok && span_eq(in + q->tok_off, q->tok_len, cfg.token))) {
        answer_text(401, "text/plain; charset=utf-8", "invalid api token\n");
    } else if (!is_pub) {
        answer_text(404, "text/plain; charset=utf-8", "fakedapr: no such route\n");
    } else if (strcmp(pubsub.p, cfg.pubsub) != 0) {
        static buf_t msg;
        msg.len = 0;
        buf_printf(&msg, "pubsub %s is not found", pubsub.p);
        answer_error(404, "ERR_PUBSUB_NOT_FOUND", msg.p);
    } else if (cfg.max_body && blen > cfg.max_body) {
        static buf_t msg;
        msg.len = 0;
        if (bulk) {
            buf_printf(&msg, "error when unmarshaling the request for topic %s pubsub %s: stream too large",
                       topic.p, pubsub.p);
            answer_error(400, "ERR_PUBSUB_EVENTS_SER", msg.p);
        } else {
            buf_printf(&msg, "error when publishing to topic %s in pubsub %s: stream too large", topic.p,
                       pubsub.p);
            answer_error(500, "ERR_PUBSUB_PUBLISH_MESSAGE", msg.p);
        }
    } else if (bulk) {
        publish_bulk(pubsub.p, topic.p, body, blen);
    } else if (m == M_FAIL && targeted(body, blen)) {
        consume_count();
        fail_answer(pubsub.p, topic.p);
    } else {
        R.status = 204;
        st.events++;
    }

    if (is_pub && m == M_SLOW && R.action == A_RESPOND && targeted(body, blen)) {
        consume_count();
        R.delay_ms = md.ms;
    }
    if (is_pub) {
        st.requests++;
        if (R.action == A_RESPOND && R.status >= 200 && R.status < 300)
            st.published++;
        else
            st.failed++;
    }
    if (g_times && R.action == A_RESPOND && R.status >= 200 && R.status < 300)
        record_times(body, blen);
    if (g_rec)
        record(c, body, blen);
    if (g_mode_spent) {
        mode_reset(&md, M_OK);
        g_mode_spent = 0;
    }
}

/* ------------------------------------------------------------------ the control port */

static void fill_stats(void)
{
    R.status = 200;
    R.ctype = "application/json";
    R.body.len = 0;
    buf_printf(&R.body,
               "{\"requests\":%llu,\"published\":%llu,\"failed\":%llu,\"events\":%llu,"
               "\"connections\":%llu,\"mode\":\"%s\"}\n",
               st.requests, st.published, st.failed, st.events, st.connections, mode_names[md.mode]);
}

static int parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || errno || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

/* apply "k=v&k=v" (or one pair a line) to m; NULL, or what is wrong */
static const char *apply_params(const char *s, size_t n, mode_t_ *m)
{
    static buf_t key, val;
    static char err[200];
    for (size_t i = 0; i < n;) {
        size_t a = i;
        while (i < n && s[i] != '&' && s[i] != '\n')
            i++;
        size_t z = i++;
        while (z > a && (s[z - 1] == '\r' || s[z - 1] == ' '))
            z--;
        if (z == a)
            continue;
        const char *eq = memchr(s + a, '=', z - a);
        size_t kl = eq ? (size_t)(eq - (s + a)) : z - a;
        if (unescape(s + a, kl, &key) < 0 || unescape(eq ? eq + 1 : "", eq ? (size_t)(s + z - eq - 1) : 0, &val) < 0)
            return "bad %-escape";
        if (strlen(val.p) != val.len)
            return "a value holds NUL";
        const char *k = key.p, *v = val.p;
        long x = 0;
        char *field = NULL;
        if (!strcmp(k, "mode")) {
            int found = -1;
            for (int j = 0; j < 7; j++)
                if (!strcmp(v, mode_names[j]))
                    found = j;
            if (found < 0)
                return "unknown mode";
            mode_reset(m, found);
        } else if (!strcmp(k, "status") || !strcmp(k, "healthz")) {
            if (parse_long(v, 200, 599, &x))
                return "status and healthz must be 200..599";
            *(!strcmp(k, "status") ? &m->status : &m->healthz) = (int)x;
        } else if (!strcmp(k, "count")) {
            if (*v && parse_long(v, 1, LONG_MAX, &x))
                return "count must be >= 1, or empty for unlimited";
            m->count = *v ? x : -1;
        } else if (!strcmp(k, "ms")) {
            if (parse_long(v, 0, 86400000, &x))
                return "ms must be 0..86400000";
            m->ms = (int)x;
        } else if (!strcmp(k, "raw")) {
            if (parse_long(v, 0, 1, &x))
                return "raw must be 0 or 1";
            m->raw = (int)x;
        } else if (!strcmp(k, "code")) {
            field = m->code;
        } else if (!strcmp(k, "message")) {
            field = m->message;
        } else if (!strcmp(k, "error")) {
            field = m->error;
        } else if (!strcmp(k, "match")) {
            field = m->match;
        } else if (!strcmp(k, "nobulk")) {
            if (parse_long(v, 0, 1, &x))
                return "nobulk must be 0 or 1";
            m->nobulk = (int)x;
        } else {
            snprintf(err, sizeof err, "unknown key '%.40s'", k);
            return err;
        }
        if (field) {
            size_t size = field == m->code ? sizeof m->code : sizeof m->message;
            if (val.len >= size)
                return "value too long";
            memcpy(field, v, val.len + 1);
        }
    }
    return NULL;
}

static int open_dapr_listener(void);

static void handle_ctl(conn_t *c, const char *body, size_t blen)
{
    const req_t *q = &c->rq;
    const char *in = c->in.p, *path = in + q->p_off;
    int get = span_eq(in + q->m_off, q->m_len, "GET");
    int post = span_eq(in + q->m_off, q->m_len, "POST");
    answer_reset();
    if (get && span_eq(path, q->p_len, "/stats")) {
        fill_stats();
    } else if (post && span_eq(path, q->p_len, "/reset-stats")) {
        memset(&st, 0, sizeof st);
        fill_stats();
    } else if (post && span_eq(path, q->p_len, "/mode")) {
        mode_t_ nm = md;
        const char *err = apply_params(body, blen, &nm);
        if (err) {
            answer_error(400, "BAD_MODE", err);
            return;
        }
        md = nm;
        g_mode_spent = 0;
        if (md.mode == M_DOWN) {
            if (g_dapr_l.fd >= 0) {
                close(g_dapr_l.fd);
                g_dapr_l.fd = -1;
            }
            for (conn_t *d = g_conns, *nx; d; d = nx) {
                nx = d->next;
                if (d->kind == K_DAPR)
                    conn_close(d);
            }
        } else if (g_dapr_l.fd < 0 && open_dapr_listener() < 0) {
            answer_error(500, "REOPEN", strerror(errno));
            return;
        }
        fill_stats();
    } else {
        answer_text(404, "text/plain", "try GET /stats, POST /mode, POST /reset-stats\n");
    }
}

/* ------------------------------------------------------------------ HTTP */

/* a request that cannot be read: answer and close */
static void bad_request(conn_t *c, int status, const char *why)
{
    answer_text(status, "text/plain", why);
    serialize(&c->out, 1);
    c->close_after = 1;
    c->in.len = 0;
}

static int ci_eq(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && !strncasecmp(s, lit, n);
}

/* parse the head of the request in c->in: 1 parsed, 0 need more, -1 refused */
static int parse_head(conn_t *c)
{
    char *p = c->in.p;
    size_t n = c->in.len;
    char *end = n >= 4 && p ? memmem(p, n, "\r\n\r\n", 4) : NULL;
    if (!end) {
        if (n > HEAD_MAX)
            bad_request(c, 400, "fakedapr: header too long\n");
        return n > HEAD_MAX ? -1 : 0;
    }
    req_t *q = &c->rq;
    memset(q, 0, sizeof *q);
    q->head_len = (size_t)(end - p) + 4;
    char *le = memmem(p, q->head_len, "\r\n", 2);
    char *sp1 = memchr(p, ' ', (size_t)(le - p));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1)) : NULL;
    if (!sp2 || sp1 == p || sp1[1] != '/' || !(le - sp2 == 9 && !memcmp(sp2 + 1, "HTTP/1.", 7))) {
        bad_request(c, 400, "fakedapr: bad request line\n");
        return -1;
    }
    q->close = sp2[8] == '0';
    q->m_len = (size_t)(sp1 - p);
    q->p_off = (size_t)(sp1 + 1 - p);
    char *qm = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    q->p_len = (size_t)((qm ? qm : sp2) - (sp1 + 1));
    if (qm) {
        q->q_off = (size_t)(qm + 1 - p);
        q->q_len = (size_t)(sp2 - qm - 1);
    }
    for (char *h = le + 2; h < end + 2;) {
        char *he = memmem(h, (size_t)(end + 2 - h), "\r\n", 2);
        char *colon = memchr(h, ':', (size_t)(he - h));
        if (!colon) {
            bad_request(c, 400, "fakedapr: bad header\n");
            return -1;
        }
        char *v = colon + 1, *ve = he;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nl = (size_t)(colon - h), vl = (size_t)(ve - v);
        if (ci_eq(h, nl, "content-length")) {
            char *e2;
            errno = 0;
            q->clen = strtoull(v, &e2, 10);
            if (vl == 0 || vl > 18 || e2 != ve || *v == '-' || *v == '+') {
                bad_request(c, 400, "fakedapr: bad Content-Length\n");
                return -1;
            }
        } else if (ci_eq(h, nl, "transfer-encoding")) {
            bad_request(c, 400, "fakedapr: only Content-Length bodies\n");
            return -1;
        } else if (ci_eq(h, nl, "content-type") && !q->has_ct) {
            q->has_ct = 1;
            q->ct_off = (size_t)(v - p);
            q->ct_len = vl;
        } else if (ci_eq(h, nl, "dapr-api-token") && !q->has_tok) {
            q->has_tok = 1;
            q->tok_off = (size_t)(v - p);
            q->tok_len = vl;
        } else if (ci_eq(h, nl, "connection") && memmem(v, vl, "close", 5)) {
            q->close = 1;
        }
        h = he + 2;
    }
    unsigned long long cap = c->kind == K_CTL ? CTL_BODY_MAX
                           : cfg.max_body >= BODY_CAP ? cfg.max_body + 1 : BODY_CAP;
    if (q->clen > cap) {
        bad_request(c, 413, "fakedapr: body too large to read\n");
        return -1;
    }
    if (q->head_len + q->clen + 1 > c->in.len)
        buf_reserve(&c->in, q->head_len + q->clen + 1 - c->in.len);
    return 1;
}

static void conn_consume(conn_t *c, size_t n)
{
    memmove(c->in.p, c->in.p + n, c->in.len - n);
    c->in.len -= n;
    c->have_head = 0;
}

/* answer one request if it is all in: 1 done, 0 need more, -1 closed */
static int conn_step(conn_t *c)
{
    if (!c->have_head) {
        int r = parse_head(c);
        if (r <= 0)
            return r < 0 ? 1 : 0;
        c->have_head = 1;
    }
    req_t *q = &c->rq;
    size_t total = q->head_len + (size_t)q->clen;
    if (c->in.len < total)
        return 0;
    if (c->kind == K_CTL)
        handle_ctl(c, c->in.p + q->head_len, (size_t)q->clen);
    else
        handle_dapr(c, c->in.p + q->head_len, (size_t)q->clen);
    switch (R.action) {
    case A_RESET: {
        struct linger l = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        conn_close(c);
        return -1;
    }
    case A_HANG:
        c->state = S_HANG;
        c->in.len = 0;
        return 0;
    case A_RAW:
        buf_adds(&c->out, "\x16\x03\x01\x00\x05 fakedapr: this is not HTTP \x00\xff\r\n");
        c->close_after = 1;
        c->in.len = 0;
        return 1;
    }
    conn_consume(c, total);
    if (R.delay_ms > 0) {
        c->delayed.len = 0;
        serialize(&c->delayed, q->close);
        c->delayed_close = q->close;
        c->due = now_ms() + (uint64_t)R.delay_ms;
        c->state = S_WAIT;
        return 1;
    }
    serialize(&c->out, q->close);
    c->close_after = q->close;
    return 1;
}

/* send what is pending: 1 all sent, 0 would block, -1 error */
static int conn_flush(conn_t *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0)
            c->out_off += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else
            return w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    c->out.len = c->out_off = 0;
    return 1;
}

static void conn_watch(conn_t *c)
{
    unsigned want = c->out.len > c->out_off ? EPOLLOUT
                  : c->state == S_WAIT || (c->rd_eof && c->state != S_HANG) ? 0 : EPOLLIN;
    if (want != c->events) {
        struct epoll_event ev = {.events = want, .data.ptr = c};
        epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->events = want;
    }
}

/* answer what has arrived, send, and close when done */
static void conn_run(conn_t *c)
{
    for (;;) {
        int progressed = 0, r = 0;
        while (c->state == S_READ && !c->close_after && c->out.len - c->out_off < OUT_HIWAT &&
               (r = conn_step(c)) != 0) {
            if (r < 0)
                return;
            progressed = 1;
        }
        int f = conn_flush(c);
        if (f < 0) {
            conn_close(c);
            return;
        }
        if (f == 0 || !progressed)
            break;
    }
    if (c->out_off == c->out.len && (c->close_after || (c->rd_eof && c->state == S_READ))) {
        conn_close(c);
        return;
    }
    conn_watch(c);
}

static int conn_read(conn_t *c)
{
    static char sink[65536];
    for (int k = 0; k < 16; k++) {
        ssize_t r;
        size_t room = sizeof sink;
        if (c->state == S_HANG) {
            r = recv(c->fd, sink, room, 0);
        } else {
            buf_reserve(&c->in, 16384);
            room = c->in.cap - c->in.len - 1;
            if ((r = recv(c->fd, c->in.p + c->in.len, room, 0)) > 0)
                c->in.len += (size_t)r;
        }
        if (r == 0)
            c->rd_eof = 1;
        if (r == 0 || (r > 0 && (size_t)r < room) || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
            break; /* all read for now */
        if (r < 0 && errno != EINTR) {
            conn_close(c);
            return -1;
        }
    }
    return 0;
}

static void conn_event(conn_t *c, uint32_t ev)
{
    if ((ev & EPOLLERR) || ((ev & EPOLLHUP) && c->state == S_WAIT)) {
        conn_close(c);
        return;
    }
    if ((ev & (EPOLLIN | EPOLLHUP)) && conn_read(c) < 0)
        return;
    if (c->state == S_HANG) {
        if (c->rd_eof)
            conn_close(c);
        return;
    }
    conn_run(c);
}

static void accept_all(int lfd, int kind)
{
    int fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        if (!c)
            exit(2);
        c->kind = kind;
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = g_conns;
        if (g_conns)
            g_conns->prev = c;
        g_conns = c;
        if (kind == K_DAPR)
            st.connections++;
    }
}

/* answer delayed requests that are due; the epoll timeout until the next */
static int run_timers(void)
{
    uint64_t now = now_ms(), next = UINT64_MAX;
    for (conn_t *c = g_conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->state != S_WAIT)
            continue;
        if (c->due > now) {
            next = c->due < next ? c->due : next;
            continue;
        }
        buf_add(&c->out, c->delayed.p, c->delayed.len);
        c->close_after = c->delayed_close;
        c->state = S_READ;
        conn_run(c);
    }
    return next == UINT64_MAX ? -1 : (int)(next - now);
}

/* ------------------------------------------------------------------ listeners, main */

static int listen_on(int port, int *actual)
{
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int v4 = inet_pton(AF_INET, cfg.bind, &s4.sin_addr) == 1;
    if (!v4 && inet_pton(AF_INET6, cfg.bind, &s6.sin6_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    struct sockaddr *sa = v4 ? (struct sockaddr *)&s4 : (struct sockaddr *)&s6;
    socklen_t sl = v4 ? sizeof s4 : sizeof s6;
    int one = 1, fd = socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, sa, sl) < 0 || listen(fd, 4096) < 0 || getsockname(fd, sa, &sl) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *actual = ntohs(v4 ? s4.sin_port : s6.sin6_port);
    return fd;
}

static void watch(conn_t *l)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, l->fd, &ev);
}

static int open_dapr_listener(void)
{
    if ((g_dapr_l.fd = listen_on(g_dapr_port, &g_dapr_port)) < 0)
        return -1;
    watch(&g_dapr_l);
    return 0;
}

static const char usage[] =
    "usage: fakedapr --port N [--control-port M] [--record FILE] [--times FILE]\n"
    "                [--token TOKEN] [--pubsub NAME] [--max-body BYTES] [--bind ADDR]\n"
    "  port 0 picks a free port; stdout line 1 is 'port=N control=M'.\n"
    "  --max-body 0: no limit.  See the head of fakedapr.c for the control port.\n";

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "fakedapr: %s needs a value\n%s", a, usage);
            return 2;
        }
        i++;
        if (!strcmp(a, "--port") || !strcmp(a, "--control-port") || !strcmp(a, "--max-body")) {
            if (parse_long(v, 0, !strcmp(a, "--max-body") ? LONG_MAX : 65535, &x)) {
                fprintf(stderr, "fakedapr: bad value for %s: %s\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--port"))
                cfg.port = (int)x;
            else if (!strcmp(a, "--control-port"))
                cfg.ctl_port = (int)x;
            else
                cfg.max_body = (unsigned long long)x;
        } else if (!strcmp(a, "--record")) {
            cfg.record = v;
        } else if (!strcmp(a, "--times")) {
            cfg.times = v;
        } else if (!strcmp(a, "--token")) {
            cfg.token = *v ? v : NULL; /* daprd: an empty token is no token */
        } else if (!strcmp(a, "--pubsub")) {
            cfg.pubsub = v;
        } else if (!strcmp(a, "--bind")) {
            cfg.bind = v;
        } else {
            fprintf(stderr, "fakedapr: unknown option %s\n%s", a, usage);
            return 2;
        }
    }
    if (cfg.port < 0) {
        fprintf(stderr, "fakedapr: --port is required\n%s", usage);
        return 2;
    }
    mode_reset(&md, M_OK);
    md.healthz = 204;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *files[] = {cfg.record, cfg.times};
    FILE **fps[] = {&g_rec, &g_times};
    for (int i = 0; i < 2; i++)
        if (files[i] && !(*fps[i] = fopen(files[i], "a"))) {
            fprintf(stderr, "fakedapr: cannot open %s: %s\n", files[i], strerror(errno));
            return 1;
        }
    if ((g_ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        perror("fakedapr: epoll_create1");
        return 1;
    }
    g_dapr_port = cfg.port;
    if (open_dapr_listener() < 0 || (g_ctl_l.fd = listen_on(cfg.ctl_port, &g_ctl_port)) < 0) {
        fprintf(stderr, "fakedapr: cannot listen on %s: %s\n", cfg.bind, strerror(errno));
        return 1;
    }
    watch(&g_ctl_l);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    if ((g_sig.fd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC)) >= 0)
        watch(&g_sig);

    printf("port=%d control=%d\n", g_dapr_port, g_ctl_port);
    fflush(stdout);

    struct epoll_event evs[256];
    for (int timeout = -1;; timeout = run_timers()) {
        int n = epoll_wait(g_ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR) {
            perror("fakedapr: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue; /* closed earlier in this batch */
            if (c->kind == K_SIGNAL) {
                if (g_rec)
                    fflush(g_rec);
                if (g_times)
                    fflush(g_times);
                return 0;
            }
            if (c->kind == K_LISTEN_DAPR || c->kind == K_LISTEN_CTL)
                accept_all(c->fd, c->kind == K_LISTEN_DAPR ? K_DAPR : K_CTL);
            else
                conn_event(c, evs[i].events);
        }
        free_closed();
    }
}
