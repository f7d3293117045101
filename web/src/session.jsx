// One session: a header with its status and totals (sessions/{id} and
// sessions/{id}/stats), then tabs Terminal, Network, Models, Tools, Files,
// SQL. The tab is part of the URL (#/s/ID/TAB).
import { useEffect, useState } from 'preact/hooks';
import { call, events } from './api.js';
import { count, usd } from './format.js';
import { SqlTab } from './sql.jsx';
import { EventTable } from './tables.jsx';
import { TerminalTab } from './terminal.jsx';
import { Failure, Tabs } from './ui.jsx';

export const TABS = [
    { id: 'terminal', label: 'Terminal' },
    { id: 'network', label: 'Network' },
    { id: 'models', label: 'Models' },
    { id: 'tools', label: 'Tools' },
    { id: 'files', label: 'Files' },
    { id: 'sql', label: 'SQL' },
];

function Stats({ id }) {
    const [res, setRes] = useState(null);
    useEffect(() => {
        let live = true;
        const load = async () => {
            const r = await call(`sessions/${encodeURIComponent(id)}/stats`);
            if (live)
                setRes(r);
        };
        load();
        // New telemetry rows for this session reload the totals (at most once a
        // second); the slow poll covers a dropped event socket.
        let pending = null;
        const off = events.on((m) => {
            const sid = m.session ?? m.session_id;
            if (m.type !== 'telemetry' || String(sid) !== String(id) || pending)
                return;
            pending = setTimeout(() => {
                pending = null;
                load();
            }, 1000);
        });
        const t = setInterval(load, 5000);
        return () => {
            live = false;
            off();
            clearInterval(t);
            clearTimeout(pending);
        };
    }, [id]);
    if (!res || !res.ok || !res.data)
        return null;
    const t = res.data.totals || {};
    const dns = res.data.dns || {};
    const items = [
        ['Requests', count(t.requests)],
        ['DNS', count(dns.queries)],
        ['Model calls', count(t.model_calls)],
        ['Tokens', count(t.input_tokens != null ? (t.input_tokens || 0) + (t.output_tokens || 0) : null)],
        ['Cost', usd(t.cost_usd)],
        ['File events', count(res.data.file_events)],
    ];
    return (
        <dl class="stats">
            {items.map(([k, v]) => (
                <div>
                    <dt>{k}</dt>
                    <dd>{v}</dd>
                </div>
            ))}
        </dl>
    );
}

// HTTP exchanges, or DNS questions, of a session.
function NetworkTab({ id }) {
    const [view, setView] = useState('network');
    return (
        <>
            <div class="toolbar" role="group" aria-label="Network view">
                <button type="button" aria-pressed={view === 'network'} onClick={() => setView('network')}>
                    HTTP
                </button>
                <button type="button" aria-pressed={view === 'dns'} onClick={() => setView('dns')}>
                    DNS
                </button>
            </div>
            <EventTable key={view} id={id} kindName={view} />
        </>
    );
}

export function Session({ id, tab, go }) {
    const [res, setRes] = useState(null);
    useEffect(() => {
        const load = async () => setRes(await call(`sessions/${encodeURIComponent(id)}`));
        load();
        const off = events.on((m) => {
            const sid = m.session ?? m.session_id ?? (m.data && m.data.id);
            if (typeof m.type === 'string' && m.type.startsWith('session') && String(sid) === String(id))
                load();
        });
        return off;
    }, [id]);
    const s = res && res.ok ? res.data || {} : {};
    const current = TABS.some((t) => t.id === tab) ? tab : 'terminal';
    return (
        <section aria-labelledby="session-title">
            <nav class="crumbs" aria-label="Breadcrumb">
                <a href="#/">Sessions</a> / <span>{id}</span>
            </nav>
            <div class="page-head">
                <h1 id="session-title" tabIndex={-1}>
                    Session {s.name || id}
                    {s.status && <span class={`status status-${s.status}`}>{s.status}</span>}
                    {s.reason && <span class="muted reason">{s.reason}</span>}
                </h1>
                <Stats id={id} />
            </div>
            {res && !res.ok && <Failure res={res} what="This session" />}
            <Tabs tabs={TABS} current={current} label="Session views" onSelect={(t) => go(`/s/${encodeURIComponent(id)}/${t}`)} />
            <div class="panel" role="tabpanel" id={`panel-${current}`} aria-labelledby={`tab-${current}`}>
                {current === 'terminal' && <TerminalTab id={id} />}
                {current === 'network' && <NetworkTab id={id} />}
                {current === 'models' && <EventTable id={id} kindName="models" />}
                {current === 'tools' && <EventTable id={id} kindName="tools" />}
                {current === 'files' && <EventTable id={id} kindName="files" />}
                {current === 'sql' && <SqlTab id={id} />}
            </div>
        </section>
    );
}
