// Browser tests of the dashboard: one case per run (ctest browser.<case>).
//   node run.mjs --case NAME --capsem BIN --node-modules DIR --artifacts DIR --chromium PATH
//                [--bed DIR --vm-work DIR]   (the cases that boot a VM)
// Each case starts a real `capsem serve` on a loopback port, signs in through
// the printed one-time URL and drives Chromium (headless, background
// networking off) with playwright-core. Most cases run the daemon here with a
// temporary CAPSEM_HOME. The cases that boot a VM (VM_CASES) run it through
// vm-serve (next to this file) where the kvm fixture's policy says guests
// boot ($CAPSEM_BED_STATE/mode, as tests/kvm-bed/kvm-exec reads it): inside
// the KVM test bed with the port forwarded to this host, or here on a host
// whose KVM runs guests; their CAPSEM_HOME is under --vm-work (the build
// tree, shared with the bed at the same path). Chromium always runs here.
// Screenshots are written to the artifacts folder. Exit 0 pass, 1 fail, 77
// skipped (only where ctest allows it).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

function parseArgs() {
    const a = {};
    const argv = process.argv.slice(2);
    for (let i = 0; i < argv.length; i += 2)
        a[argv[i].replace(/^--/, '')] = argv[i + 1];
    for (const k of ['case', 'capsem', 'node-modules', 'artifacts', 'chromium'])
        if (!a[k])
            throw new Error(`missing --${k}`);
    return a;
}

const opts = parseArgs();

class Failure extends Error {}
function check(cond, msg) {
    if (!cond)
        throw new Failure(msg);
}

// ---- the daemon --------------------------------------------------------------

// `seed(home)`, when given, fills CAPSEM_HOME before the daemon starts (it
// finds the session directories there at startup).
async function startServe(seed) {
    const home = mkdtempSync(join(tmpdir(), 'capsem-browser-'));
    const extraEnv = seed ? seed(home) || {} : {};
    const proc = spawn(opts.capsem, ['serve', '--listen', '127.0.0.1:0'], {
        env: { ...process.env, CAPSEM_HOME: home, CAPSEM_LOG: 'warn', ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const url = await new Promise((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error(`capsem serve printed no login URL in 10 s; stderr: ${stderr}`)), 10000);
        proc.stdout.on('data', (d) => {
            out += d;
            const nl = out.indexOf('\n');
            if (nl >= 0) {
                clearTimeout(t);
                resolve(out.slice(0, nl).trim());
            }
        });
        proc.on('exit', (code) => reject(new Error(`capsem serve exited with ${code}: ${stderr}`)));
    });
    const m = /^(http:\/\/127\.0\.0\.1:\d+)\/login\?t=[0-9a-f]{64}$/.exec(url);
    check(m, `unexpected login URL line: ${url}`);
    const token = readFileSync(join(home, 'token'), 'utf8').trim();
    return {
        url,
        base: m[1],
        home,
        token,
        stop: async () => {
            proc.kill('SIGTERM');
            await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
            rmSync(home, { recursive: true, force: true });
            if (extraEnv.CAPSEM_ASSETS)
                rmSync(dirname(extraEnv.CAPSEM_ASSETS), { recursive: true, force: true });
        },
    };
}

// A raw HTTP request (no automatic decompression): {status, headers, body Buffer}.
function request(base, path, { method = 'GET', headers = {}, body } = {}) {
    return new Promise((resolve, reject) => {
        const req = http.request(base + path, { method, headers }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        });
        req.on('error', reject);
        if (body !== undefined)
            req.write(typeof body === 'string' ? body : JSON.stringify(body));
        req.end();
    });
}

// The REST API with the token (a non-browser client: no Origin).
async function api(srv, path, method = 'GET', body) {
    const headers = { Authorization: `Bearer ${srv.token}` };
    if (body !== undefined)
        headers['Content-Type'] = 'application/json';
    const r = await request(srv.base, '/api/v1/' + path, { method, headers, body });
    let data = null;
    try {
        data = JSON.parse(r.body.toString('utf8'));
    } catch {
        /* not JSON */
    }
    return { status: r.status, data };
}

class Skip extends Error {}

// The cases that boot a VM: their daemon runs through vm-serve.
const VM_CASES = new Set(['terminal_echo', 'network_live', 'sql_query']);

// Where guests boot in this test run, as the kvm.bed.start fixture decided
// (tests/kvm-bed/kvm.cmake): "direct" here, "bed" inside the running test bed.
// "skip" (neither works) skips the case (exit 77), or fails it under
// CAPSEM_KVM_REQUIRED=1 (make test, CI), as kvm-exec does; no decision at all
// is a failure.
function kvmMode() {
    const state = process.env.CAPSEM_BED_STATE;
    check(state, 'CAPSEM_BED_STATE is not set: run this case through ctest (its kvm_bed fixture decides where VMs boot), or export it');
    const read = (name) => {
        try {
            return readFileSync(join(state, name), 'utf8').trim();
        } catch {
            return '';
        }
    };
    const mode = read('mode');
    if (mode === 'skip') {
        const reason = read('reason') || 'no reason recorded';
        check(process.env.CAPSEM_KVM_REQUIRED !== '1', `VM tests are required here (CAPSEM_KVM_REQUIRED=1) but cannot run: ${reason}`);
        throw new Skip(reason);
    }
    check(mode === 'direct' || mode === 'bed', `no KVM policy in ${state} (mode ${JSON.stringify(mode)}): the kvm.bed.start fixture has not run (ctest runs it before the tests that need it)`);
    return mode;
}

// A loopback port free on this host at the moment of asking.
function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

// The login URL: the first line `proc` prints; a Failure when it exits first
// or prints nothing in `ms`.
function loginLine(proc, what, ms, errText) {
    return new Promise((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Failure(`${what} printed no login URL in ${ms / 1000} s; stderr: ${errText()}`)), ms);
        proc.stdout.on('data', (d) => {
            out += d;
            const nl = out.indexOf('\n');
            if (nl >= 0) {
                clearTimeout(t);
                resolve(out.slice(0, nl).trim());
            }
        });
        proc.on('exit', (code) => {
            clearTimeout(t);
            reject(new Failure(`${what} exited with ${code} before printing a login URL: ${errText()}`));
        });
    });
}

function waitExit(proc, ms) {
    return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null)
            return resolve(true);
        const t = setTimeout(() => resolve(false), ms);
        proc.on('exit', () => {
            clearTimeout(t);
            resolve(true);
        });
    });
}

