// The dashboard's entry: a header (title, link to the sessions, the live
// events connection state), a hash router (#/ sessions, #/s/ID/TAB one
// session) and the events WebSocket started once for every page.
import '@xterm/xterm/css/xterm.css';
import './styles.css';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { call, events } from './api.js';
import { Session } from './session.jsx';
import { Sessions } from './sessions.jsx';

function route() {
    const h = location.hash.replace(/^#/, '') || '/';
    const parts = h.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 's' && parts[1])
        return { page: 'session', id: parts[1], tab: parts[2] || 'terminal' };
    return { page: 'sessions' };
}

function go(path) {
    location.hash = '#' + path;
}

function LiveState() {
    const [state, setState] = useState(events.state);
    useEffect(() => events.onState(setState), []);
    const label = { open: 'Live', connecting: 'Connecting', closed: 'Offline' }[state];
    return (
        <span class={`live live-${state}`} role="status" aria-live="polite" title="Live updates from api/v1/events">
            {label}
        </span>
    );
}

function App() {
    const [r, setR] = useState(route());
    const [version, setVersion] = useState(null);
    const [auth, setAuth] = useState(null);
    useEffect(() => {
        const on = () => setR(route());
        window.addEventListener('hashchange', on);
        call('version').then((v) => {
            setAuth(v.status);
            if (v.ok && v.data)
                setVersion(v.data.version);
        });
        events.start();
        return () => window.removeEventListener('hashchange', on);
    }, []);
    // Focus the main heading after navigating (not on first load), for
    // keyboard and screen-reader users.
    const first = useRef(true);
    useEffect(() => {
        if (first.current) {
            first.current = false;
            return;
        }
        const h = document.querySelector('main h1');
        h && h.focus({ preventScroll: true });
    }, [r.page, r.id]);
    return (
        <>
            <header class="top">
                <a class="brand" href="#/">
                    Capsem
                </a>
                <nav aria-label="Main">
                    <a href="#/" aria-current={r.page === 'sessions' ? 'page' : undefined}>
                        Sessions
                    </a>
                </nav>
                <span class="spacer" />
                {version && <span class="muted version">v{version}</span>}
                <LiveState />
            </header>
            <main id="main" tabIndex={-1}>
                {auth === 401 && (
                    <div class="notice error" role="alert" id="signin">
                        Not signed in. Open the login URL that <code>capsem serve</code> printed (or mint one with{' '}
                        <code>POST /api/v1/auth/codes</code>).
                    </div>
                )}
                {r.page === 'session' ? <Session id={r.id} tab={r.tab} go={go} /> : <Sessions go={go} />}
            </main>
        </>
    );
}

render(<App />, document.getElementById('app'));
