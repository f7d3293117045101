/*
 * One port for REST and WebSockets (httpd.h). The sniffer thread accepts,
 * peeks at each request head with a deadline and routes it:
 *   - first byte not A-Z, head longer than HTTPD_HEAD_MAX, a non-GET request
 *     line or a complete head without "Upgrade: websocket": MHD;
 *   - a complete upgrade head: api_gate decides; a WebSocket route goes to
 *     lws, a refusal is answered here, a REST route goes to MHD;
 *   - silence past the deadline, or EOF: closed.
 * Ownership of the fd passes with the hand-off; MHD_add_connection and
 * lws_adopt_socket_vhost close it themselves on failure. lws is touched only
 * on its service thread: the sniffer queues fds and calls
 * lws_cancel_service, and the queue is drained in EVENT_WAIT_CANCELLED.
 */
#include "httpd.h"

#include "api.h"
#include "events.h"
#include "log.h"
#include "sessions.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Upgrades waiting for the lws thread; past this a new one is closed. */
#define ADOPT_QUEUE_MAX 65536

struct pending {
    int fd; /* -1 when the slot is free */
    uint64_t deadline_ms;
    struct sockaddr_storage addr;
    socklen_t alen;
};

/* ---- request head parsing (sniffer) ---- */

struct httpd {
    struct api *api;
    unsigned port;
    unsigned sniff_ms;
    int listen_fd;
    int epfd;
    int stop_fd; /* eventfd that stops the sniffer */
    pthread_t sniffer;
    bool sniffer_started;
    struct pending pend[HTTPD_PENDING_MAX];
    bool accept_paused;     /* every pend[] slot busy: listen fd out of epoll's read set */
    struct httpd_head head; /* the sniffer's parse buffer */

    struct MHD_Daemon *mhd;

    struct lws_context *lws;
    struct lws_vhost *vhost;
    pthread_t lws_thread;
    bool lws_started;
    atomic_bool lws_stop;
    pthread_mutex_t adopt_lock; /* guards adopt_fds, adopt_n and adopt_cap */
    int *adopt_fds;
    size_t adopt_n, adopt_cap;
    struct ws_pss *terms;    /* terminal WebSockets (lws thread only) */
    struct ws_pss *xss;      /* exec stream WebSockets (lws thread only) */
    atomic_int slow_workers; /* API_SLOW handlers running (their connections suspended) */
    struct ws_pss *evs;      /* /api/v1/events WebSockets (lws thread only) */
};

/* Largest text message on a terminal WebSocket (a resize request). */
#define TERM_TEXT_MAX 1024

/* Per-WebSocket state (lws allocates it zeroed). */
struct ws_pss {
    bool open;
    bool hello_sent;
    /* /api/v1/sessions/{id}/terminal: */
    struct lws *wsi;
    struct sessions_viewer *term;
    struct ws_pss *next;
    /* /api/v1/events: the last message sent (events.h) and the list link. */
    bool events;
    uint64_t ev_seq;
    struct ws_pss *ev_next;
    char text[TERM_TEXT_MAX];
    size_t text_len;
    bool text_bad;
    /* /api/v1/sessions/{id}/exec (docs/api.md "Exec stream"): */
    bool exec;
    char sid[128];
    struct sessions_xstream *xs;
    struct ws_pss *x_next;
    char *xtext; /* text message being gathered (malloc'd, at most XS_TEXT_MAX) */
    size_t xtext_len;
    bool xtext_bad;
    bool rx_paused;    /* stdin queue full: lws reads nothing until it drains */
    bool eof;          /* the client sent eof */
    char xerr[300];    /* an error message to send, then close with xclose */
    int xclose;        /* close code once the last message is out (0 = not closing) */
    bool xclose_ready; /* the last message is written: close at the next writeable */
};

/* Largest text message on an exec stream (a start message). */
#define XS_TEXT_MAX (1u << 20)
/* Output bytes per binary message on an exec stream. */
#define XS_FRAME_MAX (64u << 10)

/* A published event (any thread, events.h): wake the lws thread. */
static void events_wake(void *opaque)
{
    struct httpd *h = opaque;
    lws_cancel_service(h->lws);
}

/* A session's terminal has news for its viewers (loop thread): wake the lws thread. */
static void term_wake(void *opaque)
{
    struct httpd *h = opaque;
    lws_cancel_service(h->lws);
}

/* The session id of a path "/api/v1/sessions/ID<suf>", into id. */
static bool sess_path(const char *uri, const char *suf, char *id, size_t len)
{
    static const char pre[] = "/api/v1/sessions/";
    size_t ul = uri ? strlen(uri) : 0, sl = strlen(suf);
    if (ul <= sizeof(pre) - 1 + sl || strncmp(uri, pre, sizeof(pre) - 1) ||
        strcmp(uri + ul - sl, suf))
        return false;
    size_t n = ul - (sizeof(pre) - 1) - sl;
    if (n >= len || memchr(uri + sizeof(pre) - 1, '/', n))
        return false;
    memcpy(id, uri + sizeof(pre) - 1, n);
    id[n] = '\0';
    return true;
}

static bool term_path(const char *uri, char *id, size_t len)
{
    return sess_path(uri, "/terminal", id, len);
}

/* ---- the exec stream (lws thread) ---- */

