"""Client admission through a real vaultwire: the TLS listener (verify-full, plaintext
on the same port, the CVE-2021-23222 rule), GSSENCRequest, CancelRequest in plaintext
and after an SSLRequest, NegotiateProtocolVersion, malformed and oversized startup
packets, the startup timeout, Terminate during auth, the empty password, and the
unix socket. Raw sockets where a driver cannot produce the bytes.
"""
import os
import re
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (GSSENC_REQUEST, SSL_REQUEST, TERMINATE, ClosedError, ProxyTestCase,  # noqa: E402
                           backend_key, cancel_request, error_fields, make_listener_cert, password_message,
                           query_message, startup_packet, wait_for)

import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402

DYNAMIC_USER_RE = r"^v-token-[A-Za-z0-9-]+-crdb-rol-[A-Za-z0-9]{20}-\d+$"


class AdmissionTest(ProxyTestCase):
    listeners = 2  # the TCP listener and its unix socket

    @classmethod
    def proxy_config(cls):
        cls.client_ca, cert, key = make_listener_cert(cls.tmp)
        cls.sockdir = os.path.join(cls.tmp, "sock")
        os.makedirs(cls.sockdir)
        return f"""
[vault]
address = "{cls.vault.addr}"

[[listener]]
bind = "127.0.0.1:{cls.port}"
unix_socket = "{cls.sockdir}"
tls_cert = "{cert}"
tls_key = "{key}"
route = "main"
{cls.route_config()}
[limits]
startup_timeout = "2s"

{cls.broker_tables()}
[log]
level = "trace"
"""

    def wait_active(self, query, timeout=20):
        """Waits until PostgreSQL runs `query` (pg_stat_activity)."""
        wait_for(lambda: self.pg.admin_query(
            "select count(*) from pg_stat_activity where query = %s and state = 'active'", (query,))[0][0] == 1,
            timeout=timeout, what="%r running" % query)

    # -- TLS listener ------------------------------------------------------

    def test_psql_verify_full_over_tls(self):
        r = self.psql("select session_user", sslmode="verify-full",
                      extra_env={"PGSSLROOTCERT": self.client_ca}, args=["-c", r"\conninfo"])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.strip().splitlines()
        self.assertIn("SSL connection (protocol: TLSv1.3", lines[1])
        self.assertRegex(lines[-1], DYNAMIC_USER_RE)

    def test_psql_verify_full_against_another_ca_fails(self):
        # Control for the case above: verification really happens on the client side.
        r = self.psql("select 1", sslmode="verify-full", extra_env={"PGSSLROOTCERT": self.pg.env["PGH_OTHER_CA"]})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("certificate verify failed", r.stderr)

    def test_psql_plaintext_on_tls_listener(self):
        r = self.psql("select session_user", sslmode="disable", args=["-c", r"\conninfo"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("SSL connection", r.stdout)
        self.assertRegex(r.stdout.strip().splitlines()[-1], DYNAMIC_USER_RE)

    def test_ssl_request_then_tls_answers_S(self):
        with self.raw() as r:
            r.start_tls(self.client_ca)
            msgs = r.login(self.token)
            self.assertEqual(msgs[-1][0], "Z")
            rows, err = r.query("select 1")
            self.assertEqual((rows, err), ([("1",)], None))

    def test_bytes_after_ssl_request_disconnect_without_answer(self):
        # CVE-2021-23222: bytes sent together with the SSLRequest could have been
        # injected by a man in the middle; vaultwire must not answer 'S' and read them.
        before = len(re.findall(r"result unencrypted_data_after_ssl_request", self.proxy.output()))
        with self.raw() as r:
            r.send(SSL_REQUEST + startup_packet([("user", "crdb-role"), ("database", "defaultdb")]))
            self.assertTrue(r.closed_without_reply(), "vaultwire answered after SSLRequest + extra bytes")
        wait_for(lambda: len(re.findall(r"result unencrypted_data_after_ssl_request", self.proxy.output())) > before,
                 what="the session closed line")

    # -- GSSENCRequest, protocol negotiation --------------------------------

    def test_gssenc_request_answered_N_then_startup_proceeds(self):
        with self.raw() as r:
            r.send(GSSENC_REQUEST)
            self.assertEqual(r.recv_exact(1), b"N")
            msgs = r.login(self.token)
            self.assertEqual(msgs[-1][0], "Z")
            rows, err = r.query("select session_user")
            self.assertIsNone(err)
            self.assertRegex(rows[0][0], DYNAMIC_USER_RE)

    def test_protocol_3_2_with_pq_option_gets_negotiate_protocol_version(self):
        with self.raw() as r:
            r.send(startup_packet([("user", "crdb-role"), ("database", "defaultdb"), ("_pq_.foo", "bar")], minor=2))
            t, body = r.read_message()
            self.assertEqual(t, "v")
            # PostgreSQL sends its full newest version code here (PG_PROTOCOL_LATEST,
            # 196608 = 3.0), and libpq reads it so; vaultwire does the same.
            newest, count = struct.unpack("!ii", body[:8])
            self.assertEqual((newest, count, body[8:]), (3 << 16, 1, b"_pq_.foo\0"))
            t, body = r.read_message()
            self.assertEqual((t, body), ("R", struct.pack("!i", 3)))  # AuthenticationCleartextPassword
            r.send(password_message(self.token))
            msgs = r.read_until({"Z", "E"})
            self.assertEqual([m[0] for m in msgs][0], "R")
            self.assertEqual(msgs[-1][0], "Z", msgs)
            rows, err = r.query("select 1")
            self.assertEqual((rows, err), ([("1",)], None))

    def test_protocol_2_refused_08P01(self):
        with self.raw() as r:
            r.send(struct.pack("!IHH", 8, 2, 0))
            self.assertRefusal(r.read_error(), "08P01", "unsupported frontend protocol 2.0: vaultwire speaks protocol 3.0")
            self.assertTrue(r.closed_without_reply())

    def test_oversized_startup_refused_08P01(self):
        with self.raw() as r:
            r.send(struct.pack("!IHH", 20000, 3, 0) + b"user\0crdb-role\0" + b"x" * 1000)
            self.assertRefusal(r.read_error(), "08P01",
                               "invalid startup packet: length 20000 is over the limit of 10000 bytes")
            self.assertTrue(r.closed_without_reply())

    def test_garbage_refused_08P01(self):
        with self.raw() as r:
            r.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            self.assertRefusal(r.read_error(), "08P01",
                               "invalid startup packet: length 1195725856 is over the limit of 10000 bytes")
            self.assertTrue(r.closed_without_reply())
        with self.raw() as r:
            # A 3.0 packet whose parameter list is not terminated.
            body = struct.pack("!HH", 3, 0) + b"user\0crdb-role"
            r.send(struct.pack("!I", len(body) + 4) + body)
            self.assertRefusal(r.read_error(), "08P01", "invalid startup packet: malformed message")
            self.assertTrue(r.closed_without_reply())
        with self.raw() as r:
            r.send(struct.pack("!II", 8, 0xDEADBEEF))
            self.assertRefusal(r.read_error(), "08P01",
                               "unsupported frontend protocol 57005.48879: vaultwire speaks protocol 3.0")

    # Startup timeouts, Terminate during authentication and an empty password are
    # tests/component/proxy/session_test.cpp's: they need no PostgreSQL and no Vault.

    # -- cancel ------------------------------------------------------------

    def test_psycopg2_cancel_in_plaintext_on_tls_listener(self):
        # libpq before 17 sends CancelRequest in plaintext even for a TLS session.
        conn = self.connect(sslmode="verify-full", sslrootcert=self.client_ca)
        try:
            self.assertTrue(conn.info.ssl_in_use)
            cur = conn.cursor()
            canceller = threading.Thread(target=lambda: (self.wait_active("select pg_sleep(30)"), conn.cancel()))
            canceller.start()
            t0 = time.monotonic()
            with self.assertRaises(psycopg2.errors.QueryCanceled) as cm:
                cur.execute("select pg_sleep(30)")
            canceller.join()
            self.assertLess(time.monotonic() - t0, 15)
            self.assertEqual(cm.exception.pgcode, "57014")
            self.assertEqual(cm.exception.diag.message_primary, "canceling statement due to user request")
            conn.rollback()
            cur.execute("select 1")
            self.assertEqual(cur.fetchone(), (1,))
        finally:
            conn.close()

    def test_cancel_after_ssl_request(self):
        with self.raw() as session:
            session.start_tls(self.client_ca)
            pid, secret = backend_key(session.login(self.token))
            session.send(query_message("select pg_sleep(31)"))
            self.wait_active("select pg_sleep(31)")
            with self.raw() as c:
                c.start_tls(self.client_ca)
                c.send(cancel_request(pid, secret))
                self.assertTrue(c.closed_without_reply())
            msgs = session.read_until({"Z"})
            errors = [error_fields(body) for t, body in msgs if t == "E"]
            self.assertEqual([(e["C"], e["M"]) for e in errors], [("57014", "canceling statement due to user request")])

    def test_cancel_with_unknown_key_is_dropped_silently(self):
        with self.raw() as session:
            pid, secret = backend_key(session.login(self.token))
            session.send(query_message("select pg_sleep(2.5)"))
            self.wait_active("select pg_sleep(2.5)")
            for tls in (False, True):
                with self.raw() as c:
                    if tls:
                        c.start_tls(self.client_ca)
                    c.send(cancel_request(pid, secret ^ 1))
                    self.assertTrue(c.closed_without_reply())
            msgs = session.read_until({"Z"})
            self.assertEqual([t for t, _ in msgs if t == "E"], [], "the query was cancelled by a wrong key")
            self.assertIn("D", [t for t, _ in msgs])

    # -- unix socket -------------------------------------------------------

    def test_unix_socket_listener(self):
        r = self.psql("select session_user", host=self.sockdir, port=self.port, args=["-c", r"\conninfo"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('via socket in "%s"' % self.sockdir, r.stdout)
        self.assertRegex(r.stdout.strip().splitlines()[-1], DYNAMIC_USER_RE)


if __name__ == "__main__":
    unittest.main()
