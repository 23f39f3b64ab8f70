"""Faults of the parts around vaultwire (issue 8 item 6), each through a real vaultwire:

- vault-dev answering 500 or 429, answering after [vault] request_timeout (and within
  it), or resetting the TCP connection in the middle of its answer: the client gets
  08001 with the cause, vaultwire stays up and the next login works. (Sealed, 503 and
  unreachable are in test_errors.py.)
- The upstream host name does not resolve: 08001 naming it; the lease vaultwire took
  for the session is revoked.
- The audit log cannot be written (/dev/full): sessions go on, the failure is logged
  once.
- PostgreSQL restarted (fast shutdown) under live sessions: each client gets the
  server's 57P01 ErrorResponse and then EOF (no hang), vaultwire survives, and new
  sessions work, also with upstream reuse on (the pool never hands out a connection
  the restart killed).
- PostgreSQL at max_connections: the server's 53300 reaches the client as it sent it.
- A client killed in the middle of a statement: PostgreSQL would not notice (no
  client_connection_check_interval), so vaultwire cancels the statement and closes the
  upstream connection; the backend and the lock it held are gone.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (PSQL, ClosedError, LoginRefused, ProxyTestCase, error_fields, free_port,  # noqa: E402
                           query_message, TERMINATE, wait_for)

import psycopg2  # noqa: E402

CREDS = "database/creds/crdb-role"


def read_to_end(raw, timeout=30.0):
    """Every message until the peer closes: [(type, body)]. A socket timeout (a hang)
    raises."""
    raw.sock.settimeout(timeout)
    out = []
    while True:
        try:
            out.append(raw.read_message())
        except ClosedError:
            return out


class VaultFaultsTest(ProxyTestCase):
    """vault-dev's injected faults (/_dev/fail), an unresolvable upstream, an unwritable
    audit log."""

    vault_settings = {"request_timeout": "4s"}

    def tearDown(self):
        self.vault.dev("DELETE", "fail")

    def fail_next_creds(self, **rule):
        rule = dict({"path": CREDS, "count": 1}, **rule)
        self.vault.dev("POST", "fail", rule)

    def assertGoodLogin(self, token, port=None):
        """A login with `token` and a query on it work."""
        with self.raw(port) as r:
            r.login(token)
            self.assertEqual(r.query("select 1"), ([("1",)], None))
            r.send(TERMINATE)

    def assertFaultThenRecovery(self, fields, sqlstate, message_re, token):
        self.assertEqual((fields.get("S"), fields.get("V"), fields.get("C")), ("FATAL", "FATAL", sqlstate), fields)
        self.assertRegex(fields.get("M", ""), message_re)
        self.assertTrue(self.proxy.running(), "vaultwire exited after the fault")
        self.assertEqual(self.vault.dev("GET", "fail"), [], "the injected rule was not used up")
        # The same token again (nothing bad was cached for it), then a new one.
        self.assertGoodLogin(token)
        self.assertGoodLogin(self.make_token(["roach-client"]))

    # -- Vault ---------------------------------------------------------------

    def test_vault_500_08001_with_vaults_text(self):
        token = self.make_token(["roach-client"])
        self.fail_next_creds(status=500)
        fields = self.refused(token=token)
        self.assertFaultThenRecovery(fields, "08001", "^" + re.escape(
            "Vault at %s is unavailable: injected failure (vault-dev /_dev/fail) (HTTP 500)" % self.vault.addr) + "$",
            token)

    def test_vault_429_08001(self):
        token = self.make_token(["roach-client"])
        self.fail_next_creds(status=429)
        fields = self.refused(token=token)
        self.assertFaultThenRecovery(fields, "08001", "^" + re.escape(
            "Vault at %s is unavailable: injected failure (vault-dev /_dev/fail) (HTTP 429)" % self.vault.addr) + "$",
            token)

    def test_vault_slower_than_request_timeout_08001(self):
        token = self.make_token(["roach-client"])
        try:
            # Vault answers (and issues the credential) after 10 s; vaultwire waits 4 s.
            self.fail_next_creds(mode="delay", delay_ms=10000)
            fields = self.refused(token=token)
            self.assertFaultThenRecovery(fields, "08001", "^" + re.escape(
                "Vault at %s did not answer in time: no answer within 4s ([vault] request_timeout)"
                % self.vault.addr) + "$", token)
        finally:
            # The credential Vault issued after vaultwire gave up has no owner but the
            # token (its lease id never reached vaultwire): revoking the token ends it.
            self.root.auth.token.revoke(token)

    def test_vault_slow_within_request_timeout_succeeds(self):
        token = self.make_token(["roach-client"])
        self.fail_next_creds(mode="delay", delay_ms=1000)
        self.assertGoodLogin(token)
        self.assertEqual(self.vault.dev("GET", "fail"), [], "the delay rule was not used")

    def test_upstream_dialled_while_vault_answers(self):
        """The upstream TCP connection and TLS handshake start while the creds request
        is out: PostgreSQL logs the connection before Vault's (delayed) answer."""
        token = self.make_token(["roach-client"])
        received = re.compile(r"connection received: host=(127\.0\.0\.1|::1)")
        before = len(received.findall(self.pg.log_text()))
        self.fail_next_creds(mode="delay", delay_ms=3000)  # within the class's request_timeout
        outcome = {}

        def log_in():
            try:
                self.assertGoodLogin(token)
                outcome["ok"] = True
            except Exception as e:  # reported by the main thread
                outcome["error"] = e
        client = threading.Thread(target=log_in)
        started = time.monotonic()
        client.start()
        try:
            wait_for(lambda: len(received.findall(self.pg.log_text())) > before, timeout=2.5, interval=0.05,
                     what="PostgreSQL to log vaultwire's connection while Vault delays the credential")
            self.assertNotIn("ok", outcome, "the login finished before the connection was seen")
        finally:
            client.join(timeout=30)
        self.assertEqual(outcome, {"ok": True})
        self.assertGreaterEqual(time.monotonic() - started, 3, "Vault's delay was not applied")

    def test_upstream_connection_closed_during_the_vault_call_is_replaced(self):
        """PostgreSQL drops a connection that sends no startup packet within
        authentication_timeout; the login then dials again."""
        token = self.make_token(["roach-client"])
        self.pg.admin_query("ALTER SYSTEM SET authentication_timeout = '1s'")
        self.pg.admin_query("SELECT pg_reload_conf()")
        try:
            wait_for(lambda: self.pg.admin_query("SHOW authentication_timeout") == [("1s",)], timeout=10,
                     what="authentication_timeout = 1s")
            self.fail_next_creds(mode="delay", delay_ms=2500)
            self.assertGoodLogin(token)
            self.assertEqual(self.vault.dev("GET", "fail"), [], "the delay rule was not used")
        finally:
            self.pg.admin_query("ALTER SYSTEM RESET authentication_timeout")
            self.pg.admin_query("SELECT pg_reload_conf()")

    def test_vault_reset_mid_response_08001(self):
        token = self.make_token(["roach-client"])
        # vault-dev sends a response head promising 4096 bytes, a few of them, then RST.
        self.fail_next_creds(mode="reset")
        fields = self.refused(token=token)
        self.assertFaultThenRecovery(fields, "08001", "^" + re.escape("cannot reach Vault at %s: " % self.vault.addr)
                                     + r"(Recv failure: Connection reset by peer|transfer closed with \d+ bytes "
                                       r"remaining to read)$", token)

    def test_vault_faults_in_a_row_then_recovery(self):
        """One of each, back to back on new tokens, then logins work: fewer than the
        circuit breaker's 5 consecutive failures, so no cold login fails fast."""
        for rule in ({"status": 500}, {"status": 429}, {"mode": "reset"}, {"status": 503}):
            self.fail_next_creds(**rule)
            fields = self.refused(token=self.make_token(["roach-client"]))
            self.assertEqual(fields.get("C"), "08001", (rule, fields))
        self.assertTrue(self.proxy.running())
        self.assertGoodLogin(self.make_token(["roach-client"]))

    # -- upstream name -------------------------------------------------------

    def test_unresolvable_upstream_08001_and_lease_revoked(self):
        port = free_port()
        proxy = self.start_proxy(f"""
{self.vault_table()}
[[listener]]
bind = "127.0.0.1:{port}"
route = "nowhere"

[route.nowhere]
host = "no-such-host.invalid"
port = {self.pg.port}
ca_file = "{self.pg.ca}"
roles = ["crdb-role"]
default_database = "defaultdb"

{self.broker_tables()}
{self.NO_ADMIN}
[log]
level = "trace"
""", name="unresolvable-upstream")
        fields = self.refused(port=proxy.port)
        self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "08001"), fields)
        self.assertRegex(fields.get("M", ""), r"^cannot resolve no-such-host\.invalid: ")
        _, _, user, lease = self.last_closed_session(proxy, "upstream_unreachable")
        self.assertRegex(lease, r"^database/creds/crdb-role/")
        # Nothing left behind: the credential is revoked (revoke_idle_after = 2s) and its user dropped.
        self.lease_gone(lease, user)
        self.assertTrue(proxy.running())

    # -- audit log -------------------------------------------------------------

    def test_audit_log_unwritable_sessions_go_on_error_logged_once(self):
        port = free_port()
        proxy = self.start_proxy(self.single_listener_config(port, '[audit]\nfile = "/dev/full"\n'), name="audit-full")
        token = self.make_token(["roach-client"])
        for _ in range(5):  # each session is several audit events (issue, start, end)
            self.assertGoodLogin(token, port=proxy.port)
        self.assertGoodLogin(self.make_token(["roach-client"]), port=proxy.port)
        self.assertTrue(proxy.running())
        wait_for(lambda: len([row for row in proxy.closed_sessions() if row[1] == "ok"]) == 6,
                 what="six sessions closed ok")
        failures = re.findall(r"audit log /dev/full: write failed: No space left on device", proxy.output())
        self.assertEqual(len(failures), 1, proxy.output()[-3000:])
        self.assertEqual(proxy.stop(), 0)