// The daemon of a case that boots a VM, started by vm-serve (with the test
// upstream and a config.json allowing allowed.test and blocking blocked.test)
// where guests boot: `bed exec --forward PORT` in bed mode, so the daemon's
// port inside the bed is the same port here. Its CAPSEM_HOME is
// --vm-work/<case>/home, on the build tree the bed shares, so the token file
// is read here. stop() ends vm-serve's stdin, which stops the daemon and the
// upstream; the work folder is kept when the case failed.
async function startVmServe() {
    for (const k of ['bed', 'vm-work'])
        check(opts[k], `--${k} is required for ${opts.case} (it boots a VM)`);
    const mode = kvmMode();
    const work = join(opts['vm-work'], opts.case);
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    const home = join(work, 'home');
    const port = await freePort();
    const wrapper = join(dirname(fileURLToPath(import.meta.url)), 'vm-serve');
    const argv = [opts.capsem, String(port), work];
    const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const [cmd, args] = mode === 'bed' ? [python, [join(opts.bed, 'bed'), 'exec', '--forward', String(port), '--', wrapper, ...argv]] : [wrapper, argv];
    console.log(`browser.${opts.case}: the daemon runs ${mode === 'bed' ? 'inside the KVM test bed' : 'on this host'} on 127.0.0.1:${port}, CAPSEM_HOME ${home}`);
    const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    proc.stdin.on('error', () => {}); /* it may have exited already */
    let stderr = '';
    proc.stderr.on('data', (d) => {
        stderr = (stderr + d).slice(-20000);
        process.stderr.write(d);
    });
    const started = Date.now();
    let url;
    try {
        url = await loginLine(proc, 'vm-serve', 300000, () => stderr);
    } catch (e) {
        proc.kill('SIGTERM');
        throw e;
    }
    console.log(`browser.${opts.case}: daemon up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const m = /^(http:\/\/127\.0\.0\.1:(\d+))\/login\?t=[0-9a-f]{64}$/.exec(url);
    check(m && m[2] === String(port), `unexpected login URL line (port ${port} expected): ${url}`);
    const token = readFileSync(join(home, 'token'), 'utf8').trim();
    return {
        url,
        base: m[1],
        home,
        token,
        // Returns '' after a clean stop, else what went wrong.
        stop: async (passed) => {
            proc.stdin.end();
            let why = '';
            if (!(await waitExit(proc, 120000))) {
                why = 'vm-serve did not stop within 120 s of its stdin closing';
                proc.kill('SIGTERM');
                if (!(await waitExit(proc, 10000)))
                    proc.kill('SIGKILL');
            } else if (proc.exitCode !== 0) {
                why = `vm-serve ended with status ${proc.exitCode ?? proc.signalCode}: ${stderr.slice(-2000)}`;
            }
            if (passed && !why)
                rmSync(work, { recursive: true, force: true });
            return why;
        },
    };
}

// The session routes must exist (a clear failure while they do not).
async function needRoutes(srv) {
    const r = await api(srv, 'sessions');
    check(!(r.status === 404 && r.data && r.data.error === 'no such route'), 'GET /api/v1/sessions answered "no such route": the session routes are not in this daemon yet');
    check(r.status === 200, `GET /api/v1/sessions answered ${r.status}: ${JSON.stringify(r.data)}`);
}

// Waits for a session to be running (its guest agent answered); one that
// stops or fails first, or is still booting after `ms`, is a Failure.
async function waitRunning(srv, id, ms) {
    const until = Date.now() + ms;
    let last = null;
    for (;;) {
        const r = await api(srv, `sessions/${encodeURIComponent(id)}`);
        check(r.status === 200, `GET sessions/${id} answered ${r.status}: ${JSON.stringify(r.data)}`);
        last = r.data;
        if (last.status === 'running')
            return;
        check(last.status === 'booting', `session ${id} did not come up: ${JSON.stringify(last)}`);
        check(Date.now() < until, `session ${id} still booting after ${ms / 1000} s: ${JSON.stringify(last)}`);
        await new Promise((res) => setTimeout(res, 500));
    }
}

// Runs argv in a running session (POST sessions/{id}/exec); its result.
async function execIn(srv, id, argv) {
    const r = await api(srv, `sessions/${encodeURIComponent(id)}/exec`, 'POST', { argv, timeout: 120 });
    check(r.status !== 404 || (r.data && r.data.error !== 'no such route'), 'POST sessions/{id}/exec answered "no such route": not in this daemon yet');
    check(r.status === 200 && r.data, `exec ${JSON.stringify(argv)} answered ${r.status}: ${JSON.stringify(r.data)}`);
    return r.data;
}

// A session for the cases that need one; a clear failure while the routes are missing.
async function createSession(srv, body) {
    const r = await api(srv, 'sessions', 'POST', body);
    check(r.status !== 404 && r.status !== 405, `POST /api/v1/sessions answered ${r.status}: the session routes are not in this daemon yet`);
    check(r.status === 200 || r.status === 201, `POST /api/v1/sessions answered ${r.status}: ${JSON.stringify(r.data)}`);
    check(r.data && r.data.id != null, `POST /api/v1/sessions gave no id: ${JSON.stringify(r.data)}`);
    return String(r.data.id);
}

// A stopped session's directory as the runner leaves it: session.db made by
// the telemetry migrations (schemas/telemetry, applied with sqlite3) with
// the rows below, and fs-events.jsonl. No VM is needed to read it.
const T0 = 1764300000000000; // microseconds
const SEED_SQL = `
INSERT INTO net_events (id, time_us, process, pid, method, scheme, host, port, path, query, status,
  req_bytes, resp_bytes, duration_us, ttfb_us, decision, rule, tls_version, error, req_headers,
  resp_headers, req_preview, resp_preview) VALUES
 (1, ${T0}, 'curl', 41, 'GET', 'https', 'api.github.com', 443, '/repos/capsem', 'page=2', 200, 0, 812,
  91000, 80000, 0, NULL, 'TLSv1.3', NULL, '{"user-agent":"curl/8.1","accept":"*/*"}',
  '{"content-type":"application/json"}', NULL, '{"full_name":"capsem/capsem"}'),
 (2, ${T0 + 2000000}, 'node', 77, 'POST', 'https', 'api.anthropic.com', 443, '/v1/messages', NULL, 200,
  1500, 4200, 2400000, 700000, 0, NULL, 'TLSv1.3', NULL, '{"content-type":"application/json"}',
  '{"content-type":"text/event-stream"}', '{"model":"claude-sonnet-4"}', 'event: message_start'),
 (3, ${T0 + 4000000}, 'curl', 42, 'GET', 'https', 'evil.example.com', 443, '/payload', NULL, 403, 0, 0,
  1000, -1, 1, 'deny-evil', 'TLSv1.3', NULL, '{}', NULL, NULL, NULL);
INSERT INTO dns_events (id, time_us, name, type, decision, rule, answer) VALUES
 (1, ${T0 - 1000}, 'api.github.com', 'A', 0, NULL, '198.18.0.7'),
 (2, ${T0 + 3999000}, 'evil.example.com', 'A', 1, 'deny-evil', 'NXDOMAIN');
INSERT INTO model_calls (id, time_us, process, pid, host, path, provider, api, model_requested,
  model_answered, stream, http_status, status, input_tokens, output_tokens, tool_call_count,
  tool_result_count, ttft_us, duration_us, cost_usd, cost_known, parse_error, truncated) VALUES
 (1, ${T0 + 2000000}, 'node', 77, 'api.anthropic.com', '/v1/messages', 'anthropic', 'messages',
  'claude-sonnet-4', 'claude-sonnet-4-20250514', 1, 200, 'ok', 1200, 300, 1, 0, 700000, 2400000, 0.0081, 1, 0, 0),
 (2, ${T0 + 6000000}, 'node', 77, 'api.anthropic.com', '/v1/messages', 'anthropic', 'messages',
  'claude-sonnet-4', 'claude-sonnet-4-20250514', 1, 200, 'ok', 1500, 200, 0, 1, 650000, 1900000, 0.0075, 1, 0, 0);
INSERT INTO tool_calls (id, model_call_id, idx, call_id, name, arguments) VALUES
 (1, 1, 0, 'toolu_01', 'bash', '{"command":"ls -la"}');
INSERT INTO tool_results (id, model_call_id, idx, call_id, is_error, preview) VALUES
 (1, 2, 0, 'toolu_01', 0, 'total 8');
INSERT OR REPLACE INTO session_totals VALUES (1, 3, 2, 2700, 500, 0, 0, 0.0156, 0, ${T0 + 6000000});
`;

function sqlite(db, sql) {
    const r = spawnSync('sqlite3', ['-bail', db], { input: sql, encoding: 'utf8' });
    check(!r.error, `sqlite3 cannot run (${r.error && r.error.message}): install it (deploy/bootstrap does)`);
    check(r.status === 0, `sqlite3 ${db}: ${r.stderr}`);
}

function seedSession(home, name) {
    const dir = join(home, 'sessions', name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'session.json'), JSON.stringify({ name, created: Math.floor(T0 / 1e6), status: 'stopped', reason: '', log: '' }));
    const schemas = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'schemas', 'telemetry');
    const migrations = readdirSync(schemas).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort();
    check(migrations.length > 0, `no migrations in ${schemas}`);
    let sql = 'PRAGMA journal_mode = WAL;\n';
    for (const f of migrations)
        sql += readFileSync(join(schemas, f), 'utf8') + `\nPRAGMA user_version = ${parseInt(f, 10)};\n`;
    sqlite(join(dir, 'session.db'), sql + SEED_SQL);
    writeFileSync(
        join(dir, 'fs-events.jsonl'),
        JSON.stringify({ event: 'create', path: 'notes.txt', size: 0, time_s: T0 / 1e6 + 1, time_ns: 0 }) + '\n' +
            JSON.stringify({ event: 'rename', path: 'notes.txt', to: 'README.md', size: 12, time_s: T0 / 1e6 + 5, time_ns: 0 }) + '\n'
    );
    return dir;
}

// No VM: a stand-in capsem-vmm that starts the real capsem-agent on this
// host (as unit.server.serve_host_path does), so a session's terminal is a
// real PTY behind the daemon's terminal WebSocket. Returns the daemon's env.
function hostAgent(home) {
    const agent = join(dirname(opts.capsem), 'capsem-agent');
    check(existsSync(agent), `${agent} not found: build the guest programs (CAPSEM_GUEST=ON)`);
    const work = mkdtempSync(join(tmpdir(), 'capsem-browser-vmm-'));
    const fake = join(work, 'fake-vmm');
    writeFileSync(
        fake,
        '#!/bin/sh\n[ "$1" = --probe ] && exit 0\n' +
            'uds=$(python3 -c \'import json,sys; print(json.load(open(sys.argv[1]))["vsock"]["uds"])\' "$2") || exit 2\n' +
            `exec env CAPSEM_AGENT_UNIX="\${uds}_5000" ${agent}\n`,
        { mode: 0o755 }
    );
    const assets = join(work, 'assets');
    mkdirSync(assets);
    for (const n of ['vmlinux', 'initrd.img'])
        writeFileSync(join(assets, n), '');
    return { CAPSEM_VMM: fake, CAPSEM_TEST_UNVERIFIED_ASSETS: '1', CAPSEM_ASSETS: assets };
}

// ---- the browser -------------------------------------------------------------

async function launch() {
    check(existsSync(opts.chromium), `${opts.chromium} not found: install Debian's chromium (deploy/bootstrap does)`);
    const pwPath = join(opts['node-modules'], 'playwright-core', 'index.mjs');
    check(existsSync(pwPath), `${pwPath} not found: build the web-npm target first`);
    const pw = await import(pwPath);
    const chromium = pw.chromium || pw.default.chromium;
    return chromium.launch({
        executablePath: opts.chromium,
        headless: true,
        args: [
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-default-apps',
            '--disable-sync',
            '--no-first-run',
            '--no-sandbox',
            '--disable-dev-shm-usage',
        ],
    });
}

async function newPage(browser, srv, viewport = { width: 1280, height: 800 }) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.jsErrors = [];
    page.on('pageerror', (e) => page.jsErrors.push(String(e)));
    // A Content-Security-Policy refusal counts as a script error.
    page.on('console', (m) => /Content Security Policy/i.test(m.text()) && page.jsErrors.push(m.text()));
    page.requests = [];
    page.on('request', (r) => page.requests.push(r.url()));
    return page;
}

