// The event tabs (Network, Models, Tools, Files): one table component fed
// by sessions/{id}/<kind>, newest first, with filters (those the route knows
// go as query parameters; all are applied to the rows shown), cursor paging
// ("Load older"), live rows (from the events WebSocket, and by polling the
// newest page every few seconds while Live is on), and a drawer with a
// row's details.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { call, cursorOf, events, rowsOf } from './api.js';
import { Charts } from './charts.jsx';
import { bytes, count, micros, timeOfDay, usd } from './format.js';
import { Drawer, Failure } from './ui.jsx';

const DECISIONS = { 0: 'allow', 1: 'block', 2: 'log' };
const decision = (v) => (typeof v === 'number' ? DECISIONS[v] ?? String(v) : v ?? '—');

function text(v) {
    return v == null || v === '' ? '—' : String(v);
}

// Kinds: route, live event type, columns, filters, drawer sections.
export const KINDS = {
    network: {
        title: 'Network',
        route: 'net-events',
        live: ['net-event', 'net_event'],
        columns: [
            { key: 'time_us', label: 'Time', fmt: timeOfDay },
            { key: 'process', label: 'Process', fmt: text },
            { key: 'method', label: 'Method', fmt: text },
            { key: 'host', label: 'Host', fmt: text },
            { key: 'path', label: 'Path', fmt: text, wide: true },
            { key: 'status', label: 'Status', fmt: (v) => (v ? String(v) : '—'), num: true },
            { key: 'decision', label: 'Decision', fmt: decision },
            { key: 'resp_bytes', label: 'Size', fmt: bytes, num: true },
            { key: 'duration_us', label: 'Time taken', fmt: micros, num: true },
        ],
        filters: [
            { key: 'host', label: 'Host', type: 'text', match: (r, v) => (r.host || '') === v.trim().toLowerCase(), server: true },
            { key: 'method', label: 'Method', type: 'select', options: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'CONNECT'], match: (r, v) => r.method === v },
            { key: 'decision', label: 'Decision', type: 'select', options: ['allow', 'block', 'log'], match: (r, v) => decision(r.decision) === v, server: true },
            {
                key: 'status_class',
                label: 'Status',
                type: 'select',
                options: ['2xx', '3xx', '4xx', '5xx'],
                match: (r, v) => String(r.status || '').startsWith(v[0]),
            },
        ],
        title_of: (r) => `${r.method || ''} ${r.scheme || 'https'}://${r.host || ''}${r.path || ''}`,
        sections: (r) => [
            ['Request', { method: r.method, url: `${r.scheme || ''}://${r.host || ''}:${r.port ?? ''}${r.path || ''}${r.query ? '?' + r.query : ''}`, process: r.process, pid: r.pid }],
            ['Response', { status: r.status, decision: decision(r.decision), rule: r.rule ?? 'default', tls: r.tls_version, error: r.error }],
            ['Timing', { duration: micros(r.duration_us), 'first byte': micros(r.ttfb_us), sent: bytes(r.req_bytes), received: bytes(r.resp_bytes) }],
            ['Request headers', r.req_headers],
            ['Response headers', r.resp_headers],
            ['Request body preview', r.req_preview, 'pre'],
            ['Response body preview', r.resp_preview, 'pre'],
        ],
    },
    dns: {
        title: 'DNS',
        route: 'dns-events',
        live: [],
        columns: [
            { key: 'time_us', label: 'Time', fmt: timeOfDay },
            { key: 'name', label: 'Name', fmt: text, wide: true },
            { key: 'type', label: 'Type', fmt: text },
            { key: 'decision', label: 'Decision', fmt: decision },
            { key: 'answer', label: 'Answer', fmt: text },
            { key: 'rule', label: 'Rule', fmt: (v) => v ?? 'default' },
        ],
        filters: [
            { key: 'host', label: 'Name', type: 'text', match: (r, v) => (r.name || '') === v.trim().toLowerCase(), server: true },
            { key: 'decision', label: 'Decision', type: 'select', options: ['allow', 'block', 'log'], match: (r, v) => decision(r.decision) === v, server: true },
        ],
        title_of: (r) => `${r.type || ''} ${r.name || ''}`,
        sections: (r) => [['Question', r]],
    },
    models: {
        title: 'Models',
        route: 'model-calls',
        live: ['model-call', 'model_call'],
        charts: true,
        columns: [
            { key: 'time_us', label: 'Time', fmt: timeOfDay },
            { key: 'provider', label: 'Provider', fmt: text },
            { key: 'model_answered', label: 'Model', fmt: (v, r) => text(v || r.model_requested) },
            { key: 'status', label: 'Status', fmt: text },
            { key: 'input_tokens', label: 'In', fmt: count, num: true },
            { key: 'output_tokens', label: 'Out', fmt: count, num: true },
            { key: 'cost_usd', label: 'Cost', fmt: usd, num: true },
            { key: 'ttft_us', label: 'First token', fmt: micros, num: true },
            { key: 'duration_us', label: 'Duration', fmt: micros, num: true },
        ],
        filters: [
            { key: 'provider', label: 'Provider', type: 'select', options: ['anthropic', 'openai', 'gemini'], match: (r, v) => r.provider === v, server: true },
            { key: 'model', label: 'Model contains', type: 'text', match: (r, v) => (r.model_answered || r.model_requested || '').includes(v) },
        ],
        title_of: (r) => `${r.provider || ''} ${r.model_answered || r.model_requested || ''}`,
        sections: (r) => [['Call', r]],
    },
    tools: {
        title: 'Tools',
        route: 'tool-calls',
        live: ['tool-call', 'tool_call'],
        columns: [
            { key: 'time_us', label: 'Time', fmt: timeOfDay },
            { key: 'name', label: 'Tool', fmt: text },
            { key: 'call_id', label: 'Call id', fmt: text },
            { key: 'arguments', label: 'Arguments', fmt: (v) => (v ? String(v).slice(0, 120) : '—'), wide: true },
            { key: 'model_call_id', label: 'Model call', fmt: text, num: true },
        ],
        filters: [{ key: 'name', label: 'Tool name', type: 'text', match: (r, v) => (r.name || '').includes(v) }],
        title_of: (r) => r.name || 'Tool call',
        sections: (r) => [['Call', { ...r, arguments: undefined }], ['Arguments', r.arguments, 'pre']],
    },
    files: {
        title: 'Files',
        route: 'file-events',
        live: ['file-event', 'file_event'],
        columns: [
            { key: 'time_us', label: 'Time', fmt: timeOfDay },
            { key: 'event', label: 'Event', fmt: (v, r) => text(v ?? r.op ?? r.kind) },
            { key: 'path', label: 'Path', fmt: (v, r) => text(r.to ? `${v} → ${r.to}` : v), wide: true },
            { key: 'size', label: 'Size', fmt: (v, r) => bytes(v ?? r.bytes), num: true },
        ],
        filters: [{ key: 'path', label: 'Path contains', type: 'text', match: (r, v) => (r.path || '').includes(v) }],
        title_of: (r) => r.path || 'File event',
        sections: (r) => [['Event', r]],
    },
};

