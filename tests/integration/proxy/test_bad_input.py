"""Bad input against one running vaultwire (issue 8 item 2).

A table of hostile or broken clients, each with the outcome it must get: a FATAL
ErrorResponse with an exact SQLSTATE and message and then EOF, a close without a
byte, a one-byte answer ('S' / 'N') and what follows it, or a reset from our side.
After every case vaultwire is still running and admits a client, and its open file
descriptors come back to their baseline. The table's cases never give Vault a valid
token: vault-dev's request counters and lease list must not move at all. A few cases
after a real login follow (reset while Vault and the server are being asked, reset in
a query, data after Terminate, a broken message in the splice); their lease is
revoked afterwards. Over the whole suite vaultwire's RSS grows by less than 16 MiB,
with the large inputs (1 MB password, oversized startup packets) repeated enough
that keeping any of them would show.

Outcomes follow DESIGN.md's error table; where vaultwire states no rule they follow
PostgreSQL (a CancelRequest of the wrong length is closed without a word; a second
SSLRequest / GSSENCRequest is refused; bytes sent with a GSSENCRequest are refused
after the 'N').
"""
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (GSSENC_REQUEST, SSL_REQUEST, TERMINATE, ClosedError, ProxyTestCase,  # noqa: E402
                           cancel_request, make_listener_cert, password_message, query_message, startup_packet,
                           wait_for)

STARTUP_TIMEOUT = "2s"
TIMEOUT_MESSAGE = "startup not finished within 2s ([limits] startup_timeout)"
AUTH_CLEARTEXT = ("R", struct.pack("!i", 3))
LOGIN = [("user", "crdb-role"), ("database", "defaultdb")]
RSS_BUDGET_KIB = 16 * 1024


def frame(code, body):
    """A frontend message: type byte, length, body."""
    return code + struct.pack("!I", len(body) + 4) + body


def raw_startup(body_after_version, major=3, minor=0, length=None):
    body = struct.pack("!HH", major, minor) + body_after_version
    return struct.pack("!I", length if length is not None else len(body) + 4) + body


def params(pairs):
    return b"".join(k + b"\0" + v + b"\0" for k, v in pairs)


def over_limit(length):
    return "invalid startup packet: length %d is over the limit of 10000 bytes" % length


def below_minimum(length):
    return "invalid startup packet: length %d is below the minimum of 8 bytes" % length


def unsupported(major, minor):
    return "unsupported frontend protocol %d.%d: vaultwire speaks protocol 3.0" % (major, minor)


def startup_of_size(total):
    """A valid 3.0 startup packet of exactly `total` bytes (application_name pads it)."""
    base = len(startup_packet(LOGIN + [("application_name", "")]))
    return startup_packet(LOGIN + [("application_name", "x" * (total - base))])


# -- outcomes ---------------------------------------------------------------

def refused(sqlstate, message):
    """FATAL ErrorResponse with this SQLSTATE and message (a str: exact; a compiled regex:
    full match), then EOF without another byte."""
    return ("error", sqlstate, message)


CLOSE = ("close",)          # EOF (or reset) without a single byte
OPEN = ("open",)            # the steps' answers came; the connection is still usable
TLS_ALERT_CLOSE = ("tls_alert_close",)  # one fatal TLS alert record, then EOF
TLS_CLOSE = ("tls_close",)  # whole TLS records only (tickets, an alert), then EOF
RESET = ("reset",)          # we reset the connection; only vaultwire's side is checked


# -- steps ------------------------------------------------------------------
# ("send", bytes); ("recv", bytes) exact bytes next; ("msg", (type, body)) the next
# message; ("tls",) SSLRequest, 'S', handshake; ("tls_hello",) SSLRequest, 'S', the
# first flight of a real ClientHello; ("tls_raw", bytes) TLS done by hand, then raw
# bytes under it; ("slow", bytes) one byte per second until vaultwire speaks or
# closes; ("flood", bytes) sent from a thread, errors ignored (vaultwire may close
# first); ("shut",) our FIN; ("reset",) our RST.


def send(b):
    return ("send", b)


def recv(b):
    return ("recv", b)


STARTUP = send(startup_packet(LOGIN))
AUTH = ("msg", AUTH_CLEARTEXT)
N = recv(b"N")


