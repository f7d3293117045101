-- 0002: model calls. One row per LLM API call the host proxy parsed
-- (model_calls), one per tool call the model asked for in a response
-- (tool_calls) and per tool result the agent sent back in a request
-- (tool_results), plus the session's running totals (session_totals, one row,
-- updated in the same transaction as the events it counts).
-- Counts the provider did not report are NULL, never guessed.

CREATE TABLE model_calls (
    id                 INTEGER PRIMARY KEY,
    time_us            INTEGER NOT NULL, -- request head arrived
    process            TEXT,             -- guest process name
    pid                INTEGER NOT NULL, -- guest pid, 0 unknown
    host               TEXT,             -- 'api.anthropic.com'
    path               TEXT,             -- without the query
    provider           TEXT,             -- 'anthropic', 'openai', 'gemini'
    api                TEXT,             -- 'messages', 'chat', 'responses', 'generate'
    model_requested    TEXT,             -- model named in the request
    model_answered     TEXT,             -- model the response says it used
    response_id        TEXT,             -- provider's response/message id
    stream             INTEGER NOT NULL, -- 1 streamed (SSE), 0 one JSON body
    http_status        INTEGER NOT NULL, -- 0 when no response head
    status             TEXT,             -- 'ok', 'error', 'incomplete'
    error_type         TEXT,             -- provider's error type
    error_message      TEXT,             -- bounded
    stop_reason        TEXT,
    input_tokens       INTEGER,          -- not counting cache reads and writes; NULL unknown
    output_tokens      INTEGER,          -- including reasoning
    cache_read_tokens  INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens   INTEGER,
    message_count      INTEGER,          -- messages / input items / contents in the request
    tool_count         INTEGER,          -- tools offered in the request
    tool_call_count    INTEGER NOT NULL, -- rows in tool_calls for this call
    tool_result_count  INTEGER NOT NULL, -- rows in tool_results for this call
    system_preview     TEXT,             -- bounded preview of the system prompt
    ttft_us            INTEGER,          -- request head to first content; NULL none
    duration_us        INTEGER NOT NULL, -- request head to end of response
    cost_usd           REAL,             -- NULL when the model is not in the price table
    cost_known         INTEGER NOT NULL, -- 1 priced, 0 not
    trace_id           INTEGER,          -- NULL when not linked
    turn               INTEGER,          -- 1 for a trace's first call; NULL when not linked
    parse_error        INTEGER NOT NULL, -- 1: some body could not be parsed
    truncated          INTEGER NOT NULL  -- 1: a body was larger than the parser keeps
);
CREATE INDEX model_calls_time ON model_calls (time_us);
CREATE INDEX model_calls_model ON model_calls (provider, model_answered, time_us);
CREATE INDEX model_calls_trace ON model_calls (trace_id, turn);

CREATE TABLE tool_calls (
    id            INTEGER PRIMARY KEY,
    model_call_id INTEGER NOT NULL REFERENCES model_calls (id),
    idx           INTEGER NOT NULL, -- position in the response, from 0
    call_id       TEXT,             -- provider's call id (Gemini: may be NULL)
    name          TEXT,             -- tool name
    arguments     TEXT              -- arguments as JSON text (bounded), NULL none
);
CREATE INDEX tool_calls_model_call ON tool_calls (model_call_id);
CREATE INDEX tool_calls_call_id ON tool_calls (call_id);

CREATE TABLE tool_results (
    id            INTEGER PRIMARY KEY,
    model_call_id INTEGER NOT NULL REFERENCES model_calls (id),
    idx           INTEGER NOT NULL, -- position in the request, from 0
    call_id       TEXT,             -- the call id it answers (Gemini: the function name)
    is_error      INTEGER NOT NULL, -- 1: the agent marked it as an error
    preview       TEXT              -- bounded preview of the content
);
CREATE INDEX tool_results_model_call ON tool_results (model_call_id);
CREATE INDEX tool_results_call_id ON tool_results (call_id);

CREATE TABLE session_totals (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    requests           INTEGER NOT NULL, -- rows in net_events
    model_calls        INTEGER NOT NULL, -- rows in model_calls
    input_tokens       INTEGER NOT NULL, -- sums over model_calls (unknown counts as 0)
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd           REAL    NOT NULL, -- sum of the known costs
    unpriced_calls     INTEGER NOT NULL, -- model calls whose cost is unknown
    last_time_us       INTEGER           -- latest time_us of any net event or model call
);
INSERT INTO session_totals
SELECT 1, count(*), 0, 0, 0, 0, 0, 0.0, 0, max(time_us) FROM net_events;