// The printed URL works once; later logins mint a fresh code with the token.
async function loginUrl(srv) {
    if (!srv.used) {
        srv.used = true;
        return srv.url;
    }
    const r = await api(srv, 'auth/codes', 'POST', {});
    check(r.status === 201 && r.data && r.data.url, `POST /api/v1/auth/codes gave ${r.status}`);
    return r.data.url;
}

async function login(page, srv) {
    await page.goto(await loginUrl(srv));
    check(page.url() === srv.base + '/', `after the login URL the page is ${page.url()}, not ${srv.base}/`);
    const cookies = await page.context().cookies();
    const c = cookies.find((x) => x.name === 'capsem_session');
    check(c && c.httpOnly, 'no HttpOnly capsem_session cookie after login');
    await page.getByRole('heading', { name: 'Sessions' }).waitFor({ timeout: 10000 });
}

async function shot(page, name) {
    mkdirSync(opts.artifacts, { recursive: true });
    const file = join(opts.artifacts, `${name}.png`);
    await page.screenshot({ path: file, fullPage: false });
    return file;
}

function focused(page) {
    return page.evaluate(() => {
        const e = document.activeElement;
        return e ? { tag: e.tagName, text: (e.textContent || '').trim(), id: e.id, role: e.getAttribute('role'), inDialog: !!e.closest('dialog') } : null;
    });
}