CASES = [
    # -- startup packet framing: lengths ------------------------------------
    ("length 0", [send(struct.pack("!II", 0, 196608))], refused("08P01", below_minimum(0))),
    ("length 3", [send(struct.pack("!II", 3, 196608))], refused("08P01", below_minimum(3))),
    ("length 7", [send(struct.pack("!II", 7, 196608))], refused("08P01", below_minimum(7))),
    ("length negative (-1)", [send(struct.pack("!iI", -1, 196608))], refused("08P01", over_limit(0xFFFFFFFF))),
    ("length -2^31", [send(struct.pack("!iI", -2 ** 31, 196608))], refused("08P01", over_limit(2 ** 31))),
    ("length 2^31 - 1", [send(struct.pack("!iI", 2 ** 31 - 1, 196608))], refused("08P01", over_limit(2 ** 31 - 1))),
    ("length 10001, all of it sent", [send(startup_of_size(10001))], refused("08P01", over_limit(10001))),
    ("startup packet of 65,536 bytes, all sent", [("flood", startup_of_size(65536))],
     refused("08P01", over_limit(65536))),
    ("startup packet of exactly 10,000 bytes is accepted", [send(startup_of_size(10000)), AUTH], OPEN),
    ("length 8: a 3.0 header and no parameter list", [send(raw_startup(b""))],
     refused("08P01", "invalid startup packet: malformed message")),
    ("parameter list without its terminator", [send(raw_startup(params([(b"user", b"crdb-role")])))],
     refused("08P01", "invalid startup packet: malformed message")),
    ("parameter name without a value", [send(raw_startup(b"user\0crdb-role\0database"))],
     refused("08P01", "invalid startup packet: malformed message")),
    ("length says more than was sent, then FIN", [send(struct.pack("!IHH", 40, 3, 0) + b"user\0"), ("shut",)], CLOSE),
    ("two bytes of a length, then FIN", [send(b"\0\0"), ("shut",)], CLOSE),
    ("nothing, then FIN", [("shut",)], CLOSE),
    ("bytes after the startup packet", [send(startup_packet(LOGIN) + query_message("select 1"))],
     refused("08P01", "unexpected data after the startup packet")),

    # -- protocol versions and special codes --------------------------------
    ("protocol 4.0", [send(startup_packet(LOGIN, major=4))], refused("08P01", unsupported(4, 0))),
    ("protocol 2.0", [send(struct.pack("!IHH", 8, 2, 0))], refused("08P01", unsupported(2, 0))),
    ("protocol 0.0", [send(startup_packet(LOGIN, major=0))], refused("08P01", unsupported(0, 0))),
    ("unknown special code 1234.5681", [send(struct.pack("!IHH", 8, 1234, 5681))],
     refused("08P01", unsupported(1234, 5681))),
    ("protocol 3.1 gets NegotiateProtocolVersion, then the password request",
     [send(startup_packet(LOGIN, minor=1)), ("msg", ("v", struct.pack("!ii", 3 << 16, 0))), AUTH], OPEN),

    # -- messages before the startup packet ---------------------------------
    ("PasswordMessage before startup", [send(password_message("hvs.not-a-token"))],
     refused("08P01", over_limit(struct.unpack("!I", b"p\0\0\0")[0]))),
    ("Query before startup", [send(query_message("select 1"))],
     refused("08P01", over_limit(struct.unpack("!I", b"Q\0\0\0")[0]))),
    ("Terminate before startup", [send(TERMINATE)], refused("08P01", over_limit(struct.unpack("!I", b"X\0\0\0")[0]))),
    ("TLS ClientHello without SSLRequest (direct TLS)", [("tls_direct",)],
     refused("08P01", re.compile(r"invalid startup packet: length \d+ is over the limit of 10000 bytes"))),

    # -- SSLRequest / GSSENCRequest -----------------------------------------
    ("SSLRequest then plaintext startup in one send", [send(SSL_REQUEST + startup_packet(LOGIN))], CLOSE),
    ("two SSLRequests in one send", [send(SSL_REQUEST + SSL_REQUEST)], CLOSE),
    ("SSLRequest of length 12", [send(struct.pack("!III", 12, 80877103, 0))],
     refused("08P01", "invalid startup packet: malformed message")),
    ("SSLRequest again over TLS", [("tls",), send(SSL_REQUEST)],
     refused("08P01", "invalid startup packet: SSLRequest after encryption was already negotiated on this connection")),
    ("GSSENCRequest over TLS", [("tls",), send(GSSENC_REQUEST)],
     refused("08P01", "invalid startup packet: GSSENCRequest after encryption was already negotiated on this connection")),
    ("GSSENCRequest then startup", [send(GSSENC_REQUEST), N, STARTUP, AUTH], OPEN),
    ("GSSENCRequest then SSLRequest then startup over TLS", [send(GSSENC_REQUEST), N, ("tls",), STARTUP, AUTH], OPEN),
    ("two GSSENCRequests", [send(GSSENC_REQUEST), N, send(GSSENC_REQUEST)],
     refused("08P01", "invalid startup packet: GSSENCRequest after encryption was already negotiated on this connection")),
    ("GSSENCRequest and startup in one send", [send(GSSENC_REQUEST + startup_packet(LOGIN)), N],
     refused("08P01", "received unencrypted data after GSSAPI encryption request")),
    ("SSLRequest, 'S', then FIN", [send(SSL_REQUEST), recv(b"S"), ("shut",)], TLS_CLOSE),
    ("SSLRequest, 'S', then TLS garbage", [send(SSL_REQUEST), recv(b"S"), send(b"\x16\x03\x01\x00\x05hello" * 4)],
     TLS_ALERT_CLOSE),
    ("SSLRequest, 'S', then HTTP", [send(SSL_REQUEST), recv(b"S"), send(b"GET / HTTP/1.1\r\n\r\n")], CLOSE),
    ("TLS 1.1 client", [("tls_old",)], TLS_ALERT_CLOSE),
    ("TLS handshake, then raw bytes under TLS", [("tls_raw", b"\x17\x03\x03\x00\x10" + b"\x00" * 16)],
     TLS_CLOSE),
    ("TLS handshake, then FIN", [("tls_raw", b""), ("shut",)], TLS_CLOSE),
    ("garbage startup over TLS", [("tls",), send(b"GET / HTTP/1.1\r\n\r\n")],
     refused("08P01", over_limit(struct.unpack("!I", b"GET ")[0]))),

    # -- CancelRequest ------------------------------------------------------
    ("CancelRequest of length 12", [send(struct.pack("!III", 12, 80877102, 1))], CLOSE),
    ("CancelRequest of length 20", [send(struct.pack("!IIiii", 20, 80877102, 1, 2, 3))], CLOSE),
    ("CancelRequest of length 16 with only 12 bytes, then FIN", [send(struct.pack("!IIi", 16, 80877102, 1)),
                                                                  ("shut",)], CLOSE),
    ("CancelRequest for no session", [send(cancel_request(4242, 4242))], CLOSE),
    ("CancelRequest after GSSENCRequest for no session", [send(GSSENC_REQUEST), N, send(cancel_request(1, 1))],
     CLOSE),

    # -- startup parameters -------------------------------------------------
    ("missing user", [send(startup_packet([("database", "defaultdb")]))],
     refused("28000", "no user name in the startup packet: the user name selects the Vault role")),
    ("empty user", [send(startup_packet([("user", ""), ("database", "defaultdb")]))],
     refused("28000", "no user name in the startup packet: the user name selects the Vault role")),
    ("duplicate user: the last one counts (as in PostgreSQL)",
     [send(startup_packet([("user", "crdb-role"), ("user", "nobody"), ("database", "defaultdb")]))],
     refused("28000", 'role "nobody" is not allowed on this listener; allowed roles: crdb-role')),
    ("duplicate user ending with an allowed role",
     [send(startup_packet([("user", "nobody"), ("user", "crdb-role")])), AUTH], OPEN),
    ("duplicate database and application_name",
     [send(startup_packet(LOGIN + [("database", "postgres"), ("application_name", "a"), ("application_name", "b")])),
      AUTH], OPEN),
    ("10,000 parameters", [("flood", startup_packet(LOGIN + [("p%d" % i, "v") for i in range(10000)]))],
     refused("08P01", over_limit(len(startup_packet(LOGIN + [("p%d" % i, "v") for i in range(10000)]))))),
    ("1,500 parameters within 10,000 bytes", [send(startup_packet(LOGIN + [("p%d" % i, "") for i in range(1500)])),
                                               AUTH], OPEN),
    ("user with a newline (log forging)",
     [send(startup_packet([("user", "x\nC-999999: forged session closed: result ok"), ("database", "d")]))],
     refused("28000", "invalid user name: it holds a control character")),

    # -- the login: after AuthenticationCleartextPassword -------------------
    ("Query instead of the password", [STARTUP, AUTH, send(query_message("select 1"))],
     refused("08P01", "expected a password message, got message type 'Q'")),
    ("a second startup packet instead of the password", [STARTUP, AUTH, STARTUP],
     refused("08P01", "invalid message during authentication: unknown message type")),
    ("SSLRequest instead of the password", [STARTUP, AUTH, send(SSL_REQUEST)],
     refused("08P01", "invalid message during authentication: unknown message type")),
    ("password message of length 3", [STARTUP, AUTH, send(b"p\0\0\0\3")],
     refused("08P01", "invalid message during authentication: message length below the minimum")),
    ("1 MB password", [STARTUP, AUTH, ("flood", password_message("x" * (1 << 20)))],
     refused("08P01", "invalid message during authentication: message length over the limit")),
    ("password without its NUL", [STARTUP, AUTH, send(frame(b"p", b"hvs.abc"))],
     refused("08P01", "invalid password message: malformed message")),
    ("token with a NUL inside", [STARTUP, AUTH, send(frame(b"p", b"hvs.abc\0def\0"))],
     refused("08P01", re.compile(r"invalid password message: .+"))),
    ("token of invalid UTF-8", [STARTUP, AUTH, send(frame(b"p", b"hvs.\xff\xfe\xc3\x28\0"))],
     refused("28P01", "the password is not a Vault token: it holds a byte outside printable ASCII")),
    ("token with CR LF (header injection)",
     [STARTUP, AUTH, send(frame(b"p", b"hvs.abc\r\nX-Vault-Namespace: other\0"))],
     refused("28P01", "the password is not a Vault token: it holds a byte outside printable ASCII")),
    ("empty password", [STARTUP, AUTH, send(password_message(""))],
     refused("28P01", "no password supplied: give a Vault token as the password")),
    ("password and a query in one send", [STARTUP, AUTH, send(password_message("hvs.abc") + query_message("select 1"))],
     refused("08P01", "unexpected data after the password message")),
    ("Terminate, then data after it", [STARTUP, AUTH, send(TERMINATE + password_message("hvs.abc") + b"junk")], CLOSE),
    ("password half sent, then FIN", [STARTUP, AUTH, send(password_message("hvs.abcdef")[:7]), ("shut",)], CLOSE),

    # -- the startup timeout ------------------------------------------------
    ("startup one byte per second", [("slow", startup_packet(LOGIN))], refused("08P01", TIMEOUT_MESSAGE)),
    ("password one byte per second", [STARTUP, AUTH, ("slow", password_message("hvs.abcdef"))],
     refused("08P01", TIMEOUT_MESSAGE)),
    ("TLS handshake, then nothing", [("tls",), ("wait",)], refused("08P01", TIMEOUT_MESSAGE)),
    ("SSLRequest, 'S', then nothing: no plaintext inside a TLS handshake", [send(SSL_REQUEST), recv(b"S"), ("wait",)],
     CLOSE),

    # -- resets at every phase ----------------------------------------------
    ("reset right after connect", [("reset",)], RESET),
    ("reset after half a startup packet", [send(startup_packet(LOGIN)[:10]), ("reset",)], RESET),
    ("reset after SSLRequest, before 'S' is read", [send(SSL_REQUEST), ("reset",)], RESET),
    ("reset in the TLS handshake", [("tls_hello",), ("reset",)], RESET),
    ("reset after the TLS handshake", [("tls",), ("reset",)], RESET),
    ("reset with the password request unread", [STARTUP, ("reset",)], RESET),
    ("reset after half a password", [STARTUP, AUTH, send(password_message("hvs.abcdef")[:8]), ("reset",)], RESET),
    ("reset after startup over TLS", [("tls",), STARTUP, AUTH, ("reset",)], RESET),
]


