/*
 * fakedapr.c - a fake Dapr sidecar (HTTP pub/sub API only) for the taskevents
 * tests, demo and benchmarks.  Single file, libc only, single-threaded epoll.
 *
 *   cc -O2 -Wall -Wextra -Werror -o fakedapr fakedapr.c
 *   fakedapr --port N [--control-port M] [--record FILE] [--times FILE] [--token TOKEN]
 *            [--pubsub NAME] [--max-body BYTES] [--print] [--app-id ID]
 *            [--bind ADDR]
 *
 * ===========================================================================
 * What daprd answers (read from Dapr's own source; nothing copied from it)
 * ---------------------------------------------------------------------------
 * Sources: github.com/dapr/dapr @ d8450742 (v1.18.0-rc.1+215, 2026-08-21),
 *          github.com/dapr/kit  @ 6e5616aa,
 *          github.com/dapr/components-contrib (contenttype/, pubsub/envelope.go,
 *          metadata/utils.go).
 *
 * Routes (pkg/api/http/http.go constructPubSubEndpoints, server.go):
 *   POST|PUT /v1.0/publish/{pubsubname}/<topic...>       -> onPublish
 *   POST|PUT /v1.0/publish/bulk/{pubsubname}/<topic...>  -> onBulkPublish
 *   POST|PUT /v1.0-alpha1/publish/bulk/{pubsubname}/<topic...> (same handler)
 *   GET /v1.0/healthz, GET /v1.0/healthz/outbound     (healthz.go)
 *   The router first cleans the path (path.Clean; CleanPathMiddleware and
 *   StripSlashesMiddleware in middlewares.go).  The topic is the rest of the
 *   path (may contain '/'), unescaped with url.QueryUnescape (server.go
 *   unescapeRequestParametersHandler).  Anything else (unknown path, wrong
 *   method) falls to the service-invocation fallback (directmessaging.go,
 *   IsFallback), which without a dapr-app-id header answers
 *   404 {"errorCode":"ERR_DIRECT_INVOKE","message":"failed getting app id
 *   either from the URL path or the header dapr-app-id"}
 *   (pkg/messages/predefined.go ErrDirectInvokeNoAppID).
 *
 * Success: 204 No Content, empty body (responses.go respondWithEmpty) for
 *   both publish and bulk publish (bulk: when every entry succeeded).
 *
 * Error bodies: Content-Type application/json, built by dapr/kit
 *   errors/errors.go JSONErrorValue:
 *   {"errorCode":"<legacy tag>","message":"<msg>","details":[
 *     {"@type":"type.googleapis.com/google.rpc.ResourceInfo","description":
 *      "<msg>","owner":"","resource_name":"<pubsub>","resource_type":"pubsub"},
 *     {"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"dapr.io",
 *      "metadata":{...},"reason":"DAPR_PUBSUB_..."}]}
 *   (ResourceInfo omitted for NotFound/NotConfigured.)  Codes and texts, from
 *   pkg/api/errors/pubsub.go + pkg/messages/errorcodes/errorcodes.go:
 *   - pubsub name unknown:      404 ERR_PUBSUB_NOT_FOUND  "pubsub <p> is not found"
 *                               (reason DAPR_PUBSUB_NOT_FOUND, metadata = the
 *                               request's metadata.* query params)
 *   - runtime NotFoundError:    400 ERR_PUBSUB_NOT_FOUND  "pubsub '<p>' not found"
 *                               (TestNotFound, reason DAPR_PUBSUB_TEST_NOT_FOUND)
 *   - broker error:             500 ERR_PUBSUB_PUBLISH_MESSAGE
 *                               "error when publishing to topic <t> in pubsub <p>: <err>"
 *   - topic not allowed:        403 ERR_PUBSUB_FORBIDDEN
 *                               "topic <t> is not allowed for app id <app>"
 *   - no pubsub configured:     400 ERR_PUBSUB_NOT_CONFIGURED "pubsub <p> is not configured"
 *   - ERR_PUBSUB_EMPTY (404 "pubsub name is empty") and ERR_TOPIC_NAME_EMPTY
 *     (404 "topic is empty in pubsub <p>") exist in validateAndGetPubsubAndTopic
 *     but cannot be reached over HTTP: /v1.0/publish/<p>/ and /v1.0/publish/<p>
 *     are cleaned to a path no route matches, so daprd answers the 404
 *     ERR_DIRECT_INVOKE fallback above (pkg/api/http/http_test.go "Publish
 *     without topic name - 404").  This fake does the same; use fail mode
 *     with code=ERR_TOPIC_NAME_EMPTY to simulate the gRPC-style answer.
 *   - Content-Type application/cloudevents+json and body not a JSON object:
 *                               500 ERR_PUBSUB_CLOUD_EVENTS_SER "cannot create cloudevent"
 *     (runtime/pubsub/cloudevents.go -> contrib pubsub.FromCloudEvent).  A body
 *     of JSON null makes daprd panic on a nil map: connection closed, no answer.
 *   - metadata.rawPayload not a Go bool: 400 ERR_PUBSUB_REQUEST_METADATA
 *     "failed deserializing metadata. Error: rawPayload value must be a valid
 *     boolean: actual is '<v>'"
 *
 * API token (pkg/api/http/middlewares.go APITokenAuthMiddleware): when a token
 *   is configured, header dapr-api-token must equal it, else
 *   http.Error(w, "invalid api token", 401): Content-Type "text/plain;
 *   charset=utf-8", X-Content-Type-Options: nosniff, body "invalid api token\n"
 *   (not JSON).  Only GET /v1.0/healthz and GET /v1.0/healthz/outbound are
 *   exempt (isRouteExcludedFromAPITokenAuth); every other path, unknown ones
 *   included, is checked first.
 *
 * Max body (server.go useMaxBodySize, middlewares.go MaxBodySizeMiddleware,
 *   kit streams/limitreadcloser.go): default 4<<20 = 4194304 bytes
 *   (runtime/config.go DefaultMaxRequestBodySize, flag --max-body-size 4Mi).
 *   Content-Length is not looked at; reading past the limit fails with
 *   "stream too large" (exactly the limit is fine), so checks done before the
 *   body is read (token, route, pubsub name) win.  Single publish:
 *   500 ERR_PUBSUB_PUBLISH_MESSAGE "error when publishing to topic <t> in
 *   pubsub <p>: stream too large".  Bulk: 400 ERR_PUBSUB_EVENTS_SER "error when
 *   unmarshaling the request for topic <t> pubsub <p>: stream too large".  Go's
 *   net/http then sends Connection: close when >= 256 KiB stays unread (or the
 *   request used Expect: 100-continue).  Header block limit: MaxHeaderBytes =
 *   --read-buffer-size (DefaultReadBufferSize 4 KiB) + 4096 net/http slack
 *   -> "431 Request Header Fields Too Large".
 *
 * Healthz (healthz.go): GET /v1.0/healthz/outbound -> 204 when ready, else 500
 *   {"errorCode":"ERR_OUTBOUND_HEALTH_NOT_READY","message":"dapr outbound is
 *   not ready"}; GET /v1.0/healthz -> 204 / 500 ERR_HEALTH_NOT_READY.
 *
 * Bulk publish (http.go onBulkPublish, responses.go BulkPublishResponse):
 *   request body: JSON array of {"entryId","event","contentType","metadata"}
 *   (encoding/json: field names matched case-insensitively).  Checks in order:
 *   - metadata.rawPayload bad            -> 400 ERR_PUBSUB_REQUEST_METADATA
 *   - body not decodable as that array   -> 400 ERR_PUBSUB_EVENTS_SER "error when
 *     unmarshaling the request for topic <t> pubsub <p>: <json error>"
 *   - event does not fit contentType      -> 400 ERR_PUBSUB_EVENTS_SER "error when
 *     marshalling cloud event envelope for topic <t> pubsub <p>: error:
 *     mismatch between contentType and event" (util.go ConvertEventToBytes:
 *     octet-stream needs a base64 string, text/<any> and application/xml a string,
 *     application/json and application/cloudevents+json anything)
 *   - entryId missing or duplicated      -> 400 ERR_PUBSUB_EVENTS_SER "error
 *     marshaling events to bytes for topic <t> pubsub <p>. error: entryId is
 *     duplicated or not present for entry"
 *   - cloudevents entry not an object    -> 500 ERR_PUBSUB_CLOUD_EVENTS_SER
 *   - all published                      -> 204, empty body
 *   - publish failure -> status 500, Content-Type application/json, body
 *     {"failedEntries":[{"entryId":"<id>","error":"<err>"},...],
 *      "errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}, plus headers
 *     metadata.responseData (same JSON) and metadata.error ("api error: code =
 *     Internal desc = error when publishing to topic <t> in pubsub <p>: <err>").
 *     Forbidden (403 ERR_PUBSUB_FORBIDDEN) and runtime not-found (400
 *     ERR_PUBSUB_NOT_FOUND) come back as plain errors without failedEntries.
 *   Go's json.Marshal HTML-escapes <, >, & as \u003c \u003e \u0026; so does
 *   this fake.  Texts of Go JSON decoder errors are approximated.
 * ===========================================================================
 *
 * Control port (plain HTTP/1.1 on --control-port, same event loop, never
 * affected by the modes):
 *   POST /mode   k=v pairs (body and/or query), separated by '&' or newlines,
 *                values %XX-decoded:
 *                mode=ok|fail|garbage|slow|hang|reset|down  (resets the knobs
 *                below, except healthz, to their defaults)
 *                status=200..599  fail: default = daprd's status for `code`;
 *                                 garbage: default 500
 *                code=ERR_...     fail: default ERR_PUBSUB_PUBLISH_MESSAGE;
 *                                 status=401 without code = daprd's token reply
 *                message=TEXT     replaces the message text (garbage: the body)
 *                error=TEXT       the broker error inside daprd's message
 *                                 (default "fakedapr: simulated failure")
 *                count=N          only the next N targeted publish requests,
 *                                 then back to ok (empty = unlimited)
 *                match=SUBSTR     only requests (bulk: entries) whose body
 *                                 contains SUBSTR are targeted
 *                ms=MILLIS        slow: delay (default 1000); fail/garbage:
 *                                 optional delay before the answer
 *                raw=1            garbage: write non-HTTP bytes and close
 *                healthz=STATUS   what /v1.0/healthz[/outbound] answer (any mode)
 *                Answers 200 with the resulting mode as JSON, 400 on a bad key
 *                or value, 500 when the Dapr port cannot be reopened.
 *   GET /mode, GET /stats, POST /reset-stats, GET /healthz.
 * Modes hang/reset/garbage/slow hit every request to a publish route (after
 * it is read in full); fail only hits requests daprd would have accepted.
 * Record file: one JSON line per request on the Dapr port except healthz,
 * written when the answer is decided: n, t, method, path, query,
 * content_type, token, status (0 when no HTTP answer is given, with "action":
 * hang|reset|raw|drop), body (embedded JSON if the body is a UTF-8 JSON
 * object/array, else a JSON string; non-UTF-8 bodies: body null plus
 * body_base64; bodies never read: null plus body_bytes).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#define HEAD_LIMIT 8192                 /* Go: MaxHeaderBytes 4096 + 4096 */
#define OUT_HIWAT (256 * 1024)          /* stop parsing while this much is unsent */
#define GO_POST_HANDLER_READ (256 * 1024) /* net/http maxPostHandlerReadBytes */
#define CTL_BODY_MAX (1 << 20)
#define LINGER_MS 2000
#define MAX_META 64
#define JSON_MAX_DEPTH 10000
#define DEFAULT_ERR_TEXT "fakedapr: simulated failure"

/* ------------------------------------------------------------------ config */

static struct {
    const char *bind;
    int port, ctl_port;
    const char *record;
    const char *times;
    const char *token;
    size_t token_len;
    const char *pubsub;
    const char *app_id;
    unsigned long long max_body;  /* 0 = unlimited */
    unsigned long long hard_cap;  /* largest body we buffer */
    int print;
} cfg = {"127.0.0.1", -1, 0, NULL, NULL, NULL, 0, "pubsub-kafka", "taskevents",
         4194304ULL, 0, 0};

/* ------------------------------------------------------------------ buffers */

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void die_oom(void)
{
    fputs("fakedapr: out of memory\n", stderr);
    exit(2);
}

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra) {
        if (nc > SIZE_MAX / 2)
            die_oom();
        nc *= 2;
    }
    char *np = realloc(b->p, nc);
    if (!np)
        die_oom();
    b->p = np;
    b->cap = nc;
}

