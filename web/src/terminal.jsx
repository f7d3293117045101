// The Terminal tab: xterm.js on the WebSocket api/v1/sessions/{id}/terminal.
// Binary frames carry PTY bytes both ways; a JSON text frame
// {"type":"resize","cols":C,"rows":R} follows every fit. The socket
// reconnects with backoff (and at once with the Reconnect button). F6
// moves the focus out of the terminal, which otherwise keeps every key.
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'preact/hooks';
import { wsUrl } from './api.js';

export function TerminalTab({ id }) {
    const box = useRef(null);
    const ctl = useRef(null);
    const [state, setState] = useState('connecting');

    useEffect(() => {
        const term = new Terminal({
            cursorBlink: true,
            fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
            fontSize: 14,
            scrollback: 5000,
            theme: { background: '#111418' },
        });
        const fit = new FitAddon();
        term.loadAddon(fit);
        term.open(box.current);
        const enc = new TextEncoder();
        let ws = null;
        let timer = null;
        let delay = 500;
        let closed = false;
        let gone = false;

        const sendSize = () => {
            if (ws && ws.readyState === WebSocket.OPEN)
                ws.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
        };
        const doFit = () => {
            try {
                fit.fit();
            } catch {
                /* not laid out yet */
            }
            sendSize();
        };
        const connect = () => {
            clearTimeout(timer);
            timer = null;
            if (ws)
                ws.close();
            setState('connecting');
            ws = new WebSocket(wsUrl(`sessions/${encodeURIComponent(id)}/terminal`));
            ws.binaryType = 'arraybuffer';
            const me = ws;
            ws.onopen = () => {
                delay = 500;
                setState('open');
                sendSize();
            };
            ws.onmessage = (m) => {
                if (m.data instanceof ArrayBuffer)
                    term.write(new Uint8Array(m.data));
                else if (typeof m.data === 'string') {
                    try {
                        const msg = JSON.parse(m.data);
                        if (msg.type === 'exit') {
                            gone = true;
                            term.write(`\r\n[process exited${msg.status != null ? ` with status ${msg.status}` : ''}]\r\n`);
                        }
                    } catch {
                        /* ignore a text frame that is not JSON */
                    }
                }
            };
            ws.onclose = (e) => {
                if (me !== ws)
                    return;
                ws = null;
                if (closed)
                    return;
                setState(gone ? 'ended' : e.code === 1006 && delay === 500 ? 'unavailable' : 'closed');
                if (!gone) {
                    timer = setTimeout(connect, delay);
                    delay = Math.min(delay * 2, 15000);
                }
            };
        };
        // The terminal takes every key, Tab included; F6 is the way out for
        // keyboard users (to the session's selected tab).
        term.attachCustomKeyEventHandler((e) => {
            if (e.key !== 'F6')
                return true;
            if (e.type === 'keydown') {
                e.preventDefault();
                const t = document.querySelector('[role=tab][aria-selected=true]');
                t && t.focus();
            }
            return false;
        });
        const input = term.onData((d) => {
            if (ws && ws.readyState === WebSocket.OPEN)
                ws.send(enc.encode(d));
        });
        const ro = new ResizeObserver(() => doFit());
        ro.observe(box.current);
        ctl.current = {
            reconnect: () => {
                delay = 500;
                gone = false;
                connect();
            },
            fit: doFit,
        };
        doFit();
        connect();
        return () => {
            closed = true;
            clearTimeout(timer);
            ro.disconnect();
            input.dispose();
            if (ws)
                ws.close();
            term.dispose();
        };
    }, [id]);

    const label = {
        connecting: 'Connecting…',
        open: 'Connected',
        closed: 'Disconnected, retrying',
        unavailable: 'Terminal not available (retrying)',
        ended: 'Session ended',
    }[state];
    return (
        <div class="terminal-tab">
            <div class="toolbar">
                <span class={`conn conn-${state}`} role="status" id="terminal-state">
                    {label}
                </span>
                <span class="muted hint">F6 leaves the terminal</span>
                <button type="button" onClick={() => ctl.current && ctl.current.fit()}>
                    Fit
                </button>
                <button type="button" onClick={() => ctl.current && ctl.current.reconnect()}>
                    Reconnect
                </button>
            </div>
            <div class="term-box" id="terminal" ref={box} aria-label="Terminal (F6 leaves it)" />
        </div>
    );
}