/* End the stream with {"type":"error"} and close `code` once it is out; later input is ignored. */
static void xs_fail(struct ws_pss *pss, int code, const char *why)
{
    if (pss->xclose)
        return;
    LOG_DEBUG("event=exec_stream_error id=%s code=%d", pss->sid, code);
    snprintf(pss->xerr, sizeof(pss->xerr), "%s", why);
    pss->xclose = code;
    lws_callback_on_writable(pss->wsi);
}

/* The start message: check it and start the command. */
static void xs_start_msg(struct httpd *h, struct ws_pss *pss, json_t *j)
{
    char err[512] = "";
    struct api_xstart st;
    if (api_sessions_xstart_parse(j, &st, err, sizeof(err)) < 0) {
        xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, err);
        return;
    }
    struct sessions_exec x = {.argv = st.argv,
                              .argc = st.argc,
                              .env = (const char *const *)st.env,
                              .n_env = st.n_env,
                              .cwd = st.cwd};
    struct sessions *m = api_sessions_attached();
    int rc =
        m ? sessions_xs_start(m, pss->sid, &x, term_wake, h, &pss->xs, err, sizeof(err)) : -ENOENT;
    if (rc == -ENOENT)
        xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "no such session");
    else if (rc == -EAGAIN)
        xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "session is not running");
    else if (rc < 0)
        xs_fail(pss, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, err);
    else if (st.timeout_s)
        lws_set_timer_usecs(pss->wsi, (lws_usec_t)st.timeout_s * LWS_US_PER_SEC);
    api_sessions_xstart_fini(&st);
}

/* A complete text message on an exec stream. */
static void xs_text(struct httpd *h, struct ws_pss *pss)
{
    json_error_t jerr;
    json_t *j = json_loadb(pss->xtext, pss->xtext_len, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = json_string_value(json_object_get(j, "type"));
    json_t *a, *b;
    if (!json_is_object(j)) {
        xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "message is not a JSON object");
    } else if (!type) {
        xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "type must be a string");
    } else if (!strcmp(type, "start")) {
        if (pss->xs)
            xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "a second start");
        else
            xs_start_msg(h, pss, j);
    } else if (!pss->xs) {
        xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "the first message must be start");
    } else if (!strcmp(type, "eof")) {
        pss->eof = true;
        if (sessions_xs_eof(pss->xs) == -ENOMEM)
            xs_fail(pss, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
    } else if (!strcmp(type, "signal")) {
        a = json_object_get(j, "signal");
        if (!json_is_integer(a) || json_integer_value(a) < 1 || json_integer_value(a) > 64)
            xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                    "signal must be an integer from 1 to 64");
        else if (sessions_xs_signal(pss->xs, (int)json_integer_value(a)) == -ENOMEM)
            xs_fail(pss, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
    } else if (!strcmp(type, "resize")) {
        /* No PTY on the exec stream: a good resize changes nothing. */
        a = json_object_get(j, "cols");
        b = json_object_get(j, "rows");
        if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 1 ||
            json_integer_value(a) > 65535 || json_integer_value(b) < 1 ||
            json_integer_value(b) > 65535)
            xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                    "cols and rows must be integers from 1 to 65535");
    } else {
        xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "unknown message type");
    }
    json_decref(j);
}

/* Bytes from the client on an exec stream (one fragment of a message). */
static int xs_receive(struct httpd *h, struct ws_pss *pss, struct lws *wsi, const void *in,
                      size_t len)
{
    if (pss->xclose)
        return 0; /* failing: the error is on its way */
    if (lws_frame_is_binary(wsi)) {
        if (!pss->xs) {
            xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "binary message before start");
            return 0;
        }
        if (pss->eof) {
            xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "stdin after eof");
            return 0;
        }
        int rc = len ? sessions_xs_input(pss->xs, in, len) : 0;
        if (rc == -ENOBUFS || rc == -ENOMEM)
            xs_fail(pss, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "stdin queue full");
        /* -EPIPE: the command is over; its exit is on its way, the bytes have nowhere to go. */
        if (!pss->rx_paused && sessions_xs_input_queued(pss->xs) >= SESSIONS_XS_IN_HIGH) {
            pss->rx_paused = true;
            lws_rx_flow_control(wsi, 0);
        }
        return 0;
    }
    if (!pss->xtext_bad && len > XS_TEXT_MAX - pss->xtext_len) {
        pss->xtext_bad = true;
    } else if (!pss->xtext_bad && len) {
        char *t = realloc(pss->xtext, pss->xtext_len + len);
        if (!t) {
            xs_fail(pss, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
            return 0;
        }
        pss->xtext = t;
        memcpy(pss->xtext + pss->xtext_len, in, len);
        pss->xtext_len += len;
    }
    if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
        if (pss->xtext_bad)
            xs_fail(pss, LWS_CLOSE_STATUS_POLICY_VIOLATION, "text message over 1 MiB");
        else
            xs_text(h, pss);
        free(pss->xtext);
        pss->xtext = NULL;
        pss->xtext_len = 0;
        pss->xtext_bad = false;
    }
    return 0;
}

