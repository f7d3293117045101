/*
 * `capsem serve` (cli_serve.h): option parsing, the token, the login URL,
 * and a main thread that waits for SIGINT/SIGTERM (blocked before any
 * thread starts, so only sigwait sees them) and then shuts httpd down.
 */
#include "cli_serve.h"

#include "auth.h"
#include "cli_run.h"
#include "events.h"
#include "httpd.h"
#include "log.h"
#include "sessions.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CAPSEM_VERSION
#define CAPSEM_VERSION "0.0.0"
#endif

static const char serve_usage[] =
    "usage: capsem serve [--listen ADDR:PORT] [--allow-host NAME]...\n"
    "\n"
    "Run the Capsem daemon: REST API, WebSockets and (later) the dashboard on one port.\n"
    "Prints a one-time login URL (valid 10 minutes) on stdout; runs until SIGINT/SIGTERM.\n"
    "\n"
    "options:\n"
    "  --listen ADDR:PORT   address to bind (default 127.0.0.1:7878; IPv6 as [::1]:7878;\n"
    "                       port 0 picks a free one). A non-loopback address is allowed\n"
    "                       only here, with a warning: the API then faces the network.\n"
    "  --allow-host NAME    also accept requests whose Host header is NAME (or NAME:PORT);\n"
    "                       by default only localhost, 127.0.0.1 and [::1] (DNS rebinding\n"
    "                       protection). Repeatable, up to 16.\n"
    "  -h, --help           show this help\n"
    "\n"
    "The API token is $CAPSEM_HOME/token (default ~/.capsem/token; 0600, made on first\n"
    "run). Clients send `Authorization: Bearer <token>`; browsers use the login URL.\n"
    "environment: CAPSEM_HOME, CAPSEM_LOG (err, warn, info, debug). See docs/api.md.\n";

const char *cli_serve_usage(void)
{
    return serve_usage;
}

static int parse_listen(const char *s, struct cli_serve_opts *o, char *err, size_t errlen)
{
    const char *host = s, *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            goto bad;
        host = s + 1;
        hlen = (size_t)(rb - host);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            goto bad;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(o->addr))
        goto bad;
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port > 65535 || colon[1] == '-' || colon[1] == '+')
        goto bad;
    memcpy(o->addr, host, hlen);
    o->addr[hlen] = '\0';
    o->port = (unsigned)port;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, o->addr, &a4) == 1)
        o->loopback = (ntohl(a4.s_addr) >> 24) == 127;
    else if (inet_pton(AF_INET6, o->addr, &a6) == 1)
        o->loopback = IN6_IS_ADDR_LOOPBACK(&a6);
    else
        goto bad;
    return 0;
bad:
    snprintf(err, errlen, "--listen wants a numeric ADDR:PORT such as 127.0.0.1:7878, not '%.100s'",
             s);
    return -EINVAL;
}

int cli_serve_parse(int argc, char **argv, struct cli_serve_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    memcpy(o->addr, CLI_SERVE_DEFAULT_ADDR, sizeof(CLI_SERVE_DEFAULT_ADDR));
    o->port = CLI_SERVE_DEFAULT_PORT;
    o->loopback = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = true;
        } else if (!strcmp(a, "--listen") || !strcmp(a, "--allow-host")) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value", a);
                return -EINVAL;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--listen")) {
                if (parse_listen(v, o, err, errlen) < 0)
                    return -EINVAL;
                o->listen_given = true;
            } else {
                if (o->nallow == CLI_SERVE_ALLOW_MAX) {
                    snprintf(err, errlen, "at most %d --allow-host", CLI_SERVE_ALLOW_MAX);
                    return -EINVAL;
                }
                if (!v[0] || strpbrk(v, " \t\r\n/@")) {
                    snprintf(err, errlen, "--allow-host wants a host name, not '%.100s'", v);
                    return -EINVAL;
                }
                o->allow[o->nallow++] = v;
            }
        } else {
            snprintf(err, errlen, "unknown argument '%.100s'", a);
            return -EINVAL;
        }
    }
    return 0;
}