static void buf_add(buf_t *b, const void *s, size_t n)
{
    if (!n)
        return;
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_adds(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_addc(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->p[b->len++] = c;
}

static void buf_vprintf(buf_t *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (n >= 0 && (size_t)n < sizeof tmp) {
        buf_add(b, tmp, (size_t)n);
    } else if (n >= 0) {
        buf_reserve(b, (size_t)n + 1);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

static void buf_printf(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------ time */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char g_date[64];
static time_t g_date_t = (time_t)-1;
static char g_resp204[160];
static size_t g_resp204_len;

static const char *http_date(void)
{
    time_t t = time(NULL);
    if (t != g_date_t) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(g_date, sizeof g_date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        g_date_t = t;
        g_resp204_len = (size_t)snprintf(g_resp204, sizeof g_resp204,
                                         "HTTP/1.1 204 No Content\r\nDate: %s\r\n\r\n", g_date);
    }
    return g_date;
}

/* ------------------------------------------------------------------ UTF-8 / JSON output */

static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        uint32_t v = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))
            return 0;
        *cp = v;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        uint32_t v = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
                     (s[3] & 0x3Fu);
        if (v < 0x10000 || v > 0x10FFFF)
            return 0;
        *cp = v;
        return 4;
    }
    return 0;
}

static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = utf8_seq(u + i, n - i, &cp);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

/* JSON string as Go's encoding/json writes it (HTML-safe, U+2028/9 escaped,
 * invalid UTF-8 replaced by U+FFFD) */
static void json_str(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    buf_reserve(b, n + 2);
    buf_addc(b, '"');
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\' &&
               u[j] != '<' && u[j] != '>' && u[j] != '&')
            j++;
        if (j > i) {
            buf_add(b, s + i, j - i);
            i = j;
            continue;
        }
        unsigned c = u[i];
        if (c < 0x80) {
            switch (c) {
            case '"': buf_add(b, "\\\"", 2); break;
            case '\\': buf_add(b, "\\\\", 2); break;
            case '\n': buf_add(b, "\\n", 2); break;
            case '\r': buf_add(b, "\\r", 2); break;
            case '\t': buf_add(b, "\\t", 2); break;
            default: {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_add(b, e, 6);
            }
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = utf8_seq(u + i, n - i, &cp);
        if (!l) {
            buf_add(b, "\\ufffd", 6);
            i++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            buf_add(b, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
            i += l;
        } else {
            buf_add(b, s + i, l);
            i += l;
        }
    }
    buf_addc(b, '"');
}

static void json_cstr(buf_t *b, const char *s) { json_str(b, s, strlen(s)); }

/* ------------------------------------------------------------------ JSON parsing */

typedef struct {
    const char *s;
    size_t n, pos;
    int depth;
    char err[200];
} jp_t;

static void quote_char(char *o, size_t on, unsigned char c)
{
    if (c == '\'') {
        snprintf(o, on, "'\\''");
    } else if (c == '"') {
        snprintf(o, on, "'\"'");
    } else if (c >= 0x20 && c < 0x7f) {
        snprintf(o, on, "'%c'", c);
    } else if (c == '\n') {
        snprintf(o, on, "'\\n'");
    } else if (c == '\r') {
        snprintf(o, on, "'\\r'");
    } else if (c == '\t') {
        snprintf(o, on, "'\\t'");
    } else if (c < 0x20 || c == 0x7f) {
        snprintf(o, on, "'\\x%02x'", c);
    } else if (c <= 0xA0 || c == 0xAD) {
        snprintf(o, on, "'\\u%04x'", c);
    } else {
        snprintf(o, on, "'%c%c'", (char)(0xC0 | (c >> 6)), (char)(0x80 | (c & 0x3F)));
    }
}

static int jp_fail(jp_t *j, const char *ctx)
{
    if (j->pos >= j->n) {
        snprintf(j->err, sizeof j->err, "unexpected EOF");
    } else {
        char q[16];
        quote_char(q, sizeof q, (unsigned char)j->s[j->pos]);
        snprintf(j->err, sizeof j->err, "invalid character %s %s", q, ctx);
    }
    return -1;
}

static void jp_ws(jp_t *j)
{
    while (j->pos < j->n) {
        char c = j->s[j->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        j->pos++;
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void put_utf8(buf_t *b, uint32_t cp)
{
    char t[4];
    if (cp < 0x80) {
        buf_addc(b, (char)cp);
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3F));
        buf_add(b, t, 2);
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        buf_add(b, t, 3);
    } else {
        t[0] = (char)(0xF0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        buf_add(b, t, 4);
    }
}

static int jp_hex4(jp_t *j, uint32_t *v)
{
    uint32_t r = 0;
    for (int k = 0; k < 4; k++) {
        if (j->pos >= j->n)
            return jp_fail(j, "");
        int h = hexval((unsigned char)j->s[j->pos]);
        if (h < 0)
            return jp_fail(j, "in \\u hexadecimal character escape");
        r = (r << 4) | (uint32_t)h;
        j->pos++;
    }
    *v = r;
    return 0;
}

/* at '"'; unescaped content appended to out if non-NULL */
static int jp_string(jp_t *j, buf_t *out)
{
    j->pos++;
    for (;;) {
        size_t st = j->pos;
        while (j->pos < j->n) {
            unsigned char c = (unsigned char)j->s[j->pos];
            if (c == '"' || c == '\\' || c < 0x20)
                break;
            j->pos++;
        }
        if (out && j->pos > st)
            buf_add(out, j->s + st, j->pos - st);
        if (j->pos >= j->n)
            return jp_fail(j, "");
        unsigned char c = (unsigned char)j->s[j->pos];
        if (c == '"') {
            j->pos++;
            return 0;
        }
        if (c < 0x20)
            return jp_fail(j, "in string literal");
        /* backslash */
        j->pos++;
        if (j->pos >= j->n)
            return jp_fail(j, "");
        c = (unsigned char)j->s[j->pos];
        char d = 0;
        switch (c) {
        case '"': d = '"'; break;
        case '\\': d = '\\'; break;
        case '/': d = '/'; break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'n': d = '\n'; break;
        case 'r': d = '\r'; break;
        case 't': d = '\t'; break;
        case 'u': {
            j->pos++;
            uint32_t v;
            if (jp_hex4(j, &v))
                return -1;
            if (v >= 0xD800 && v < 0xDC00) {
                /* try a low surrogate */
                if (j->pos + 1 < j->n && j->s[j->pos] == '\\' && j->s[j->pos + 1] == 'u') {
                    size_t save = j->pos;
                    j->pos += 2;
                    uint32_t lo;
                    if (jp_hex4(j, &lo))
                        return -1;
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                    } else {
                        j->pos = save;
                        v = 0xFFFD;
                    }
                } else {
                    v = 0xFFFD;
                }
            } else if (v >= 0xDC00 && v < 0xE000) {
                v = 0xFFFD;
            }
            if (out)
                put_utf8(out, v);
            continue;
        }
        default:
            return jp_fail(j, "in string escape code");
        }
        if (out)
            buf_addc(out, d);
        j->pos++;
    }
}

static int jp_literal(jp_t *j, const char *lit)
{
    for (size_t k = 0; lit[k]; k++) {
        if (j->pos >= j->n)
            return jp_fail(j, "");
        if (j->s[j->pos] != lit[k]) {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "in literal %s (expecting '%c')", lit, lit[k]);
            return jp_fail(j, ctx);
        }
        j->pos++;
    }
    return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int jp_number(jp_t *j)
{
    if (j->s[j->pos] == '-') {
        j->pos++;
        if (j->pos >= j->n)
            return jp_fail(j, "");
    }
    if (j->s[j->pos] == '0') {
        j->pos++;
    } else if (is_digit((unsigned char)j->s[j->pos])) {
        while (j->pos < j->n && is_digit((unsigned char)j->s[j->pos]))
            j->pos++;
    } else {
        return jp_fail(j, "in numeric literal");
    }
    if (j->pos < j->n && j->s[j->pos] == '.') {
        j->pos++;
        if (j->pos >= j->n)
            return jp_fail(j, "");
        if (!is_digit((unsigned char)j->s[j->pos]))
            return jp_fail(j, "after decimal point in numeric literal");
        while (j->pos < j->n && is_digit((unsigned char)j->s[j->pos]))
            j->pos++;
    }
    if (j->pos < j->n && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
        j->pos++;
        if (j->pos < j->n && (j->s[j->pos] == '+' || j->s[j->pos] == '-'))
            j->pos++;
        if (j->pos >= j->n)
            return jp_fail(j, "");
        if (!is_digit((unsigned char)j->s[j->pos]))
            return jp_fail(j, "in exponent of numeric literal");
        while (j->pos < j->n && is_digit((unsigned char)j->s[j->pos]))
            j->pos++;
    }
    return 0;
}

/* validate/skip one value (leading whitespace allowed) */
static int jp_value(jp_t *j)
{
    jp_ws(j);
    if (j->pos >= j->n)
        return jp_fail(j, "looking for beginning of value");
    char c = j->s[j->pos];
    switch (c) {
    case '{':
        if (++j->depth > JSON_MAX_DEPTH) {
            snprintf(j->err, sizeof j->err, "exceeded max depth");
            return -1;
        }
        j->pos++;
        jp_ws(j);
        if (j->pos < j->n && j->s[j->pos] == '}') {
            j->pos++;
            j->depth--;
            return 0;
        }
        for (;;) {
            jp_ws(j);
            if (j->pos >= j->n || j->s[j->pos] != '"')
                return jp_fail(j, "looking for beginning of object key string");
            if (jp_string(j, NULL))
                return -1;
            jp_ws(j);
            if (j->pos >= j->n || j->s[j->pos] != ':')
                return jp_fail(j, "after object key");
            j->pos++;
            if (jp_value(j))
                return -1;
            jp_ws(j);
            if (j->pos < j->n && j->s[j->pos] == ',') {
                j->pos++;
                continue;
            }
            if (j->pos < j->n && j->s[j->pos] == '}') {
                j->pos++;
                j->depth--;
                return 0;
            }
            return jp_fail(j, "after object key:value pair");
        }
    case '[':
        if (++j->depth > JSON_MAX_DEPTH) {
            snprintf(j->err, sizeof j->err, "exceeded max depth");
            return -1;
        }
        j->pos++;
        jp_ws(j);
        if (j->pos < j->n && j->s[j->pos] == ']') {
            j->pos++;
            j->depth--;
            return 0;
        }
        for (;;) {
            if (jp_value(j))
                return -1;
            jp_ws(j);
            if (j->pos < j->n && j->s[j->pos] == ',') {
                j->pos++;
                continue;
            }
            if (j->pos < j->n && j->s[j->pos] == ']') {
                j->pos++;
                j->depth--;
                return 0;
            }
            return jp_fail(j, "after array element");
        }
    case '"':
        return jp_string(j, NULL);
    case 't':
        return jp_literal(j, "true");
    case 'f':
        return jp_literal(j, "false");
    case 'n':
        return jp_literal(j, "null");
    default:
        if (c == '-' || is_digit((unsigned char)c))
            return jp_number(j);
        return jp_fail(j, "looking for beginning of value");
    }
}

/* whole buffer is one JSON object or array (surrounding whitespace allowed) */
static int json_is_container(const char *s, size_t n)
{
    jp_t j = {s, n, 0, 0, {0}};
    jp_ws(&j);
    if (j.pos >= n || (s[j.pos] != '{' && s[j.pos] != '['))
        return 0;
    if (jp_value(&j))
        return 0;
    jp_ws(&j);
    return j.pos == n;
}

static const char *json_kind(char c)
{
    switch (c) {
    case '{': return "object";
    case '[': return "array";
    case '"': return "string";
    case 't':
    case 'f': return "bool";
    case 'n': return "null";
    default: return "number";
    }
}

/* ------------------------------------------------------------------ misc helpers */

static int ci_eq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    return an == bn && strncasecmp(a, b, an) == 0;
}

static int is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return 1;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* url.QueryUnescape-like: returns -1 on a bad escape */
static int unescape(const char *s, size_t n, buf_t *out, int plus_space)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            if (out)
                buf_addc(out, (char)(h * 16 + l));
            i += 2;
        } else if (c == '+' && plus_space) {
            if (out)
                buf_addc(out, ' ');
        } else if (out) {
            buf_addc(out, c);
        }
    }
    return 0;
}

/* contrib contenttype.isContentType */
static int ct_is(const char *ct, const char *expected)
{
    size_t n = strlen(ct), en = strlen(expected);
    const char *semi = memchr(ct, ';', n);
    size_t l = semi ? (size_t)(semi - ct) : n;
    return l == en && strncasecmp(ct, expected, en) == 0;
}
static int ct_is_ce(const char *ct) { return ct_is(ct, "application/cloudevents+json"); }
static int ct_is_json(const char *ct) { return ct_is(ct, "application/json"); }
static int ct_is_binary(const char *ct) { return ct_is(ct, "application/octet-stream"); }
static int ct_is_string(const char *ct)
{
    return strncasecmp(ct, "text/", 5) == 0 || ct_is(ct, "application/xml");
}

/* strconv.ParseBool: 1 true, 0 false, -1 invalid */
static int go_parse_bool(const char *v)
{
    static const char *t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (!strcmp(v, t[i]))
            return 1;
        if (!strcmp(v, f[i]))
            return 0;
    }
    return -1;
}

/* base64.StdEncoding.DecodeString validity; returns -1 ok, else offending index */
static long b64_check(const char *s, size_t n)
{
    size_t i = 0;
    for (;;) {
        int got = 0;
        while (got < 4) {
            while (i < n && (s[i] == '\r' || s[i] == '\n'))
                i++;
            if (i >= n) {
                if (got == 0)
                    return -1;
                return (long)(i - (size_t)got);
            }
            char c = s[i];
            if (c == '=') {
                if (got < 2)
                    return (long)i;
                if (got == 2) {
                    size_t k = i + 1;
                    while (k < n && (s[k] == '\r' || s[k] == '\n'))
                        k++;
                    if (k >= n || s[k] != '=')
                        return (long)(k >= n ? n : k);
                    i = k;
                }
                i++;
                while (i < n && (s[i] == '\r' || s[i] == '\n'))
                    i++;
                return i < n ? (long)i : -1;
            }
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/'))
                return (long)i;
            got++;
            i++;
        }
    }
}

/* ------------------------------------------------------------------ mode + stats */

enum { M_OK, M_FAIL, M_GARBAGE, M_SLOW, M_HANG, M_RESET, M_DOWN };
static const char *mode_names[] = {"ok", "fail", "garbage", "slow", "hang", "reset", "down"};