/* Write one text message; -1 when the connection is to be dropped. */
static int ws_text(struct lws *wsi, const char *t)
{
    size_t n = strlen(t);
    unsigned char *b = malloc(LWS_PRE + n);
    if (!b)
        return -1;
    memcpy(b + LWS_PRE, t, n);
    int w = lws_write(wsi, b + LWS_PRE, n, LWS_WRITE_TEXT);
    free(b);
    return w < (int)n ? -1 : 0;
}

/* The exec stream can write: one message per call. */
static int xs_writeable(struct ws_pss *pss, struct lws *wsi)
{
    if (pss->xclose_ready) {
        lws_close_reason(wsi, (enum lws_close_status)pss->xclose, NULL, 0);
        return -1;
    }
    char msg[400];
    if (pss->xclose && pss->xerr[0]) {
        json_t *j = json_pack("{s:s,s:s}", "type", "error", "error", pss->xerr);
        char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        int rc = t ? ws_text(wsi, t) : -1;
        free(t);
        pss->xerr[0] = '\0';
        pss->xclose_ready = true;
        lws_callback_on_writable(wsi);
        return rc;
    }
    if (!pss->xs || pss->xclose)
        return 0;
    static unsigned char buf[LWS_PRE + 1 + XS_FRAME_MAX];
    struct sessions_xs_event ev;
    sessions_xs_take(pss->xs, buf + LWS_PRE + 1, XS_FRAME_MAX, &ev);
    switch (ev.kind) {
    case SESSIONS_XS_NONE:
        return 0;
    case SESSIONS_XS_STDOUT:
    case SESSIONS_XS_STDERR:
        buf[LWS_PRE] = (unsigned char)ev.kind;
        if (lws_write(wsi, buf + LWS_PRE, ev.len + 1, LWS_WRITE_BINARY) < (int)(ev.len + 1))
            return -1;
        break;
    case SESSIONS_XS_STARTED:
        snprintf(msg, sizeof(msg), "{\"type\":\"started\",\"pid\":%lld}", ev.pid);
        if (ws_text(wsi, msg) < 0)
            return -1;
        break;
    case SESSIONS_XS_EXIT: {
        json_t *j =
            json_pack("{s:s,s:i,s:b}", "type", "exit", "code", ev.code, "timed_out", ev.timed_out);
        if (j && ev.error[0])
            json_object_set_new(j, "error", json_string(ev.error));
        char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        int rc = t ? ws_text(wsi, t) : -1;
        free(t);
        if (rc < 0)
            return -1;
        pss->xclose = LWS_CLOSE_STATUS_NORMAL;
        pss->xclose_ready = true;
        break;
    }
    case SESSIONS_XS_ERROR:
        pss->xclose = 0;
        xs_fail(pss, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, ev.error);
        return 0;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* A complete text message on a terminal: {"type":"resize","cols":C,"rows":R}. */
static void term_text(struct ws_pss *pss)
{
    json_t *j = json_loadb(pss->text, pss->text_len, 0, NULL);
    json_t *c = json_object_get(j, "cols"), *r = json_object_get(j, "rows");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && !strcmp(type, "resize") && json_is_integer(c) && json_is_integer(r) &&
        json_integer_value(c) >= 1 && json_integer_value(c) <= 65535 &&
        json_integer_value(r) >= 1 && json_integer_value(r) <= 65535) {
        if (sessions_term_resize(pss->term, (unsigned)json_integer_value(c),
                                 (unsigned)json_integer_value(r)) < 0)
            LOG_DEBUG("event=term_resize_failed");
    } else {
        LOG_DEBUG("event=term_text_ignored");
    }
    json_decref(j);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Parse the complete head raw[0..len) into h (strings point into h->buf). 0 or -EINVAL. */
static int head_parse(struct httpd_head *h, const char *raw, size_t len)
{
    memset(h, 0, sizeof(*h));
    if (len > HTTPD_HEAD_MAX)
        return -EINVAL;
    memcpy(h->buf, raw, len);
    h->buf[len] = '\0';
    char *line = h->buf;
    bool first = true;
    while (line && *line) {
        char *eol = strstr(line, "\r\n");
        if (eol)
            *eol = '\0';
        if (first) {
            char *sp1 = strchr(line, ' ');
            char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
            if (!sp1 || !sp2)
                return -EINVAL;
            *sp1 = '\0';
            *sp2 = '\0';
            h->method = line;
            char *q = strchr(sp1 + 1, '?');
            if (q)
                *q = '\0';
            h->path = sp1 + 1;
            first = false;
        } else if (*line) {
            char *colon = strchr(line, ':');
            if (!colon)
                return -EINVAL;
            *colon = '\0';
            char *v = trim(colon + 1);
            const char **slot = NULL;
            if (!strcasecmp(line, "Host"))
                slot = &h->host;
            else if (!strcasecmp(line, "Origin"))
                slot = &h->origin;
            else if (!strcasecmp(line, "Authorization"))
                slot = &h->authorization;
            else if (!strcasecmp(line, "Cookie"))
                slot = &h->cookie;
            else if (!strcasecmp(line, "Upgrade"))
                slot = &h->upgrade;
            if (slot && *slot)
                return -EINVAL; /* a repeated security header is ambiguous */
            if (slot)
                *slot = v;
        }
        line = eol ? eol + 2 : NULL;
    }
    return first ? -EINVAL : 0;
}

/* ---- lws side ---- */

static void lws_log_emit(int level, const char *line)
{
    char esc[512];
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_escape(esc, sizeof(esc), line, n);
    log_msg(level == LLL_ERR ? LOG_ERR : LOG_WARN, "event=lws msg=\"%s\"", esc);
}

static void adopt_queued(struct httpd *h)
{
    /* Take the whole queue; the sniffer starts a new one. */
    pthread_mutex_lock(&h->adopt_lock);
    int *fds = h->adopt_fds;
    size_t n = h->adopt_n;
    h->adopt_fds = NULL;
    h->adopt_n = h->adopt_cap = 0;
    pthread_mutex_unlock(&h->adopt_lock);
    for (size_t i = 0; i < n; i++) {
        /* On failure lws closes the fd itself. */
        if (!lws_adopt_socket_vhost(h->vhost, fds[i]))
            LOG_WARN("event=ws_adopt_failed");
    }
    free(fds);
}

/* Copy header `tok` of `wsi` into buf; NULL when absent. */
static const char *ws_hdr(struct lws *wsi, enum lws_token_indexes tok, char *buf, int len)
{
    if (lws_hdr_total_length(wsi, tok) <= 0)
        return NULL;
    return lws_hdr_copy(wsi, buf, len, tok) > 0 ? buf : NULL;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct httpd *h = lws_context_user(lws_get_context(wsi));
    struct ws_pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (h) {
            adopt_queued(h);
            for (struct ws_pss *t = h->terms; t; t = t->next)
                if (sessions_term_pending(t->term))
                    lws_callback_on_writable(t->wsi);
            for (struct ws_pss *x = h->xss; x; x = x->x_next) {
                if (!x->xs)
                    continue;
                if (sessions_xs_pending(x->xs))
                    lws_callback_on_writable(x->wsi);
                if (x->rx_paused && sessions_xs_input_queued(x->xs) < SESSIONS_XS_IN_HIGH / 2) {
                    x->rx_paused = false;
                    lws_rx_flow_control(x->wsi, 1);
                }
            }
            uint64_t last = events_last_seq();
            for (struct ws_pss *e = h->evs; e; e = e->ev_next)
                if (e->ev_seq < last)
                    lws_callback_on_writable(e->wsi);
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* The sniffer checked this head already; check again on what lws
         * parsed, so the two parsers cannot disagree into a bypass. */
        char uri[512], host[256], origin[256], authz[256], cookie[2048];
        struct api_req req = {
            .method = "GET",
            .path = ws_hdr(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)),
            .host = ws_hdr(wsi, WSI_TOKEN_HOST, host, sizeof(host)),
            .origin = ws_hdr(wsi, WSI_TOKEN_ORIGIN, origin, sizeof(origin)),
            .authorization = ws_hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, authz, sizeof(authz)),
            .cookie = ws_hdr(wsi, WSI_TOKEN_HTTP_COOKIE, cookie, sizeof(cookie)),
            .upgrade = true,
        };
        struct api_resp resp = {0};
        const struct api_route *r = api_gate(h->api, &req, &resp);
        api_resp_fini(&resp);
        return r && r->kind == API_WS ? 0 : -1;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        char uri[512], id[128];
        pss->open = true;
        pss->wsi = wsi;
        api_count_ws(h->api, 1);
        api_count_response(h->api, 101);
        if (term_path(ws_hdr(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)), id, sizeof(id))) {
            struct sessions *m = api_sessions_attached();
            int rc = m ? sessions_term_attach(m, id, term_wake, h, &pss->term) : -ENOENT;
            if (rc < 0) {
                LOG_DEBUG("event=terminal_refused id=%s err=%d", id, rc);
                static const char nosuch[] = "no such session", notrun[] = "session not running";
                const char *why = rc == -EAGAIN ? notrun : nosuch;
                lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)why,
                                 strlen(why));
                return -1;
            }
            pss->next = h->terms;
            h->terms = pss;
        } else if (sess_path(ws_hdr(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)), "/exec", id,
                             sizeof(id))) {
            /* The session is looked up when the start message comes. */
            pss->exec = true;
            snprintf(pss->sid, sizeof(pss->sid), "%s", id);
            pss->x_next = h->xss;
            h->xss = pss;
            return 0;
        } else {
            /* The events stream: messages published from now on. */
            pss->events = true;
            pss->ev_seq = events_last_seq();
            pss->ev_next = h->evs;
            h->evs = pss;
        }
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_TIMER:
        if (pss && pss->exec && pss->xs)
            sessions_xs_timeout(pss->xs);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (pss->exec)
            return xs_writeable(pss, wsi);
        if (pss->term) {
            unsigned char buf[LWS_PRE + 16384];
            bool closed = false;
            size_t n = sessions_term_take(pss->term, buf + LWS_PRE, sizeof(buf) - LWS_PRE, &closed);
            if (n && lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_BINARY) < (int)n)
                return -1;
            if (closed) {
                static const char bye[] = "session ended";
                lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)bye,
                                 sizeof(bye) - 1);
                return -1;
            }
            if (sessions_term_pending(pss->term))
                lws_callback_on_writable(wsi);
            return 0;
        }
        char *msg = NULL;
        size_t mlen = 0;
        if (pss->hello_sent) {
            /* One event per writeable callback; ask again while more are waiting. */
            int got = pss->events ? events_next(&pss->ev_seq, &msg, &mlen) : 0;
            if (got <= 0)
                return got < 0 ? -1 : 0;
            if (pss->ev_seq < events_last_seq())
                lws_callback_on_writable(wsi);
        } else if (api_events_hello(h->api, &msg, &mlen) < 0) {
            return -1;
        }
        unsigned char *buf = malloc(LWS_PRE + mlen);
        if (!buf) {
            free(msg);
            return -1;
        }
        memcpy(buf + LWS_PRE, msg, mlen);
        free(msg);
        int n = lws_write(wsi, buf + LWS_PRE, mlen, LWS_WRITE_TEXT);
        free(buf);
        if (n < (int)mlen)
            return -1;
        if (!pss->hello_sent && pss->ev_seq < events_last_seq())
            lws_callback_on_writable(wsi);
        pss->hello_sent = true;
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (pss->exec)
            return xs_receive(h, pss, wsi, in, len);
        if (!pss->term)
            return 0; /* nothing is echoed on the events stream for now */
        if (lws_frame_is_binary(wsi)) {
            /* Keyboard bytes, fragment by fragment. */
            if (len && sessions_term_input(pss->term, in, len) < 0)
                return -1;
            return 0;
        }
        if (len > TERM_TEXT_MAX - pss->text_len)
            pss->text_bad = true;
        else {
            memcpy(pss->text + pss->text_len, in, len);
            pss->text_len += len;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            if (!pss->text_bad)
                term_text(pss);
            pss->text_len = 0;
            pss->text_bad = false;
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (pss && pss->term) {
            for (struct ws_pss **pp = &h->terms; *pp; pp = &(*pp)->next)
                if (*pp == pss) {
                    *pp = pss->next;
                    break;
                }
            sessions_term_detach(pss->term);
            pss->term = NULL;
        }
        if (pss && pss->exec) {
            for (struct ws_pss **pp = &h->xss; *pp; pp = &(*pp)->x_next)
                if (*pp == pss) {
                    *pp = pss->x_next;
                    break;
                }
            /* The client is gone: its command is killed. */
            sessions_xs_detach(pss->xs);
            pss->xs = NULL;
            free(pss->xtext);
            pss->xtext = NULL;
            pss->exec = false;
        }
        if (pss && pss->events) {
            for (struct ws_pss **pp = &h->evs; *pp; pp = &(*pp)->ev_next)
                if (*pp == pss) {
                    *pp = pss->ev_next;
                    break;
                }
            pss->events = false;
        }
        if (pss && pss->open) {
            pss->open = false;
            api_count_ws(h->api, -1);
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols ws_protocols[] = {
    {
        .name = "capsem-events",
        .callback = ws_callback,
        .per_session_data_size = sizeof(struct ws_pss),
        .rx_buffer_size = 4096,
    },
    {0},
};

static void *lws_main(void *arg)
{
    struct httpd *h = arg;
    while (!atomic_load(&h->lws_stop))
        lws_service(h->lws, 0);
    return NULL;
}

/* ---- MHD side ---- */

struct mhd_req {
    const struct api_route *route;
    bool responded;
    bool too_big;
    char *body;
    size_t len, cap;
    /* An API_SLOW route: its handler runs on a worker thread while the connection is
     * suspended; `ready` says its answer is in `resp`. */
    struct httpd *h;
    struct MHD_Connection *c;
    struct api_req req;
    struct api_resp resp;
    atomic_bool ready;
};

/* A worker for one API_SLOW request: run the handler, then hand the answer back to MHD. */
static void *slow_main(void *arg)
{
    struct mhd_req *st = arg;
    struct httpd *h = st->h;
    if (api_handle(h->api, st->route, &st->req, &st->resp) < 0 && !st->resp.status)
        st->resp.status = 500;
    atomic_store(&st->ready, true);
    /* st may be gone once resumed: nothing below touches it. */
    MHD_resume_connection(st->c);
    atomic_fetch_sub(&h->slow_workers, 1);
    return NULL;
}

static const char *mhd_arg(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

/* Send `resp` (its body is taken). */
static enum MHD_Result mhd_send(struct httpd *h, struct MHD_Connection *c, struct api_resp *resp)
{
    struct MHD_Response *r;
    if (resp->body) {
        r = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (r)
            resp->body = NULL;
    } else {
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    api_resp_fini(resp);
    if (!r)
        return MHD_NO;
    if (resp->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    /* An embedded file has an ETag: the browser keeps it and revalidates. */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, resp->etag ? "no-cache" : "no-store");
    if (resp->etag)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, resp->etag);
    if (resp->content_encoding)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, resp->content_encoding);
    if (resp->vary_encoding)
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (resp->location[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, resp->location);
    if (resp->set_cookie[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, resp->set_cookie);
    if (resp->close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (resp->status == 503)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "0");
    api_count_response(h->api, resp->status);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void mhd_req_head(struct MHD_Connection *c, const char *url, const char *method,
                         struct api_req *req)
{
    const char *up = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
    *req = (struct api_req){
        .method = method,
        .path = url,
        .host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
        .origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN),
        .authorization =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_COOKIE),
        .upgrade = up && strcasestr(up, "websocket"),
        .if_none_match =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH),
        .accept_encoding =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING),
        .arg = mhd_arg,
        .arg_ctx = c,
    };
}

static enum MHD_Result mhd_access(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct httpd *h = cls;
    struct mhd_req *st = *con_cls;
    struct api_req req;
    struct api_resp resp = {0};
    (void)version;
    if (!st) {
        st = calloc(1, sizeof(*st));
        if (!st)
            return MHD_NO;
        *con_cls = st;
        mhd_req_head(c, url, method, &req);
        st->route = api_gate(h->api, &req, &resp);
        if (st->route && st->route->kind == API_WS && req.upgrade) {
            /* An upgrade on a connection MHD already owns (keep-alive) cannot
             * move to lws: ask the client to retry on a fresh connection. */
            api_error(&resp, 503, "open WebSockets on a new connection");
            st->route = NULL;
        }
        if (st->route) {
            const char *cl =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            char *end = NULL;
            unsigned long long n = cl ? strtoull(cl, &end, 10) : 0;
            if (cl && (end == cl || *end)) {
                api_error(&resp, 400, "bad Content-Length");
                st->route = NULL;
            } else if (n > API_BODY_MAX) {
                api_error(&resp, 413, "request body over 1 MiB");
                st->route = NULL;
            }
        }
        if (st->route)
            return MHD_YES;
        st->responded = true;
        resp.close = true;
        return mhd_send(h, c, &resp);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (st->responded || st->too_big)
            return MHD_YES;
        if (n > API_BODY_MAX - st->len) {
            st->too_big = true;
            return MHD_YES;
        }
        if (st->len + n > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + n)
                cap *= 2;
            char *b = realloc(st->body, cap);
            if (!b)
                return MHD_NO;
            st->body = b;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        return MHD_YES;
    }
    if (atomic_load(&st->ready)) {
        /* Resumed: the worker's answer. */
        atomic_store(&st->ready, false);
        return mhd_send(h, c, &st->resp);
    }
    if (st->responded)
        return MHD_YES;
    st->responded = true;
    if (st->too_big) {
        api_error(&resp, 413, "request body over 1 MiB");
        resp.close = true;
        return mhd_send(h, c, &resp);
    }
    mhd_req_head(c, url, method, &req);
    req.body = st->body;
    req.body_len = st->len;
    if (st->route->flags & API_SLOW) {
        /* A handler that waits (exec): never on MHD's one thread. */
        pthread_attr_t a;
        pthread_t t;
        st->h = h;
        st->c = c;
        st->req = req;
        atomic_fetch_add(&h->slow_workers, 1);
        MHD_suspend_connection(c);
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int prc = pthread_create(&t, &a, slow_main, st);
        pthread_attr_destroy(&a);
        if (prc == 0)
            return MHD_YES;
        MHD_resume_connection(c);
        atomic_fetch_sub(&h->slow_workers, 1);
        LOG_WARN("event=slow_worker_failed err=%d", prc);
    }
    if (api_handle(h->api, st->route, &req, &resp) < 0 && !resp.status)
        resp.status = 500;
    return mhd_send(h, c, &resp);
}

static void mhd_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct mhd_req *st = *con_cls;
    if (st) {
        api_resp_fini(&st->resp);
        free(st->body);
        free(st);
        *con_cls = NULL;
    }
}

