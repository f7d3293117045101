// The sessions page: every session with status, uptime, tokens and cost;
// a dialog to start one; stop (DELETE) and delete (DELETE ?purge=1).
import { useEffect, useState } from 'preact/hooks';
import { call, events, rowsOf } from './api.js';
import { count, duration, sessionCost, sessionTokens, sessionUptime, usd } from './format.js';
import { Dialog, ErrorNote, Failure } from './ui.jsx';

// Agents the daemon knows (a preset command each); '' is none: a shell.
const AGENTS = [
    ['', 'none (a shell)'],
    ['claude', 'claude'],
    ['codex', 'codex'],
    ['gemini', 'gemini'],
];
// Network policy presets (docs/policy.md); 'default' sends none: the config's own.
const PRESETS = ['default', 'high', 'medium', 'open'];

function parseEnv(text) {
    const env = {};
    for (const raw of text.split('\n')) {
        const line = raw.trim();
        if (!line)
            continue;
        const eq = line.indexOf('=');
        if (eq <= 0)
            throw new Error(`environment line "${line}" is not NAME=value`);
        env[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return env;
}

function NewSession({ open, onClose, onCreated }) {
    const [form, setForm] = useState({ agent: '', command: '', mem: 512, cpus: 1, policy: 'default', env: '' });
    const [error, setError] = useState(null);
    const [busy, setBusy] = useState(false);
    const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
    const submit = async (e) => {
        e.preventDefault();
        setError(null);
        let env;
        try {
            env = parseEnv(form.env);
        } catch (err) {
            setError(err.message);
            return;
        }
        const body = { mem: Number(form.mem), cpus: Number(form.cpus) };
        if (Object.keys(env).length)
            body.env = env;
        if (form.agent)
            body.agent = form.agent;
        if (form.command.trim())
            body.command = ['/bin/sh', '-c', form.command.trim()];
        if (form.policy !== 'default')
            body.policy = form.policy;
        setBusy(true);
        const r = await call('sessions', { method: 'POST', body });
        setBusy(false);
        if (!r.ok) {
            setError(r.status === 404 && r.error === 'no such route' ? 'Starting sessions is not available in this daemon yet.' : r.error);
            return;
        }
        onCreated(r.data);
    };
    return (
        <Dialog title="New session" open={open} onClose={onClose}>
            <form onSubmit={submit} class="form">
                <label>
                    Agent
                    <select value={form.agent} onChange={set('agent')} name="agent">
                        {AGENTS.map(([v, l]) => (
                            <option value={v}>{l}</option>
                        ))}
                    </select>
                </label>
                <label>
                    Command <span class="hint">(optional, run by /bin/sh; the session stops when it exits)</span>
                    <input name="command" value={form.command} onInput={set('command')} autocomplete="off" />
                </label>
                <div class="row">
                    <label>
                        Memory (MiB)
                        <input name="mem" type="number" min="64" step="64" value={form.mem} onInput={set('mem')} />
                    </label>
                    <label>
                        CPUs
                        <input name="cpus" type="number" min="1" max="64" value={form.cpus} onInput={set('cpus')} />
                    </label>
                </div>
                <label>
                    Policy preset
                    <select name="policy" value={form.policy} onChange={set('policy')}>
                        {PRESETS.map((p) => (
                            <option value={p}>{p}</option>
                        ))}
                    </select>
                </label>
                <label>
                    Environment <span class="hint">(NAME=value, one per line)</span>
                    <textarea name="env" rows="3" value={form.env} onInput={set('env')} />
                </label>
                <ErrorNote error={error} />
                <div class="actions">
                    <button type="button" onClick={onClose}>
                        Cancel
                    </button>
                    <button type="submit" class="primary" disabled={busy}>
                        {busy ? 'Starting…' : 'Start'}
                    </button>
                </div>
            </form>
        </Dialog>
    );
}

export function Sessions({ go }) {
    const [res, setRes] = useState(null);
    const [now, setNow] = useState(Date.now());
    const [dialog, setDialog] = useState(false);
    const [actionError, setActionError] = useState(null);

    const load = async () => {
        const r = await call('sessions');
        r.fetched = Date.now();
        setRes(r);
    };
    useEffect(() => {
        load();
        const tick = setInterval(() => setNow(Date.now()), 1000);
        const poll = setInterval(load, 10000);
        const off = events.on((m) => {
            if (typeof m.type === 'string' && m.type.startsWith('session'))
                load();
        });
        return () => {
            clearInterval(tick);
            clearInterval(poll);
            off();
        };
    }, []);

    const act = async (s, purge) => {
        const id = s.id;
        if (purge && !confirm(`Delete session ${id} and its records?`))
            return;
        const r = await call(`sessions/${encodeURIComponent(id)}${purge ? '?purge=1' : ''}`, { method: 'DELETE' });
        setActionError(r.ok ? null : r.status === 404 && r.error === 'no such route' ? `${purge ? 'Delete' : 'Stop'} is not available.` : r.error);
        load();
    };

    const list = res && res.ok ? rowsOf(res.data) : [];
    return (
        <section aria-labelledby="sessions-title">
            <div class="page-head">
                <h1 id="sessions-title" tabIndex={-1}>Sessions</h1>
                <button type="button" class="primary" onClick={() => setDialog(true)}>
                    New session
                </button>
            </div>
            {res === null && <p class="muted">Loading…</p>}
            <Failure res={res} what="The session list" />
            <ErrorNote error={actionError} />
            {res && res.ok && list.length === 0 && <p class="muted" id="no-sessions">No sessions yet.</p>}
            {list.length > 0 && (
                <div class="table-wrap">
                    <table class="data" id="sessions-table">
                        <thead>
                            <tr>
                                <th scope="col">Session</th>
                                <th scope="col">Agent or command</th>
                                <th scope="col">Status</th>
                                <th scope="col" class="num">Uptime</th>
                                <th scope="col" class="num">Tokens</th>
                                <th scope="col" class="num">Cost</th>
                                <th scope="col">
                                    <span class="sr-only">Actions</span>
                                </th>
                            </tr>
                        </thead>
                        <tbody>
                            {list.map((s) => (
                                <tr key={s.id}>
                                    <td>
                                        <a href={`#/s/${encodeURIComponent(s.id)}/terminal`}>{s.name || s.id}</a>
                                    </td>
                                    <td class="cmd">{s.agent || (Array.isArray(s.command) ? s.command.join(' ') : 'shell')}</td>
                                    <td>
                                        <span class={`status status-${s.status || 'unknown'}`} title={s.reason || ''}>
                                            {s.status || 'unknown'}
                                        </span>
                                        {s.reason && <span class="muted reason"> {s.reason}</span>}
                                    </td>
                                    <td class="num">{['booting', 'running', 'stopping'].includes(s.status) ? duration(sessionUptime(s, now, res.fetched)) : '—'}</td>
                                    <td class="num">{count(sessionTokens(s))}</td>
                                    <td class="num">{usd(sessionCost(s))}</td>
                                    <td>
                                        <div class="actions-cell">
                                        <button type="button" onClick={() => act(s, false)} disabled={['stopping', 'stopped', 'failed', 'purged'].includes(s.status)}>
                                            Stop
                                        </button>
                                        <button type="button" class="danger" onClick={() => act(s, true)}>
                                            Delete
                                        </button>
                                        </div>
                                    </td>
                                </tr>
                            ))}
                        </tbody>
                    </table>
                </div>
            )}
            <NewSession
                open={dialog}
                onClose={() => setDialog(false)}
                onCreated={(s) => {
                    setDialog(false);
                    load();
                    if (s && s.id)
                        go(`/s/${encodeURIComponent(s.id)}/terminal`);
                }}
            />
        </section>
    );
}
