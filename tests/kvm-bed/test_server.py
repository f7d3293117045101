#!/usr/bin/env python3
"""Tests of the test bed's exec server (server.py), run on the host.

The server is started as an ordinary process on a free loopback port and
driven through its wire protocol, the way `bed exec` drives it. Covered: exit
statuses (normal, by signal), stdout and stderr kept apart and in order,
stdin, the working directory and environment, a command that cannot start,
and what each kind of bad request gets: malformed JSON, a missing or
non-string argv, an unknown op, a bad forward port, an endless header. None of
them may take the server down, which the last step of every test checks.
A client that goes away kills the command's whole process group.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.realpath(__file__))


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), "--port", str(cls.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", cls.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    @classmethod
    def tearDownClass(cls):
        cls.proc.kill()
        cls.proc.wait()
        cls.proc.stderr.close()

    def tearDown(self):
        # Whatever a test sent, the server must still answer.
        self.assertIsNone(self.proc.poll(), "server exited")
        self.assertEqual(self.line({"op": "ping"})["ok"], True)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        return s

    def line(self, req):
        with self.connect() as s:
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                c = s.recv(4096)
                if not c:
                    break
                buf += c
        return json.loads(buf) if buf.startswith(b"{") else buf.decode()

    def run_cmd(self, argv, stdin=None, cwd="/", env=None, raw_header=None):
        """Returns (frames as a list of (kind, bytes), exit status or None)."""
        frames = []
        with self.connect() as s:
            if raw_header is None:
                req = {"op": "exec", "argv": argv, "cwd": cwd,
                       "env": env if env is not None else {"PATH": os.environ["PATH"]}}
                raw_header = (json.dumps(req) + "\n").encode()
            s.sendall(raw_header)
            if stdin is not None:
                s.sendall(b"i" + struct.pack(">I", len(stdin)) + stdin)
            s.sendall(b"c" + struct.pack(">I", 0))
            buf = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                buf += c
        status = None
        while buf:
            kind, (n,) = buf[:1], struct.unpack(">I", buf[1:5])
            data, buf = buf[5 : 5 + n], buf[5 + n :]
            if kind == b"x":
                status = int(data)
            elif kind != b"h":
                frames.append((kind, data))
        return frames, status

    def test_exec_exit_status(self):
        self.assertEqual(self.run_cmd(["sh", "-c", "exit 3"])[1], 3)
        self.assertEqual(self.run_cmd(["true"])[1], 0)

    def test_exec_killed_by_signal(self):
        self.assertEqual(self.run_cmd(["sh", "-c", "kill -9 $$"])[1], 128 + 9)

    def test_exec_streams_separate(self):
        frames, status = self.run_cmd(["sh", "-c", "echo out; echo err >&2; echo out2"])
        self.assertEqual(status, 0)
        out = b"".join(d for k, d in frames if k == b"o")
        err = b"".join(d for k, d in frames if k == b"e")
        self.assertEqual(out, b"out\nout2\n")
        self.assertEqual(err, b"err\n")

    def test_exec_stdin(self):
        frames, status = self.run_cmd(["cat"], stdin=b"hello\x00world")
        self.assertEqual(status, 0)
        self.assertEqual(b"".join(d for k, d in frames if k == b"o"), b"hello\x00world")

    def test_exec_cwd_and_env(self):
        with tempfile.TemporaryDirectory() as d:
            frames, status = self.run_cmd(["sh", "-c", 'pwd; echo "$X"; echo "$CAPSEM_IN_BED"'],
                                          cwd=d, env={"PATH": os.environ["PATH"], "X": "y z"})
            self.assertEqual(status, 0)
            out = b"".join(d2 for k, d2 in frames if k == b"o").decode()
            self.assertEqual(out.splitlines(), [os.path.realpath(d), "y z", "1"])

    def test_exec_large_output_complete(self):
        frames, status = self.run_cmd(["head", "-c", "3000000", "/dev/zero"])
        self.assertEqual(status, 0)
        self.assertEqual(sum(len(d) for k, d in frames if k == b"o"), 3000000)

    def test_exec_missing_program(self):
        frames, status = self.run_cmd(["/nonexistent/prog"])
        self.assertEqual(status, 127)
        self.assertEqual(frames[0][0], b"E")
        self.assertIn(b"/nonexistent/prog", frames[0][1])

    def test_exec_missing_cwd(self):
        frames, status = self.run_cmd(["true"], cwd="/nonexistent/dir")
        self.assertEqual(status, 127)
        self.assertIn(b"/nonexistent/dir", frames[0][1])

    def test_exec_bad_argv(self):
        for argv in ([], None, "true", [1, 2], ["ok", None]):
            frames, status = self.run_cmd(argv)
            self.assertEqual(status, 127, argv)
            self.assertEqual(frames, [(b"E", b"bad request: argv must be a non-empty list of strings")])

    def test_request_malformed_json(self):
        frames, status = self.run_cmd(None, raw_header=b"{not json\n")
        # The connection is closed without an answer; nothing runs.
        self.assertEqual((frames, status), ([], None))

    def test_request_unknown_op(self):
        self.assertEqual(self.line({"op": "format-disk"}), "ERR unknown op\n")

    def test_request_endless_header(self):
        with self.connect() as s:
            try:
                s.sendall(b"x" * (2 << 20))
            except OSError:
                pass  # the server may close while we still send
            try:
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(s.recv(10), b"")
            except OSError:
                pass

    def test_connect_bad_port(self):
        for port in (0, 70000, "80", None):
            self.assertEqual(self.line({"op": "connect", "port": port}), "ERR bad port\n")

    def test_connect_refused_port(self):
        reply = self.line({"op": "connect", "port": free_port()})
        self.assertTrue(reply.startswith("ERR "), reply)

    def test_connect_relays_bytes(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with srv, self.connect() as s:
            s.sendall((json.dumps({"op": "connect", "port": srv.getsockname()[1]}) + "\n").encode())
            peer, _ = srv.accept()
            with peer:
                self.assertEqual(s.recv(3), b"OK\n")
                s.sendall(b"ping")
                self.assertEqual(peer.recv(4), b"ping")
                peer.sendall(b"pong")
                self.assertEqual(s.recv(4), b"pong")

    def test_client_gone_kills_process_group(self):
        with tempfile.TemporaryDirectory() as d:
            mark = os.path.join(d, "pids")
            s = self.connect()
            req = {"op": "exec", "argv": ["sh", "-c", "sleep 300 & echo $$ $! > %s; wait" % mark],
                   "cwd": "/", "env": {"PATH": os.environ["PATH"]}}
            s.sendall((json.dumps(req) + "\n").encode())
            deadline = time.monotonic() + 10
            while not read(mark).strip():
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            pids = [int(p) for p in read(mark).split()]
            s.close()
            deadline = time.monotonic() + 10
            for pid in pids:
                while True:
                    st = read("/proc/%d/stat" % pid)
                    if not st or ") Z " in st:
                        break
                    self.assertLess(time.monotonic(), deadline, "pid %d survived" % pid)
                    time.sleep(0.05)


if __name__ == "__main__":
    unittest.main(verbosity=2)
