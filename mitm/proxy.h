/*
 * The MITM proxy: serves guest TCP connections arriving on vsock port 5002
 * (schemas/vsock-net.md). For each: read the header, tell TLS from plain HTTP
 * by the first byte, terminate TLS with a minted leaf, parse HTTP/1.1
 * requests, decide each by policy (403 naming the rule when blocked), forward
 * allowed ones upstream over verified TLS (or plain HTTP), stream bodies both
 * ways without buffering, and report one net_event per exchange to the sink.
 * Each connection runs on a thread of the proxy's, so the caller's event
 * loop never blocks.
 */
#ifndef CAPSEM_MITM_PROXY_H
#define CAPSEM_MITM_PROXY_H

#include "creds.h"
#include "dns.h"
#include "model.h"
#include "policy.h"
#include "pricing.h"
#include "sink.h"
#include "tls.h"
#include "trace.h"

struct mitm_proxy;

struct mitm_proxy_config {
    struct policy_store *policy; /* borrowed; the current policy decides each request */
    struct mitm_certs *certs;    /* borrowed */
    struct dns_pool *pool;       /* borrowed, may be NULL */
    struct sink sink;
    const char *upstream_ca_file; /* extra trusted CA for upstreams, or NULL */
    unsigned connect_timeout_ms;  /* upstream connect + handshake; 0 = 10 s */
    unsigned idle_timeout_ms;     /* no bytes either way; 0 = 5 min */
    unsigned max_connections;     /* at once; 0 = 512; more are refused with a log line */
    /*
     * Model calls (mitm/model.h): when the sink has a model op, exchanges with
     * these hosts (NULL = model_default_hosts) are parsed as they are forwarded
     * and reported with sink_model(), priced by `pricing` and linked into
     * traces by `traces` (each borrowed, may be NULL: no cost / no trace).
     * The body bytes are fed on the connection's thread after they are
     * forwarded; the rest (decoding the request JSON, pricing, linking and
     * the sink's model op) runs on one model worker thread of the proxy, at
     * the lowest CPU priority, so the connection's next request never waits
     * for it. Calls are finished one at a time, strictly in the order their
     * exchanges ended (a tool result always sees the tool calls of every call
     * that ended before it). The queue holds at most 64 calls and 32 MiB of
     * body bytes their parsers may hold (a call counts its request up to
     * MODEL_REQ_MAX_DEFAULT = 8 MiB plus its response body up to
     * MODEL_EVENT_MAX_DEFAULT = 8 MiB; one call alone may exceed the 32), so
     * queued calls hold at most 48 MiB of bodies, plus each one's response
     * decoder state (the compression window: 32 KiB for gzip, at most
     * 8 MiB for zstd, 16 MiB for br). When it is full, the connection that ended
     * an exchange waits for room, finishing the oldest calls itself while
     * the worker is not: no call is ever dropped.
     */
    const struct model_host *model_hosts;
    const struct pricing *pricing;
    struct trace_table *traces;
    /*
     * Credentials (mitm/creds.h), borrowed, may be NULL: placeholders in a
     * request head become the real key on requests to their provider's
     * hosts; one sent to any other host gets a 403 and a block event with
     * error "credential placeholder sent to <host>".
     */
    const struct creds *creds;
};

/* 0 or -errno with a reason in err. */
__attribute__((warn_unused_result)) int mitm_proxy_create(const struct mitm_proxy_config *cfg,
                                                          struct mitm_proxy **out, char *err,
                                                          size_t errlen);
/* Serve one accepted port-5002 connection (takes `fd`). 0 or -errno (fd closed). */
int mitm_proxy_serve(struct mitm_proxy *p, int fd);
/* Connections being served now. */
unsigned mitm_proxy_active(struct mitm_proxy *p);
/*
 * Wait until every model call whose exchange had ended when this was called
 * has been finished and handed to the sink (calls ending meanwhile are not
 * waited for). Call before flushing the sink's storage. Accepts NULL.
 */
void mitm_proxy_drain(struct mitm_proxy *p);
/*
 * Close every connection, join the threads, sink every queued model call
 * (nothing queued is lost), free. The sink, pricing and traces must still be
 * valid during the call. Accepts NULL.
 */
void mitm_proxy_destroy(struct mitm_proxy *p);

#endif