/* ---- sniffer ---- */

/* Accept again (or not): while every slot is busy, new connections wait in the backlog. */
static void accept_pause(struct httpd *h, bool pause)
{
    struct epoll_event ev = {.events = pause ? 0 : EPOLLIN, .data.u64 = 0};
    if (h->accept_paused == pause)
        return;
    if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, h->listen_fd, &ev) == 0)
        h->accept_paused = pause;
    LOG_DEBUG("event=%s", pause ? "accept_paused" : "accept_resumed");
}

/* Mark p free (its fd is already closed or handed off). */
static void pending_release(struct httpd *h, struct pending *p)
{
    p->fd = -1;
    accept_pause(h, false);
}

static void pending_close(struct httpd *h, struct pending *p)
{
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    pending_release(h, p);
}

/* Answer a refused upgrade: consume the head (so close sends FIN, not RST), reply, close. */
static void sniff_refuse(struct httpd *h, struct pending *p, size_t head_len, struct api_resp *resp)
{
    char hdr[256];
    char sink[512];
    size_t left = head_len;
    while (left > 0) {
        ssize_t n = recv(p->fd, sink, left < sizeof(sink) ? left : sizeof(sink), 0);
        if (n <= 0)
            break;
        left -= (size_t)n;
    }
    int hl = snprintf(hdr, sizeof(hdr),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                      resp->status, reason_phrase(resp->status), resp->body_len);
    if (hl > 0 && (size_t)hl < sizeof(hdr)) {
        /* A fresh socket's send buffer takes this at once; a short write just truncates. */
        struct iovec iov[2] = {{hdr, (size_t)hl}, {resp->body, resp->body_len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = resp->body ? 2 : 1};
        if (sendmsg(p->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            LOG_DEBUG("event=refuse_send_failed errno=%d", errno);
    }
    api_count_response(h->api, resp->status);
    shutdown(p->fd, SHUT_WR);
    pending_close(h, p);
}

static void to_mhd(struct httpd *h, struct pending *p)
{
    int fd = p->fd;
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
    pending_release(h, p);
    /* MHD owns fd from here, closing it on failure. */
    if (MHD_add_connection(h->mhd, fd, (const struct sockaddr *)&p->addr, p->alen) != MHD_YES)
        LOG_WARN("event=mhd_add_failed");
}

static void to_lws(struct httpd *h, struct pending *p)
{
    int fd = p->fd;
    bool queued = false;
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
    pending_release(h, p);
    pthread_mutex_lock(&h->adopt_lock);
    if (h->adopt_n == h->adopt_cap && h->adopt_cap < ADOPT_QUEUE_MAX) {
        size_t cap = h->adopt_cap ? h->adopt_cap * 2 : 64;
        int *q = realloc(h->adopt_fds, cap * sizeof(int));
        if (q) {
            h->adopt_fds = q;
            h->adopt_cap = cap;
        }
    }
    if (h->adopt_n < h->adopt_cap) {
        h->adopt_fds[h->adopt_n++] = fd;
        queued = true;
    }
    pthread_mutex_unlock(&h->adopt_lock);
    if (!queued) {
        LOG_WARN("event=ws_queue_full");
        close(fd);
        return;
    }
    lws_cancel_service(h->lws);
}

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* Look at what p has sent so far and route it when the head says enough. */
enum httpd_sniff httpd_sniff_route(const char *buf, size_t len, struct httpd_head *head,
                                   size_t *head_len)
{
    if (len == 0)
        return HTTPD_SNIFF_WAIT;
    if (!is_upper(buf[0]))
        return HTTPD_SNIFF_REST;
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) {
        /* Only a GET can be an upgrade: route anything else as soon as the
         * method is known, and an over-long head to MHD to refuse. */
        const char *sp = memchr(buf, ' ', len);
        if (len >= HTTPD_HEAD_MAX || (sp && !(sp - buf == 3 && !memcmp(buf, "GET", 3))))
            return HTTPD_SNIFF_REST;
        return HTTPD_SNIFF_WAIT;
    }
    size_t hl = (size_t)(end - buf) + 4;
    if (head_parse(head, buf, hl) < 0 || !head->upgrade || !strcasestr(head->upgrade, "websocket"))
        return HTTPD_SNIFF_REST;
    *head_len = hl;
    return HTTPD_SNIFF_UPGRADE;
}

static void sniff(struct httpd *h, struct pending *p)
{
    char buf[HTTPD_HEAD_MAX];
    ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        pending_close(h, p);
        return;
    }
    struct httpd_head *hd = &h->head;
    size_t head_len = 0;
    switch (httpd_sniff_route(buf, (size_t)n, hd, &head_len)) {
    case HTTPD_SNIFF_WAIT:
        return;
    case HTTPD_SNIFF_REST:
        to_mhd(h, p);
        return;
    case HTTPD_SNIFF_UPGRADE:
        break;
    }
    struct api_req req = {
        .method = hd->method,
        .path = hd->path,
        .host = hd->host,
        .origin = hd->origin,
        .authorization = hd->authorization,
        .cookie = hd->cookie,
        .upgrade = true,
    };
    struct api_resp resp = {0};
    const struct api_route *r = api_gate(h->api, &req, &resp);
    if (!r) {
        sniff_refuse(h, p, head_len, &resp);
        api_resp_fini(&resp);
        return;
    }
    if (r->kind == API_WS)
        to_lws(h, p);
    else
        to_mhd(h, p);
}

static void sniff_accept(struct httpd *h)
{
    for (;;) {
        struct pending *p = NULL;
        for (size_t i = 0; i < HTTPD_PENDING_MAX && !p; i++)
            if (h->pend[i].fd < 0)
                p = &h->pend[i];
        if (!p) {
            accept_pause(h, true);
            return;
        }
        struct sockaddr_storage addr;
        socklen_t alen = sizeof(addr);
        int fd =
            accept4(h->listen_fd, (struct sockaddr *)&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                LOG_WARN("event=accept_failed errno=%d", errno);
            return;
        }
        p->fd = fd;
        p->deadline_ms = now_ms() + h->sniff_ms;
        p->addr = addr;
        p->alen = alen;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET | EPOLLRDHUP,
                                 .data.u64 = (uint64_t)(p - h->pend) + 2};
        if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            pending_release(h, p);
        }
    }
}