class PgRestartTest(ProxyTestCase):
    """PostgreSQL restarted (fast shutdown) under live spliced sessions, with upstream
    reuse on."""

    pool_settings = {"reuse": True}
    # A kept connection must outlive the steps between its checkin and the restart.
    credentials_settings = {"revoke_idle_after": "60s"}

    def test_restart_under_live_sessions(self):
        token = self.make_token(["roach-client"])
        idle, in_tx, busy, kept = (self.raw() for _ in range(4))
        try:
            for r in (idle, in_tx, busy, kept):
                r.login(token)
            self.assertEqual(idle.query("select 1"), ([("1",)], None))
            self.assertEqual(in_tx.query("begin"), ([], None))
            self.assertEqual(in_tx.query("select 2"), ([("2",)], None))
            self.assertEqual(in_tx.status, "T")
            # The fourth leaves idle with Terminate: its upstream goes to the pool.
            kept_session = self.proxy.opened_sessions()[-1][0]
            kept.send(TERMINATE)
            self.assertTrue(kept.closed_without_reply(timeout=20))
            self.proxy.wait_log(r"%s: .* upstream connection kept for reuse" % kept_session, timeout=30)
            busy.send(query_message("select pg_sleep(120)"))
            wait_for(lambda: self.pg.admin_query(
                "select count(*) from pg_stat_activity where query = 'select pg_sleep(120)' and state = 'active'"
            )[0][0] == 1, what="the busy session's query running")

            self.pg.restart()

            # Each client gets PostgreSQL's own FATAL 57P01, then EOF: no hang, no
            # half-open connection. (The busy one had its query's RowDescription.)
            for name, r, before_error in (("idle", idle, []), ("in transaction", in_tx, []), ("busy", busy, ["T"])):
                msgs = read_to_end(r)
                self.assertEqual([t for t, _ in msgs], before_error + ["E"], "%s session: %r" % (name, msgs))
                fields = error_fields(msgs[-1][1])
                self.assertEqual((fields.get("S"), fields.get("C"), fields.get("M")),
                                 ("FATAL", "57P01", "terminating connection due to administrator command"),
                                 "%s session" % name)
        finally:
            for r in (idle, in_tx, busy, kept):
                r.close()

        self.assertTrue(self.proxy.running(), "vaultwire exited when PostgreSQL restarted")
        # New sessions on the same token (a cached credential, and a pool entry the
        # restart killed) and on a new token work.
        before = len(self.proxy.opened_sessions())
        for t in (token, token, self.make_token(["roach-client"])):
            with self.raw() as r:
                r.login(t)
                self.assertEqual(r.query("select 1"), ([("1",)], None))
                r.send(TERMINATE)
        first_after = self.proxy.opened_sessions()[before]
        self.assertEqual(first_after[5], "new", "the pool handed out an upstream the restart had closed")
        # psql too (a real client end to end).
        r = self.psql("select count(*) from pg_stat_activity where usename like 'v-token-%'", token=token)
        self.assertEqual(r.returncode, 0, r.stderr)


