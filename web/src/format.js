// Formatting of the numbers and times the API returns.

export function duration(seconds) {
    if (seconds == null || !isFinite(seconds))
        return '—';
    seconds = Math.max(0, Math.floor(seconds));
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (d)
        return `${d}d ${h}h`;
    if (h)
        return `${h}h ${m}m`;
    if (m)
        return `${m}m ${s}s`;
    return `${s}s`;
}

export function micros(us) {
    if (us == null || us < 0)
        return '—';
    if (us < 1000)
        return `${us} µs`;
    if (us < 1e6)
        return `${(us / 1000).toFixed(us < 1e4 ? 1 : 0)} ms`;
    return `${(us / 1e6).toFixed(2)} s`;
}

export function timeOfDay(us) {
    if (us == null)
        return '—';
    const d = new Date(us / 1000);
    return d.toLocaleTimeString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

export function count(n) {
    if (n == null)
        return '—';
    return Number(n).toLocaleString('en-US');
}

export function bytes(n) {
    if (n == null)
        return '—';
    if (n < 1024)
        return `${n} B`;
    if (n < 1024 * 1024)
        return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
}

export function usd(x) {
    if (x == null)
        return '—';
    return '$' + Number(x).toFixed(x < 1 ? 4 : 2);
}

// The session fields the list shows, whichever names the daemon uses.
export function sessionTokens(s) {
    if (s.tokens != null)
        return typeof s.tokens === 'object' ? (s.tokens.input || 0) + (s.tokens.output || 0) : s.tokens;
    if (s.input_tokens != null || s.output_tokens != null)
        return (s.input_tokens || 0) + (s.output_tokens || 0);
    return null;
}

export function sessionCost(s) {
    return s.cost_usd ?? s.cost ?? null;
}

// Seconds up at nowMs: the daemon's uptime as of fetchedMs, ticking on
// while the session runs.
export function sessionUptime(s, nowMs, fetchedMs = nowMs) {
    const up = s.uptime ?? s.uptime_s;
    if (up != null)
        return up + (s.status === 'running' ? Math.max(0, nowMs - fetchedMs) / 1000 : 0);
    const started = s.started_at ?? s.created_at;
    if (started == null)
        return null;
    const t = typeof started === 'number' ? started * 1000 : Date.parse(started);
    if (!isFinite(t))
        return null;
    const end = s.ended_at ? (typeof s.ended_at === 'number' ? s.ended_at * 1000 : Date.parse(s.ended_at)) : nowMs;
    return (end - t) / 1000;
}