static void *sniffer_main(void *arg)
{
    struct httpd *h = arg;
    struct epoll_event evs[64];
    for (;;) {
        uint64_t now = now_ms(), next = UINT64_MAX;
        for (size_t i = 0; i < HTTPD_PENDING_MAX; i++) {
            struct pending *p = &h->pend[i];
            if (p->fd < 0)
                continue;
            if (p->deadline_ms <= now) {
                LOG_DEBUG("event=sniff_timeout");
                /* Consume what a slow client sent so close sends FIN, not RST. */
                char sink[HTTPD_HEAD_MAX];
                while (recv(p->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
                    ;
                pending_close(h, p);
            } else if (p->deadline_ms < next) {
                next = p->deadline_ms;
            }
        }
        int timeout = next == UINT64_MAX ? -1 : (int)(next - now);
        int n = epoll_wait(h->epfd, evs, 64, timeout);
        if (n < 0 && errno != EINTR) {
            LOG_ERR("event=epoll_failed errno=%d", errno);
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == 1)
                return NULL; /* stop */
            if (tag == 0)
                sniff_accept(h);
            else if (tag - 2 < HTTPD_PENDING_MAX && h->pend[tag - 2].fd >= 0)
                sniff(h, &h->pend[tag - 2]);
        }
    }
}

/* ---- setup and teardown ---- */

static int listen_open(struct httpd *h, const char *addr, unsigned port, char *err, size_t errlen)
{
    struct sockaddr_storage ss = {0};
    socklen_t slen;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    int rc = 0;
    if (port > 65535) {
        snprintf(err, errlen, "port %u out of range", port);
        return -EINVAL;
    }
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        slen = sizeof(*in4);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        slen = sizeof(*in6);
    } else {
        snprintf(err, errlen, "'%.100s' is not a numeric IP address", addr);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "socket: %s", strerror(-rc));
        goto out;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, SOMAXCONN) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on %.100s:%u: %s", addr, port, strerror(-rc));
        goto out;
    }
    slen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0) {
        rc = -errno;
        snprintf(err, errlen, "getsockname: %s", strerror(-rc));
        goto out;
    }
    h->port = ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
    h->listen_fd = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