class PgMaxConnectionsTest(ProxyTestCase):
    """PostgreSQL with every non-reserved slot taken: its own 53300 reaches the client."""

    pg_max_connections = 12  # 9 slots for ordinary roles, 3 reserved for superusers (vault-dev)

    def fill_slots(self):
        """Direct connections as an ordinary role until PostgreSQL refuses one: (the open
        connections, the refusal's text)."""
        user, password = self.pg.env["PGH_SCRAM_USER"], self.pg.env["PGH_SCRAM_PASSWORD"]
        held = []
        for _ in range(self.pg_max_connections + 1):
            try:
                held.append(self.pg.connect(user, password))
            except psycopg2.OperationalError as e:
                return held, str(e)
        for c in held:
            c.close()
        self.fail("PostgreSQL accepted %d connections with max_connections = %d" % (len(held), self.pg_max_connections))

    def test_server_53300_passed_through(self):
        token = self.make_token(["roach-client"])
        held, refusal = self.fill_slots()
        try:
            self.assertIn("FATAL:  remaining connection slots are reserved for non-replication superuser connections",
                          refusal)
            fields = self.refused(token=token)
            # PostgreSQL's ErrorResponse as it sent it (its routine field included).
            self.assertEqual((fields.get("S"), fields.get("C"), fields.get("M")),
                             ("FATAL", "53300",
                              "remaining connection slots are reserved for non-replication superuser connections"))
            self.assertEqual(fields.get("R"), "InitPostgres")
            _, _, user, lease = self.last_closed_session(self.proxy, "upstream_refused")
            self.assertRegex(lease, r"^database/creds/crdb-role/")
            self.assertTrue(self.proxy.running())
        finally:
            for c in held:
                c.close()

        # A slot frees when a connection ends (its backend exits shortly after).
        def logged_in():
            try:
                with self.raw() as r:
                    r.login(token)
                    return r.query("select 1") == ([("1",)], None)
            except LoginRefused as e:
                if e.fields.get("C") != "53300":
                    raise
                return False
        wait_for(logged_in, timeout=30, interval=0.1, what="a login once the slots are free")