function asObject(v) {
    if (v && typeof v === 'object')
        return v;
    if (typeof v === 'string') {
        try {
            const o = JSON.parse(v);
            if (o && typeof o === 'object')
                return o;
        } catch {
            /* plain text */
        }
    }
    return null;
}

function Section({ title, value, pre }) {
    if (value == null || value === '')
        return (
            <section>
                <h3>{title}</h3>
                <p class="muted">none</p>
            </section>
        );
    const obj = pre ? null : asObject(value);
    return (
        <section>
            <h3>{title}</h3>
            {obj ? (
                <dl class="kv">
                    {Object.entries(obj)
                        .filter(([, v]) => v !== undefined)
                        .map(([k, v]) => (
                            <>
                                <dt>{k}</dt>
                                <dd>{v === null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v)}</dd>
                            </>
                        ))}
                </dl>
            ) : (
                <pre class="preview">{String(value)}</pre>
            )}
        </section>
    );
}

function query(kind, filters, cursor) {
    const p = new URLSearchParams();
    p.set('limit', '200');
    p.set('sort', 'desc');
    for (const f of kind.filters)
        if (f.server && filters[f.key])
            p.set(f.key, filters[f.key]);
    if (cursor != null)
        p.set('cursor', String(cursor));
    return p.toString();
}