int httpd_create(const struct httpd_opts *o, struct httpd **out, char *err, size_t errlen)
{
    struct httpd *h = calloc(1, sizeof(*h));
    int rc = 0;
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->listen_fd = h->epfd = h->stop_fd = -1;
    for (size_t i = 0; i < HTTPD_PENDING_MAX; i++)
        h->pend[i].fd = -1;
    pthread_mutex_init(&h->adopt_lock, NULL);
    h->sniff_ms = o->sniff_timeout_ms ? o->sniff_timeout_ms : HTTPD_SNIFF_TIMEOUT_MS;
    /* A peer closing mid-write must not kill the daemon (lws and the sniffer write). */
    signal(SIGPIPE, SIG_IGN);

    rc = listen_open(h, o->addr, o->port, err, errlen);
    if (rc < 0)
        goto out;
    struct api_opts ao = {.auth = o->auth,
                          .version = o->version,
                          .port = h->port,
                          .allow = o->allow,
                          .nallow = o->nallow};
    rc = api_create(&ao, &h->api);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }

    h->mhd =
        MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_USE_EPOLL_INTERNAL_THREAD |
                             MHD_ALLOW_SUSPEND_RESUME,
                         0, NULL, NULL, mhd_access, h, MHD_OPTION_NOTIFY_COMPLETED, mhd_completed,
                         h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (!h->mhd) {
        rc = -EIO;
        snprintf(err, errlen, "cannot start libmicrohttpd");
        goto out;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = ws_protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = h;
    info.max_http_header_data = HTTPD_HEAD_MAX;
    h->lws = lws_create_context(&info);
    h->vhost = h->lws ? lws_get_vhost_by_name(h->lws, "default") : NULL;
    if (!h->vhost) {
        rc = -EIO;
        snprintf(err, errlen, "cannot start libwebsockets");
        goto out;
    }
    rc = -pthread_create(&h->lws_thread, NULL, lws_main, h);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start a thread");
        goto out;
    }
    h->lws_started = true;
    events_set_wake(events_wake, h);

    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    h->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = 0};
    struct epoll_event sev = {.events = EPOLLIN, .data.u64 = 1};
    if (h->epfd < 0 || h->stop_fd < 0 || epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->listen_fd, &lev) ||
        epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->stop_fd, &sev)) {
        rc = -errno;
        snprintf(err, errlen, "epoll: %s", strerror(-rc));
        goto out;
    }
    rc = -pthread_create(&h->sniffer, NULL, sniffer_main, h);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start a thread");
        goto out;
    }
    h->sniffer_started = true;
    *out = h;
    h = NULL;
