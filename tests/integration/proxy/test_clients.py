"""The data path through a real vaultwire with real clients: a 20 MB COPY in and out
(psql), pgbench, LISTEN/NOTIFY pids, the BackendKeyData pid, and shutdown (SIGTERM)
with live sessions.
"""
import hashlib
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (PGBENCH, ProxyTestCase, backend_key, free_port, make_listener_cert,  # noqa: E402
                           startup_packet, wait_for)

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ClientsTest(ProxyTestCase):
    listeners = 2

    @classmethod
    def proxy_config(cls):
        cls.client_ca, cert, key = make_listener_cert(cls.tmp)
        cls.tls_port = free_port()
        # Several io threads: a session's coroutines resume on any of them (the splice
        # once read into another thread's buffer and crossed bytes between sessions).
        return super().proxy_config() + f"""
[[listener]]
bind = "127.0.0.1:{cls.tls_port}"
tls_cert = "{cert}"
tls_key = "{key}"
route = "main"

[runtime]
threads = 4
"""

    def test_copy_20mb_in_and_out(self):
        src = os.path.join(self.tmp, "copy-in.tsv")
        rnd = random.Random(20)
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_"
        with open(src, "w") as f:
            size, i = 0, 0
            while size < 20 * 1024 * 1024:
                i += 1
                line = "%d\t%s\n" % (i, "".join(rnd.choice(alphabet) for _ in range(rnd.randint(50, 200))))
                f.write(line)
                size += len(line)
        rows = i
        # Plaintext to vaultwire, and TLS (verify-full) to vaultwire; TLS upstream in both.
        for table, port, sslmode in (("copy_plain", self.proxy.port, "disable"),
                                     ("copy_tls", self.tls_port, "verify-full")):
            with self.subTest(sslmode=sslmode):
                out = os.path.join(self.tmp, table + "-out.tsv")
                env = {"PGSSLROOTCERT": self.client_ca}
                r = self.psql("create table %s (id int primary key, payload text)" % table, port=port,
                              sslmode=sslmode, extra_env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                r = self.psql(r"\copy %s from '%s'" % (table, src), port=port, sslmode=sslmode, extra_env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.strip(), "COPY %d" % rows)
                r = self.psql(r"\copy (select * from %s order by id) to '%s'" % (table, out), port=port,
                              sslmode=sslmode, extra_env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.strip(), "COPY %d" % rows)
                self.assertGreaterEqual(os.path.getsize(out), 20 * 1024 * 1024)
                self.assertEqual(sha256_file(out), sha256_file(src))

    def test_pgbench(self):
        pg = self.pg
        admin_env = dict(os.environ, PGPASSWORD=pg.admin_password, PGSSLMODE="verify-full", PGSSLROOTCERT=pg.ca)
        r = subprocess.run([PGBENCH, "-i", "-s", "1", "-h", "localhost", "-p", str(pg.port), "-U", pg.admin_user,
                            "defaultdb"], env=admin_env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        pg.admin_query("grant all on all tables in schema public to app_owner")
        env = dict(os.environ, PGPASSWORD=self.token, PGSSLMODE="disable")
        r = subprocess.run([PGBENCH, "-c", "4", "-j", "2", "-t", "200", "-n", "-h", "127.0.0.1",
                            "-p", str(self.proxy.port), "-U", "crdb-role", "defaultdb"],
                           env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("number of transactions actually processed: 800/800\n", r.stdout)
        self.assertIn("number of failed transactions: 0 (0.000%)\n", r.stdout)

    def test_notify_pid_and_backend_pid_agree(self):
        listener = self.connect()
        sender = self.connect()
        try:
            for c in (listener, sender):
                c.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            lcur, scur = listener.cursor(), sender.cursor()
            lcur.execute("select pg_backend_pid()")
            listener_pid = lcur.fetchone()[0]
            scur.execute("select pg_backend_pid()")
            sender_pid = scur.fetchone()[0]
            self.assertNotEqual(listener_pid, sender_pid)
            # libpq's PQbackendPID comes from vaultwire's BackendKeyData.
            self.assertEqual(listener.get_backend_pid(), listener_pid)
            self.assertEqual(sender.get_backend_pid(), sender_pid)
            lcur.execute("listen vw_channel")
            lcur.execute("notify vw_channel, 'self'")
            scur.execute("notify vw_channel, 'other'")

            def drained():
                if select.select([listener], [], [], 0.2)[0]:
                    listener.poll()
                return len(listener.notifies) >= 2
            wait_for(drained, timeout=20, what="two notifications")
            got = sorted((n.payload, n.pid, n.channel) for n in listener.notifies)
            self.assertEqual(got, [("other", sender_pid, "vw_channel"), ("self", listener_pid, "vw_channel")])
        finally:
            listener.close()
            sender.close()

    def test_backend_key_data_pid_is_pg_backend_pid(self):
        with self.raw() as r:
            pid, secret = backend_key(r.login(self.token))
            rows, err = r.query("select pg_backend_pid()")
            self.assertIsNone(err)
            self.assertEqual(int(rows[0][0]), pid)

    # -- shutdown ----------------------------------------------------------

    def shutdown_with_live_sessions(self, credentials=None):
        """Starts a vaultwire, opens a spliced session (raw), a psycopg2 session and one in
        admission, sends SIGTERM; checks what each client sees and the exit status.
        Returns the proxy and the dynamic users of the spliced sessions."""
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials=credentials),
                                 name="shutdown-%d" % len(self.proxies))
        spliced = self.raw(proxy.port)
        waiting = self.raw(proxy.port)
        conn = self.connect(port=proxy.port)
        try:
            spliced.login(self.token)
            rows, err = spliced.query("select session_user")
            self.assertIsNone(err)
            cur = conn.cursor()
            cur.execute("select session_user")
            users = [rows[0][0], cur.fetchone()[0]]
            waiting.send(startup_packet([("user", "crdb-role"), ("database", "defaultdb")]))
            self.assertEqual(waiting.read_message()[0], "R")
            proxy.signal(signal.SIGTERM)
            proxy.wait_log(r"signal 15: no new connections")
            # New connections are refused while the sessions finish.
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
            # The spliced session is idle: it gets the FATAL at a message boundary, then the close.
            self.assertRefusal(spliced.read_error(), "57P01", "terminating connection: vaultwire is shutting down; reconnect")
            self.assertTrue(spliced.closed_without_reply(timeout=20), "the spliced session was not ended")
            self.assertRefusal(waiting.read_error(), "57P01", "vaultwire is shutting down; reconnect")
            self.assertTrue(waiting.closed_without_reply(timeout=20))
            # psycopg2's session is inside a transaction: it is not cut, and it ends
            # with 57P01 right after its COMMIT.
            cur.execute("select 1")
            self.assertEqual(cur.fetchone()[0], 1)
            conn.commit()
            # (libpq reports the close; the Raw session above shows the 57P01 itself)
            with self.assertRaises((psycopg2.OperationalError, psycopg2.InterfaceError)):
                cur.execute("select 1")
            self.assertEqual(proxy.proc.wait(timeout=30), 0, proxy.output())
            self.assertRegex(proxy.output(), r"signal 15: no new connections")
            self.assertEqual(len(re.findall(r"session closed: result shutdown", proxy.output())), 2, proxy.output())
            return proxy, users
        finally:
            spliced.close()
            waiting.close()
            conn.close()

    def test_sigterm_cuts_a_transaction_after_shutdown_grace(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), extra='[runtime]\nshutdown_grace = "2s"\n'),
                                 name="grace-%d" % len(self.proxies))
        with self.raw(proxy.port) as r:
            r.login(self.token)
            rows, err = r.query("begin")
            self.assertIsNone(err)
            self.assertEqual(r.status, "T")
            proxy.signal(signal.SIGTERM)
            proxy.wait_log(r"shutdown_grace over: ending 1 sessions now", timeout=30)
            self.assertRefusal(r.read_error(), "57P01", "terminating connection: vaultwire is shutting down; reconnect")
            self.assertTrue(r.closed_without_reply(timeout=20))
        self.assertEqual(proxy.proc.wait(timeout=30), 0, proxy.output())

    def test_sigterm_ends_sessions_and_exits_0(self):
        self.shutdown_with_live_sessions()

    def test_sigterm_revokes_the_sessions_leases(self):
        # revoke_idle_after far beyond the test: only the shutdown can revoke the leases,
        # and it does so before vaultwire exits.
        proxy, users = self.shutdown_with_live_sessions(credentials={"revoke_idle_after": "1h"})
        leases = {lease for _, _, lease, _, _, _ in proxy.opened_sessions()}
        self.assertTrue(leases, proxy.output())
        self.assertFalse(leases & self.vault.dev_lease_ids(), "leases still live after vaultwire exited")
        for user in set(users):
            self.assertFalse(self.pg.role_exists(user), "SQL user %s still exists after vaultwire exited" % user)


if __name__ == "__main__":
    unittest.main()
