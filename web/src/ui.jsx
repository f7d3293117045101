// Small shared pieces: notices, a modal dialog, a side drawer, keyboard tabs.
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';

export function NotAvailable({ what }) {
    return (
        <div class="notice" role="status" data-state="not-available">
            <strong>{what} is not available.</strong> This daemon does not serve it yet.
        </div>
    );
}

export function ErrorNote({ error }) {
    if (!error)
        return null;
    return (
        <div class="notice error" role="alert">
            {error}
        </div>
    );
}

// The standard answer to a failed call: not available when the route is
// missing, the error otherwise.
export function Failure({ res, what }) {
    if (!res || res.ok)
        return null;
    // The daemon's own 404 for a path it has no route for; other 404s
    // ("no such session") are answers of a route that exists.
    if (res.status === 404 && (!res.error || res.error === 'no such route'))
        return <NotAvailable what={what} />;
    if (res.status === 401)
        return <ErrorNote error="Not signed in: open the login URL that `capsem serve` printed." />;
    return <ErrorNote error={`${what}: ${res.error}`} />;
}

// A modal dialog (native <dialog>: focus stays inside, Escape closes).
export function Dialog({ title, open, onClose, children }) {
    const ref = useRef(null);
    useEffect(() => {
        const d = ref.current;
        if (!d)
            return;
        if (open && !d.open)
            d.showModal();
        if (!open && d.open)
            d.close();
    }, [open]);
    return (
        <dialog ref={ref} aria-label={title} onClose={onClose} onCancel={onClose}>
            <h2>{title}</h2>
            {children}
        </dialog>
    );
}

// A side panel over the page; Escape or the button closes it; focus moves
// in, and back when it closes.
export function Drawer({ title, onClose, children }) {
    const ref = useRef(null);
    const close = useRef(onClose);
    close.current = onClose;
    // A layout effect: focus and the Escape key are in place as soon as the
    // drawer is in the page, not a frame later (a quick Escape is not lost).
    useLayoutEffect(() => {
        const before = document.activeElement;
        ref.current && ref.current.focus();
        const key = (e) => e.key === 'Escape' && close.current();
        window.addEventListener('keydown', key);
        return () => {
            window.removeEventListener('keydown', key);
            // Back to where the user was (the row that opened it).
            before && before.isConnected && before.focus();
        };
    }, []);
    return (
        <aside class="drawer" role="dialog" aria-label={title} tabIndex={-1} ref={ref}>
            <header>
                <h2>{title}</h2>
                <button type="button" onClick={onClose} aria-label="Close details">
                    ✕
                </button>
            </header>
            <div class="drawer-body">{children}</div>
        </aside>
    );
}

// A row of tabs: ←/→/Home/End move between them (WAI-ARIA tabs pattern).
export function Tabs({ tabs, current, onSelect, label }) {
    const refs = useRef({});
    const key = (e, i) => {
        let j = null;
        if (e.key === 'ArrowRight')
            j = (i + 1) % tabs.length;
        else if (e.key === 'ArrowLeft')
            j = (i - 1 + tabs.length) % tabs.length;
        else if (e.key === 'Home')
            j = 0;
        else if (e.key === 'End')
            j = tabs.length - 1;
        if (j === null)
            return;
        e.preventDefault();
        onSelect(tabs[j].id);
        const el = refs.current[tabs[j].id];
        el && el.focus();
    };
    return (
        <div class="tabs" role="tablist" aria-label={label}>
            {tabs.map((t, i) => (
                <button
                    type="button"
                    role="tab"
                    id={`tab-${t.id}`}
                    aria-selected={t.id === current}
                    aria-controls={`panel-${t.id}`}
                    tabIndex={t.id === current ? 0 : -1}
                    ref={(el) => (refs.current[t.id] = el)}
                    onClick={() => onSelect(t.id)}
                    onKeyDown={(e) => key(e, i)}
                >
                    {t.label}
                </button>
            ))}
        </div>
    );
}