class ClientGoneMidQueryTest(ProxyTestCase):
    """A client that disappears while its statement runs."""

    APP = "vw-killed-client"
    LOCK_KEY = 4711

    def backend(self):
        """(pid, state) of the killed client's backend, or None once it is gone."""
        rows = self.pg.admin_query("select pid, state from pg_stat_activity where application_name = %s",
                                   (self.APP,))
        return rows[0] if rows else None

    def lock_held(self):
        return self.pg.admin_query("select count(*) from pg_locks where locktype = 'advisory' and objid = %s "
                                   "and granted", (self.LOCK_KEY,))[0][0] > 0

    def test_a_killed_clients_statement_is_cancelled_and_its_lock_freed(self):
        env = dict(os.environ, PGPASSWORD=self.token, PGAPPNAME=self.APP, PGSSLMODE="disable", PGCONNECT_TIMEOUT="20")
        env.pop("PGSERVICE", None)
        # A session-level lock: only the backend's exit frees it (a cancelled statement
        # alone would not).
        psql = subprocess.Popen([PSQL, "-X", "-h", "127.0.0.1", "-p", str(self.proxy.port), "-U", "crdb-role",
                                 "-d", "defaultdb", "-c",
                                 "select pg_advisory_lock(%d), pg_sleep(60)" % self.LOCK_KEY],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: (self.backend() or (None, None))[1] == "active" and self.lock_held(), timeout=30,
                     what="the client's statement running with its lock")
            pid = self.backend()[0]
            killed_at = time.monotonic()
            psql.send_signal(signal.SIGKILL)
            psql.wait(timeout=30)
            # Bounded, not timed: PostgreSQL alone would run the statement for its 60s.
            wait_for(lambda: self.backend() is None and not self.lock_held(), timeout=10, interval=0.05,
                     what="backend %d gone and advisory lock %d free after the client was killed"
                     % (pid, self.LOCK_KEY))
            sys.stderr.write("client killed during pg_sleep(60): its backend gone and its lock free %.2fs later\n"
                             % (time.monotonic() - killed_at))
        finally:
            if psql.poll() is None:
                psql.kill()
                psql.wait()
        self.proxy.wait_log(r"the session ended \(client\) with a request in flight: cancelling it on the server")


if __name__ == "__main__":
    unittest.main()