int cli_serve_main(int argc, char **argv)
{
    struct cli_serve_opts o;
    char err[512];
    struct auth *auth = NULL;
    struct httpd *h = NULL;
    struct sessions *sessions = NULL;
    char serve_json[4200] = "";
    int status = CAPSEM_EXIT_FAILED;
    const char *lvl = getenv("CAPSEM_LOG");
    int level = lvl ? log_level_parse(lvl) : -1;
    log_init("capsem-serve", level >= 0 ? (enum log_level)level : LOG_INFO);

    if (cli_serve_parse(argc, argv, &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "capsem serve: %s\n", err);
        fputs("usage: capsem serve [--listen ADDR:PORT] [--allow-host NAME]...\n", stderr);
        return CAPSEM_EXIT_USAGE;
    }
    if (o.help) {
        fputs(serve_usage, stdout);
        return 0;
    }
    if (!o.loopback) {
        /* parse keeps the default loopback, so this is --listen asking for it. */
        fprintf(stderr,
                "capsem serve: warning: listening on %s, a non-loopback address: the API is "
                "reachable from the network (token required; add --allow-host for its name)\n",
                o.addr);
    }

    char home[4096];
    const char *env_home = getenv("CAPSEM_HOME");
    const char *user_home = getenv("HOME");
    if (env_home && env_home[0])
        snprintf(home, sizeof(home), "%s", env_home);
    else
        snprintf(home, sizeof(home), "%s/.capsem", user_home && user_home[0] ? user_home : "/tmp");

    /* Block the stop signals before any thread exists; sigwait takes them below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    if (auth_create(home, &auth, err, sizeof(err)) < 0) {
        fprintf(stderr, "capsem serve: %s\n", err);
        goto out;
    }
    int src = sessions_create(home, &sessions);
    if (src < 0) {
        fprintf(stderr, "capsem serve: cannot start the session manager: %s\n", strerror(-src));
        goto out;
    }
    api_sessions_attach(sessions);
    struct httpd_opts ho = {.addr = o.addr,
                            .port = o.port,
                            .auth = auth,
                            .version = CAPSEM_VERSION,
                            .allow = o.allow,
                            .nallow = o.nallow};
    if (httpd_create(&ho, &h, err, sizeof(err)) < 0) {
        fprintf(stderr, "capsem serve: %s\n", err);
        goto out;
    }
    /* Where the CLI finds this daemon (capsem list, exec, stop, logs),
     * written before the login URL is printed, so a client that saw the URL finds it. */
    snprintf(serve_json, sizeof(serve_json), "%s/serve.json", home);
    FILE *sf = fopen(serve_json, "w");
    if (sf) {
        /* A wildcard bind is reached through loopback. */
        const char *cli_host = !strcmp(o.addr, "0.0.0.0") ? "127.0.0.1"
                               : !strcmp(o.addr, "::")    ? "::1"
                                                          : o.addr;
        fprintf(sf, "{\"addr\":\"%s\",\"port\":%u,\"pid\":%d}\n", cli_host, httpd_port(h),
                (int)getpid());
        fclose(sf);
    } else {
        LOG_WARN("event=serve_json_write_failed err=%s", strerror(errno));
        serve_json[0] = '\0';
    }
    char code[AUTH_SECRET_HEX + 1];
    if (auth_code_new(auth, AUTH_CODE_TTL_S, code) < 0) {
        fprintf(stderr, "capsem serve: cannot make a login code\n");
        goto out;
    }
    /* A wildcard bind is reached through loopback from this machine. */
    const char *url_host = o.addr;
    if (!strcmp(o.addr, "0.0.0.0"))
        url_host = "127.0.0.1";
    else if (!strcmp(o.addr, "::"))
        url_host = "::1";
    bool v6 = strchr(url_host, ':') != NULL;
    printf("http://%s%s%s:%u/login?t=%s\n", v6 ? "[" : "", url_host, v6 ? "]" : "", httpd_port(h),
           code);
    fflush(stdout);
    memset(code, 0, sizeof(code));
    LOG_INFO("event=serving addr=%s port=%u", o.addr, httpd_port(h));
    /* New telemetry rows of every session, live on /api/v1/events. */
    if (events_poll_start(home) < 0)
        LOG_WARN("event=events_poller_not_started");

    int sig = 0;
    if (sigwait(&stop, &sig) != 0)
        goto out;
    LOG_INFO("event=stopping signal=%d", sig);
    status = 0;
out:
    if (serve_json[0])
        unlink(serve_json);
    events_poll_stop();
    sessions_cancel_execs(sessions); /* exec handlers waiting on worker threads return */
    httpd_destroy(h);
    api_sessions_attach(NULL);
    sessions_destroy(sessions);
    auth_destroy(auth);
    return status;
}