// ---- cases -------------------------------------------------------------------

const cases = {
    // The embedded files: gzip, ETag, 304, inflated for a client without
    // gzip, 404 for an unknown name, and a page that only loads from its origin.
    async assets(srv, browser) {
        const gz = await request(srv.base, '/', { headers: { 'Accept-Encoding': 'gzip' } });
        check(gz.status === 200, `GET / gave ${gz.status}`);
        check(gz.headers['content-encoding'] === 'gzip', 'GET / with Accept-Encoding: gzip is not gzipped');
        check(/^"[0-9a-f]{64}"$/.test(gz.headers.etag || ''), `GET / ETag is ${gz.headers.etag}`);
        check(gz.headers['cache-control'] === 'no-cache', `GET / Cache-Control is ${gz.headers['cache-control']}`);
        const plain = await request(srv.base, '/');
        check(!plain.headers['content-encoding'], 'GET / without Accept-Encoding came encoded');
        check(gunzipSync(gz.body).equals(plain.body), 'gzip and plain bodies of / differ');
        const html = plain.body.toString('utf8');
        check(html.includes('assets/app.js') && !/(src|href)="(\/|https?:)/.test(html), 'index.html must use relative URLs only');
        const nm = await request(srv.base, '/', { headers: { 'If-None-Match': gz.headers.etag } });
        check(nm.status === 304 && nm.body.length === 0, `If-None-Match with the ETag gave ${nm.status}`);
        const js = await request(srv.base, '/assets/app.js', { headers: { 'Accept-Encoding': 'gzip, br' } });
        check(js.status === 200 && js.headers['content-type'].startsWith('text/javascript'), `app.js: ${js.status} ${js.headers['content-type']}`);
        const css = await request(srv.base, '/assets/app.css');
        check(css.status === 200 && css.headers['content-type'].startsWith('text/css'), `app.css: ${css.status}`);
        const missing = await request(srv.base, '/assets/nope.js');
        check(missing.status === 404, `/assets/nope.js gave ${missing.status}`);
        const page = await newPage(browser, srv);
        await login(page, srv);
        await page.waitForTimeout(500);
        const foreign = page.requests.filter((u) => !u.startsWith(srv.base + '/') && !u.startsWith(srv.base.replace('http', 'ws') + '/'));
        check(foreign.length === 0, `the page loaded from elsewhere: ${foreign.join(', ')}`);
        check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
    },

    // Signed out: a clear note. Signed in: the sessions page with the version,
    // the list (or its "not available" note) and the live events connection.
    async sessions_page(srv, browser) {
        const anon = await newPage(browser, srv);
        await anon.goto(srv.base + '/');
        await anon.locator('#signin').waitFor({ timeout: 10000 });
        const page = await newPage(browser, srv);
        await login(page, srv);
        await page.getByRole('button', { name: 'New session' }).waitFor();
        await page.locator('#sessions-table, #no-sessions, [data-state="not-available"]').first().waitFor({ timeout: 10000 });
        await page.locator('.version', { hasText: /^v\d+\.\d+\.\d+$/ }).waitFor({ timeout: 10000 });
        await page.locator('.live', { hasText: 'Live' }).waitFor({ timeout: 10000 });
        check((await page.locator('#signin').count()) === 0, 'signed in, yet the page says not signed in');
        await shot(page, 'sessions-page');
        check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
    },

    // Keyboard: the skip link first, then to "New session"; Enter opens the
    // dialog with focus inside it, Escape closes it.
    async keyboard(srv, browser) {
        const page = await newPage(browser, srv);
        await login(page, srv);
        await page.keyboard.press('Tab');
        let f = await focused(page);
        check(f && f.text === 'Skip to content', `first Tab focuses ${JSON.stringify(f)}, not the skip link`);
        await page.keyboard.press('Enter');
        f = await focused(page);
        check(f && f.id === 'main', `the skip link moved focus to ${JSON.stringify(f)}`);
        let found = false;
        for (let i = 0; i < 12 && !found; i++) {
            await page.keyboard.press('Tab');
            f = await focused(page);
            found = f && f.tag === 'BUTTON' && f.text === 'New session';
        }
        check(found, 'Tab never reached the New session button');
        await page.keyboard.press('Enter');
        await page.locator('dialog[open]').waitFor({ timeout: 5000 });
        f = await focused(page);
        check(f && f.inDialog, `with the dialog open, focus is outside it: ${JSON.stringify(f)}`);
        await page.keyboard.press('Tab');
        f = await focused(page);
        check(f && f.inDialog, 'Tab left the open dialog');
        await page.keyboard.press('Escape');
        await page.locator('dialog[open]').waitFor({ state: 'detached', timeout: 5000 }).catch(() => {});
        check((await page.locator('dialog[open]').count()) === 0, 'Escape did not close the dialog');
        check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
    },

    // Wide and narrow windows: nothing overflows sideways, the main controls
    // stay on screen; screenshots of the list, the dialog and a session page.
    async layout(srv, browser) {
        for (const [w, h] of [
            [1280, 800],
            [400, 800],
        ]) {
            const page = await newPage(browser, srv, { width: w, height: h });
            await login(page, srv);
            const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
            check((await overflow()) <= 0, `${w}x${h}: the sessions page scrolls sideways by ${await overflow()} px`);
            const b = await page.getByRole('button', { name: 'New session' }).boundingBox();
            check(b && b.x >= 0 && b.x + b.width <= w && b.y + b.height <= h, `${w}x${h}: New session is off screen (${JSON.stringify(b)})`);
            await shot(page, `sessions-${w}x${h}`);
            await page.getByRole('button', { name: 'New session' }).click();
            const d = await page.locator('dialog[open]').boundingBox();
            check(d && d.x >= 0 && d.x + d.width <= w, `${w}x${h}: the dialog does not fit (${JSON.stringify(d)})`);
            await shot(page, `dialog-${w}x${h}`);
            await page.keyboard.press('Escape');
            await page.goto(srv.base + '/#/s/demo/network');
            await page.getByRole('tablist').waitFor();
            check((await overflow()) <= 0, `${w}x${h}: the session page scrolls sideways by ${await overflow()} px`);
            await shot(page, `session-${w}x${h}`);
            check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
            await page.context().close();
        }
    },

    // Session tabs follow the WAI-ARIA pattern: arrows, Home and End move and select.
    async tabs_keyboard(srv, browser) {
        const page = await newPage(browser, srv);
        await login(page, srv);
        await page.goto(srv.base + '/#/s/demo/network');
        await page.locator('[role=tab][aria-selected=true]').focus();
        const sel = async () => ({ hash: await page.evaluate(() => location.hash), f: await focused(page) });
        await page.keyboard.press('ArrowRight');
        let s = await sel();
        check(s.hash === '#/s/demo/models' && s.f.text === 'Models', `ArrowRight: ${JSON.stringify(s)}`);
        await page.keyboard.press('End');
        s = await sel();
        check(s.hash === '#/s/demo/sql' && s.f.text === 'SQL', `End: ${JSON.stringify(s)}`);
        await page.keyboard.press('ArrowRight');
        s = await sel();
        check(s.hash === '#/s/demo/terminal' && s.f.text === 'Terminal', `ArrowRight wraps: ${JSON.stringify(s)}`);
        await page.keyboard.press('ArrowLeft');
        s = await sel();
        check(s.hash === '#/s/demo/sql', `ArrowLeft wraps: ${JSON.stringify(s)}`);
        await page.keyboard.press('Home');
        s = await sel();
        check(s.hash === '#/s/demo/terminal', `Home: ${JSON.stringify(s)}`);
        check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
    },

    // A route the daemon does not have (its own 404 "no such route") gives a
    // "not available" note, not a blank page; another 404 ("no such
    // session") is shown as the error it is.
    async not_available(srv, browser) {
        const page = await newPage(browser, srv);
        await login(page, srv);
        const probe = await api(srv, 'no-such-route');
        check(probe.status === 404 && probe.data && probe.data.error === 'no such route', `GET /api/v1/no-such-route gave ${probe.status} ${JSON.stringify(probe.data)}`);
        // Stand in for a daemon without the telemetry routes: its exact 404.
        const telemetry = /\/api\/v1\/sessions\/[^/]+\/[a-z-]+(\?.*)?$/;
        await page.route(telemetry, (r) =>
            r.fulfill({ status: 404, contentType: 'application/json', body: '{"error":"no such route"}' })
        );
        for (const tab of ['network', 'models', 'tools', 'files']) {
            await page.goto(`${srv.base}/#/s/demo/${tab}`);
            await page.locator('.panel [data-state="not-available"]').waitFor({ timeout: 5000 });
        }
        await page.goto(`${srv.base}/#/s/demo/sql`);
        await page.getByRole('button', { name: 'Run' }).click();
        await page.locator('.panel [data-state="not-available"]').waitFor({ timeout: 5000 });
        await page.unroute(telemetry);
        // The real daemon on a session that does not exist.
        const real = await api(srv, 'sessions/no-such-session/net-events');
        if (real.status === 404 && real.data && real.data.error !== 'no such route') {
            await page.goto(`${srv.base}/#/s/no-such-session/network`);
            await page.locator('.panel .notice.error', { hasText: real.data.error }).waitFor({ timeout: 5000 });
            check((await page.locator('.panel [data-state="not-available"]').count()) === 0, 'a missing session is shown as a missing route');
        }
        check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
    },

    // Needs the telemetry routes, not a VM: a seeded session directory read
    // through every tab: rows newest first, filters, the drawer and its
    // headers and previews, DNS, model calls and their charts, tools, files,
    // SQL, and a row added while the Network tab is open appearing in it.
    async telemetry_views(srv, browser) {
        const dir = join(srv.home, 'sessions', 'seeded');
        const probe = await api(srv, 'sessions/seeded/net-events');
        check(probe.status !== 404 || (probe.data && probe.data.error !== 'no such route'), 'GET sessions/{id}/net-events answered "no such route": the telemetry routes are not in this daemon yet');
        check(probe.status === 200, `GET sessions/seeded/net-events gave ${probe.status}: ${JSON.stringify(probe.data)}`);
        const page = await newPage(browser, srv);
        await login(page, srv);
        // The list: the stopped session with its totals.
        const row = page.locator('#sessions-table tbody tr', { hasText: 'seeded' });
        await row.waitFor({ timeout: 10000 });
        const rtext = await row.textContent();
        check(rtext.includes('stopped') && rtext.includes('3,200') && rtext.includes('$0.0156'), `session row: ${rtext}`);
        check(await row.getByRole('button', { name: 'Stop' }).isDisabled(), 'Stop is enabled on a stopped session');
        await shot(page, 'sessions-seeded');
        const S = `${srv.base}/#/s/seeded`;
        const rows = (t) => page.locator(`#${t}-table tbody tr`);
        const waitCount = (t, n) =>
            page.waitForFunction(([sel, k]) => document.querySelectorAll(sel).length === k, [`#${t}-table tbody tr`, n], { timeout: 10000 })
                .catch(async () => {
                    throw new Failure(`${t}: expected ${n} rows, saw ${await rows(t).count()}`);
                });

        // The first load fails (as for a session still booting): the table says so, then
        // recovers by itself on its next poll.
        let failed = 0;
        await page.route(/\/api\/v1\/sessions\/seeded\/net-events/, (route) => {
            if (failed++ === 0)
                return route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"not ready"}' });
            return route.continue();
        });
        await page.goto(`${S}/network`);
        await page.locator('.notice', { hasText: /not ready|not available|503/ }).first().waitFor({ timeout: 10000 });
        await waitCount('network', 3);
        await page.unroute(/\/api\/v1\/sessions\/seeded\/net-events/);
        check((await rows('network').first().textContent()).includes('evil.example.com'), 'network rows are not newest first');
        await page.locator('select[name=decision]').selectOption('block');
        await waitCount('network', 1);
        check((await rows('network').first().textContent()).includes('deny') || (await rows('network').first().textContent()).includes('block'), 'the block filter shows another row');
        await page.locator('select[name=decision]').selectOption('');
        await page.locator('select[name=method]').selectOption('POST');
        await waitCount('network', 1);
        check((await rows('network').first().textContent()).includes('api.anthropic.com'), 'the POST filter shows another row');
        await page.locator('select[name=method]').selectOption('');
        await waitCount('network', 3);
        const gh = rows('network').filter({ hasText: 'api.github.com' });
        await gh.focus();
        await page.keyboard.press('Enter');
        const drawer = page.locator('.drawer');
        await drawer.waitFor({ timeout: 5000 });
        const dtext = await drawer.textContent();
        for (const want of ['user-agent', 'curl/8.1', 'content-type', 'capsem/capsem', 'page=2', 'TLSv1.3'])
            check(dtext.includes(want), `the drawer lacks ${want}`);
        await shot(page, 'network-drawer');
        await page.keyboard.press('Escape');
        await drawer.waitFor({ state: 'detached', timeout: 5000 });
        const f = await focused(page);
        check(f && f.tag === 'TR' && f.text.includes('api.github.com'), `closing the drawer left focus on ${JSON.stringify(f)}`);

        // A new row while the tab is open (the writer appends while the session runs).
        sqlite(join(dir, 'session.db'), `INSERT INTO net_events (id, time_us, pid, method, scheme, host, port, path, status, req_bytes, resp_bytes, duration_us, ttfb_us, decision) VALUES (4, ${T0 + 9000000}, 1, 'GET', 'https', 'live.example.org', 443, '/new', 204, 0, 0, 5000, 4000, 0);`);
        await rows('network').filter({ hasText: 'live.example.org' }).waitFor({ timeout: 15000 });

        await page.getByRole('button', { name: 'DNS' }).click();
        await waitCount('dns', 2);
        check((await rows('dns').first().textContent()).includes('NXDOMAIN'), 'dns rows are not newest first');

        await page.goto(`${S}/models`);
        await waitCount('models', 2);
        const charts = await page.locator('.charts').textContent();
        check(charts.includes('3,200') && charts.includes('$0.0156'), `charts total: ${charts}`);
        check((await rows('models').first().textContent()).includes('650 ms'), 'time to first token not shown');
        await shot(page, 'models');

        await page.goto(`${S}/tools`);
        await waitCount('tools', 1);
        check((await rows('tools').first().textContent()).includes('bash'), 'tool call name missing');

        await page.goto(`${S}/files`);
        await waitCount('files', 2);
        check((await rows('files').first().textContent()).includes('README.md'), 'file rename missing');

        await page.goto(`${S}/sql`);
        await page.locator('#sql-box').fill('SELECT count(*) AS n, sum(decision = 1) AS blocked FROM net_events');
        await page.locator('#sql-box').press('Control+Enter');
        await page.locator('#sql-result').waitFor({ timeout: 10000 });
        const body = (await page.locator('#sql-result tbody').textContent()).replace(/\s+/g, '');
        check(body === '41', `SQL result row: ${body}`);
        await page.locator('#sql-box').fill('DROP TABLE net_events');
        await page.locator('#sql-box').press('Control+Enter');
        await page.locator('.sql .notice.error').waitFor({ timeout: 10000 });
        // A narrow window: wide tables scroll inside their box, not the page.
        await page.setViewportSize({ width: 400, height: 800 });
        for (const tab of ['network', 'models']) {
            await page.goto(`${S}/${tab}`);
            await rows(tab).first().waitFor({ timeout: 10000 });
            const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
            check(over <= 0, `400x800: the ${tab} tab scrolls sideways by ${over} px`);
            await shot(page, `${tab}-400x800`);
        }
        check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
    },

    // The Terminal tab against a stand-in PTY on the terminal WebSocket (no
    // VM): keystrokes go out as binary frames, binary frames are drawn, a
    // resize JSON follows every fit (and a window resize), a dropped socket
    // is reconnected by itself and by the Reconnect button.
    async terminal_ui(srv, browser) {
        const page = await newPage(browser, srv);
        await login(page, srv);
        const conns = [];
        await page.routeWebSocket(/\/api\/v1\/sessions\/demo\/terminal$/, (ws) => {
            const c = { ws, text: [], bin: [] };
            conns.push(c);
            let line = '';
            ws.onMessage((m) => {
                if (typeof m === 'string') {
                    c.text.push(JSON.parse(m));
                    return;
                }
                const s = Buffer.from(m).toString('utf8');
                c.bin.push(s);
                // A tiny line discipline: echo, and run `echo X` on Enter.
                for (const ch of s) {
                    if (ch === '\r') {
                        const out = /^echo (.*)$/.exec(line);
                        ws.send(Buffer.from('\r\n' + (out ? out[1] + '\r\n' : '') + '$ '));
                        line = '';
                    } else {
                        line += ch;
                        ws.send(Buffer.from(ch));
                    }
                }
            });
            ws.send(Buffer.from('$ '));
        });
        await page.goto(`${srv.base}/#/s/demo/terminal`);
        await page.locator('#terminal-state', { hasText: /^Connected$/ }).waitFor({ timeout: 10000 });
        const rowsText = () => page.evaluate(() => [...document.querySelectorAll('.xterm-rows > div')].map((r) => r.textContent.trimEnd()));
        await page.locator('#terminal').click();
        await page.keyboard.type('echo hi');
        await page.keyboard.press('Enter');
        await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].some((r) => r.textContent.trim() === 'hi'), null, { timeout: 10000 });
        // Tab goes to the shell; F6 leaves the terminal for the tab row.
        await page.keyboard.press('F6');
        const out = await focused(page);
        check(out && out.role === 'tab' && out.text === 'Terminal', `F6 moved focus to ${JSON.stringify(out)}`);
        const c0 = conns[0];
        check(c0.bin.join('') === 'echo hi\r', `keystrokes sent: ${JSON.stringify(c0.bin.join(''))}`);
        const size0 = c0.text.filter((m) => m.type === 'resize').pop();
        check(size0 && size0.cols >= 80 && size0.rows >= 10, `no sensible resize after fitting: ${JSON.stringify(c0.text)}`);
        await shot(page, 'terminal-ui');
        // A narrower window: a new fit and a smaller resize.
        await page.setViewportSize({ width: 640, height: 600 });
        await page.waitForFunction((n) => n, true);
        let size1 = null;
        for (let i = 0; i < 50 && !(size1 && size1.cols < size0.cols); i++) {
            await page.waitForTimeout(100);
            size1 = c0.text.filter((m) => m.type === 'resize').pop();
        }
        check(size1.cols < size0.cols && size1.rows < size0.rows, `after shrinking: ${JSON.stringify(size0)} then ${JSON.stringify(size1)}`);
        // The daemon drops the socket: the tab says so and connects again.
        c0.ws.close({ code: 1011, reason: 'gone' });
        await page.locator('#terminal-state', { hasText: /Disconnected|not available/ }).waitFor({ timeout: 5000 });
        await page.locator('#terminal-state', { hasText: /^Connected$/ }).waitFor({ timeout: 10000 });
        check(conns.length === 2, `after a drop: ${conns.length} connections`);
        check(conns[1].text.some((m) => m.type === 'resize'), 'the new connection got no size');
        await page.getByRole('button', { name: 'Reconnect' }).click();
        await page.locator('#terminal-state', { hasText: /^Connected$/ }).waitFor({ timeout: 10000 });
        check(conns.length === 3, `after Reconnect: ${conns.length} connections`);
        const rows = await rowsText();
        check(rows.some((r) => r === 'hi'), 'the old output is gone after reconnecting');
        check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
    },

    // No VM: a session whose "VM" is the real agent on this host (stand-in
    // monitor); the Terminal tab runs `echo hi` in its PTY through the
    // daemon's terminal WebSocket and shows hi; the list shows it running.
    async terminal_host(srv, browser) {
        // The "guest" is this host: its login shell gets a HOME of ours, not the
        // host's profile (which may wait on locks of its own, e.g. a version manager's).
        const r = await api(srv, 'sessions', 'POST', { name: 'hostpty', rootfs: 'none', no_net: true, env: { HOME: srv.home } });
        check(!(r.status === 404 && r.data && r.data.error === 'no such route'), 'POST /api/v1/sessions answered "no such route": the session routes are not in this daemon yet');
        check(r.status === 201, `POST /api/v1/sessions gave ${r.status}: ${JSON.stringify(r.data)}`);
        try {
            const page = await newPage(browser, srv);
            await login(page, srv);
            const row = page.locator('#sessions-table tbody tr', { hasText: 'hostpty' });
            await row.filter({ hasText: 'running' }).waitFor({ timeout: 60000 });
            await row.getByRole('link').click();
            await page.locator('#terminal-state', { hasText: /^Connected$/ }).waitFor({ timeout: 30000 });
            await page.locator('#terminal').click();
            await page.keyboard.type('echo hi');
            await page.keyboard.press('Enter');
            await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].some((d) => d.textContent.trim() === 'hi'), null, { timeout: 30000 });
            // The PTY got the fitted size.
            await page.keyboard.type('stty size');
            await page.keyboard.press('Enter');
            const size = await page
                .waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].map((d) => d.textContent.trim()).find((t) => /^\d+ \d+$/.test(t)), null, { timeout: 10000 })
                .then((h) => h.jsonValue());
            check(Number(size.split(' ')[1]) >= 80, `stty size in the PTY: ${size}`);
            await shot(page, 'terminal-host');
            check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
        } finally {
            await api(srv, 'sessions/hostpty?purge=1', 'DELETE');
        }
    },

    // Boots a VM: start a session from the new-session dialog, wait for the
    // guest shell's prompt in the Terminal tab, type `echo hi` and see "hi" on
    // a line of its own.
    async terminal_echo(srv, browser) {
        await needRoutes(srv);
        const page = await newPage(browser, srv);
        await login(page, srv);
        await page.getByRole('button', { name: 'New session' }).click();
        await page.locator('dialog select[name=agent]').selectOption('');
        await page.locator('dialog input[name=mem]').fill('512');
        await page.locator('dialog input[name=cpus]').fill('1');
        await page.locator('dialog button[type=submit]').click();
        await page.waitForFunction(() => /^#\/s\/[^/]+\/terminal$/.test(location.hash), null, { timeout: 60000 }).catch(async () => {
            const err = await page.locator('dialog .notice').textContent().catch(() => '');
            throw new Failure(`the new-session dialog did not open a session: ${err}`);
        });
        const id = decodeURIComponent((await page.evaluate(() => location.hash)).split('/')[2]);
        try {
            await page.locator('#terminal-state', { hasText: /^Connected$/ }).waitFor({ timeout: 300000 });
            // The shell is ready when its prompt (ending in # or $) is drawn.
            await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].some((r) => /[#$]\s*$/.test(r.textContent)), null, { timeout: 120000 }).catch(async () => {
                const st = await api(srv, `sessions/${encodeURIComponent(id)}`);
                throw new Failure(`no shell prompt in the terminal within 120 s of connecting; session: ${JSON.stringify(st.data)}`);
            });
            await page.locator('#terminal').click();
            await page.keyboard.type('echo hi\n');
            await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].some((r) => r.textContent.trim() === 'hi'), null, { timeout: 60000 });
            await shot(page, 'terminal');
            check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
        } finally {
            await api(srv, `sessions/${encodeURIComponent(id)}?purge=1`, 'DELETE');
        }
    },

    // Boots a VM: with the session's Network tab open, curl in the guest to
    // an allowed host (the test upstream: a 200 row, rule allow-test) and to
    // a blocked one (a 403 row whose body and drawer name rule deny-blocked);
    // both rows appear without reloading the page.
    async network_live(srv, browser) {
        await needRoutes(srv);
        const id = await createSession(srv, { mem: 512, cpus: 1 });
        try {
            const page = await newPage(browser, srv);
            await login(page, srv);
            await page.goto(`${srv.base}/#/s/${encodeURIComponent(id)}/network`);
            await page.getByRole('tab', { name: 'Network', selected: true }).waitFor();
            await waitRunning(srv, id, 300000);
            const rows = page.locator('#network-table tbody tr');
            const loads = [];
            page.on('framenavigated', (f) => f === page.mainFrame() && loads.push(f.url()));
            check((await rows.filter({ hasText: /allowed\.test|blocked\.test/ }).count()) === 0, 'test hosts in the table before any request');

            const ok = await execIn(srv, id, ['curl', '-sS', '-w', '\n%{http_code}', 'https://allowed.test/hello']);
            check(ok.exit_code === 0 && /^hello over tls\n+200$/.test(ok.stdout.trim()), `curl to the allowed host: ${JSON.stringify(ok)}`);
            const allowed = rows.filter({ hasText: 'allowed.test' }).filter({ hasText: '/hello' });
            await allowed.first().waitFor({ timeout: 60000 });
            const at = await allowed.first().textContent();
            check(at.includes('curl') && at.includes('GET') && at.includes('200') && at.includes('allow'), `the allowed request's row: ${at}`);

            // Any address: port 443 goes to the guest's proxy, and the host decides by name.
            const bl = await execIn(srv, id, ['curl', '-sS', '--resolve', 'blocked.test:443:198.51.100.7', '-w', '\n%{http_code}', 'https://blocked.test/secret']);
            check(bl.exit_code === 0 && /\n403$/.test(bl.stdout.trim()) && bl.stdout.includes('deny-blocked'), `curl to the blocked host: ${JSON.stringify(bl)}`);
            const blocked = rows.filter({ hasText: 'blocked.test' }).filter({ hasText: '/secret' });
            await blocked.first().waitFor({ timeout: 60000 });
            const bt = await blocked.first().textContent();
            check(bt.includes('403') && bt.includes('block'), `the blocked request's row: ${bt}`);
            check(loads.length === 0, `the page was reloaded: ${loads.join(', ')}`);
            // The header's totals follow the new rows without a reload.
            await page
                .waitForFunction(() => {
                    const dt = [...document.querySelectorAll('dl.stats dt')].find((d) => d.textContent === 'Requests');
                    return dt && Number(dt.nextElementSibling.textContent.replace(/[^0-9]/g, '')) >= 2;
                }, null, { timeout: 15000 })
                .catch(async () => {
                    throw new Failure(`the header's Requests total did not reach 2: ${await page.locator('dl.stats').textContent().catch(() => '')}`);
                });
            await shot(page, 'network');

            await blocked.first().press('Enter');
            const drawer = page.locator('.drawer');
            await drawer.waitFor({ timeout: 10000 });
            const dt = await drawer.textContent();
            check(dt.includes('deny-blocked') && dt.includes('/secret'), `the blocked row's drawer: ${dt}`);
            await shot(page, 'network-blocked-drawer');
            await page.keyboard.press('Escape');
            await drawer.waitFor({ state: 'detached', timeout: 5000 });
            await allowed.first().press('Enter');
            await drawer.waitFor({ timeout: 10000 });
            const da = await drawer.textContent();
            check(da.includes('allow-test') && da.includes('TLSv1.'), `the allowed row's drawer: ${da}`);
            await page.keyboard.press('Escape');
            await drawer.waitFor({ state: 'detached', timeout: 5000 });

            // Without an address the blocked name never resolves: a DNS row, in the DNS view.
            await page.getByRole('button', { name: 'DNS' }).click();
            const dns = await execIn(srv, id, ['getent', 'hosts', 'blocked.test']);
            check(dns.exit_code !== 0 && dns.stdout.trim() === '', `blocked.test resolved in the guest: ${JSON.stringify(dns)}`);
            const dnsRow = page.locator('#dns-table tbody tr', { hasText: 'blocked.test' }).filter({ hasText: 'NXDOMAIN' });
            await dnsRow.first().waitFor({ timeout: 60000 });
            const dr = await dnsRow.first().textContent();
            check(dr.includes('block') && dr.includes('deny-blocked'), `the blocked name's DNS row: ${dr}`);
            check(loads.length === 0, `the page was reloaded: ${loads.join(', ')}`);
            await shot(page, 'network-dns');
            check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
        } finally {
            await api(srv, `sessions/${encodeURIComponent(id)}?purge=1`, 'DELETE');
        }
    },

    // Boots a VM: queries from the SQL tab over the running session's
    // database: a computed row, then the row of a request the guest just
    // made; a write is refused with an error.
    async sql_query(srv, browser) {
        await needRoutes(srv);
        const id = await createSession(srv, { mem: 512, cpus: 1 });
        try {
            const page = await newPage(browser, srv);
            await login(page, srv);
            await page.goto(`${srv.base}/#/s/${encodeURIComponent(id)}/sql`);
            await page.locator('#sql-box').fill("SELECT 41 + 1 AS answer, 'x' || 'y' AS word");
            await page.locator('#sql-box').press('Control+Enter');
            await page.locator('#sql-result').waitFor({ timeout: 30000 });
            const head = await page.locator('#sql-result thead').textContent();
            const body = await page.locator('#sql-result tbody').textContent();
            check(head.includes('answer') && head.includes('word'), `result columns: ${head}`);
            check(body.includes('42') && body.includes('xy'), `result row: ${body}`);

            await waitRunning(srv, id, 300000);
            const ok = await execIn(srv, id, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', 'https://allowed.test/hello?from=sql']);
            check(ok.exit_code === 0 && ok.stdout.trim() === '200', `curl to the allowed host: ${JSON.stringify(ok)}`);
            // The telemetry writer batches: wait for the row through the API, then query it.
            const until = Date.now() + 60000;
            for (;;) {
                const r = await api(srv, `sessions/${encodeURIComponent(id)}/net-events?host=allowed.test`);
                check(r.status === 200, `GET net-events answered ${r.status}: ${JSON.stringify(r.data)}`);
                const list = Array.isArray(r.data) ? r.data : (r.data && (r.data.items || r.data.rows || r.data.events)) || [];
                if (list.some((e) => e.query === 'from=sql'))
                    break;
                check(Date.now() < until, `no net_events row for the request after 60 s: ${JSON.stringify(r.data)}`);
                await new Promise((res) => setTimeout(res, 500));
            }
            await page.locator('#sql-box').fill("SELECT host, path, query, status, rule FROM net_events WHERE query = 'from=sql'");
            await page.locator('#sql-box').press('Control+Enter');
            await page.locator('#sql-result thead', { hasText: 'rule' }).waitFor({ timeout: 30000 });
            const rowText = (await page.locator('#sql-result tbody').textContent()).replace(/\s+/g, ' ');
            for (const want of ['allowed.test', '/hello', 'from=sql', '200', 'allow-test'])
                check(rowText.includes(want), `the query over the session's rows lacks ${want}: ${rowText}`);
            await shot(page, 'sql');
            await page.locator('#sql-box').fill('DELETE FROM net_events');
            await page.locator('#sql-box').press('Control+Enter');
            await page.locator('.sql .notice.error').waitFor({ timeout: 10000 });
            check(page.jsErrors.length === 0, `script errors: ${page.jsErrors.join('; ')}`);
        } finally {
            await api(srv, `sessions/${encodeURIComponent(id)}?purge=1`, 'DELETE');
        }
    },
};