typedef struct {
    int mode;
    int status;  /* 0 = default for the mode/code */
    char code[128];
    char message[1024];
    char error[1024];
    long count;  /* -1 = unlimited */
    char match[1024];
    int ms;
    int raw;
    int healthz;
} mode_t_;

static mode_t_ md = {M_OK, 0, "", "", "", -1, "", 0, 0, 204};

static struct {
    unsigned long long requests, published, events, failed, bytes, conns_open, conns_total;
    unsigned long long healthz, other, bad, hung, resets;
} st;

/* ------------------------------------------------------------------ connections */

enum { ST_HEAD, ST_BODY, ST_WAIT, ST_HANG, ST_DRAIN };

typedef struct {
    size_t m_off, m_len, p_off, p_len, q_off, q_len, t_off, t_len;
    size_t ct_off, ct_len, tok_off, tok_len;
    int has_q, has_ct, has_tok, path_root;
    int http10, want_close, want_ka, expect100, is_head;
    unsigned long long clen;
    size_t head_len;
} rq_t;

typedef struct conn {
    int fd, ctl;
    uint64_t id;
    int state;
    unsigned events;
    buf_t in;
    size_t scan;
    buf_t out;
    size_t out_off;
    buf_t delayed;
    int delayed_close;
    int close_after_write, rd_eof;
    rq_t rq;
} conn_t;

static int g_ep = -1;
static int g_dapr_lfd = -1, g_ctl_lfd = -1, g_sigfd = -1;
static int g_dapr_port, g_ctl_port;
static FILE *g_rec;
static FILE *g_times;
static unsigned long long g_rec_seq;
static uint64_t g_conn_seq;
static conn_t **g_conns;
static size_t g_nconns;

#define TAG_ID_SHIFT 24
#define TAG_FD_MASK ((1u << TAG_ID_SHIFT) - 1)

/* ------------------------------------------------------------------ timers */

enum { T_SLOW, T_LINGER };
typedef struct {
    uint64_t at, id;
    int fd, type;
} tmr_t;
static tmr_t *g_heap;
static size_t g_heap_len, g_heap_cap;

static void tmr_push(uint64_t at, conn_t *c, int type)
{
    if (g_heap_len == g_heap_cap) {
        size_t nc = g_heap_cap ? g_heap_cap * 2 : 64;
        tmr_t *nh = realloc(g_heap, nc * sizeof *nh);
        if (!nh)
            die_oom();
        g_heap = nh;
        g_heap_cap = nc;
    }
    size_t i = g_heap_len++;
    tmr_t t = {at, c->id, c->fd, type};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (g_heap[p].at <= t.at)
            break;
        g_heap[i] = g_heap[p];
        i = p;
    }
    g_heap[i] = t;
}

static tmr_t tmr_pop(void)
{
    tmr_t top = g_heap[0];
    tmr_t last = g_heap[--g_heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        tmr_t *mv = &last;
        if (l < g_heap_len && g_heap[l].at < mv->at) {
            m = l;
            mv = &g_heap[l];
        }
        if (r < g_heap_len && g_heap[r].at < mv->at) {
            m = r;
            mv = &g_heap[r];
        }
        if (m == i)
            break;
        g_heap[i] = g_heap[m];
        i = m;
    }
    if (g_heap_len)
        g_heap[i] = last;
    return top;
}

/* ------------------------------------------------------------------ the response being built */

enum { A_RESPOND, A_HANG, A_RESET, A_RAW, A_DROP };
enum { BR_NONE, BR_FULL, BR_LIMIT };

static struct {
    int status;
    const char *ctype;
    buf_t hdrs, body;
    int close, action, delay_ms, body_read;
} R;

static buf_t g_arena; /* per-request strings */
static buf_t g_msg;   /* message scratch */
static buf_t g_tmp;

static void resp_reset(void)
{
    R.status = 0;
    R.ctype = NULL;
    R.hdrs.len = 0;
    R.body.len = 0;
    R.close = 0;
    R.action = A_RESPOND;
    R.delay_ms = 0;
    R.body_read = BR_NONE;
}

static const char *status_text(int s)
{
    switch (s) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Request Entity Too Large";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return NULL;
    }
}

typedef struct {
    const char *k, *v;
} kv_t;

/* dapr/kit errors JSONErrorValue */
static void kit_error(int status, const char *code, const char *msg, const char *reason,
                      const char *res_name, const kv_t *meta, int nmeta, int meta_null)
{
    buf_t *b = &R.body;
    R.status = status;
    R.ctype = "application/json";
    b->len = 0;
    buf_adds(b, "{\"errorCode\":");
    json_cstr(b, code);
    buf_adds(b, ",\"message\":");
    json_cstr(b, msg);
    buf_adds(b, ",\"details\":[");
    if (res_name) {
        buf_adds(b, "{\"@type\":\"type.googleapis.com/google.rpc.ResourceInfo\",\"description\":");
        json_cstr(b, msg);
        buf_adds(b, ",\"owner\":\"\",\"resource_name\":");
        json_cstr(b, res_name);
        buf_adds(b, ",\"resource_type\":\"pubsub\"},");
    }
    buf_adds(b, "{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"domain\":\"dapr.io\","
                "\"metadata\":");
    if (meta_null) {
        buf_adds(b, "null");
    } else {
        buf_addc(b, '{');
        for (int i = 0; i < nmeta; i++) {
            if (i)
                buf_addc(b, ',');
            json_cstr(b, meta[i].k);
            buf_addc(b, ':');
            json_cstr(b, meta[i].v);
        }
        buf_addc(b, '}');
    }
    buf_adds(b, ",\"reason\":");
    json_cstr(b, reason);
    buf_adds(b, "}]}");
}

/* messages.APIError JSONErrorValue */
static void api_error(int status, const char *code, const char *msg)
{
    R.status = status;
    R.ctype = "application/json";
    R.body.len = 0;
    buf_adds(&R.body, "{\"errorCode\":");
    json_cstr(&R.body, code);
    buf_adds(&R.body, ",\"message\":");
    json_cstr(&R.body, msg);
    buf_addc(&R.body, '}');
}

static void token_401(void)
{
    R.status = 401;
    R.ctype = "text/plain; charset=utf-8";
    R.hdrs.len = 0;
    buf_adds(&R.hdrs, "X-Content-Type-Options: nosniff\r\n");
    R.body.len = 0;
    buf_adds(&R.body, "invalid api token\n");
}

static const char *fmt_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_msg.len = 0;
    buf_vprintf(&g_msg, fmt, ap);
    va_end(ap);
    buf_addc(&g_msg, 0);
    return g_msg.p;
}

/* ------------------------------------------------------------------ request context */

typedef struct {
    const char *pubsub, *topic, *ctype;
    kv_t meta[MAX_META];
    int nmeta;
} pctx_t;

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const kv_t *)a)->k, ((const kv_t *)b)->k);
}

/* metadata.* query params (first value wins), sorted by key like Go maps */
static void parse_meta(const char *q, size_t qn, pctx_t *px)
{
    size_t offs[MAX_META][2];
    int n = 0;
    size_t i = 0;
    while (i < qn && n < MAX_META) {
        size_t s = i;
        while (i < qn && q[i] != '&')
            i++;
        const char *pair = q + s;
        size_t pl = i - s;
        i++;
        if (!pl || memchr(pair, ';', pl))
            continue;
        const char *eq = memchr(pair, '=', pl);
        size_t kl = eq ? (size_t)(eq - pair) : pl;
        size_t ko = g_arena.len;
        if (unescape(pair, kl, &g_arena, 1) < 0) {
            g_arena.len = ko;
            continue;
        }
        buf_addc(&g_arena, 0);
        size_t vo = g_arena.len;
        if (unescape(eq ? eq + 1 : "", eq ? pl - kl - 1 : 0, &g_arena, 1) < 0) {
            g_arena.len = ko;
            continue;
        }
        buf_addc(&g_arena, 0);
        if (strncmp(g_arena.p + ko, "metadata.", 9) != 0) {
            g_arena.len = ko;
            continue;
        }
        int dup = 0;
        for (int k = 0; k < n; k++)
            if (!strcmp(g_arena.p + offs[k][0], g_arena.p + ko + 9))
                dup = 1;
        if (dup) {
            g_arena.len = ko;
            continue;
        }
        offs[n][0] = ko + 9;
        offs[n][1] = vo;
        n++;
    }
    /* the arena may still move: store offsets; the caller turns them into
     * pointers once the strings are final */
    for (int k = 0; k < n; k++) {
        px->meta[k].k = (const char *)(uintptr_t)offs[k][0];
        px->meta[k].v = (const char *)(uintptr_t)offs[k][1];
    }
    px->nmeta = n;
}

static const char *meta_get(const pctx_t *px, const char *k)
{
    for (int i = 0; i < px->nmeta; i++)
        if (!strcmp(px->meta[i].k, k))
            return px->meta[i].v;
    return NULL;
}

/* ------------------------------------------------------------------ daprd-shaped errors */

static void err_publish_message(const pctx_t *px, int status, const char *e)
{
    const char *msg = fmt_msg("error when publishing to topic %s in pubsub %s: %s", px->topic,
                              px->pubsub, e);
    kv_t m[2] = {{"error", e}, {"topic", px->topic}};
    kit_error(status, "ERR_PUBSUB_PUBLISH_MESSAGE", msg, "DAPR_PUBSUB_PUBLISH_MESSAGE", px->pubsub,
              m, 2, 0);
}

static void err_not_found_404(const pctx_t *px, int status)
{
    const char *msg = fmt_msg("pubsub %s is not found", px->pubsub);
    kit_error(status, "ERR_PUBSUB_NOT_FOUND", msg, "DAPR_PUBSUB_NOT_FOUND", NULL, px->meta,
              px->nmeta, 0);
}

static void err_app(const pctx_t *px, int status, const char *code, const char *msg,
                    const char *reason, const char *e)
{
    kv_t m[2] = {{"appID", cfg.app_id}, {"error", e ? e : ""}};
    kit_error(status, code, msg, reason, px->pubsub, m, e ? 2 : 1, 0);
}

static void err_unmarshal_events(const pctx_t *px, const char *e)
{
    const char *msg = fmt_msg("error when unmarshaling the request for topic %s pubsub %s: %s",
                              px->topic, px->pubsub, e);
    err_app(px, 400, "ERR_PUBSUB_EVENTS_SER", msg, "DAPR_PUBSUB_UNMARSHAL_EVENTS", NULL);
}

static void err_cloud_event(const pctx_t *px, const char *e, int status)
{
    err_app(px, status, "ERR_PUBSUB_CLOUD_EVENTS_SER", "cannot create cloudevent",
            "DAPR_PUBSUB_CLOUD_EVENT_CREATION", e);
}

static int default_status_for(const char *code)
{
    static const struct {
        const char *c;
        int s;
    } t[] = {{"ERR_PUBSUB_PUBLISH_MESSAGE", 500}, {"ERR_PUBSUB_FORBIDDEN", 403},
             {"ERR_PUBSUB_NOT_FOUND", 404},       {"ERR_PUBSUB_CLOUD_EVENTS_SER", 500},
             {"ERR_TOPIC_NAME_EMPTY", 404},       {"ERR_PUBSUB_EMPTY", 404},
             {"ERR_PUBSUB_NOT_CONFIGURED", 400},  {"ERR_PUBSUB_REQUEST_METADATA", 400},
             {"ERR_PUBSUB_EVENTS_SER", 400},      {"ERR_PUBLISH_OUTBOX", 500},
             {"ERR_DIRECT_INVOKE", 404}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(code, t[i].c))
            return t[i].s;
    return 500;
}

/* the error daprd would give for `code` (fail mode) */
static void dapr_error_for_code(const pctx_t *px, const char *code, int status)
{
    const char *e = md.error[0] ? md.error : DEFAULT_ERR_TEXT;
    const char *ov = md.message[0] ? md.message : NULL;
    if (!strcmp(code, "ERR_PUBSUB_PUBLISH_MESSAGE")) {
        if (ov) {
            kv_t m[2] = {{"error", e}, {"topic", px->topic}};
            kit_error(status, code, ov, "DAPR_PUBSUB_PUBLISH_MESSAGE", px->pubsub, m, 2, 0);
        } else {
            err_publish_message(px, status, e);
        }
    } else if (!strcmp(code, "ERR_PUBSUB_FORBIDDEN")) {
        const char *msg = ov ? ov : fmt_msg("topic %s is not allowed for app id %s", px->topic,
                                            cfg.app_id);
        char ebuf[1200];
        snprintf(ebuf, sizeof ebuf, "topic %s is not allowed for app id %s", px->topic,
                 cfg.app_id);
        kv_t m[2] = {{"error", ebuf}, {"topic", px->topic}};
        kit_error(status, code, msg, "DAPR_PUBSUB_FORBIDDEN", px->pubsub, m, 2, 0);
    } else if (!strcmp(code, "ERR_PUBSUB_NOT_FOUND")) {
        if (status == 400) {
            char ebuf[600];
            snprintf(ebuf, sizeof ebuf, "pubsub '%s' not found", px->pubsub);
            kv_t m[2] = {{"error", ebuf}, {"topic", px->topic}};
            kit_error(status, code, ov ? ov : ebuf, "DAPR_PUBSUB_TEST_NOT_FOUND", px->pubsub, m, 2,
                      0);
        } else if (ov) {
            kit_error(status, code, ov, "DAPR_PUBSUB_NOT_FOUND", NULL, px->meta, px->nmeta, 0);
        } else {
            err_not_found_404(px, status);
        }
    } else if (!strcmp(code, "ERR_PUBSUB_CLOUD_EVENTS_SER")) {
        err_app(px, status, code, ov ? ov : "cannot create cloudevent",
                "DAPR_PUBSUB_CLOUD_EVENT_CREATION", e);
    } else if (!strcmp(code, "ERR_TOPIC_NAME_EMPTY")) {
        const char *msg = ov ? ov : fmt_msg("topic is empty in pubsub %s", px->pubsub);
        kit_error(status, code, msg, "DAPR_PUBSUB_TOPIC_NAME_EMPTY", px->pubsub, px->meta,
                  px->nmeta, 0);
    } else if (!strcmp(code, "ERR_PUBSUB_EMPTY")) {
        kit_error(status, code, ov ? ov : "pubsub name is empty", "DAPR_PUBSUB_NAME_EMPTY", "",
                  px->meta, px->nmeta, 0);
    } else if (!strcmp(code, "ERR_PUBSUB_NOT_CONFIGURED")) {
        const char *msg = ov ? ov : fmt_msg("pubsub %s is not configured", px->pubsub);
        kit_error(status, code, msg, "DAPR_PUBSUB_NOT_CONFIGURED", NULL, px->meta, px->nmeta, 0);
    } else if (!strcmp(code, "ERR_PUBSUB_REQUEST_METADATA")) {
        const char *msg = ov ? ov : fmt_msg("failed deserializing metadata. Error: %s", e);
        kit_error(status, code, msg, "DAPR_PUBSUB_METADATA_DESERIALIZATION", px->pubsub, px->meta,
                  px->nmeta, 0);
    } else if (!strcmp(code, "ERR_PUBSUB_EVENTS_SER")) {
        const char *msg =
            ov ? ov
               : fmt_msg("error when marshalling cloud event envelope for topic %s pubsub %s: %s",
                         px->topic, px->pubsub, e);
        err_app(px, status, code, msg, "DAPR_PUBSUB_MARSHAL_ENVELOPE", e);
    } else {
        api_error(status, code, ov ? ov : e);
    }
}

