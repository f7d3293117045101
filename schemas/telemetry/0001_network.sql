-- 0001: the network issue. One row per HTTP exchange through the host proxy
-- (net_events) and per DNS question answered by the host (dns_events).
-- Times are wall clock in microseconds since the Unix epoch; durations are
-- microseconds. Text columns are NULL when the producer did not know them.
-- decision: 0 allow, 1 block, 2 log (allowed, marked as worth a look); the
-- names are in the `decisions` table for readable queries.

CREATE TABLE decisions (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO decisions (id, name) VALUES (0, 'allow'), (1, 'block'), (2, 'log');

CREATE TABLE net_events (
    id           INTEGER PRIMARY KEY,
    time_us      INTEGER NOT NULL, -- request head arrived
    process      TEXT,             -- guest process name
    pid          INTEGER NOT NULL, -- guest pid, 0 unknown
    method       TEXT,             -- NULL when no request could be read
    scheme       TEXT,             -- 'https' or 'http'
    host         TEXT,             -- SNI, Host header or DNS pool name
    port         INTEGER NOT NULL, -- original destination port
    path         TEXT,             -- without the query
    query        TEXT,             -- without '?'
    status       INTEGER NOT NULL, -- status sent to the guest, 0 none
    req_bytes    INTEGER NOT NULL, -- request body bytes from the guest
    resp_bytes   INTEGER NOT NULL, -- response body bytes to the guest
    duration_us  INTEGER NOT NULL, -- request head to end of response
    ttfb_us      INTEGER NOT NULL, -- request head to first response byte, -1 none
    decision     INTEGER NOT NULL,
    rule         TEXT,             -- rule that decided, NULL = default
    tls_version  TEXT,             -- 'TLSv1.3', NULL for plain HTTP
    error        TEXT,             -- what went wrong, NULL when nothing
    req_headers  TEXT,             -- allowlisted, redacted headers, JSON object
    resp_headers TEXT,
    req_preview  TEXT,             -- bounded body previews (UTF-8)
    resp_preview TEXT
);
CREATE INDEX net_events_time ON net_events (time_us);
CREATE INDEX net_events_host ON net_events (host, time_us);

CREATE TABLE dns_events (
    id       INTEGER PRIMARY KEY,
    time_us  INTEGER NOT NULL,
    name     TEXT,             -- lower case, no trailing dot
    type     TEXT,             -- 'A', 'AAAA', 'TXT' or the number as text
    decision INTEGER NOT NULL,
    rule     TEXT,             -- NULL = default
    answer   TEXT              -- '198.18.0.7', 'NXDOMAIN', 'NODATA', 'FORMERR'
);
CREATE INDEX dns_events_time ON dns_events (time_us);
CREATE INDEX dns_events_name ON dns_events (name, time_us);
