#!/usr/bin/env python3
"""Exec server: PID 1 of the KVM test bed after its init switches root.

It listens on a TCP port that QEMU forwards from the host's loopback and
serves one request per connection. A request is one JSON line:

  {"op": "ping", "time": T}                    -> one JSON line {"ok": true, ...}
  {"op": "exec", "argv": [...], "cwd": "...",  -> frames (below) until exit
   "env": {...}, "time": T}
  {"op": "connect", "port": N}                 -> "OK\\n" then raw bytes both ways
                                                  to 127.0.0.1:N inside the bed
  {"op": "poweroff"}                           -> "OK\\n", then the bed powers off

Exec frames, both directions, are a type byte, a 4-byte big-endian length and
the payload. Server to client: b"o" stdout bytes, b"e" stderr bytes, b"x" exit
status (decimal text; 128+N when killed by signal N), b"E" an error message
(the command could not start; an b"x" frame with 127 follows), b"h" nothing
(a heartbeat after 5 s without output, so a client can tell a silent
command from a dead bed). Client to
server: b"i" stdin bytes, b"c" end of stdin. If the client connection ends
before the command exits, the command's whole process group is killed.

Commands get CAPSEM_IN_BED=1 in their environment (kvm-exec then runs
nested kvm commands directly). "time" is the host's wall clock: the bed has no RTC and its clock drifts
under emulation, so the server sets its clock when it is off by over a second.
As PID 1 it also reaps every orphan; one reaper thread owns waitpid().
"""

import argparse
import ctypes
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

MAX_HEADER = 1 << 20
OUTPUT_GRACE_S = 2.0
HEARTBEAT_S = 5.0


class Reaper:
    """Owns waitpid(-1): records statuses of our children, discards orphans."""

    def __init__(self):
        self.cond = threading.Condition()
        self.watched = {}  # pid -> status or None while running
        self.wakers = {}  # pid -> fd written to when its status arrives
        self.has_children = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def fork_watched(self, wake_fd):
        """fork() with the new pid registered before the reaper can see it exit.

        `wake_fd` (borrowed, kept open until the status is collected) gets one
        byte when the child exits."""
        with self.cond:
            pid = os.fork()
            if pid:
                self.watched[pid] = None
                self.wakers[pid] = wake_fd
        if pid:
            self.has_children.set()
        return pid

    def wait(self, pid, timeout=None):
        with self.cond:
            self.cond.wait_for(lambda: self.watched.get(pid) is not None, timeout)
            status = self.watched.get(pid)
            if status is not None:
                del self.watched[pid]
                self.wakers.pop(pid, None)
            return status

    def _run(self):
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                self.has_children.clear()
                self.has_children.wait(1.0)
                continue
            except InterruptedError:
                continue
            with self.cond:
                # Orphans reparented to PID 1 are not watched: just reaped.
                if pid in self.watched:
                    self.watched[pid] = status
                    self.cond.notify_all()
                    try:
                        os.write(self.wakers[pid], b"x")
                    except OSError:
                        pass


REAPER = None


def log(msg):
    try:
        sys.stderr.write("kvm-bed server: %s\n" % msg)
        sys.stderr.flush()
    except OSError:
        pass


def sync_clock(req):
    t = req.get("time")
    if isinstance(t, (int, float)) and abs(time.time() - t) > 1.0:
        try:
            time.clock_settime(time.CLOCK_REALTIME, float(t))
        except OSError as e:
            log("cannot set clock: %s" % e)


def send_frame(sock, kind, data):
    sock.sendall(kind + struct.pack(">I", len(data)) + data)


def recv_exact(sock, n, buf):
    """Read exactly n bytes, starting from what `buf` (bytearray) holds."""
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf.extend(chunk)
    out = bytes(buf[:n])
    del buf[:n]
    return out


def read_header(sock):
    buf = bytearray()
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buf
        buf.extend(chunk)
        if len(buf) > MAX_HEADER:
            raise ValueError("request header too long")
    line, _, rest = bytes(buf).partition(b"\n")
    return json.loads(line), bytearray(rest)


