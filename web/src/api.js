// The daemon's API as the dashboard uses it: relative URLs only (so the app
// works behind an SSH tunnel or a path prefix), the session cookie for auth,
// and one reconnecting WebSocket for live events.

export const API = 'api/v1/';

// An API answer: {ok, status, data, error}. 404 means the route is not in
// this daemon (yet): pages show "not available" for it.
export async function call(path, { method = 'GET', body, signal } = {}) {
    const init = { method, credentials: 'same-origin', headers: {}, signal };
    if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    let r;
    try {
        r = await fetch(API + path, init);
    } catch (e) {
        if (e.name === 'AbortError')
            throw e;
        return { ok: false, status: 0, data: null, error: 'the daemon cannot be reached' };
    }
    let data = null;
    const text = await r.text();
    if (text) {
        try {
            data = JSON.parse(text);
        } catch {
            data = null;
        }
    }
    const error = r.ok ? null : (data && data.error) || `HTTP ${r.status}`;
    return { ok: r.ok, status: r.status, data, error };
}

// The rows of a list answer, whichever key the route uses.
export function rowsOf(data) {
    if (Array.isArray(data))
        return data;
    if (!data || typeof data !== 'object')
        return [];
    for (const k of ['items', 'rows', 'events', 'sessions', 'calls', 'data'])
        if (Array.isArray(data[k]))
            return data[k];
    return [];
}

export function cursorOf(data) {
    if (!data || typeof data !== 'object' || Array.isArray(data))
        return null;
    return data.next_cursor ?? data.cursor ?? data.next ?? null;
}

// ws:// or wss:// URL for a relative path, on this page's host.
export function wsUrl(path) {
    const u = new URL(API + path, location.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
}

// The /api/v1/events stream: one socket, reconnecting with backoff; listeners
// get every parsed message; state listeners get 'connecting', 'open', 'closed'.
class Events {
    constructor() {
        this.listeners = new Set();
        this.stateListeners = new Set();
        this.state = 'closed';
        this.delay = 500;
        this.ws = null;
        this.timer = null;
    }

    start() {
        if (this.ws || this.timer)
            return;
        this.setState('connecting');
        let ws;
        try {
            ws = new WebSocket(wsUrl('events'));
        } catch {
            this.retry();
            return;
        }
        this.ws = ws;
        ws.onopen = () => {
            this.delay = 500;
            this.setState('open');
        };
        ws.onmessage = (m) => {
            if (typeof m.data !== 'string')
                return;
            let msg;
            try {
                msg = JSON.parse(m.data);
            } catch {
                return;
            }
            for (const l of this.listeners)
                l(msg);
        };
        ws.onclose = () => {
            this.ws = null;
            this.setState('closed');
            this.retry();
        };
    }

    retry() {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => {
            this.timer = null;
            this.start();
        }, this.delay);
        this.delay = Math.min(this.delay * 2, 15000);
    }

    setState(s) {
        this.state = s;
        for (const l of this.stateListeners)
            l(s);
    }

    on(fn) {
        this.listeners.add(fn);
        return () => this.listeners.delete(fn);
    }

    onState(fn) {
        this.stateListeners.add(fn);
        return () => this.stateListeners.delete(fn);
    }
}

export const events = new Events();