export function EventTable({ id, kindName }) {
    const kind = KINDS[kindName];
    const [filters, setFilters] = useState({});
    const [res, setRes] = useState(null);
    const [rows, setRows] = useState([]);
    const [cursor, setCursor] = useState(null);
    const [open, setOpen] = useState(null);
    const [live, setLive] = useState(true);
    const liveRef = useRef(live);
    liveRef.current = live;
    const filtersRef = useRef(filters);
    filtersRef.current = filters;
    const base = `sessions/${encodeURIComponent(id)}/${kind.route}`;

    useEffect(() => {
        const ctl = new AbortController();
        const t = setTimeout(async () => {
            try {
                const r = await call(`${base}?${query(kind, filters, null)}`, { signal: ctl.signal });
                setRes(r);
                setRows(r.ok ? rowsOf(r.data) : []);
                setCursor(r.ok ? cursorOf(r.data) : null);
            } catch {
                /* superseded */
            }
        }, 150);
        return () => {
            clearTimeout(t);
            ctl.abort();
        };
    }, [id, kindName, JSON.stringify(filters)]);

    useEffect(
        () =>
            events.on((m) => {
                // {"type":"telemetry","session":ID,"kind":"net-events","row":{...}}
                const mine = m.type === 'telemetry' ? m.kind === kind.route : kind.live.includes(m.type);
                if (!liveRef.current || !mine)
                    return;
                const sid = m.session ?? m.session_id;
                if (sid != null && String(sid) !== String(id))
                    return;
                const row = m.event || m.row || m.data || m;
                for (const f of kind.filters) {
                    const v = filtersRef.current[f.key];
                    if (v && !f.match(row, v))
                        return;
                }
                setRows((old) => (row.id != null && old.some((o) => o.id === row.id) ? old : [row, ...old]));
            }),
        [id, kindName]
    );

    // Poll the newest page while live: new ids go on top. A table whose first
    // load failed (a session still booting has no database yet) recovers here.
    const resRef = useRef(res);
    resRef.current = res;
    useEffect(() => {
        if (!live)
            return;
        const t = setInterval(async () => {
            const r = await call(`${base}?${query(kind, filtersRef.current, null)}`);
            if (!r.ok)
                return;
            if (!resRef.current || !resRef.current.ok) {
                setRes(r);
                setRows(rowsOf(r.data));
                setCursor(cursorOf(r.data));
                return;
            }
            const fresh = rowsOf(r.data);
            setRows((old) => {
                const seen = new Set(old.map((o) => o.id));
                const add = fresh.filter((x) => x.id == null || !seen.has(x.id));
                return add.length ? [...add, ...old] : old;
            });
        }, 3000);
        return () => clearInterval(t);
    }, [id, kindName, live]);

    const more = async () => {
        const r = await call(`${base}?${query(kind, filters, cursor)}`);
        if (r.ok) {
            setRows((old) => [...old, ...rowsOf(r.data)]);
            setCursor(cursorOf(r.data));
        } else {
            setRes(r);
        }
    };

    const setFilter = (k) => (e) => setFilters({ ...filters, [k]: e.currentTarget.value });
    const sorted = useMemo(
        () => rows.filter((r) => kind.filters.every((f) => !filters[f.key] || f.match(r, filters[f.key]))),
        [rows, JSON.stringify(filters)]
    );

    if (res && !res.ok)
        return <Failure res={res} what={`${kind.title} events`} />;
    return (
        <div class="events">
            <form class="filters" role="search" aria-label={`${kind.title} filters`} onSubmit={(e) => e.preventDefault()}>
                {kind.filters.map((f) =>
                    f.type === 'select' ? (
                        <label>
                            {f.label}
                            <select value={filters[f.key] || ''} onChange={setFilter(f.key)} name={f.key}>
                                <option value="">any</option>
                                {f.options.map((o) => (
                                    <option value={o}>{o}</option>
                                ))}
                            </select>
                        </label>
                    ) : (
                        <label>
                            {f.label}
                            <input type="search" value={filters[f.key] || ''} onInput={setFilter(f.key)} name={f.key} />
                        </label>
                    )
                )}
                <label class="check">
                    <input type="checkbox" checked={live} onChange={(e) => setLive(e.currentTarget.checked)} /> Live
                </label>
            </form>
            {kind.charts && <Charts rows={sorted} />}
            {res === null && <p class="muted">Loading…</p>}
            {res && res.ok && sorted.length === 0 && <p class="muted">Nothing yet.</p>}
            {sorted.length > 0 && (
                <div class="table-wrap">
                    <table class="data clickable" id={`${kindName}-table`}>
                        <thead>
                            <tr>
                                {kind.columns.map((c) => (
                                    <th scope="col" class={c.num ? 'num' : ''}>
                                        {c.label}
                                    </th>
                                ))}
                            </tr>
                        </thead>
                        <tbody>
                            {sorted.map((r, i) => (
                                <tr
                                    key={r.id ?? i}
                                    tabIndex={0}
                                    aria-label={`Details of ${kind.title_of(r)}`}
                                    onClick={() => setOpen(r)}
                                    onKeyDown={(e) => (e.key === 'Enter' || e.key === ' ') && (e.preventDefault(), setOpen(r))}
                                >
                                    {kind.columns.map((c) => (
                                        <td class={`${c.num ? 'num' : ''} ${c.wide ? 'wide' : ''}`}>{c.fmt(r[c.key], r)}</td>
                                    ))}
                                </tr>
                            ))}
                        </tbody>
                    </table>
                </div>
            )}
            {cursor != null && (
                <button type="button" onClick={more}>
                    Load older
                </button>
            )}
            {open && (
                <Drawer title={kind.title_of(open)} onClose={() => setOpen(null)}>
                    {kind.sections(open).map(([t, v, pre]) => (
                        <Section title={t} value={v} pre={pre === 'pre'} />
                    ))}
                </Drawer>
            )}
        </div>
    );
}