/* ------------------------------------------------------------------ recording / printing */

static void print_event(const char *topic, const char *s, size_t n)
{
    fputs(topic, stdout);
    fputc('\t', stdout);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        fputc(c == '\n' || c == '\r' ? ' ' : c, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
}

static void rec_hdr_field(buf_t *b, const char *name, const char *base, size_t off, size_t len,
                          int has)
{
    buf_printf(b, ",\"%s\":", name);
    if (has)
        json_str(b, base + off, len);
    else
        buf_adds(b, "null");
}

static const char *action_name(int a)
{
    switch (a) {
    case A_HANG: return "hang";
    case A_RESET: return "reset";
    case A_RAW: return "raw";
    case A_DROP: return "drop";
    default: return NULL;
    }
}

/*
 * --times: for each CloudEvent a 2xx answer accepted, a line "<receive time>
 * <its \"time\" attribute>": what a latency benchmark needs, without the
 * bodies of a full record.
 */
static void record_times(const char *body, size_t blen)
{
    static const char key[] = "\"time\":\"";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (const char *p = body; p && p < body + blen;) {
        p = memmem(p, body + blen - p, key, sizeof(key) - 1);
        if (!p)
            break;
        p += sizeof(key) - 1;
        const char *e = memchr(p, '"', body + blen - p);
        if (!e)
            break;
        fprintf(g_times, "%lld.%06ld %.*s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000, (int)(e - p), p);
        p = e;
    }
}

static void record(conn_t *c, const char *body, size_t blen, int body_known)
{
    if (g_times && body_known && R.action == A_RESPOND && R.status >= 200 && R.status <= 299)
        record_times(body, blen);
    if (!g_rec)
        return;
    static buf_t b;
    b.len = 0;
    const rq_t *q = &c->rq;
    const char *base = c->in.p;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    buf_printf(&b, "{\"n\":%llu,\"t\":%lld.%06ld,\"method\":", ++g_rec_seq, (long long)ts.tv_sec,
               ts.tv_nsec / 1000);
    json_str(&b, base + q->m_off, q->m_len);
    buf_adds(&b, ",\"path\":");
    if (q->path_root)
        json_str(&b, "/", 1);
    else
        json_str(&b, base + q->p_off, q->p_len);
    buf_adds(&b, ",\"query\":");
    json_str(&b, base + q->q_off, q->has_q ? q->q_len : 0);
    rec_hdr_field(&b, "content_type", base, q->ct_off, q->ct_len, q->has_ct);
    rec_hdr_field(&b, "token", base, q->tok_off, q->tok_len, q->has_tok);
    buf_printf(&b, ",\"status\":%d", R.action == A_RESPOND ? R.status : 0);
    const char *an = action_name(R.action);
    if (an)
        buf_printf(&b, ",\"action\":\"%s\"", an);
    if (R.delay_ms)
        buf_printf(&b, ",\"delay_ms\":%d", R.delay_ms);
    /* an error answer in JSON (bulk: which entries failed) */
    if (R.action == A_RESPOND && (R.status < 200 || R.status > 299) && R.body.len &&
        json_is_container(R.body.p, R.body.len)) {
        buf_adds(&b, ",\"response\":");
        buf_add(&b, R.body.p, R.body.len);
    }
    buf_adds(&b, ",\"body\":");
    if (!body_known) {
        buf_adds(&b, "null");
        buf_printf(&b, ",\"body_bytes\":%llu", q->clen);
    } else if (blen && utf8_valid(body, blen) && json_is_container(body, blen)) {
        size_t o = b.len;
        buf_add(&b, body, blen);
        for (size_t i = o; i < b.len; i++)
            if (b.p[i] == '\n' || b.p[i] == '\r')
                b.p[i] = ' ';
    } else if (utf8_valid(body, blen)) {
        json_str(&b, body, blen);
    } else {
        static const char al[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        buf_adds(&b, "null,\"body_base64\":\"");
        const unsigned char *u = (const unsigned char *)body;
        for (size_t i = 0; i < blen; i += 3) {
            uint32_t v = (uint32_t)u[i] << 16;
            if (i + 1 < blen)
                v |= (uint32_t)u[i + 1] << 8;
            if (i + 2 < blen)
                v |= u[i + 2];
            char o4[4] = {al[(v >> 18) & 63], al[(v >> 12) & 63],
                          i + 1 < blen ? al[(v >> 6) & 63] : '=', i + 2 < blen ? al[v & 63] : '='};
            buf_add(&b, o4, 4);
        }
        buf_addc(&b, '"');
    }
    buf_adds(&b, "}\n");
    fwrite(b.p, 1, b.len, g_rec);
    fflush(g_rec);
    if (b.cap > (8u << 20)) /* do not keep huge buffers around */
        buf_free(&b);
}

/* ------------------------------------------------------------------ mode helpers */

/*
 * Count a targeted request.  When the count runs out the mode goes back to
 * ok, but only once this request is answered: its answer still reads md.
 */
static int g_mode_expired;

static void consume_count(void)
{
    if (md.count > 0 && --md.count == 0)
        g_mode_expired = 1;
}

static void expire_mode(void)
{
    if (g_mode_expired) {
        int hz = md.healthz;
        memset(&md, 0, sizeof md);
        md.mode = M_OK;
        md.count = -1;
        md.healthz = hz;
        g_mode_expired = 0;
    }
}

static int targeted(const char *body, size_t blen, int body_known)
{
    if (!md.match[0])
        return 1;
    if (!body_known)
        return 0;
    return memmem(body, blen, md.match, strlen(md.match)) != NULL;
}

/* ------------------------------------------------------------------ routing */

enum { RT_NONE, RT_HEALTH, RT_HEALTH_OUT, RT_PUB, RT_BULK };

typedef struct {
    int kind;
    const char *ps, *tp;
    size_t psn, tpn;
} route_t;

static char g_clean[HEAD_LIMIT + 16];

static size_t clean_path(const char *p, size_t n, char *out)
{
    size_t o = 0, i = 0;
    out[o++] = '/';
    while (i < n) {
        while (i < n && p[i] == '/')
            i++;
        size_t s = i;
        while (i < n && p[i] != '/')
            i++;
        size_t len = i - s;
        if (!len)
            break;
        if (len == 1 && p[s] == '.')
            continue;
        if (len == 2 && p[s] == '.' && p[s + 1] == '.') {
            while (o > 1 && out[o - 1] != '/')
                o--;
            if (o > 1)
                o--;
            continue;
        }
        if (o > 1)
            out[o++] = '/';
        memcpy(out + o, p + s, len);
        o += len;
    }
    return o;
}

static int seg_eq(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static void route_path(const char *path, size_t plen, int post_put, int get, route_t *rt)
{
    memset(rt, 0, sizeof *rt);
    rt->kind = RT_NONE;
    if (!plen || path[0] != '/' || plen > HEAD_LIMIT)
        return;
    size_t cn = clean_path(path, plen, g_clean);
    const char *sg[6];
    size_t sl[6];
    int ns = 0;
    size_t i = 1;
    while (i < cn && ns < 6) {
        size_t s = i;
        while (i < cn && g_clean[i] != '/')
            i++;
        sg[ns] = g_clean + s;
        sl[ns] = i - s;
        ns++;
        i++;
    }
    /* ns counts at most 6 segments; "rest" is taken from the cleaned string */
    if (ns < 2)
        return;
    int v1 = seg_eq(sg[0], sl[0], "v1.0"), v1a = seg_eq(sg[0], sl[0], "v1.0-alpha1");
    if (v1 && seg_eq(sg[1], sl[1], "healthz")) {
        if (!get)
            return;
        if (ns == 2)
            rt->kind = RT_HEALTH;
        else if (ns == 3 && seg_eq(sg[2], sl[2], "outbound"))
            rt->kind = RT_HEALTH_OUT;
        return;
    }
    if (!(v1 || v1a) || !seg_eq(sg[1], sl[1], "publish") || !post_put)
        return;
    if (ns >= 5 && seg_eq(sg[2], sl[2], "bulk")) {
        rt->kind = RT_BULK;
        rt->ps = sg[3];
        rt->psn = sl[3];
        rt->tp = sg[4];
        rt->tpn = (size_t)(g_clean + cn - sg[4]);
        return;
    }
    if (v1 && ns >= 4) {
        rt->kind = RT_PUB;
        rt->ps = sg[2];
        rt->psn = sl[2];
        rt->tp = sg[3];
        rt->tpn = (size_t)(g_clean + cn - sg[3]);
    }
}

static int token_exempt(const char *m, size_t ml, const char *path, size_t plen)
{
    if (!(ml == 3 && !memcmp(m, "GET", 3)))
        return 0;
    g_tmp.len = 0;
    if (unescape(path, plen, &g_tmp, 0) < 0)
        return 0;
    size_t s = 0, e = g_tmp.len;
    while (s < e && g_tmp.p[s] == '/')
        s++;
    while (e > s && g_tmp.p[e - 1] == '/')
        e--;
    return seg_eq(g_tmp.p + s, e - s, "v1.0/healthz") ||
           seg_eq(g_tmp.p + s, e - s, "v1.0/healthz/outbound");
}

/* ------------------------------------------------------------------ publish handlers */

/* header value: CR, LF and NUL become spaces */
static void hdr_add(buf_t *b, const char *s, size_t n)
{
    size_t o = b->len;
    buf_add(b, s, n);
    for (size_t i = o; i < b->len; i++)
        if (b->p[i] == '\r' || b->p[i] == '\n' || b->p[i] == 0)
            b->p[i] = ' ';
}

typedef struct {
    size_t ev_off, ev_len;
    char ev_kind; /* 0 = absent or null */
    size_t id_off, ct_off, evs_off;
    size_t id_len, evs_len;
    int id_set, failed;
} bentry_t;

static bentry_t *g_ents;
static size_t g_nents, g_ents_cap;

static int raw_payload(const pctx_t *px, int *raw)
{
    const char *v = meta_get(px, "rawPayload");
    *raw = 0;
    if (!v || !*v)
        return 0;
    int b = go_parse_bool(v);
    if (b < 0) {
        char e[1200];
        snprintf(e, sizeof e,
                 "failed deserializing metadata. Error: rawPayload value must be a valid boolean: "
                 "actual is '%.1000s'",
                 v);
        kit_error(400, "ERR_PUBSUB_REQUEST_METADATA", e, "DAPR_PUBSUB_METADATA_DESERIALIZATION",
                  px->pubsub, px->meta, px->nmeta, 0);
        return -1;
    }
    *raw = b;
    return 0;
}

static void fail_status_code(const char **code, int *status)
{
    *code = md.code[0] ? md.code : NULL;
    if (!*code && md.status == 401) {
        *status = 401;
        return;
    }
    if (!*code)
        *code = "ERR_PUBSUB_PUBLISH_MESSAGE";
    *status = md.status ? md.status : default_status_for(*code);
}

static void publish_single(const pctx_t *px, const char *body, size_t blen, int body_known,
                           unsigned long long clen)
{
    if (cfg.max_body && clen > cfg.max_body) {
        err_publish_message(px, 500, "stream too large");
        R.body_read = BR_LIMIT;
        return;
    }
    R.body_read = BR_FULL;
    if (!body_known) { /* only with --max-body 0 and a body over the buffering cap */
        err_publish_message(px, 500, "fakedapr: body too large to buffer");
        return;
    }
    int raw;
    if (raw_payload(px, &raw) < 0)
        return;
    if (!raw && ct_is_ce(px->ctype)) {
        jp_t j = {body, blen, 0, 0, {0}};
        jp_ws(&j);
        if (j.pos >= blen) {
            err_cloud_event(px, "EOF", 500);
            return;
        }
        char k = body[j.pos];
        if (jp_value(&j)) {
            err_cloud_event(px, j.err, 500);
            return;
        }
        if (k == 'n') { /* daprd panics on the nil map: connection dropped */
            R.action = A_DROP;
            return;
        }
        if (k != '{') {
            char e[128];
            snprintf(e, sizeof e,
                     "json: cannot unmarshal %s into Go value of type map[string]interface {}",
                     json_kind(k));
            err_cloud_event(px, e, 500);
            return;
        }
    }
    if (md.mode == M_FAIL && targeted(body, blen, body_known)) {
        const char *code;
        int status;
        consume_count();
        fail_status_code(&code, &status);
        if (!code)
            token_401();
        else
            dapr_error_for_code(px, code, status);
        R.delay_ms = md.ms;
        return;
    }
    R.status = 204;
    st.events++;
    if (cfg.print)
        print_event(px->topic, body, blen);
}

static void type_err(char *err, size_t en, int *have, char kind, const char *field,
                     const char *type)
{
    if (*have)
        return;
    *have = 1;
    if (field)
        snprintf(err, en, "json: cannot unmarshal %s into Go struct field %s of type %s",
                 json_kind(kind), field, type);
    else
        snprintf(err, en, "json: cannot unmarshal %s into Go value of type %s", json_kind(kind),
                 type);
}

/* decode the bulk request into g_ents; returns 0 or -1 with err set */
static int bulk_decode(const char *s, size_t n, int oversize, char *err, size_t en)
{
    g_nents = 0;
    jp_t j = {s, n, 0, 0, {0}};
    jp_ws(&j);
    if (j.pos >= n) {
        snprintf(err, en, "%s", oversize ? "stream too large" : "EOF");
        return -1;
    }
    size_t start = j.pos;
    if (jp_value(&j)) {
        snprintf(err, en, "%s", (oversize && j.pos >= n) ? "stream too large" : j.err);
        return -1;
    }
    int have = 0;
    char c = s[start];
    if (c == 'n')
        return 0;
    if (c != '[') {
        type_err(err, en, &have, c, NULL, "[]http.bulkPublishMessageEntry");
        return -1;
    }
    jp_t w = {s, j.pos, start + 1, 0, {0}};
    jp_ws(&w);
    if (w.pos < w.n && s[w.pos] == ']')
        return 0;
    for (;;) {
        jp_ws(&w);
        if (g_nents == g_ents_cap) {
            size_t nc = g_ents_cap ? g_ents_cap * 2 : 64;
            bentry_t *ne = realloc(g_ents, nc * sizeof *ne);
            if (!ne)
                die_oom();
            g_ents = ne;
            g_ents_cap = nc;
        }
        bentry_t *e = &g_ents[g_nents++];
        memset(e, 0, sizeof *e);
        char ec = s[w.pos];
        if (ec == '{') {
            w.pos++;
            jp_ws(&w);
            if (s[w.pos] == '}') {
                w.pos++;
            } else {
                for (;;) {
                    jp_ws(&w);
                    g_tmp.len = 0;
                    jp_string(&w, &g_tmp);
                    jp_ws(&w);
                    w.pos++; /* ':' */
                    jp_ws(&w);
                    size_t vs = w.pos;
                    char vk = s[vs];
                    jp_value(&w);
                    size_t ve = w.pos;
                    const char *key = g_tmp.p;
                    size_t kl = g_tmp.len;
                    if (ci_eq(key, kl, "entryId") || ci_eq(key, kl, "contentType")) {
                        int is_id = ci_eq(key, kl, "entryId");
                        if (vk == '"') {
                            jp_t sj = {s, ve, vs, 0, {0}};
                            size_t off = g_arena.len;
                            jp_string(&sj, &g_arena);
                            size_t l = g_arena.len - off;
                            buf_addc(&g_arena, 0);
                            if (is_id) {
                                e->id_off = off;
                                e->id_len = l;
                                e->id_set = 1;
                            } else {
                                e->ct_off = off + 1; /* +1: 0 means unset */
                            }
                        } else if (vk != 'n') {
                            type_err(err, en, &have, vk,
                                     is_id ? "bulkPublishMessageEntry.entryId"
                                           : "bulkPublishMessageEntry.contentType",
                                     "string");
                        }
                    } else if (ci_eq(key, kl, "event")) {
                        e->ev_kind = vk == 'n' ? 0 : vk;
                        e->ev_off = vs;
                        e->ev_len = ve - vs;
                        if (vk == '"') {
                            jp_t sj = {s, ve, vs, 0, {0}};
                            size_t off = g_arena.len;
                            jp_string(&sj, &g_arena);
                            e->evs_off = off;
                            e->evs_len = g_arena.len - off;
                            buf_addc(&g_arena, 0);
                        }
                    } else if (ci_eq(key, kl, "metadata")) {
                        if (vk == '{') {
                            jp_t mj = {s, ve, vs + 1, 0, {0}};
                            jp_ws(&mj);
                            if (s[mj.pos] != '}') {
                                for (;;) {
                                    jp_ws(&mj);
                                    jp_string(&mj, NULL);
                                    jp_ws(&mj);
                                    mj.pos++;
                                    jp_ws(&mj);
                                    char mk = s[mj.pos];
                                    jp_value(&mj);
                                    if (mk != '"' && mk != 'n')
                                        type_err(err, en, &have, mk,
                                                 "bulkPublishMessageEntry.metadata", "string");
                                    jp_ws(&mj);
                                    if (s[mj.pos] == ',') {
                                        mj.pos++;
                                        continue;
                                    }
                                    break;
                                }
                            }
                        } else if (vk != 'n') {
                            type_err(err, en, &have, vk, "bulkPublishMessageEntry.metadata",
                                     "map[string]string");
                        }
                    }
                    jp_ws(&w);
                    if (s[w.pos] == ',') {
                        w.pos++;
                        continue;
                    }
                    w.pos++; /* '}' */
                    break;
                }
            }
        } else {
            if (ec != 'n')
                type_err(err, en, &have, ec, NULL, "http.bulkPublishMessageEntry");
            jp_value(&w);
        }
        jp_ws(&w);
        if (w.pos < w.n && s[w.pos] == ',') {
            w.pos++;
            continue;
        }
        break;
    }
    return have ? -1 : 0;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* open-addressing set of entry indexes keyed by entryId; 0 if already there */
static int idset_add(size_t *tab, size_t cap, size_t idx)
{
    const char *id = g_arena.p + g_ents[idx].id_off;
    size_t l = g_ents[idx].id_len;
    size_t h = (size_t)fnv(id, l) & (cap - 1);
    while (tab[h]) {
        const bentry_t *o = &g_ents[tab[h] - 1];
        if (o->id_len == l && !memcmp(g_arena.p + o->id_off, id, l))
            return 0;
        h = (h + 1) & (cap - 1);
    }
    tab[h] = idx + 1;
    return 1;
}

static void publish_bulk(const pctx_t *px, const char *body, size_t blen, int body_known,
                         unsigned long long clen)
{
    R.body_read = BR_FULL;
    int raw;
    if (raw_payload(px, &raw) < 0)
        return;
    int oversize = cfg.max_body && clen > cfg.max_body;
    if (oversize)
        R.body_read = BR_LIMIT;
    size_t lim = blen;
    if (oversize && lim > cfg.max_body)
        lim = (size_t)cfg.max_body;
    char err[600];
    if (!body_known) {
        err_unmarshal_events(px, "stream too large");
        return;
    }
    if (bulk_decode(body, lim, oversize, err, sizeof err) < 0) {
        err_unmarshal_events(px, err);
        return;
    }
    /* daprd's order: per entry, event/contentType check then entryId check */
    size_t cap = 16;
    while (cap < g_nents * 2)
        cap *= 2;
    size_t *tab = calloc(cap, sizeof *tab);
    if (!tab)
        die_oom();
    for (size_t i = 0; i < g_nents; i++) {
        bentry_t *e = &g_ents[i];
        const char *ct = e->ct_off ? g_arena.p + e->ct_off - 1 : "";
        const char *cerr = NULL;
        char b64e[160];
        if (ct_is_binary(ct)) {
            if (e->ev_kind != '"') {
                cerr = "error: mismatch between contentType and event";
            } else {
                long bad = b64_check(g_arena.p + e->evs_off, e->evs_len);
                if (bad >= 0) {
                    snprintf(b64e, sizeof b64e,
                             "error: unable to decode base64 application/octect-stream data: "
                             "illegal base64 data at input byte %ld",
                             bad);
                    cerr = b64e;
                }
            }
        } else if (ct_is_string(ct)) {
            if (e->ev_kind != '"')
                cerr = "error: mismatch between contentType and event";
        } else if (!(ct_is_json(ct) || ct_is_ce(ct))) {
            cerr = "error: mismatch between contentType and event";
        }
        if (cerr) {
            free(tab);
            const char *msg = fmt_msg(
                "error when marshalling cloud event envelope for topic %s pubsub %s: %s",
                px->topic, px->pubsub, cerr);
            err_app(px, 400, "ERR_PUBSUB_EVENTS_SER", msg, "DAPR_PUBSUB_MARSHAL_ENVELOPE", cerr);
            return;
        }
        if (!e->id_set || !e->id_len || !idset_add(tab, cap, i)) {
            free(tab);
            const char *ee = "entryId is duplicated or not present for entry";
            const char *msg =
                fmt_msg("error marshaling events to bytes for topic %s pubsub %s. error: %s",
                        px->topic, px->pubsub, ee);
            err_app(px, 400, "ERR_PUBSUB_EVENTS_SER", msg, "DAPR_PUBSUB_MARSHAL_EVENTS", ee);
            return;
        }
    }
    free(tab);
    if (!raw) {
        for (size_t i = 0; i < g_nents; i++) {
            bentry_t *e = &g_ents[i];
            const char *ct = e->ct_off ? g_arena.p + e->ct_off - 1 : "";
            if (!ct_is_ce(ct))
                continue;
            if (e->ev_kind == 0) {
                R.action = A_DROP;
                return;
            }
            if (e->ev_kind != '{') {
                char e2[128];
                snprintf(e2, sizeof e2,
                         "json: cannot unmarshal %s into Go value of type map[string]interface {}",
                         json_kind(e->ev_kind));
                err_cloud_event(px, e2, 500);
                return;
            }
        }
    }
    /* publish */
    size_t nfail = 0;
    if (md.mode == M_FAIL) {
        size_t ml = strlen(md.match);
        for (size_t i = 0; i < g_nents; i++) {
            bentry_t *e = &g_ents[i];
            e->failed = !ml || memmem(body + e->ev_off, e->ev_len, md.match, ml) != NULL;
            nfail += (size_t)e->failed;
        }
        if (ml && !nfail) {
            /* nothing targeted: plain success, count untouched */
        } else if (!g_nents && ml) {
            /* empty request never matches */
        } else {
            const char *code;
            int status;
            consume_count();
            fail_status_code(&code, &status);
            R.delay_ms = md.ms;
            if (!code) {
                token_401();
                return;
            }
            if (!strcmp(code, "ERR_PUBSUB_FORBIDDEN") ||
                (!strcmp(code, "ERR_PUBSUB_NOT_FOUND"))) {
                dapr_error_for_code(px, code, status);
                return;
            }
            const char *etext = md.error[0] ? md.error : DEFAULT_ERR_TEXT;
            buf_t *b = &R.body;
            b->len = 0;
            buf_adds(b, "{\"failedEntries\":[");
            int first = 1;
            for (size_t i = 0; i < g_nents; i++) {
                bentry_t *e = &g_ents[i];
                if (!e->failed)
                    continue;
                if (!first)
                    buf_addc(b, ',');
                first = 0;
                buf_adds(b, "{\"entryId\":");
                json_str(b, g_arena.p + e->id_off, e->id_len);
                buf_adds(b, ",\"error\":");
                json_cstr(b, etext);
                buf_addc(b, '}');
            }
            buf_adds(b, "],\"errorCode\":");
            json_cstr(b, code);
            buf_addc(b, '}');
            R.status = status;
            R.ctype = "application/json";
            R.hdrs.len = 0;
            buf_adds(&R.hdrs, "Metadata.error: ");
            g_tmp.len = 0;
            buf_adds(&g_tmp, "api error: code = Internal desc = ");
            if (md.message[0])
                buf_adds(&g_tmp, md.message);
            else
                buf_printf(&g_tmp, "error when publishing to topic %s in pubsub %s: %s",
                           px->topic, px->pubsub, etext);
            hdr_add(&R.hdrs, g_tmp.p, g_tmp.len);
            buf_adds(&R.hdrs, "\r\nMetadata.responsedata: ");
            hdr_add(&R.hdrs, b->p, b->len);
            buf_adds(&R.hdrs, "\r\n");
            st.events += g_nents - nfail;
            if (cfg.print)
                for (size_t i = 0; i < g_nents; i++)
                    if (!g_ents[i].failed)
                        print_event(px->topic, body + g_ents[i].ev_off, g_ents[i].ev_len);
            return;
        }
    }
    R.status = 204;
    st.events += g_nents;
    if (cfg.print)
        for (size_t i = 0; i < g_nents; i++)
            print_event(px->topic, body + g_ents[i].ev_off, g_ents[i].ev_len);
}

/* ------------------------------------------------------------------ the Dapr port */

enum { PH_EARLY, PH_FULL, PH_MISSING };
enum { H_DONE, H_NEED_BODY };

static int handle_dapr(conn_t *c, const char *body, size_t blen, int phase)
{
    const rq_t *q = &c->rq;
    const char *base = c->in.p;
    const char *m = base + q->m_off;
    size_t ml = q->m_len;
    const char *path = q->path_root ? "/" : base + q->p_off;
    size_t plen = q->path_root ? 1 : q->p_len;
    int post_put = (ml == 4 && !memcmp(m, "POST", 4)) || (ml == 3 && !memcmp(m, "PUT", 3));
    int get = ml == 3 && !memcmp(m, "GET", 3);
    int body_known = phase == PH_FULL;
    expire_mode();
    resp_reset();
    g_arena.len = 0;

    route_t rt;
    route_path(path, plen, post_put, get, &rt);
    int is_pub = rt.kind == RT_PUB || rt.kind == RT_BULK;
    int is_health = rt.kind == RT_HEALTH || rt.kind == RT_HEALTH_OUT;

    int tmode = md.mode == M_HANG || md.mode == M_RESET || md.mode == M_GARBAGE;
    if (is_pub && phase == PH_EARLY && (tmode || md.mode == M_SLOW))
        return H_NEED_BODY;
    if (is_pub && tmode && targeted(body, blen, body_known)) {
        int mode = md.mode;
        int raw = md.raw, status = md.status ? md.status : 500, ms = md.ms;
        consume_count();
        if (mode == M_HANG) {
            R.action = A_HANG;
            st.hung++;
        } else if (mode == M_RESET) {
            R.action = A_RESET;
            st.resets++;
        } else if (raw) {
            R.action = A_RAW;
        } else {
            R.status = status;
            R.ctype = "text/html; charset=utf-8";
            buf_adds(&R.body, md.message[0] ? md.message : "<html>oops</html>");
            R.body_read = BR_FULL;
            R.delay_ms = ms;
        }
        goto out;
    }
    if (cfg.token &&
        !(q->has_tok && q->tok_len == cfg.token_len &&
          !memcmp(base + q->tok_off, cfg.token, cfg.token_len)) &&
        !token_exempt(m, ml, path, plen)) {
        token_401();
        goto out;
    }
    if (rt.kind == RT_NONE) {
        api_error(404, "ERR_DIRECT_INVOKE",
                  "failed getting app id either from the URL path or the header dapr-app-id");
        goto out;
    }
    if (is_health) {
        st.healthz++;
        int hz = md.healthz;
        if (hz >= 200 && hz < 300) {
            R.status = hz;
        } else if (rt.kind == RT_HEALTH_OUT) {
            api_error(hz, "ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready");
        } else {
            api_error(hz, "ERR_HEALTH_NOT_READY", "dapr is not ready: [outbound]");
        }
        if (rt.kind == RT_HEALTH && q->has_q) {
            /* ?appid=X must match our app id */
            const char *qs = base + q->q_off;
            size_t qn = q->q_len, i = 0;
            while (i < qn) {
                size_t s = i;
                while (i < qn && qs[i] != '&')
                    i++;
                if (i - s >= 6 && !memcmp(qs + s, "appid=", 6)) {
                    g_tmp.len = 0;
                    if (unescape(qs + s + 6, i - s - 6, &g_tmp, 1) == 0 &&
                        !seg_eq(g_tmp.p ? g_tmp.p : "", g_tmp.len, cfg.app_id))
                        api_error(500, "ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match");
                    break;
                }
                i++;
            }
        }
        R.body_read = BR_NONE;
        return H_DONE;
    }

    /* publish or bulk publish */
    pctx_t px;
    memset(&px, 0, sizeof px);
    size_t ps_off = g_arena.len;
    unescape(rt.ps, rt.psn, &g_arena, 1);
    buf_addc(&g_arena, 0);
    size_t tp_off = g_arena.len;
    unescape(rt.tp, rt.tpn, &g_arena, 1);
    buf_addc(&g_arena, 0);
    size_t ct_off = g_arena.len;
    if (q->has_ct)
        buf_add(&g_arena, base + q->ct_off, q->ct_len);
    buf_addc(&g_arena, 0);
    parse_meta(base + q->q_off, q->has_q ? q->q_len : 0, &px);
    /* entries may grow the arena later; keep a private copy of these strings */
    static buf_t keep;
    keep.len = 0;
    buf_add(&keep, g_arena.p, g_arena.len);
    g_arena.len = 0;
    px.pubsub = keep.p + ps_off;
    px.topic = keep.p + tp_off;
    px.ctype = keep.p + ct_off;
    for (int k = 0; k < px.nmeta; k++) {
        px.meta[k].k = keep.p + (uintptr_t)px.meta[k].k;
        px.meta[k].v = keep.p + (uintptr_t)px.meta[k].v;
    }
    qsort(px.meta, (size_t)px.nmeta, sizeof px.meta[0], kv_cmp);

    if (strcmp(px.pubsub, cfg.pubsub) != 0) {
        err_not_found_404(&px, 404);
        goto out;
    }
    if (phase == PH_EARLY)
        return H_NEED_BODY;
    if (rt.kind == RT_PUB)
        publish_single(&px, body, blen, body_known, q->clen);
    else
        publish_bulk(&px, body, blen, body_known, q->clen);

out:
    if (is_pub && phase != PH_EARLY && md.mode == M_SLOW && R.action == A_RESPOND &&
        targeted(body, blen, body_known)) {
        R.delay_ms = md.ms;
        consume_count();
    }
    if (is_pub) {
        st.requests++;
        st.bytes += q->clen;
        if (R.action == A_RESPOND && R.status >= 200 && R.status < 300)
            st.published++;
        else
            st.failed++;
    } else {
        st.other++;
    }
    record(c, body, blen, body_known);
    return H_DONE;
}

/* ------------------------------------------------------------------ the control port */

static void ctl_json_mode(buf_t *b)
{
    buf_printf(b, "{\"mode\":\"%s\",\"status\":%d,\"code\":", mode_names[md.mode], md.status);
    json_cstr(b, md.code);
    buf_adds(b, ",\"message\":");
    json_cstr(b, md.message);
    buf_adds(b, ",\"error\":");
    json_cstr(b, md.error);
    if (md.count < 0)
        buf_adds(b, ",\"count\":null");
    else
        buf_printf(b, ",\"count\":%ld", md.count);
    buf_adds(b, ",\"match\":");
    json_cstr(b, md.match);
    buf_printf(b, ",\"ms\":%d,\"raw\":%d,\"healthz\":%d,\"port\":%d,\"listening\":%s}", md.ms,
               md.raw, md.healthz, g_dapr_port, g_dapr_lfd >= 0 ? "true" : "false");
}

static void conn_close(conn_t *c);
static int open_dapr_listener(void);

static void close_dapr_side(void)
{
    if (g_dapr_lfd >= 0) {
        close(g_dapr_lfd);
        g_dapr_lfd = -1;
    }
    for (size_t i = 0; i < g_nconns; i++)
        if (g_conns[i] && !g_conns[i]->ctl)
            conn_close(g_conns[i]);
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
    if (!*v)
        return -1;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int copy_field(char *dst, size_t dn, const char *v)
{
    size_t l = strlen(v);
    if (l >= dn)
        return -1;
    memcpy(dst, v, l + 1);
    return 0;
}

/* "k=v&k=v" or newline separated; values %-decoded (no '+' rule) */
static int apply_params(const char *s, size_t n, mode_t_ *nm, int *mode_given, char *err,
                        size_t en)
{
    size_t i = 0;
    while (i < n) {
        size_t st0 = i;
        while (i < n && s[i] != '&' && s[i] != '\n')
            i++;
        size_t a = st0, b = i;
        i++;
        while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r'))
            b--;
        if (a == b)
            continue;
        const char *eq = memchr(s + a, '=', b - a);
        size_t kl = eq ? (size_t)(eq - (s + a)) : b - a;
        char key[32], val[1024];
        g_tmp.len = 0;
        if (kl >= sizeof key || unescape(s + a, kl, &g_tmp, 0) < 0 || g_tmp.len >= sizeof key) {
            snprintf(err, en, "bad key");
            return -1;
        }
        memcpy(key, g_tmp.p, g_tmp.len);
        key[g_tmp.len] = 0;
        g_tmp.len = 0;
        if (eq && unescape(eq + 1, (size_t)(s + b - eq - 1), &g_tmp, 0) < 0) {
            snprintf(err, en, "bad escape in value of %s", key);
            return -1;
        }
        if (g_tmp.len >= sizeof val || memchr(g_tmp.p ? g_tmp.p : "", 0, g_tmp.len)) {
            snprintf(err, en, "value of %s too long or has NUL", key);
            return -1;
        }
        if (g_tmp.len)
            memcpy(val, g_tmp.p, g_tmp.len);
        val[g_tmp.len] = 0;
        long x;
        if (!strcmp(key, "mode")) {
            int found = -1;
            for (int k = 0; k < 7; k++)
                if (!strcmp(val, mode_names[k]))
                    found = k;
            if (found < 0) {
                snprintf(err, en, "unknown mode '%.100s'", val);
                return -1;
            }
            int hz = nm->healthz;
            memset(nm, 0, sizeof *nm);
            nm->mode = found;
            nm->count = -1;
            nm->healthz = hz;
            if (found == M_SLOW)
                nm->ms = 1000;
            *mode_given = 1;
        } else if (!strcmp(key, "status")) {
            if (parse_int(val, 200, 599, &x)) {
                snprintf(err, en, "status must be 200..599");
                return -1;
            }
            nm->status = (int)x;
        } else if (!strcmp(key, "healthz")) {
            if (parse_int(val, 200, 599, &x)) {
                snprintf(err, en, "healthz must be 200..599");
                return -1;
            }
            nm->healthz = (int)x;
        } else if (!strcmp(key, "count")) {
            if (!*val) {
                nm->count = -1;
            } else if (parse_int(val, 1, LONG_MAX, &x)) {
                snprintf(err, en, "count must be >= 1 (or empty for unlimited)");
                return -1;
            } else {
                nm->count = x;
            }
        } else if (!strcmp(key, "ms")) {
            if (parse_int(val, 0, 86400000, &x)) {
                snprintf(err, en, "ms must be 0..86400000");
                return -1;
            }
            nm->ms = (int)x;
        } else if (!strcmp(key, "raw")) {
            if (parse_int(val, 0, 1, &x)) {
                snprintf(err, en, "raw must be 0 or 1");
                return -1;
            }
            nm->raw = (int)x;
        } else if (!strcmp(key, "code")) {
            if (copy_field(nm->code, sizeof nm->code, val)) {
                snprintf(err, en, "code too long");
                return -1;
            }
        } else if (!strcmp(key, "message")) {
            copy_field(nm->message, sizeof nm->message, val);
        } else if (!strcmp(key, "error")) {
            copy_field(nm->error, sizeof nm->error, val);
        } else if (!strcmp(key, "match")) {
            copy_field(nm->match, sizeof nm->match, val);
        } else {
            snprintf(err, en, "unknown key '%.40s'", key);
            return -1;
        }
    }
    return 0;
}

static void ctl_json(int status, void (*fill)(buf_t *))
{
    R.status = status;
    R.ctype = "application/json";
    R.body.len = 0;
    fill(&R.body);
}

static void fill_stats(buf_t *b)
{
    buf_printf(b,
               "{\"requests\":%llu,\"published\":%llu,\"events\":%llu,\"failed\":%llu,"
               "\"bytes\":%llu,\"connections_open\":%llu,\"connections_total\":%llu,"
               "\"mode\":\"%s\",\"healthz_requests\":%llu,\"other_requests\":%llu,"
               "\"bad_requests\":%llu,\"hung\":%llu,\"resets\":%llu,\"recorded\":%llu}\n",
               st.requests, st.published, st.events, st.failed, st.bytes, st.conns_open,
               st.conns_total, mode_names[md.mode], st.healthz, st.other, st.bad, st.hung,
               st.resets, g_rec_seq);
}

static void fill_mode(buf_t *b)
{
    ctl_json_mode(b);
    buf_addc(b, '\n');
}

static void handle_ctl(conn_t *c, const char *body, size_t blen)
{
    const rq_t *q = &c->rq;
    const char *base = c->in.p;
    const char *m = base + q->m_off;
    size_t ml = q->m_len;
    const char *p = q->path_root ? "/" : base + q->p_off;
    size_t pl = q->path_root ? 1 : q->p_len;
    int get = ml == 3 && !memcmp(m, "GET", 3);
    int post = (ml == 4 && !memcmp(m, "POST", 4)) || (ml == 3 && !memcmp(m, "PUT", 3));
    resp_reset();
    R.body_read = BR_FULL;
    if (seg_eq(p, pl, "/stats") && get) {
        ctl_json(200, fill_stats);
    } else if (seg_eq(p, pl, "/reset-stats") && post) {
        unsigned long long open = st.conns_open;
        memset(&st, 0, sizeof st);
        st.conns_open = open;
        ctl_json(200, fill_stats);
    } else if (seg_eq(p, pl, "/mode") && get) {
        ctl_json(200, fill_mode);
    } else if (seg_eq(p, pl, "/mode") && post) {
        mode_t_ nm = md;
        int given = 0;
        char err[200];
        if (apply_params(base + q->q_off, q->has_q ? q->q_len : 0, &nm, &given, err,
                         sizeof err) < 0 ||
            apply_params(body, blen, &nm, &given, err, sizeof err) < 0) {
            R.status = 400;
            R.ctype = "application/json";
            buf_adds(&R.body, "{\"error\":");
            json_cstr(&R.body, err);
            buf_adds(&R.body, "}\n");
            return;
        }
        md = nm;
        g_mode_expired = 0;
        if (md.mode == M_DOWN) {
            close_dapr_side();
        } else if (g_dapr_lfd < 0 && open_dapr_listener() < 0) {
            R.status = 500;
            R.ctype = "application/json";
            buf_printf(&R.body, "{\"error\":\"cannot listen on port %d again: %s\"}\n",
                       g_dapr_port, strerror(errno));
            return;
        }
        ctl_json(200, fill_mode);
    } else if (seg_eq(p, pl, "/healthz") && get) {
        R.status = 200;
        R.ctype = "application/json";
        buf_adds(&R.body, "{\"ok\":true}\n");
    } else {
        R.status = 404;
        R.ctype = "application/json";
        buf_adds(&R.body, "{\"error\":\"not found; try GET /stats, GET|POST /mode, "
                          "POST /reset-stats\"}\n");
    }
}

/* ------------------------------------------------------------------ connection machinery */

static void conn_set_events(conn_t *c)
{
    unsigned want;
    if (c->out.len > c->out_off)
        want = EPOLLOUT;
    else if (c->state == ST_WAIT || c->rd_eof)
        want = 0;
    else
        want = EPOLLIN;
    if (want != c->events) {
        struct epoll_event ev;
        ev.events = want;
        ev.data.u64 = (c->id << TAG_ID_SHIFT) | (uint64_t)c->fd;
        epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->events = want;
    }
}

static void conn_close(conn_t *c)
{
    close(c->fd);
    if ((size_t)c->fd < g_nconns)
        g_conns[c->fd] = NULL;
    if (!c->ctl && st.conns_open)
        st.conns_open--;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->delayed);
    free(c);
}

/* Go's pre-handler error replies: "HTTP/1.1 <code> <text>[: <detail>]" + close */
static void go_raw_error(conn_t *c, int code, const char *detail)
{
    const char *t = status_text(code);
    if (detail)
        buf_printf(&c->out,
                   "HTTP/1.1 %d %s: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Connection: close\r\n\r\n%d %s: %s",
                   code, t, detail, code, t, detail);
    else
        buf_printf(&c->out,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Connection: close\r\n\r\n%d %s",
                   code, t, code, t);
    c->close_after_write = 1;
    c->in.len = 0;
    if (!c->ctl)
        st.bad++;
}

static void serialize(buf_t *o, const rq_t *q, int close_conn)
{
    http_date();
    if (R.status == 204 && !R.hdrs.len && !R.ctype && !close_conn && !q->http10) {
        buf_add(o, g_resp204, g_resp204_len);
        return;
    }
    const char *t = status_text(R.status);
    if (t)
        buf_printf(o, "HTTP/1.1 %d %s\r\n", R.status, t);
    else
        buf_printf(o, "HTTP/1.1 %d status code %d\r\n", R.status, R.status);
    buf_add(o, R.hdrs.p, R.hdrs.len);
    if (R.ctype)
        buf_printf(o, "Content-Type: %s\r\n", R.ctype);
    buf_printf(o, "Date: %s\r\n", g_date);
    int bodyless = R.status == 204 || R.status == 304 || R.status < 200;
    if (!bodyless)
        buf_printf(o, "Content-Length: %zu\r\n", R.body.len);
    if (close_conn && !q->http10) /* net/http writes it for HTTP/1.1 only */
        buf_adds(o, "Connection: close\r\n");
    else if (!close_conn && q->http10)
        buf_adds(o, "Connection: keep-alive\r\n");
    buf_adds(o, "\r\n");
    if (!bodyless && !q->is_head)
        buf_add(o, R.body.p, R.body.len);
}

static void conn_consume(conn_t *c, size_t n)
{
    if (n >= c->in.len) {
        c->in.len = 0;
    } else {
        memmove(c->in.p, c->in.p + n, c->in.len - n);
        c->in.len -= n;
    }
    c->scan = 0;
    if (c->in.cap > (1u << 20) && c->in.len < 16384) {
        char *np = realloc(c->in.p, 16384);
        if (np) {
            c->in.p = np;
            c->in.cap = 16384;
        }
    }
}

/* apply R to the connection; returns -1 if the connection was closed */
static int conn_apply(conn_t *c, size_t consume, int early)
{
    const rq_t *q = &c->rq;
    switch (R.action) {
    case A_RESET: {
        struct linger l = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        conn_close(c);
        return -1;
    }
    case A_DROP:
        conn_close(c);
        return -1;
    case A_HANG:
        c->state = ST_HANG;
        c->in.len = 0;
        return 0;
    case A_RAW:
        buf_adds(&c->out, "\x16\x03\x01\x00\x05 fakedapr: this is not HTTP \x00\xff\r\n");
        c->close_after_write = 1;
        c->in.len = 0;
        c->state = ST_HEAD;
        return 0;
    default:
        break;
    }
    int close_conn = R.close || q->want_close || (q->http10 && !q->want_ka);
    if (R.body_read == BR_NONE) {
        if ((q->expect100 && early) || q->clen >= GO_POST_HANDLER_READ)
            close_conn = 1;
    } else if (R.body_read == BR_LIMIT) {
        unsigned long long rest = q->clen - cfg.max_body - 1;
        if (q->expect100 || rest >= GO_POST_HANDLER_READ)
            close_conn = 1;
    }
    if (early || q->clen > cfg.hard_cap)
        close_conn = 1; /* body not read (yet) */
    if (R.delay_ms > 0) {
        c->delayed.len = 0;
        serialize(&c->delayed, q, close_conn);
        c->delayed_close = close_conn;
        conn_consume(c, consume);
        c->state = ST_WAIT;
        tmr_push(now_ms() + (uint64_t)R.delay_ms, c, T_SLOW);
        return 0;
    }
    serialize(&c->out, q, close_conn);
    conn_consume(c, consume);
    c->state = ST_HEAD;
    if (close_conn)
        c->close_after_write = 1;
    return 0;
}

/* returns 1 head parsed, 0 need more, -1 error reply queued */
static int parse_head(conn_t *c)
{
    char *p = c->in.p;
    size_t n = c->in.len;
    size_t lead = 0;
    while (lead < n && (p[lead] == '\r' || p[lead] == '\n'))
        lead++;
    if (lead) {
        conn_consume(c, lead);
        p = c->in.p;
        n = c->in.len;
    }
    if (!n)
        return 0;
    size_t from = c->scan > 2 ? c->scan - 2 : 0, end = 0;
    for (;;) {
        char *nl = memchr(p + from, '\n', n - from);
        if (!nl)
            break;
        size_t i = (size_t)(nl - p);
        if (i + 1 < n && p[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
            end = i + 3;
            break;
        }
        from = i + 1;
    }
    if (!end) {
        c->scan = n;
        if (n > HEAD_LIMIT) {
            go_raw_error(c, 431, NULL);
            return -1;
        }
        return 0;
    }
    if (end > HEAD_LIMIT) {
        go_raw_error(c, 431, NULL);
        return -1;
    }
    rq_t *q = &c->rq;
    memset(q, 0, sizeof *q);
    q->head_len = end;
    /* request line */
    char *le = memchr(p, '\n', end);
    size_t ll = (size_t)(le - p);
    if (ll && p[ll - 1] == '\r')
        ll--;
    char *sp1 = memchr(p, ' ', ll);
    if (!sp1) {
        go_raw_error(c, 400, NULL);
        return -1;
    }
    char *sp2 = memchr(sp1 + 1, ' ', ll - (size_t)(sp1 + 1 - p));
    if (!sp2 || sp1 == p || sp2 == sp1 + 1) {
        go_raw_error(c, 400, NULL);
        return -1;
    }
    q->m_off = 0;
    q->m_len = (size_t)(sp1 - p);
    if (q->m_len > 32) {
        go_raw_error(c, 400, NULL);
        return -1;
    }
    for (size_t i = 0; i < q->m_len; i++)
        if (!is_tchar((unsigned char)p[i])) {
            go_raw_error(c, 400, NULL);
            return -1;
        }
    q->is_head = q->m_len == 4 && !memcmp(p, "HEAD", 4);
    const char *ver = sp2 + 1;
    size_t vl = ll - (size_t)(ver - p);
    if (vl == 8 && !memcmp(ver, "HTTP/1.1", 8)) {
        q->http10 = 0;
    } else if (vl == 8 && !memcmp(ver, "HTTP/1.0", 8)) {
        q->http10 = 1;
    } else if (vl == 8 && !memcmp(ver, "HTTP/", 5) && is_digit((unsigned char)ver[5]) &&
               ver[6] == '.' && is_digit((unsigned char)ver[7])) {
        go_raw_error(c, 505, "unsupported protocol version");
        return -1;
    } else {
        go_raw_error(c, 400, NULL);
        return -1;
    }
    /* target */
    size_t t0 = (size_t)(sp1 + 1 - p), tl = (size_t)(sp2 - sp1 - 1);
    for (size_t i = 0; i < tl; i++) {
        unsigned char ch = (unsigned char)p[t0 + i];
        if (ch < 0x20 || ch == 0x7f) {
            go_raw_error(c, 400, NULL);
            return -1;
        }
    }
    q->t_off = t0;
    q->t_len = tl;
    size_t ps = t0, pe = t0 + tl;
    if (p[t0] != '/') {
        if (tl >= 7 && (!strncasecmp(p + t0, "http://", 7) || !strncasecmp(p + t0, "https://", 8))) {
            size_t k = t0 + (p[t0 + 4] == ':' ? 7 : 8);
            while (k < pe && p[k] != '/' && p[k] != '?')
                k++;
            ps = k;
        } else if (!(tl == 1 && p[t0] == '*')) {
            go_raw_error(c, 400, NULL);
            return -1;
        }
    }
    char *qm = memchr(p + ps, '?', pe - ps);
    size_t pathe = qm ? (size_t)(qm - p) : pe;
    q->p_off = ps;
    q->p_len = pathe - ps;
    q->path_root = q->p_len == 0;
    if (qm) {
        q->has_q = 1;
        q->q_off = pathe + 1;
        q->q_len = pe - pathe - 1;
    }
    if (unescape(p + q->p_off, q->p_len, NULL, 0) < 0) {
        go_raw_error(c, 400, NULL);
        return -1;
    }
    /* headers */
    size_t i = (size_t)(le - p) + 1;
    int nhost = 0, has_te = 0, chunked = 0, has_cl = 0;
    unsigned long long cl = 0;
    const char *expect = NULL;
    size_t expect_len = 0;
    while (i < end) {
        char *e = memchr(p + i, '\n', end - i);
        size_t l = (size_t)(e - (p + i));
        if (l && p[i + l - 1] == '\r')
            l--;
        if (!l)
            break;
        const char *h = p + i;
        i = (size_t)(e - p) + 1;
        if (h[0] == ' ' || h[0] == '\t') {
            go_raw_error(c, 400, NULL);
            return -1;
        }
        const char *colon = memchr(h, ':', l);
        if (!colon || colon == h) {
            go_raw_error(c, 400, NULL);
            return -1;
        }
        size_t nl2 = (size_t)(colon - h);
        for (size_t k = 0; k < nl2; k++)
            if (!is_tchar((unsigned char)h[k])) {
                go_raw_error(c, 400, NULL);
                return -1;
            }
        const char *v = colon + 1;
        size_t vlen = l - nl2 - 1;
        while (vlen && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        for (size_t k = 0; k < vlen; k++) {
            unsigned char ch = (unsigned char)v[k];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                go_raw_error(c, 400, NULL);
                return -1;
            }
        }
        if (ci_eq(h, nl2, "content-length")) {
            if (!vlen || vlen > 18) {
                go_raw_error(c, 400, NULL);
                return -1;
            }
            unsigned long long x = 0;
            for (size_t k = 0; k < vlen; k++) {
                if (!is_digit((unsigned char)v[k])) {
                    go_raw_error(c, 400, NULL);
                    return -1;
                }
                x = x * 10 + (unsigned)(v[k] - '0');
            }
            if (has_cl && x != cl) {
                go_raw_error(c, 400, NULL);
                return -1;
            }
            has_cl = 1;
            cl = x;
        } else if (ci_eq(h, nl2, "transfer-encoding")) {
            has_te = 1;
            if (vlen >= 7 && !strncasecmp(v + vlen - 7, "chunked", 7))
                chunked = 1;
        } else if (ci_eq(h, nl2, "content-type")) {
            if (!q->has_ct) {
                q->has_ct = 1;
                q->ct_off = (size_t)(v - p);
                q->ct_len = vlen;
            }
        } else if (ci_eq(h, nl2, "dapr-api-token")) {
            if (!q->has_tok) {
                q->has_tok = 1;
                q->tok_off = (size_t)(v - p);
                q->tok_len = vlen;
            }
        } else if (ci_eq(h, nl2, "connection")) {
            size_t k = 0;
            while (k < vlen) {
                while (k < vlen && (v[k] == ' ' || v[k] == ',' || v[k] == '\t'))
                    k++;
                size_t s = k;
                while (k < vlen && v[k] != ',' && v[k] != ' ' && v[k] != '\t')
                    k++;
                if (ci_eq(v + s, k - s, "close"))
                    q->want_close = 1;
                else if (ci_eq(v + s, k - s, "keep-alive"))
                    q->want_ka = 1;
            }
        } else if (ci_eq(h, nl2, "expect")) {
            if (!expect) {
                expect = v;
                expect_len = vlen;
            }
        } else if (ci_eq(h, nl2, "host")) {
            nhost++;
        }
    }
    if (!q->http10 && nhost == 0) {
        go_raw_error(c, 400, "missing required Host header");
        return -1;
    }
    if (nhost > 1) {
        go_raw_error(c, 400, "too many Host headers");
        return -1;
    }
    if (has_te) {
        if (chunked)
            go_raw_error(c, 411, "chunked request bodies are not supported by fakedapr");
        else
            go_raw_error(c, 501, "unsupported transfer encoding");
        return -1;
    }
    q->clen = cl;
    if (expect && expect_len) {
        int cont = 0;
        size_t k = 0;
        while (k < expect_len) {
            while (k < expect_len && (expect[k] == ' ' || expect[k] == ','))
                k++;
            size_t s = k;
            while (k < expect_len && expect[k] != ',' && expect[k] != ' ')
                k++;
            if (ci_eq(expect + s, k - s, "100-continue"))
                cont = 1;
        }
        if (cont) {
            q->expect100 = !q->http10 && cl > 0;
        } else {
            /* net/http sendExpectationFailed */
            http_date();
            buf_printf(&c->out,
                       "HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: %s\r\n"
                       "Content-Length: 0\r\n\r\n",
                       g_date);
            c->close_after_write = 1;
            c->in.len = 0;
            return -1;
        }
    }
    return 1;
}

/* one step of request processing: 1 progress, 0 need input, -1 closed */
static int conn_step(conn_t *c)
{
    if (c->state == ST_HEAD) {
        int r = parse_head(c);
        if (r <= 0)
            return r < 0 ? 1 : 0;
        c->state = ST_BODY;
        rq_t *q = &c->rq;
        if (c->ctl) {
            if (q->clen > CTL_BODY_MAX) {
                go_raw_error(c, 413, NULL);
                c->state = ST_HEAD;
            }
            return 1;
        }
        if (q->clen > cfg.hard_cap) {
            handle_dapr(c, NULL, 0, PH_MISSING);
            return conn_apply(c, q->head_len, 1) < 0 ? -1 : 1;
        }
        if (q->expect100 && c->in.len < q->head_len + q->clen) {
            if (handle_dapr(c, NULL, 0, PH_EARLY) == H_DONE)
                return conn_apply(c, q->head_len, 1) < 0 ? -1 : 1;
            buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        }
        return 1;
    }
    if (c->state == ST_BODY) {
        rq_t *q = &c->rq;
        size_t total = q->head_len + (size_t)q->clen;
        if (c->in.len < total)
            return 0;
        if (c->ctl)
            handle_ctl(c, c->in.p + q->head_len, (size_t)q->clen);
        else
            handle_dapr(c, c->in.p + q->head_len, (size_t)q->clen, PH_FULL);
        return conn_apply(c, total, 0) < 0 ? -1 : 1;
    }
    return 0;
}

/* 1 all sent, 0 pending, -1 error */
static int conn_flush(conn_t *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w < 0 && errno == EINTR)
            continue;
        return -1;
    }
    c->out.len = c->out_off = 0;
    if (c->out.cap > (1u << 20)) {
        buf_free(&c->out);
    }
    return 1;
}

static void conn_run(conn_t *c)
{
    for (;;) {
        int progressed = 0;
        while ((c->state == ST_HEAD || c->state == ST_BODY) && !c->close_after_write &&
               c->out.len - c->out_off < OUT_HIWAT) {
            int r = conn_step(c);
            if (r < 0)
                return;
            if (!r)
                break;
            progressed = 1;
        }
        if (c->out.len > c->out_off) {
            int f = conn_flush(c);
            if (f < 0) {
                conn_close(c);
                return;
            }
            if (f == 0) {
                conn_set_events(c);
                return;
            }
            if (progressed && !c->close_after_write)
                continue;
        }
        break;
    }
    if (c->close_after_write) {
        c->close_after_write = 0;
        shutdown(c->fd, SHUT_WR);
        c->state = ST_DRAIN;
        c->in.len = 0;
        tmr_push(now_ms() + LINGER_MS, c, T_LINGER);
    }
    if (c->rd_eof && c->state != ST_WAIT) {
        conn_close(c);
        return;
    }
    conn_set_events(c);
}

static int conn_read(conn_t *c)
{
    for (int k = 0; k < 8; k++) {
        ssize_t r;
        size_t avail;
        if (c->state == ST_HANG || c->state == ST_DRAIN) {
            static char sink[65536];
            avail = sizeof sink;
            r = recv(c->fd, sink, avail, 0);
        } else {
            size_t need = 16384;
            if (c->state == ST_BODY) {
                size_t total = c->rq.head_len + (size_t)c->rq.clen;
                if (total > c->in.len && total - c->in.len > need)
                    need = total - c->in.len;
            }
            if (c->in.cap - c->in.len < 4096 || (c->state == ST_BODY && c->in.cap - c->in.len < need))
                buf_reserve(&c->in, need);
            avail = c->in.cap - c->in.len;
            r = recv(c->fd, c->in.p + c->in.len, avail, 0);
            if (r > 0)
                c->in.len += (size_t)r;
        }
        if (r > 0) {
            if ((size_t)r < avail)
                break;
            continue;
        }
        if (r == 0) {
            c->rd_eof = 1;
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        if (errno == EINTR)
            continue;
        conn_close(c);
        return -1;
    }
    return 0;
}

static void conn_event(conn_t *c, uint32_t ev)
{
    if (ev & EPOLLERR) {
        conn_close(c);
        return;
    }
    if ((ev & EPOLLHUP) && c->state == ST_WAIT) {
        conn_close(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP)) {
        if (conn_read(c) < 0)
            return;
        if (c->state == ST_HANG || c->state == ST_DRAIN) {
            if (c->rd_eof)
                conn_close(c);
            return;
        }
    }
    conn_run(c);
}

static void accept_all(int lfd, int ctl)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, EMFILE, ... */
        }
        if ((size_t)fd > TAG_FD_MASK) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if ((size_t)fd >= g_nconns) {
            size_t nn = g_nconns ? g_nconns : 1024;
            while (nn <= (size_t)fd)
                nn *= 2;
            conn_t **ncs = realloc(g_conns, nn * sizeof *ncs);
            if (!ncs)
                die_oom();
            memset(ncs + g_nconns, 0, (nn - g_nconns) * sizeof *ncs);
            g_conns = ncs;
            g_nconns = nn;
        }
        conn_t *c = calloc(1, sizeof *c);
        if (!c)
            die_oom();
        c->fd = fd;
        c->ctl = ctl;
        c->id = ++g_conn_seq;
        c->state = ST_HEAD;
        c->events = EPOLLIN;
        g_conns[fd] = c;
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.u64 = (c->id << TAG_ID_SHIFT) | (uint64_t)fd;
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            g_conns[fd] = NULL;
            close(fd);
            free(c);
            continue;
        }
        if (!ctl) {
            st.conns_open++;
            st.conns_total++;
        }
    }
}

static void run_timers(void)
{
    uint64_t now = now_ms();
    while (g_heap_len && g_heap[0].at <= now) {
        tmr_t t = tmr_pop();
        if (t.fd < 0 || (size_t)t.fd >= g_nconns)
            continue;
        conn_t *c = g_conns[t.fd];
        if (!c || c->id != t.id)
            continue;
        if (t.type == T_SLOW && c->state == ST_WAIT) {
            buf_add(&c->out, c->delayed.p, c->delayed.len);
            c->delayed.len = 0;
            if (c->delayed_close)
                c->close_after_write = 1;
            c->state = ST_HEAD;
            conn_run(c);
        } else if (t.type == T_LINGER && c->state == ST_DRAIN) {
            conn_close(c);
        }
    }
}

/* ------------------------------------------------------------------ listeners / main */

static int make_listener(int port, int *actual)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    int fam;
    if (inet_pton(AF_INET, cfg.bind, &s4->sin_addr) == 1) {
        fam = AF_INET;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, cfg.bind, &s6->sin6_addr) == 1) {
        fam = AF_INET6;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *actual = ntohs(fam == AF_INET ? s4->sin_port : s6->sin6_port);
    return fd;
}

