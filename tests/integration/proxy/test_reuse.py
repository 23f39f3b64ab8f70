"""Upstream reuse, the SCRAM key cache and a Vault outage (issue 5 items 7-9), end to end
through a real vaultwire, PostgreSQL 15 and vault-dev.

- pgbench -S -C through vaultwire with [pool] reuse = true: at most 2 leases, fewer than
  10 % of the client connections log in to PostgreSQL (counted on the server side: its
  "connection authorized" log lines, pg-harness sets log_connections), no errors.
- Reuse is invisible to clients: the next client on a kept upstream sees none of the
  previous client's session state, gets the ParameterStatus set a fresh login gets and
  its own BackendKeyData secret; the previous client's cancel key cancels nothing. A
  client that leaves inside a transaction, without Terminate, or a client with another
  database or other startup parameters never gets / leaves a kept upstream.
- With reuse off, 20 logins with one credential derive the SCRAM keys once (the
  scram_keys_derived counter of the shutdown stats line) while PostgreSQL sees 20 logins.
- vault-dev frozen (SIGSTOP for 20 s, then SIGCONT) during pgbench, with sessions open
  and with -C on a warm cache: no pgbench errors, and work goes on during the freeze.

Every test starts its own vaultwire (its own lease cache, pool and counters); the class
one only serves the fixture's secret scan.
"""
import os
import re
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (PGBENCH, TERMINATE, ProxyTestCase, Raw, backend_key, cancel_request,  # noqa: E402
                           error_fields, free_port, query_message, wait_for)

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402

AUTHORIZED_RE = re.compile(r"connection authorized: user=(\S+) database=(\S+)")
TXNS_RE = re.compile(r"number of transactions actually processed: (\d+)")
FAILED_RE = re.compile(r"number of failed transactions: (\d+)")
FREEZE_SECONDS = 20


def parameter_status(msgs):
    """{name: value} of the ParameterStatus messages among msgs (a login's replies)."""
    out = {}
    for t, body in msgs:
        if t == "S":
            name, value = body.split(b"\0")[:2]
            out[name.decode()] = value.decode()
    return out


def read_result(raw):
    """(DataRow bodies, ErrorResponse fields or None) of a simple query already sent on raw."""
    rows, error = [], None
    for t, body in raw.read_until({"Z"}):
        if t == "D":
            rows.append(body)
        elif t == "E":
            error = error_fields(body)
    return rows, error