// One run of the case: daemon, browser, case, clean stop.
async function runOnce(fn, seed) {
    const srv = VM_CASES.has(opts.case) ? await startVmServe() : await startServe(seed);
    let browser = null;
    let passed = false;
    try {
        browser = await launch();
        await fn(srv, browser);
        passed = true;
    } finally {
        if (browser)
            await browser.close();
        const why = await srv.stop(passed);
        // A daemon that does not stop cleanly fails a case that passed otherwise.
        if (passed)
            check(!why, why);
        else if (why)
            console.error(`browser.${opts.case}: also: ${why}`);
    }
}

// The bed's own kernel on rare occasions wedges under load (docs/testing.md);
// `bed exec` then leaves a "wedged" mark in the state folder. As kvm-exec
// does for the other kvm tests: restart the bed and run the case once more,
// saying so; a second failure fails the case.
function bedRun(...args) {
    const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const r = spawnSync(python, [join(opts.bed, 'bed'), ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    return r.status;
}

async function main() {
    const fn = cases[opts.case];
    check(fn, `no case ${opts.case}; cases: ${Object.keys(cases).join(', ')}`);
    const seeds = { telemetry_views: (home) => seedSession(home, 'seeded'), terminal_host: hostAgent };
    if (opts.case === 'terminal_host' && !existsSync('/dev/kvm')) {
        console.log('browser.terminal_host: skipped: capsem checks /dev/kvm even with a stand-in monitor');
        process.exit(77);
    }
    const wedged = VM_CASES.has(opts.case) && process.env.CAPSEM_BED_STATE ? join(process.env.CAPSEM_BED_STATE, 'wedged') : null;
    if (wedged)
        rmSync(wedged, { force: true });
    try {
        await runOnce(fn, seeds[opts.case]);
    } catch (e) {
        if (!wedged || !existsSync(wedged))
            throw e;
        console.error(`browser.${opts.case}: FAIL (first run): ${e instanceof Failure ? e.message : e.stack || e}`);
        console.error(`browser.${opts.case}: the test bed stopped answering; restarting it and running the case once more`);
        rmSync(wedged, { force: true });
        bedRun('stop');
        check(bedRun('start') === 0, 'the test bed did not start again');
        await runOnce(fn, seeds[opts.case]);
    }
    console.log(`browser.${opts.case}: ok`);
}

main().then(
    () => process.exit(0),
    (e) => {
        if (e instanceof Skip) {
            console.log(`browser.${opts.case}: skipped: ${e.message}`);
            process.exit(77);
        }
        console.error(`browser.${opts.case}: FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
        process.exit(1);
    }
);