static int add_listener(int fd)
{
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = (uint64_t)fd; /* id 0 */
    return epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
}

static int open_dapr_listener(void)
{
    int port;
    int fd = make_listener(g_dapr_port, &port);
    if (fd < 0)
        return -1;
    g_dapr_lfd = fd;
    g_dapr_port = port;
    add_listener(fd);
    return 0;
}

static void usage(FILE *f)
{
    fputs(
        "usage: fakedapr --port N [--control-port M] [--record FILE] [--times FILE] [--token TOKEN]\n"
        "                [--pubsub NAME] [--max-body BYTES] [--print] [--app-id ID]\n"
        "                [--bind ADDR]\n"
        "  --port 0 / --control-port 0 pick free ports (control defaults to 0);\n"
        "  line 1 of stdout is always 'port=N control=M'.\n"
        "  --max-body 0 = no limit (bodies are still buffered only up to 64 MiB).\n"
        "control port (HTTP/1.1):\n"
        "  POST /mode  body or query: k=v pairs separated by & or newlines, %XX decoded\n"
        "       mode=ok|fail|garbage|slow|hang|reset|down  (resets the other knobs)\n"
        "       status=200..599 code=ERR_... message=TEXT error=TEXT count=N\n"
        "       match=SUBSTRING ms=MILLIS raw=0|1 healthz=200..599\n"
        "  GET /mode, GET /stats, POST /reset-stats, GET /healthz\n",
        f);
}