def assert_one_tls_alert_then_eof(test, r):
    """What an OpenSSL server says when the handshake or a record fails: one fatal alert
    record (content type 21, level 2), then EOF."""
    data = b""
    while True:
        try:
            chunk = r.sock.recv(4096)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        data += chunk
    test.assertEqual(len(data), 7, "expected one TLS alert record, got %r" % data)
    test.assertEqual((data[0], data[5]), (21, 2), "not a fatal TLS alert: %r" % data)


def assert_tls_records_then_eof(test, r):
    """Whole TLS records (handshake, alert or encrypted: a ticket, an alert), never a
    pgwire byte in clear, then EOF."""
    data = b""
    while True:
        try:
            chunk = r.sock.recv(4096)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        data += chunk
    pos = 0
    while pos < len(data):
        test.assertIn(data[pos], (21, 22, 23), "not a TLS record at %d: %r" % (pos, data[pos:pos + 16]))
        test.assertGreaterEqual(len(data) - pos, 5, "a truncated TLS record header")
        pos += 5 + struct.unpack("!H", data[pos + 3:pos + 5])[0]
    test.assertEqual(pos, len(data), "a truncated TLS record")


class BioTls:
    """TLS driven by hand over a raw socket (ssl.MemoryBIO), so a test can stop in the
    middle of the handshake or write raw bytes under an established session."""

    def __init__(self, sock, cafile, maximum_version=None):
        ctx = ssl.create_default_context(cafile=cafile)
        if maximum_version is not None:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = maximum_version
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.sock = sock

    def first_flight(self):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self.sock.sendall(self.outgoing.read())
                return
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                data = self.sock.recv(65536)
                if not data:
                    raise ClosedError("closed in the TLS handshake")
                self.incoming.write(data)


