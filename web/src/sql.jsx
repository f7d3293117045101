// The SQL tab: a query box (Ctrl+Enter runs it) posting {sql} to
// sessions/{id}/query, and the answer as a table.
import { useState } from 'preact/hooks';
import { call, rowsOf } from './api.js';
import { Failure } from './ui.jsx';

const EXAMPLE = 'SELECT host, count(*) AS n FROM net_events GROUP BY host ORDER BY n DESC LIMIT 20';

export function SqlTab({ id }) {
    const [sql, setSql] = useState(EXAMPLE);
    const [res, setRes] = useState(null);
    const [busy, setBusy] = useState(false);
    const run = async (e) => {
        e && e.preventDefault();
        setBusy(true);
        setRes(await call(`sessions/${encodeURIComponent(id)}/query`, { method: 'POST', body: { sql } }));
        setBusy(false);
    };
    const data = res && res.ok ? res.data : null;
    const rows = data ? rowsOf(data) : [];
    const cols = data && Array.isArray(data.columns) ? data.columns : rows.length && !Array.isArray(rows[0]) ? Object.keys(rows[0]) : [];
    const cell = (row, c, i) => {
        const v = Array.isArray(row) ? row[i] : row[c];
        return v === null || v === undefined ? <span class="muted">NULL</span> : String(v);
    };
    return (
        <div class="sql">
            <form onSubmit={run}>
                <label for="sql-box">Query (read-only; Ctrl+Enter runs it)</label>
                <textarea
                    id="sql-box"
                    rows="5"
                    spellcheck={false}
                    value={sql}
                    onInput={(e) => setSql(e.currentTarget.value)}
                    onKeyDown={(e) => e.key === 'Enter' && (e.ctrlKey || e.metaKey) && run(e)}
                />
                <div class="actions">
                    <button type="submit" class="primary" disabled={busy}>
                        {busy ? 'Running…' : 'Run'}
                    </button>
                </div>
            </form>
            {res && res.status === 400 ? <div class="notice error" role="alert">{res.error}</div> : <Failure res={res} what="SQL queries" />}
            {data && (
                <>
                    <p class="muted" role="status">
                        {rows.length} row{rows.length === 1 ? '' : 's'}
                        {data.truncated ? ' (truncated)' : ''}
                    </p>
                    {rows.length > 0 && (
                        <div class="table-wrap">
                            <table class="data" id="sql-result">
                                <thead>
                                    <tr>
                                        {cols.map((c) => (
                                            <th scope="col">{c}</th>
                                        ))}
                                    </tr>
                                </thead>
                                <tbody>
                                    {rows.map((r) => (
                                        <tr>
                                            {cols.map((c, i) => (
                                                <td>{cell(r, c, i)}</td>
                                            ))}
                                        </tr>
                                    ))}
                                </tbody>
                            </table>
                        </div>
                    )}
                </>
            )}
        </div>
    );
}