def spawn(argv, cwd, env, wake_fd):
    """Fork and exec argv in a new session.

    Returns (pid, stdin_w, out_r, err_r, error text or "")."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ex_r, ex_w = os.pipe()
    pid = REAPER.fork_watched(wake_fd)
    if pid == 0:
        try:
            os.setsid()
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.set_inheritable(ex_w, False)
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w, ex_r, wake_fd):
                os.close(fd)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except BaseException as e:  # noqa: B902 - report anything to the parent
            try:
                os.write(ex_w, ("%s: %s" % (argv[0], e)).encode(errors="replace"))
            finally:
                os._exit(127)
    for fd in (in_r, out_w, err_w, ex_w):
        os.close(fd)
    err = b""
    while True:
        chunk = os.read(ex_r, 4096)
        if not chunk:
            break
        err += chunk
    os.close(ex_r)
    return pid, in_w, out_r, err_r, err.decode(errors="replace")


def exit_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def feed_stdin(pending, stdin_w):
    """Consume whole client frames from `pending` (a bytearray): b"i" data
    goes to the command's stdin, b"c" closes it. Returns the stdin fd, -1
    once closed. A stdin the command stopped reading is closed, not fatal."""
    while len(pending) >= 5:
        kind = bytes(pending[:1])
        (n,) = struct.unpack(">I", pending[1:5])
        if len(pending) < 5 + n:
            break
        data = bytes(pending[5 : 5 + n])
        del pending[: 5 + n]
        if kind == b"i" and stdin_w >= 0:
            try:
                os.write(stdin_w, data)
            except BrokenPipeError:
                os.close(stdin_w)
                stdin_w = -1
        elif kind == b"c" and stdin_w >= 0:
            os.close(stdin_w)
            stdin_w = -1
    return stdin_w


def handle_exec(sock, req, pending):
    argv = req.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        send_frame(sock, b"E", b"bad request: argv must be a non-empty list of strings")
        send_frame(sock, b"x", b"127")
        return
    cwd = req.get("cwd") or "/"
    env = req.get("env") or {}
    env = {str(k): str(v) for k, v in env.items()}
    env["CAPSEM_IN_BED"] = "1"
    wake_r, wake_w = os.pipe()
    try:
        handle_spawned(sock, argv, cwd, env, pending, wake_r, wake_w)
    finally:
        os.close(wake_r)
        os.close(wake_w)


def handle_spawned(sock, argv, cwd, env, pending, wake_r, wake_w):
    pid, stdin_w, out_r, err_r, err = spawn(argv, cwd, env, wake_w)
    if err:
        REAPER.wait(pid)
        for fd in (stdin_w, out_r, err_r):
            os.close(fd)
        send_frame(sock, b"E", err.encode())
        send_frame(sock, b"x", b"127")
        return
    fds = {out_r: b"o", err_r: b"e"}
    last_sent = time.monotonic()
    # Frames that came in with the request header.
    stdin_w = feed_stdin(pending, stdin_w)
    status = None
    exited_at = None
    try:
        while fds or status is None:
            if status is None:
                status = REAPER.wait(pid, 0)
                if status is not None:
                    exited_at = time.monotonic()
                    if not fds:
                        break
            if status is not None and fds and time.monotonic() - exited_at > OUTPUT_GRACE_S:
                break  # a background child still holds the pipes open
            watch = list(fds) + [sock]
            if status is None:
                watch.append(wake_r)
                timeout = HEARTBEAT_S
            else:
                timeout = max(0.0, OUTPUT_GRACE_S - (time.monotonic() - exited_at))
            ready, _, _ = select.select(watch, [], [], timeout)
            if time.monotonic() - last_sent >= HEARTBEAT_S:
                send_frame(sock, b"h", b"")
                last_sent = time.monotonic()
            for fd in ready:
                if fd == wake_r:
                    os.read(wake_r, 16)
                    continue
                if fd is sock:
                    chunk = sock.recv(65536)
                    if not chunk:
                        # Client gone: nobody will read the result.
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                        return
                    pending.extend(chunk)
                    stdin_w = feed_stdin(pending, stdin_w)
                    continue
                data = os.read(fd, 65536)
                if not data:
                    os.close(fd)
                    del fds[fd]
                    continue
                send_frame(sock, fds[fd], data)
                last_sent = time.monotonic()
        if status is None:
            status = REAPER.wait(pid)
        send_frame(sock, b"x", str(exit_code(status)).encode())
    except OSError:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    finally:
        for fd in list(fds):
            os.close(fd)
        if stdin_w >= 0:
            os.close(stdin_w)
        if status is None:
            # Collect the status before the wake pipe closes.
            REAPER.wait(pid)


def splice(a, b):
    def pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join()


def handle_connect(sock, req, pending):
    port = req.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        sock.sendall(b"ERR bad port\n")
        return
    try:
        peer = socket.create_connection(("127.0.0.1", port), timeout=10)
        peer.settimeout(None)
    except OSError as e:
        sock.sendall(("ERR %s\n" % e).encode())
        return
    with peer:
        sock.sendall(b"OK\n")
        if pending:
            peer.sendall(bytes(pending))
        splice(sock, peer)


def poweroff():
    os.sync()
    time.sleep(0.2)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF
    os._exit(0)


def linger_close(sock):
    """Close after the client has read everything: closing with unread input
    would send a reset that can overtake our last frames."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5.0)
        while sock.recv(65536):
            pass
    except OSError:
        pass


def handle(sock):
    with sock:
        try:
            req, pending = read_header(sock)
            if req is None:
                return
            op = req.get("op")
            if op == "ping":
                sync_clock(req)
                kvm = os.path.exists("/dev/kvm")
                sock.sendall((json.dumps({"ok": True, "kvm": kvm}) + "\n").encode())
            elif op == "exec":
                sync_clock(req)
                handle_exec(sock, req, pending)
            elif op == "connect":
                handle_connect(sock, req, pending)
            elif op == "poweroff":
                sock.sendall(b"OK\n")
                threading.Thread(target=poweroff, daemon=True).start()
            else:
                sock.sendall(b"ERR unknown op\n")
        except (ValueError, OSError) as e:
            log("request failed: %s" % e)
        linger_close(sock)


def main():
    global REAPER
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=7000)
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    REAPER = Reaper()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", args.port))
    srv.listen(64)
    while True:
        try:
            conn, _ = srv.accept()
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                time.sleep(0.1)
                continue
            raise
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:  # PID 1 must not just vanish: say why, power off
        log("fatal: %r" % (e,))
        if os.getpid() == 1:
            poweroff()
        sys.exit(1)