class BadInputTest(ProxyTestCase):
    # startup_timeout is short so the slow cases end in seconds. ASan's quarantine
    # holds freed memory (256 MB by default) and would count every freed byte of the
    # suite against the RSS budget; a 1 MB quarantine keeps use-after-free detection
    # for recent frees and lets RSS show what is really kept.
    asan_quarantine_mb = 1

    @classmethod
    def start_proxy(cls, config_text, listeners=1, name=None):
        saved = os.environ.get("ASAN_OPTIONS")
        opts = [o for o in (saved or "").split(":") if o and not o.startswith("quarantine_size_mb=")]
        os.environ["ASAN_OPTIONS"] = ":".join(opts + ["quarantine_size_mb=%d" % cls.asan_quarantine_mb])
        try:
            return super().start_proxy(config_text, listeners=listeners, name=name)
        finally:
            if saved is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = saved

    @classmethod
    def proxy_config(cls):
        cls.client_ca, cert, key = make_listener_cert(cls.tmp)
        return f"""
{cls.vault_table()}
[[listener]]
bind = "127.0.0.1:{cls.port}"
tls_cert = "{cert}"
tls_key = "{key}"
route = "main"
{cls.route_config()}
[limits]
startup_timeout = "{STARTUP_TIMEOUT}"

{cls.broker_tables()}
{cls.NO_ADMIN}
[log]
level = "debug"
"""

    # -- process probes ------------------------------------------------------

    def pid(self):
        return self.proxy.proc.pid

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid()))

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid()) as f:
            return int(re.search(r"^VmRSS:\s+(\d+) kB$", f.read(), re.M).group(1))

    def vault_state(self):
        return self.vault.dev("GET", "counters"), sorted(self.vault.dev_lease_ids())

    def assertAlive(self, baseline_fds):
        """vaultwire runs, admits a client, and its descriptors return to the baseline."""
        self.assertTrue(self.proxy.running(), "vaultwire exited:\n" + self.proxy.output()[-3000:])
        with self.raw() as r:
            r.send(startup_packet(LOGIN))
            self.assertEqual(r.read_message(), AUTH_CLEARTEXT)
            r.send(TERMINATE)
            self.assertTrue(r.closed_without_reply())
        wait_for(lambda: self.fd_count() <= baseline_fds, timeout=20, interval=0.05,
                 what="vaultwire's open descriptors back to %d" % baseline_fds)

    # -- running one case ----------------------------------------------------

    def run_steps(self, r, steps):
        for step in steps:
            kind = step[0]
            if kind == "send":
                r.send(step[1])
            elif kind == "recv":
                self.assertEqual(r.recv_exact(len(step[1])), step[1])
            elif kind == "msg":
                self.assertEqual(r.read_message(), step[1])
            elif kind == "tls":
                r.start_tls(self.client_ca)
            elif kind in ("tls_hello", "tls_old", "tls_raw"):
                r.send(SSL_REQUEST)
                self.assertEqual(r.recv_exact(1), b"S")
                tls = BioTls(r.sock, self.client_ca,
                             maximum_version=ssl.TLSVersion.TLSv1_1 if kind == "tls_old" else None)
                if kind == "tls_raw":
                    tls.handshake()
                    r.send(step[1])
                else:
                    r.send(tls.first_flight())
            elif kind == "tls_direct":
                r.send(BioTls(r.sock, self.client_ca).first_flight())
            elif kind == "slow":
                for b in step[1]:
                    try:
                        r.send(bytes([b]))
                    except OSError:
                        break
                    if r.has_pending(timeout=1.0):  # vaultwire spoke or closed
                        break
            elif kind == "flood":
                data = step[1]

                def flood(sock=r.sock, data=data):
                    try:
                        sock.sendall(data)
                    except OSError:
                        pass  # vaultwire refused and closed before reading it all
                t = threading.Thread(target=flood, daemon=True)
                t.start()
                self.addCleanup(t.join, 30)
            elif kind == "shut":
                r.sock.shutdown(socket.SHUT_WR)
            elif kind == "wait":
                r.has_pending(timeout=30)  # until vaultwire's startup timeout speaks
            elif kind == "reset":
                r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                r.close()
            else:
                raise ValueError(kind)

    def check_outcome(self, r, expect):
        kind = expect[0]
        if kind == "error":
            fields = r.read_error()
            _, sqlstate, message = expect
            self.assertEqual((fields.get("S"), fields.get("V"), fields.get("C")), ("FATAL", "FATAL", sqlstate), fields)
            if isinstance(message, str):
                self.assertEqual(fields.get("M"), message)
            else:
                self.assertRegex(fields.get("M"), message)
                self.assertTrue(message.fullmatch(fields.get("M")), fields.get("M"))
            self.assertTrue(r.closed_without_reply(), "more bytes or no close after the ErrorResponse")
        elif kind == "close":
            self.assertTrue(r.closed_without_reply(), "vaultwire answered or kept the connection open")
        elif kind == "tls_alert_close":
            assert_one_tls_alert_then_eof(self, r)
        elif kind == "tls_close":
            assert_tls_records_then_eof(self, r)
        elif kind == "open":
            self.assertFalse(r.has_pending(timeout=0.2), "unexpected bytes: %r" % r.buf)
            r.send(TERMINATE)
            self.assertTrue(r.closed_without_reply(), "Terminate did not end the connection quietly")
        elif kind == "reset":
            pass
        else:
            raise ValueError(kind)

    def run_case(self, steps, expect):
        with self.raw() as r:
            self.run_steps(r, steps)
            self.check_outcome(r, expect)

    # -- the suite -----------------------------------------------------------

    def test_bad_input_suite(self):
        self.assertGreaterEqual(len(CASES), 40)
        # Warm-up: a real login (TLS, Vault, upstream) so the baselines include what a
        # first session allocates once; then wait for its lease's idle revocation, after
        # which vaultwire has no Vault traffic of its own.
        with self.raw() as r:
            r.start_tls(self.client_ca)
            self.assertEqual(r.login(self.token)[-1][0], "Z")
            self.assertEqual(r.query("select 1"), ([("1",)], None))
        wait_for(lambda: not self.vault.dev_lease_ids(), timeout=30, what="the warm-up lease revoked")
        # The fd baseline: the listener, the log, curl's kept connection to Vault, ...
        baseline_fds = self.fd_count()
        rss_before = self.rss_kib()
        vault_before = self.vault_state()
        started = time.monotonic()

        for name, steps, expect in CASES:
            with self.subTest(case=name):
                self.run_case(steps, expect)
                self.assertAlive(baseline_fds)

        # The large inputs again, enough times that keeping any of them would show in RSS.
        large = [c for c in CASES if c[0] in ("1 MB password", "startup packet of 65,536 bytes, all sent",
                                               "10,000 parameters", "length 10001, all of it sent")]
        self.assertEqual(len(large), 4)
        for _ in range(10):
            for name, steps, expect in large:
                with self.subTest(case=name + " (repeated)"):
                    self.run_case(steps, expect)
        self.assertAlive(baseline_fds)

        # Nothing in the table reached Vault: no request of any kind, no lease.
        self.assertEqual(self.vault_state(), vault_before)
        forged = [ln for ln in self.proxy.output().splitlines() if ln.startswith("C-999999")]
        self.assertEqual(forged, [], "a client's user name forged a log line")

        self.after_login_cases(baseline_fds)

        rss_after = self.rss_kib()
        sys.stderr.write("bad input: %d cases (+%d repeats, %d after login) in %.1fs; fds %d -> %d; "
                         "RSS %d -> %d KiB\n" % (len(CASES), 10 * len(large), len(self.AFTER_LOGIN),
                                                 time.monotonic() - started, baseline_fds, self.fd_count(),
                                                 rss_before, rss_after))
        self.assertLess(rss_after - rss_before, RSS_BUDGET_KIB, "RSS grew by %d KiB" % (rss_after - rss_before))

    # -- after a real login --------------------------------------------------

    AFTER_LOGIN = ["reset right after the password", "Terminate then a query in one send",
                   "reset in a query", "Query with length 2 in the splice"]

    def after_login_cases(self, baseline_fds):
        """Cases that need a valid token: each may create a lease (one per token, cached),
        which must be revoked afterwards, and leave no server backend behind."""
        users_before = set(self.pg.admin_query("select usename from pg_stat_activity where usename like 'v-token-%'"))
        self.assertEqual(users_before, set())

        with self.subTest(case=self.AFTER_LOGIN[0]):
            with self.raw() as r:
                r.send(startup_packet(LOGIN))
                self.assertEqual(r.read_message(), AUTH_CLEARTEXT)
                closed = len(self.proxy.closed_sessions())
                r.send(password_message(self.token))
                self.run_steps(r, [("reset",)])
            wait_for(lambda: len(self.proxy.closed_sessions()) > closed, timeout=30, what="the reset session's end")
            self.assertAlive(baseline_fds)

        with self.subTest(case=self.AFTER_LOGIN[1]):
            with self.raw() as r:
                self.assertEqual(r.login(self.token)[-1][0], "Z")
                r.send(TERMINATE + query_message("select 1"))
                self.assertTrue(r.closed_without_reply(), "bytes after Terminate were answered")
            self.assertAlive(baseline_fds)

        with self.subTest(case=self.AFTER_LOGIN[2]):
            with self.raw() as r:
                self.assertEqual(r.login(self.token)[-1][0], "Z")
                r.send(query_message("select pg_sleep(2)"))
                wait_for(lambda: self.pg.admin_query(
                    "select count(*) from pg_stat_activity where query = 'select pg_sleep(2)' and state = 'active'")
                    [0][0] == 1, timeout=20, what="the query running")
                self.run_steps(r, [("reset",)])
            self.assertAlive(baseline_fds)

        with self.subTest(case=self.AFTER_LOGIN[3]):
            with self.raw() as r:
                self.assertEqual(r.login(self.token)[-1][0], "Z")
                r.send(b"Q\0\0\0\2")
                self.assertTrue(r.closed_without_reply(), "an impossible message length did not close the session")
            self.assertAlive(baseline_fds)

        # Every server backend is gone, and every lease these cases made is revoked.
        wait_for(lambda: self.pg.admin_query(
            "select count(*) from pg_stat_activity where usename like 'v-token-%'")[0][0] == 0,
            timeout=30, what="no dynamic user's backend left")
        wait_for(lambda: not self.vault.dev_lease_ids(), timeout=30, what="every lease revoked")
        self.assertAlive(baseline_fds)


if __name__ == "__main__":
    unittest.main()
