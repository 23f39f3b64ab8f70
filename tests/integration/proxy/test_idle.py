"""[limits] client_idle_timeout: a spliced session waiting for its client (the server's
last message was ReadyForQuery) with no bytes either way for that long gets FATAL
57P05 and is closed (its lease, unused, is revoked after revoke_idle_after); an active
session or a long query is not."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import ProxyTestCase, Raw, wait_for  # noqa: E402

import psycopg2  # noqa: E402


class IdleTimeoutTest(ProxyTestCase):
    @classmethod
    def proxy_config(cls):
        return cls.single_listener_config(cls.port, '[limits]\nclient_idle_timeout = "1s"\n')

    def connect(self):
        return psycopg2.connect(host="127.0.0.1", port=self.port, user="crdb-role", dbname="defaultdb",
                                password=self.token, sslmode="disable")

    def test_idle_session_gets_57P05_and_is_closed(self):
        with Raw(self.port) as r:
            r.login(self.token)
            rows, error = r.query("select session_user")
            self.assertIsNone(error)
            user = rows[0][0]
            # Nothing more from this client: after the timeout vaultwire speaks first.
            fields = r.read_error()
            self.assertEqual(fields["S"], "FATAL")
            self.assertEqual(fields["C"], "57P05")
            self.assertEqual(fields["M"],
                             "terminating connection: idle for longer than 1000ms ([limits] client_idle_timeout)")
            self.assertTrue(r.closed_without_reply())
        self.proxy.wait_log(r"session closed: result client_idle_timeout", what="idle close logged")
        wait_for(lambda: not self.pg.role_exists(user), timeout=20, what="idle session's SQL user dropped")

    def test_idle_psycopg2_session_is_closed(self):
        before = self.proxy.output().count("result client_idle_timeout")
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute("select 1")
            conn.commit()
            wait_for(lambda: self.proxy.output().count("result client_idle_timeout") > before, timeout=20,
                     what="idle close logged")
            with self.assertRaises(psycopg2.OperationalError):
                cur.execute("select 1")
        finally:
            conn.close()

    def test_active_session_outlives_the_timeout(self):
        conn = self.connect()
        try:
            cur = conn.cursor()
            started = time.monotonic()
            # Traffic every 200ms for three timeouts' worth: never idle for 1s.
            while time.monotonic() - started < 3.0:
                cur.execute("select 1")
                self.assertEqual(cur.fetchone(), (1,))
                time.sleep(0.2)
            # A query running longer than the timeout moves no bytes either way, but the
            # session is busy, not idle: it must not be cut.
            cur.execute("select pg_sleep(2.5), 2")
            self.assertEqual(cur.fetchone()[1], 2)
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