static const char *argval(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "fakedapr: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static long argnum(const char *opt, const char *v, long lo, long hi)
{
    long x;
    if (parse_int(v, lo, hi, &x)) {
        fprintf(stderr, "fakedapr: bad value for %s: %s\n", opt, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--port"))
            cfg.port = (int)argnum(a, argval(argc, argv, &i), 0, 65535);
        else if (!strcmp(a, "--control-port"))
            cfg.ctl_port = (int)argnum(a, argval(argc, argv, &i), 0, 65535);
        else if (!strcmp(a, "--record"))
            cfg.record = argval(argc, argv, &i);
        else if (!strcmp(a, "--times"))
            cfg.times = argval(argc, argv, &i);
        else if (!strcmp(a, "--token"))
            cfg.token = argval(argc, argv, &i);
        else if (!strcmp(a, "--pubsub"))
            cfg.pubsub = argval(argc, argv, &i);
        else if (!strcmp(a, "--app-id"))
            cfg.app_id = argval(argc, argv, &i);
        else if (!strcmp(a, "--bind"))
            cfg.bind = argval(argc, argv, &i);
        else if (!strcmp(a, "--max-body"))
            cfg.max_body = (unsigned long long)argnum(a, argval(argc, argv, &i), 0, LONG_MAX);
        else if (!strcmp(a, "--print"))
            cfg.print = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "fakedapr: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (cfg.port < 0) {
        fputs("fakedapr: --port is required\n", stderr);
        usage(stderr);
        return 2;
    }
    if (cfg.token && !*cfg.token)
        cfg.token = NULL; /* daprd: empty token = no auth */
    if (cfg.token)
        cfg.token_len = strlen(cfg.token);
    if (cfg.max_body == 0)
        cfg.hard_cap = 64ULL << 20;
    else
        cfg.hard_cap = cfg.max_body + (1ULL << 20) > (64ULL << 20) ? cfg.max_body + (1ULL << 20)
                                                                   : (64ULL << 20);

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (cfg.record) {
        g_rec = fopen(cfg.record, "a");
        if (!g_rec) {
            fprintf(stderr, "fakedapr: cannot open %s: %s\n", cfg.record, strerror(errno));
            return 1;
        }
    }
    if (cfg.times && !(g_times = fopen(cfg.times, "a"))) {
        fprintf(stderr, "fakedapr: cannot open %s: %s\n", cfg.times, strerror(errno));
        return 1;
    }
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        perror("fakedapr: epoll_create1");
        return 1;
    }
    g_dapr_port = cfg.port;
    if (open_dapr_listener() < 0) {
        fprintf(stderr, "fakedapr: cannot listen on %s:%d: %s\n", cfg.bind, cfg.port,
                strerror(errno));
        return 1;
    }
    g_ctl_lfd = make_listener(cfg.ctl_port, &g_ctl_port);
    if (g_ctl_lfd < 0) {
        fprintf(stderr, "fakedapr: cannot listen on %s:%d (control): %s\n", cfg.bind,
                cfg.ctl_port, strerror(errno));
        return 1;
    }
    add_listener(g_ctl_lfd);

    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    g_sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    if (g_sigfd >= 0)
        add_listener(g_sigfd);

    printf("port=%d control=%d\n", g_dapr_port, g_ctl_port);
    fflush(stdout);

    struct epoll_event evs[512];
    for (;;) {
        int timeout = -1;
        if (g_heap_len) {
            uint64_t now = now_ms();
            timeout = g_heap[0].at <= now ? 0 : (int)(g_heap[0].at - now);
        }
        int n = epoll_wait(g_ep, evs, 512, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("fakedapr: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            uint64_t id = tag >> TAG_ID_SHIFT;
            int fd = (int)(tag & TAG_FD_MASK);
            if (id == 0) {
                if (fd == g_sigfd && g_sigfd >= 0) {
                    struct signalfd_siginfo si;
                    if (read(g_sigfd, &si, sizeof si) == (ssize_t)sizeof si)
                        fprintf(stderr, "fakedapr: %s from pid %u, exiting\n",
                                si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
                                (unsigned)si.ssi_pid);
                    if (g_rec)
                        fflush(g_rec);
                    if (g_times)
                        fflush(g_times);
                    fflush(stdout);
                    return 0;
                }
                if (fd == g_dapr_lfd && g_dapr_lfd >= 0)
                    accept_all(fd, 0);
                else if (fd == g_ctl_lfd)
                    accept_all(fd, 1);
                continue;
            }
            if ((size_t)fd >= g_nconns)
                continue;
            conn_t *c = g_conns[fd];
            if (!c || c->id != id)
                continue;
            conn_event(c, evs[i].events);
        }
        run_timers();
    }
}