class ReuseTestBase(ProxyTestCase):
    """Helpers shared by the classes below."""

    _pgbench_ready = False

    # -- vaultwire ---------------------------------------------------------

    def new_proxy(self, credentials=None, pool=None, extra=""):
        """A vaultwire of this test's own: its own lease cache, upstream pool and counters.
        (vaultwire caps the pool's idle_timeout at revoke_idle_after: tests that keep a
        connection across several steps pass a longer revoke_idle_after.)"""
        return self.start_proxy(self.single_listener_config(free_port(), extra=extra, credentials=credentials,
                                                            pool=pool),
                                name="%s-%d" % (self._testMethodName, len(self.proxies)))

    def stop_for_stats(self, proxy):
        """SIGTERM; the exit status must be 0; the counters of the shutdown "stats:" line."""
        self.assertEqual(proxy.stop(), 0, proxy.output()[-3000:])
        stats = proxy.stats()
        self.assertIsNotNone(stats, "no stats line at shutdown:\n" + proxy.output()[-3000:])
        return stats

    def open_kinds(self, proxy):
        """"new" / "reused" of every "session open" line, in order."""
        return [row[5] for row in proxy.opened_sessions()]

    # -- clients -----------------------------------------------------------

    def pg_connect(self, proxy, dbname="defaultdb", token=None, **kw):
        """psycopg2 through `proxy` (plaintext to vaultwire, TLS upstream)."""
        return psycopg2.connect(host="127.0.0.1", port=proxy.port, user="crdb-role", dbname=dbname,
                                password=self.token if token is None else token, sslmode="disable",
                                connect_timeout=30, **kw)

    @staticmethod
    def one(conn, sql, params=None):
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]

    # -- the PostgreSQL side ----------------------------------------------

    def pg_log_offset(self):
        return len(self.pg.log_text())

    def server_logins(self, offset, users):
        """The server's "connection authorized" lines after `offset` (of pg_log_offset) for
        the SQL users `users`: how many times PostgreSQL saw one of them log in."""
        users = set(users)
        return sum(1 for user, _ in AUTHORIZED_RE.findall(self.pg.log_text()[offset:]) if user in users)

    def backend_state(self, pid):
        """(state, query) of a backend in pg_stat_activity, or None when it is gone."""
        rows = self.pg.admin_query("select state, query from pg_stat_activity where pid = %s", (pid,))
        return tuple(rows[0]) if rows else None

    def wait_kept(self, proxy, pid, session_id):
        """Waits until vaultwire logs that session `session_id` left its upstream to the
        pool and the session ended, and PostgreSQL shows the backend `pid` idle after the
        reset query (DISCARD ALL): the connection is ready for the next client."""
        proxy.wait_log(r"%s: .* upstream connection kept for reuse" % session_id, timeout=30,
                       what="session %s's upstream kept for reuse" % session_id)
        wait_for(lambda: any(row[0] == session_id for row in proxy.closed_sessions()), timeout=30,
                 what="session %s closed in the log" % session_id)
        wait_for(lambda: self.backend_state(pid) == ("idle", "DISCARD ALL"), timeout=30,
                 what="backend %d idle after DISCARD ALL (last: %r)" % (pid, self.backend_state(pid)))

    def wait_backend_gone(self, pid):
        wait_for(lambda: self.backend_state(pid) is None, timeout=30,
                 what="backend %d closed (last: %r)" % (pid, self.backend_state(pid)))

    def wait_active(self, pid, fragment):
        wait_for(lambda: (self.backend_state(pid) or ("", ""))[0] == "active"
                 and fragment in self.backend_state(pid)[1], timeout=30,
                 what="backend %d running %r (last: %r)" % (pid, fragment, self.backend_state(pid)))

    # -- pgbench -----------------------------------------------------------

    @classmethod
    def ensure_pgbench_tables(cls):
        """pgbench's tables, made by the admin directly; the dynamic users work as app_owner."""
        if cls._pgbench_ready:
            return
        pg = cls.pg
        env = dict(os.environ, PGPASSWORD=pg.admin_password, PGSSLMODE="verify-full", PGSSLROOTCERT=pg.ca)
        r = subprocess.run([PGBENCH, "-i", "-s", "1", "-h", "localhost", "-p", str(pg.port), "-U", pg.admin_user,
                            "defaultdb"], env=env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise AssertionError("pgbench -i failed:\n" + r.stdout + r.stderr)
        pg.admin_query("grant all on all tables in schema public to app_owner")
        cls._pgbench_ready = True

    def pgbench(self, proxy, *args):
        """A pgbench through `proxy` (Popen; stdout and stderr in files of the class' tmp)."""
        self.ensure_pgbench_tables()
        env = dict(os.environ, PGPASSWORD=self.token, PGSSLMODE="disable")
        env.pop("PGSERVICE", None)
        name = os.path.join(self.tmp, "pgbench-%s-%d" % (self._testMethodName, len(self.proxies)))
        out, err = open(name + ".out", "w+"), open(name + ".err", "w+")
        self.addCleanup(out.close)
        self.addCleanup(err.close)
        proc = subprocess.Popen([PGBENCH, "-n", "-j", "2", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "crdb-role"]
                                + list(args) + ["defaultdb"], env=env, stdout=out, stderr=err)

        def kill():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.addCleanup(kill)
        proc.out_path, proc.err_path = name + ".out", name + ".err"
        return proc

    def pgbench_result(self, proc, timeout=300):
        """Waits for pgbench; requires exit 0 and 0 failed transactions; returns
        (transactions processed, stdout)."""
        rc = proc.wait(timeout=timeout)
        with open(proc.out_path) as f:
            out = f.read()
        with open(proc.err_path) as f:
            err = f.read()
        self.assertEqual(rc, 0, "pgbench exited with %s:\n%s\n%s" % (rc, out, err[-5000:]))
        failed = FAILED_RE.search(out)
        if failed:
            self.assertEqual(int(failed.group(1)), 0, out)
        self.assertNotRegex(err, r"(?i)error|aborted", err[-5000:])
        txns = TXNS_RE.search(out)
        self.assertIsNotNone(txns, out)
        return int(txns.group(1)), out


class ReuseOnTest(ReuseTestBase):
    """[pool] reuse = true."""

    pool_settings = {"reuse": True}
    # For the tests where a kept connection must wait across several client steps.
    LONG_IDLE = {"revoke_idle_after": "60s"}

    @classmethod
    def setup_vault(cls):
        # A second database the dynamic users may use (the reuse key includes the database).
        cls.pg.admin_query("create database otherdb")
        cls.pg.admin_query("grant connect, temporary on database otherdb to app_owner")

    # -- pgbench -C --------------------------------------------------------

    def test_pgbench_connect_per_transaction_reuses_upstreams(self):
        proxy = self.new_proxy()
        self.ensure_pgbench_tables()
        creds_before = self.creds_reads()
        offset = self.pg_log_offset()
        txns, out = self.pgbench_result(self.pgbench(proxy, "-S", "-C", "-c", "8", "-T", "20"))
        creds = self.creds_reads() - creds_before
        stats = self.stop_for_stats(proxy)
        opened = proxy.opened_sessions()
        kinds = [row[5] for row in opened]
        users = {row[1] for row in opened}
        logins = self.server_logins(offset, users)
        summary = ("pgbench transactions %d, client sessions %d (new %d, reused %d), server logins %d, "
                   "creds requests %d, stats %r" % (txns, len(opened), kinds.count("new"), kinds.count("reused"),
                                                    logins, creds, stats))
        print("\n" + summary, file=sys.stderr)
        # With -C every transaction is one client connection (pgbench adds one of its own).
        self.assertGreaterEqual(len(opened), txns, summary)
        self.assertLessEqual(creds, 2, summary)
        self.assertLessEqual(len(users), 2, summary)
        self.assertGreaterEqual(logins, 1, summary)
        self.assertLess(logins, 0.10 * len(opened), summary)
        # vaultwire's own account agrees with the server's.
        self.assertEqual(kinds.count("new"), logins, summary)
        self.assertEqual(stats.get("upstream_logins"), logins, summary)
        self.assertEqual(stats.get("upstream_reuses"), kinds.count("reused"), summary)

    # -- reuse is invisible ------------------------------------------------

    def test_next_client_sees_a_fresh_session(self):
        proxy = self.new_proxy(credentials=self.LONG_IDLE)
        a = self.pg_connect(proxy)
        a.autocommit = True
        pid = self.one(a, "select pg_backend_pid()")
        self.assertEqual(a.get_backend_pid(), pid)
        show = ("application_name", "search_path", "statement_timeout", "DateStyle")
        baseline = {name: self.one(a, "show %s" % name) for name in show}
        baseline_users = (self.one(a, "select session_user"), self.one(a, "select current_user"))
        self.assertEqual(baseline_users[1], "app_owner")
        with a.cursor() as cur:
            cur.execute("set application_name = 'a-changed'")
            cur.execute("set search_path = a_private, public")
            cur.execute("set statement_timeout = '1234ms'")
            cur.execute("set datestyle = 'SQL, DMY'")
            cur.execute("create temp table a_tmp (x int)")
            cur.execute("insert into a_tmp values (1)")
            cur.execute("prepare a_stmt as select 1")
            cur.execute("listen a_channel")
            cur.execute("select pg_advisory_lock(4242)")
        self.assertEqual(self.one(a, "show application_name"), "a-changed")
        a_session = proxy.opened_sessions()[-1][0]
        a.close()  # Terminate while idle
        self.wait_kept(proxy, pid, a_session)

        b = self.pg_connect(proxy)
        try:
            b.autocommit = True
            self.assertEqual(self.one(b, "select pg_backend_pid()"), pid, "not reused:\n" + proxy.output()[-3000:])
            self.assertEqual(b.get_backend_pid(), pid)
            self.assertEqual(self.open_kinds(proxy), ["new", "reused"], proxy.output()[-3000:])
            self.assertEqual({name: self.one(b, "show %s" % name) for name in show}, baseline)
            self.assertEqual((self.one(b, "select session_user"), self.one(b, "select current_user")), baseline_users)
            self.assertEqual(self.one(b, "select count(*) from pg_class where relname = 'a_tmp'"), 0)
            self.assertEqual(self.one(b, "select count(*) from pg_prepared_statements"), 0)
            self.assertEqual(self.one(b, "select count(*) from pg_listening_channels()"), 0)
            self.assertEqual(self.one(b, "select count(*) from pg_locks where locktype = 'advisory' "
                                         "and pid = pg_backend_pid()"), 0)
            # B's own session works as a fresh one would: the same temp table name is free.
            with b.cursor() as cur:
                cur.execute("create temp table a_tmp (y text)")
                cur.execute("select count(*) from a_tmp")
                self.assertEqual(cur.fetchone()[0], 0)
        finally:
            b.close()

    def test_old_cancel_key_cannot_cancel_the_next_client(self):
        proxy = self.new_proxy(credentials=self.LONG_IDLE)
        a = Raw(proxy.port)
        try:
            a_login = a.login(self.token)
            key_a = backend_key(a_login)
            rows, err = a.query("select pg_backend_pid()")
            self.assertIsNone(err)
            pid = int(rows[0][0])
            self.assertEqual(key_a[0], pid)
            rows, err = a.query("set application_name = 'a-changed'")
            self.assertIsNone(err)
            a_session = proxy.opened_sessions()[-1][0]
            a.send(TERMINATE)
            self.assertTrue(a.closed_without_reply(timeout=20), "vaultwire kept A's connection after Terminate")
        finally:
            a.close()
        self.wait_kept(proxy, pid, a_session)

        with Raw(proxy.port) as b:
            b_login = b.login(self.token)
            key_b = backend_key(b_login)
            rows, err = b.query("select pg_backend_pid(), current_setting('application_name')")
            self.assertIsNone(err)
            self.assertEqual(int(rows[0][0]), pid, "not reused:\n" + proxy.output()[-3000:])
            self.assertEqual(self.open_kinds(proxy), ["new", "reused"])
            # The ParameterStatus set of a fresh login, not the one A's SET left.
            self.assertEqual(parameter_status(b_login), parameter_status(a_login))
            self.assertEqual(parameter_status(b_login).get("application_name"), rows[0][1])
            # A fresh secret (the pid is the server's, shared by both).
            self.assertNotEqual(key_b, key_a)
            self.assertNotEqual(key_b[1], key_a[1])

            # A's key while B sleeps: nothing is cancelled.
            b.send(query_message("select pg_sleep(5)"))
            self.wait_active(pid, "pg_sleep(5)")
            with Raw(proxy.port) as c:
                c.send(cancel_request(*key_a))
                self.assertTrue(c.closed_without_reply(timeout=20))
            replies = b.read_until({"Z"})
            errors = [t for t, _ in replies if t == "E"]
            self.assertEqual(errors, [], "A's old cancel key cancelled B's query: %r" % replies)
            self.assertIn("C", [t for t, _ in replies])

            # Control: B's own key does cancel B's query.
            b.send(query_message("select pg_sleep(60)"))
            self.wait_active(pid, "pg_sleep(60)")
            with Raw(proxy.port) as c:
                c.send(cancel_request(*key_b))
                self.assertTrue(c.closed_without_reply(timeout=20))
            rows, err = read_result(b)
            self.assertIsNotNone(err, "B's own cancel key did not cancel its query")
            self.assertEqual(err.get("C"), "57014", err)

    # -- when there is no reuse -------------------------------------------

    def assert_not_kept(self, proxy, leave):
        """A client connects, `leave(conn, raw)` ends it some way that must not keep the
        upstream; the backend must close and the next client must get a new one. Then a
        clean Terminate from an idle client must keep it (the control)."""
        before = len(proxy.opened_sessions())
        with Raw(proxy.port) as a:
            a.login(self.token)
            rows, err = a.query("select pg_backend_pid()")
            self.assertIsNone(err)
            pid = int(rows[0][0])
            a_session = proxy.opened_sessions()[-1][0]
            leave(a)
        wait_for(lambda: any(row[0] == a_session for row in proxy.closed_sessions()), timeout=30,
                 what="session %s closed in the log" % a_session)
        self.wait_backend_gone(pid)
        self.assertNotRegex(proxy.output(), r"%s: .* upstream connection kept for reuse" % a_session)
        b = self.pg_connect(proxy)
        try:
            b.autocommit = True
            pid_b = self.one(b, "select pg_backend_pid()")
            self.assertNotEqual(pid_b, pid)
            self.assertEqual(self.open_kinds(proxy)[before:], ["new", "new"])
            b_session = proxy.opened_sessions()[-1][0]
        finally:
            b.close()
        # Control: B left cleanly while idle, so its upstream is kept and handed out.
        self.wait_kept(proxy, pid_b, b_session)
        c = self.pg_connect(proxy)
        try:
            self.assertEqual(self.one(c, "select pg_backend_pid()"), pid_b)
            self.assertEqual(self.open_kinds(proxy)[before:], ["new", "new", "reused"])
        finally:
            c.close()

    def test_open_transaction_is_not_kept(self):
        proxy = self.new_proxy(credentials=self.LONG_IDLE)

        def leave(a):
            rows, err = a.query("begin; create temp table t_open (x int)")
            self.assertIsNone(err)
            a.send(TERMINATE)
        self.assert_not_kept(proxy, leave)

    def test_failed_transaction_is_not_kept(self):
        proxy = self.new_proxy(credentials=self.LONG_IDLE)

        def leave(a):
            rows, err = a.query("begin")
            self.assertIsNone(err)
            rows, err = a.query("select 1/0")
            self.assertEqual(err.get("C"), "22012")
            a.send(TERMINATE)
        self.assert_not_kept(proxy, leave)

    def test_psycopg2_close_inside_transaction_is_not_kept(self):
        proxy = self.new_proxy(credentials=self.LONG_IDLE)
        a = self.pg_connect(proxy)  # not autocommit: the select opens a transaction
        pid = self.one(a, "select pg_backend_pid()")
        self.assertEqual(a.get_transaction_status(), psycopg2.extensions.TRANSACTION_STATUS_INTRANS)
        a_session = proxy.opened_sessions()[-1][0]
        a.close()
        wait_for(lambda: any(row[0] == a_session for row in proxy.closed_sessions()), timeout=30,
                 what="session %s closed in the log" % a_session)
        self.wait_backend_gone(pid)
        self.assertNotRegex(proxy.output(), r"%s: .* upstream connection kept for reuse" % a_session)
        b = self.pg_connect(proxy)
        try:
            self.assertNotEqual(self.one(b, "select pg_backend_pid()"), pid)
            self.assertEqual(self.open_kinds(proxy), ["new", "new"])
        finally:
            b.close()

    def test_client_gone_without_terminate_is_not_kept(self):
        proxy = self.new_proxy(credentials=self.LONG_IDLE)
        self.assert_not_kept(proxy, lambda a: None)  # the socket just closes

    def test_other_database_or_parameters_get_their_own_upstream(self):
        proxy = self.new_proxy(credentials=self.LONG_IDLE)
        a = self.pg_connect(proxy)
        a.autocommit = True
        pid = self.one(a, "select pg_backend_pid()")
        a_session = proxy.opened_sessions()[-1][0]
        a.close()
        self.wait_kept(proxy, pid, a_session)

        b = self.pg_connect(proxy, dbname="otherdb")
        try:
            self.assertEqual(self.one(b, "select current_database()"), "otherdb")
            self.assertNotEqual(self.one(b, "select pg_backend_pid()"), pid)
        finally:
            b.close()
        c = self.pg_connect(proxy, application_name="beta")
        try:
            self.assertEqual(self.one(c, "show application_name"), "beta")
            self.assertNotEqual(self.one(c, "select pg_backend_pid()"), pid)
        finally:
            c.close()
        d = self.pg_connect(proxy, options="-c statement_timeout=4321")
        try:
            self.assertEqual(self.one(d, "show statement_timeout"), "4321ms")
            self.assertNotEqual(self.one(d, "select pg_backend_pid()"), pid)
        finally:
            d.close()
        self.assertEqual(self.open_kinds(proxy), ["new", "new", "new", "new"], proxy.output()[-3000:])
        # Control: A's upstream was kept all along, for A's own (database, parameters).
        self.assertEqual(self.backend_state(pid), ("idle", "DISCARD ALL"))
        e = self.pg_connect(proxy)
        try:
            self.assertEqual(self.one(e, "select pg_backend_pid()"), pid)
            self.assertEqual(self.one(e, "select current_database()"), "defaultdb")
            self.assertEqual(self.open_kinds(proxy), ["new", "new", "new", "new", "reused"])
        finally:
            e.close()

    # -- Vault frozen ------------------------------------------------------

    def freeze_vault(self, proc, progress):
        """SIGSTOP vault-dev for FREEZE_SECONDS while pgbench `proc` runs (it must still be
        running at the end), SIGCONT in any case. Returns progress() at the start and at
        the end of the freeze."""
        vault_pid = self.vault.proc.pid
        os.kill(vault_pid, signal.SIGSTOP)
        try:
            at_start = progress()
            with self.assertRaises(subprocess.TimeoutExpired, msg="pgbench ended while vault-dev was frozen"):
                proc.wait(timeout=FREEZE_SECONDS)
            at_end = progress()
        finally:
            os.kill(vault_pid, signal.SIGCONT)
        return at_start, at_end

    def test_vault_frozen_during_pgbench_sessions(self):
        proxy = self.new_proxy()
        self.ensure_pgbench_tables()
        proc = self.pgbench(proxy, "-c", "8", "-T", "30")
        wait_for(lambda: len(proxy.opened_sessions()) >= 8, timeout=60, what="pgbench's 8 sessions open")

        def history():
            return self.pg.admin_query("select count(*) from pgbench_history")[0][0]
        at_start, at_end = self.freeze_vault(proc, history)
        txns, out = self.pgbench_result(proc)
        summary = "pgbench transactions %d; during the freeze %d -> %d" % (txns, at_start, at_end)
        print("\n" + summary, file=sys.stderr)
        self.assertGreater(at_end, at_start, "no transaction committed while vault-dev was frozen; " + summary)

    def test_vault_frozen_during_pgbench_connect_warm_cache(self):
        proxy = self.new_proxy()
        self.ensure_pgbench_tables()
        warm = self.pg_connect(proxy)
        try:
            self.assertEqual(self.one(warm, "select 1"), 1)
        finally:
            warm.close()
        creds = self.creds_reads()
        proc = self.pgbench(proxy, "-S", "-C", "-c", "8", "-T", "30")
        wait_for(lambda: len(proxy.opened_sessions()) >= 20, timeout=60, what="pgbench -C under way")
        at_start, at_end = self.freeze_vault(proc, lambda: len(proxy.opened_sessions()))
        txns, out = self.pgbench_result(proc)
        summary = "pgbench transactions %d; client sessions opened during the freeze %d -> %d" % (
            txns, at_start, at_end)
        print("\n" + summary, file=sys.stderr)
        self.assertEqual(self.creds_reads(), creds, "the warm credential was not used")
        self.assertGreater(at_end, at_start, "no client session opened while vault-dev was frozen; " + summary)


class ReuseOffTest(ReuseTestBase):
    """[pool] reuse = false."""

    pool_settings = {"reuse": False}

    def test_twenty_logins_derive_scram_keys_once(self):
        self.assertEqual(self.pg.env.get("PGH_AUTH"), "scram-sha-256")
        # The credential stays cached between the sequential logins whatever their pace.
        proxy = self.new_proxy(credentials={"revoke_idle_after": "1h"})
        creds_before = self.creds_reads()
        offset = self.pg_log_offset()
        users, pids = set(), set()
        for _ in range(20):
            conn = self.pg_connect(proxy)
            try:
                users.add(self.one(conn, "select session_user"))
                pids.add(conn.get_backend_pid())
            finally:
                conn.close()
        self.assertEqual(len(users), 1, users)
        self.assertEqual(self.creds_reads() - creds_before, 1)
        opened = proxy.opened_sessions()
        self.assertEqual(len(opened), 20)
        self.assertEqual([row[5] for row in opened], ["new"] * 20)
        for row in opened:
            self.assertRegex(row[4], r"(?i)^scram-sha-256", row)
        # PostgreSQL saw 20 real logins.
        self.assertEqual(len(pids), 20)
        self.assertEqual(self.server_logins(offset, users), 20)
        stats = self.stop_for_stats(proxy)
        self.assertEqual(stats.get("scram_keys_derived"), 1, stats)
        self.assertEqual(stats.get("upstream_logins"), 20, stats)
        self.assertEqual(stats.get("upstream_reuses"), 0, stats)


if __name__ == "__main__":
    unittest.main()