out:
    httpd_destroy(h);
    return rc;
}

unsigned httpd_port(const struct httpd *h)
{
    return h->port;
}

void httpd_destroy(struct httpd *h)
{
    if (!h)
        return;
    if (h->sniffer_started) {
        uint64_t one = 1;
        if (write(h->stop_fd, &one, sizeof(one)) != sizeof(one))
            LOG_WARN("event=stop_write_failed errno=%d", errno);
        pthread_join(h->sniffer, NULL);
    }
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    for (size_t i = 0; i < HTTPD_PENDING_MAX; i++)
        if (h->pend[i].fd >= 0)
            close(h->pend[i].fd);
    if (h->epfd >= 0)
        close(h->epfd);
    if (h->stop_fd >= 0)
        close(h->stop_fd);
    if (h->lws_started) {
        events_set_wake(NULL, NULL);
        atomic_store(&h->lws_stop, true);
        lws_cancel_service(h->lws);
        pthread_join(h->lws_thread, NULL);
    }
    if (h->lws)
        lws_context_destroy(h->lws);
    for (size_t i = 0; i < h->adopt_n; i++)
        close(h->adopt_fds[i]);
    free(h->adopt_fds);
    /* Suspended connections must be resumed before MHD stops: wait for the workers. */
    while (atomic_load(&h->slow_workers) > 0)
        usleep(10000);
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    api_destroy(h->api);
    pthread_mutex_destroy(&h->adopt_lock);
    free(h);
}
