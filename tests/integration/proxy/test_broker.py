"""The credential broker end to end (issue 5, DESIGN.md "Credentials and leases"): one
credential per token shared by its connections (single flight), never across tokens;
idle leases revoked after revoke_idle_after, with vaultwire's own token_file token when
the client's may not; renewal (the lease's expiry and the SQL user's VALID UNTIL move);
the kill-switch (a revoked token, a lease revoked in Vault), with revoke_grace ending an
open transaction and cancelling its running statement; expiry at a transaction
boundary when the max TTL is reached; revocation of every lease at SIGTERM; the lease
budget (53300).

Truth comes from vault-dev (/_dev/counters, /_dev/leases) and PostgreSQL (pg_roles);
timers are short (fixture: revoke_idle_after 2s, token_recheck 1s) and every wait is a
generous multiple of them.
"""
import json
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (CREATION, REVOCATION, ClosedError, LoginRefused, ProxyTestCase, Raw,  # noqa: E402
                           error_fields, free_port, query_message, wait_for)
from vaultdev_fixture import now_utc, parse_rfc3339  # noqa: E402

ROLES = ["crdb-role", "short-role", "capped-role", "renew-role"]
CLIENT_POLICY = "".join('path "database/creds/%s" { capabilities = ["read"] }\n'
                        'path "sys/leases/revoke/database/creds/%s/*" { capabilities = ["update"] }\n' % (r, r)
                        for r in ROLES)
# A client that may read credentials but not revoke them (Vault's default policy adds renew).
NO_REVOKE_POLICY = 'path "database/creds/crdb-role" { capabilities = ["read"] }\n'
# vaultwire's own identity ([vault] token_file): lease management only, no credentials.
# It revokes with the lease id in the body (the form Vault Proxy's lease cache acts on).
VAULTWIRE_POLICY = ('path "sys/leases/revoke" { capabilities = ["update"] }\n'
                    'path "sys/leases/renew" { capabilities = ["update"] }\n')

TOKEN_REVOKED = ("terminating connection: the Vault token that opened this session was revoked or has expired; "
                 "reconnect with a valid token")
LEASE_GONE = ("terminating connection: Vault no longer knows this session's database credential "
              "(its lease was revoked); reconnect")
# [credentials] revoke_grace = "2s" over: the session ends inside its transaction.
TOKEN_REVOKED_AFTER_GRACE = ("terminating connection: the Vault token that opened this session was revoked or has "
                             "expired, and its transaction was still open after [credentials] revoke_grace (2s); the "
                             "transaction is rolled back; reconnect with a valid token")
LEASE_GONE_AFTER_GRACE = ("terminating connection: Vault no longer knows this session's database credential (its lease "
                          "was revoked), and its transaction was still open after [credentials] revoke_grace (2s); the "
                          "transaction is rolled back; reconnect")
ADVISORY_KEY = 880808  # a lock the busy session holds: free once its backend is gone
EXPIRES_NOTICE = "the database credential of this session expires in"
EXPIRES_FATAL = ("terminating connection: the database credential of this session expires (its lease reached "
                 "Vault's max TTL); reconnect")
# Vault's answer to a renewal whose database call failed: 400, like every renewal error
# (expiration.go renewEntry wraps the backend's error; handleRenew answers it with 400).
RENEW_DB_DOWN = ("failed to renew entry: resp: (*logical.Response)(nil) err: failed to connect to `host=127.0.0.1 "
                 "user=vault database=defaultdb`: dial error (dial tcp 127.0.0.1:5432: connect: connection refused)")


class BrokerTest(ProxyTestCase):
    pg_max_connections = 300  # 200 simultaneous sessions plus the harness' own
    route_roles = ROLES
    credentials_settings = {"expiry_notice": "1m"}  # longer than capped-role's max TTL

    @classmethod
    def setup_vault(cls):
        # Renewed every ~2/3 of 10s, up to an hour.
        cls.root.write("database/roles/short-role", db_name="crdb-config", creation_statements=CREATION,
                       revocation_statements=REVOCATION, default_ttl="10s", max_ttl="1h")
        # Renewed every ~2/3 of 20s: room for a few retries before the lease would end.
        cls.root.write("database/roles/renew-role", db_name="crdb-config", creation_statements=CREATION,
                       revocation_statements=REVOCATION, default_ttl="20s", max_ttl="1h")
        # 10s leases that cannot live past 12s: the first renewal (~7s) is capped.
        cls.root.write("database/roles/capped-role", db_name="crdb-config", creation_statements=CREATION,
                       revocation_statements=REVOCATION, default_ttl="10s", max_ttl="12s")
        cls.root.sys.create_or_update_policy("broker-client", CLIENT_POLICY)
        cls.root.sys.create_or_update_policy("no-revoke", NO_REVOKE_POLICY)
        cls.root.sys.create_or_update_policy("vaultwire-self", VAULTWIRE_POLICY)
        cls.token = cls.make_token(["broker-client"])

    @classmethod
    def proxy_config(cls):
        # 200 TLS logins to one PostgreSQL on a shared machine: the connect timeout is not
        # what these tests measure.
        return cls.single_listener_config(cls.port, '[limits]\nupstream_connect_timeout = "60s"\n')

    # -- helpers -----------------------------------------------------------

    def fresh_token(self, policy="broker-client"):
        return self.make_token([policy])

    def session(self, token, role="crdb-role", port=None, timeout=30.0):
        """A logged-in raw session: (Raw, session_user)."""
        r = Raw(port or self.proxy.port, timeout=timeout)
        try:
            r.login(token, user=role)
            rows, err = r.query("select session_user")
            self.assertIsNone(err)
            return r, rows[0][0]
        except BaseException:
            r.close()
            raise

    def lease_of(self, user, proxy=None):
        """The lease id vaultwire logged for the sessions of SQL user `user`."""
        proxy = proxy or self.proxy
        rows = wait_for(lambda: [row for row in proxy.opened_sessions() if row[1] == user],
                        what="a session open line for %s" % user)
        leases = {row[2] for row in rows}
        self.assertEqual(len(leases), 1, "one SQL user, several leases: %r" % leases)
        lease = leases.pop()
        self.assertRegex(lease, r"^database/creds/[a-z-]+/")
        return lease

    def dev_lease(self, lease):
        """vault-dev's record of a live lease, or None."""
        for entry in self.vault.dev_leases():
            if entry["lease_id"] == lease:
                return entry
        return None

    def login_refusal(self, token, port=None):
        """None when a login with token succeeds (the session is closed again), else the
        refusal's ErrorResponse fields."""
        with Raw(port or self.proxy.port) as r:
            try:
                r.login(token)
                return None
            except LoginRefused as e:
                return e.fields

    def revoke_requests(self, lease):
        """Requests to revoke `lease` vault-dev has seen (vaultwire uses sys/leases/revoke/<id>)."""
        return self.vault.dev("GET", "counters")["paths"].get("sys/leases/revoke/" + lease, 0)

    def assertEndsWithFatal(self, r, sqlstate, message, timeout=30.0):
        """The next message is FATAL sqlstate/message, then vaultwire closes."""
        r.sock.settimeout(timeout)
        self.assertRefusal(r.read_error(), sqlstate, message)
        self.assertTrue(r.closed_without_reply(), "the session stayed open after its FATAL")

    # -- the cache -----------------------------------------------------------

    def test_200_simultaneous_cold_connections_one_creds_request(self):
        token = self.fresh_token()
        before = self.creds_reads()
        # The one Vault request takes 3s, so every connection misses the cache while it
        # is in flight: without single flight each would ask Vault for its own.
        self.vault.dev("POST", "fail", {"path": "database/creds/crdb-role", "count": 1, "mode": "delay",
                                        "delay_ms": 3000})
        n = 200
        barrier = threading.Barrier(n)
        results = [None] * n
        conns = [None] * n

        def client(i):
            try:
                barrier.wait(timeout=60)
                conns[i] = r = Raw(self.proxy.port, timeout=120)
                r.login(token)
                rows, err = r.query("select session_user")
                results[i] = rows[0][0] if err is None else err
            except BaseException as e:  # reported below
                results[i] = e

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=180)
            self.assertFalse([t for t in threads if t.is_alive()], "clients still running after 180s")
            failed = [(i, res) for i, res in enumerate(results) if not isinstance(res, str)]
            self.assertEqual(failed, [], "%d of %d connections failed, e.g. %r" % (len(failed), n, failed[:3]))
            self.assertEqual(self.creds_reads() - before, 1, "Vault was asked for more than one credential")
            self.assertEqual(len(set(results)), 1, "the connections got different SQL users: %r" % set(results))
            self.assertRegex(results[0], r"^v-token-")
        finally:
            self.vault.dev("DELETE", "fail")
            for r in conns:
                if r is not None:
                    r.close()

    def test_two_tokens_never_share_a_credential(self):
        a_token, b_token = self.fresh_token(), self.fresh_token()
        before = self.creds_reads()
        a, a_user = self.session(a_token)
        b, b_user = self.session(b_token)
        a2, a2_user = self.session(a_token)
        try:
            self.assertNotEqual(a_user, b_user, "two tokens were given one credential")
            self.assertEqual(a_user, a2_user, "one token's second connection did not reuse its credential")
            self.assertEqual(self.creds_reads() - before, 2)
            self.assertNotEqual(self.lease_of(a_user), self.lease_of(b_user))
        finally:
            for r in (a, b, a2):
                r.close()

    def test_idle_lease_is_revoked_after_revoke_idle_after_and_the_user_is_gone(self):
        token = self.fresh_token()
        before = self.creds_reads()
        r, user = self.session(token)
        try:
            lease = self.lease_of(user)
            # In use for well over revoke_idle_after (2s): the lease stays.
            started = time.monotonic()
            while time.monotonic() - started < 5.0:
                self.assertEqual(r.query("select 1"), ([("1",)], None))
                self.assertIsNotNone(self.dev_lease(lease), "lease revoked while a session used it")
                time.sleep(0.25)  # pacing of the probe, not synchronization
        finally:
            r.close()
        wait_for(lambda: [row for row in self.proxy.closed_sessions() if row[2] == user],
                 what="the session's close line")
        # Right after the last session: still cached, so a new connection reuses it.
        r, again = self.session(token)
        r.close()
        self.assertEqual(again, user, "the credential was dropped at disconnect instead of after revoke_idle_after")
        self.assertEqual(self.creds_reads() - before, 1)
        # Then, unused for revoke_idle_after, it is revoked (its TTL is an hour) and Vault
        # drops the SQL user.
        self.lease_gone(lease, user, timeout=30)

    # -- kill-switch: the token --------------------------------------------

    def test_revoked_token_refuses_new_connections_ends_idle_session_and_waits_for_commit(self):
        token = self.fresh_token()
        idle, user = self.session(token)
        txn, txn_user = self.session(token)
        try:
            self.assertEqual(txn_user, user)
            self.assertEqual(txn.query("begin"), ([], None))
            self.assertEqual(txn.query("select 1"), ([("1",)], None))
            self.assertEqual(txn.status, "T")

            self.root.auth.token.revoke(token)

            # The idle session ends at once (within a few rechecks) with the reason.
            self.assertEndsWithFatal(idle, "57P01", TOKEN_REVOKED)
            # New connections with the token are refused.
            fields = wait_for(lambda: self.login_refusal(token), timeout=15, interval=0.2,
                              what="a login with the revoked token refused")
            self.assertEqual((fields["S"], fields["C"]), ("FATAL", "28P01"), fields)
            # The session inside its transaction is not cut (several rechecks later) ...
            self.assertFalse(txn.has_pending(timeout=3.0),
                             "vaultwire cut (or wrote to) a session inside an open transaction")
            # ... and ends right after its COMMIT's reply. Vault has dropped the user, so the
            # server may refuse the COMMIT; a failed transaction needs a ROLLBACK to be idle.
            rows, err = txn.query("commit")
            if err is not None:
                self.assertNotEqual(err.get("C"), "57P01", "vaultwire's FATAL came before the COMMIT's reply")
                self.assertEqual(err.get("S"), "ERROR", err)
            if txn.status == "E":
                rows, err = txn.query("rollback")
            self.assertEqual(txn.status, "I")
            self.assertEndsWithFatal(txn, "57P01", TOKEN_REVOKED)
        finally:
            idle.close()
            txn.close()

    # -- kill-switch: revoke_grace bounds an open transaction -----------------

    def fatal_after_row_description(self, r, timeout=60.0):
        """The ErrorResponse that ends a session running a query: the query's RowDescription
        may come first (PostgreSQL sends it before executing). Its fields; then EOF."""
        r.sock.settimeout(timeout)
        t, body = r.read_message()
        if t == "T":
            t, body = r.read_message()
        self.assertEqual(t, "E", body[:200])
        self.assertTrue(r.closed_without_reply(), "the session stayed open after its FATAL")
        return error_fields(body)

    def backend_and_lock_gone(self, pid):
        active = self.pg.admin_query("select count(*) from pg_stat_activity where pid = %s and state = 'active'",
                                     (pid,))[0][0]
        held = self.pg.admin_query("select count(*) from pg_locks where locktype = 'advisory' and objid = %s "
                                   "and granted", (ADVISORY_KEY,))[0][0]
        return active == 0 and held == 0

    def test_revoke_grace_ends_a_revoked_tokens_open_transaction_and_cancels_its_query(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"revoke_grace": "2s"}),
                                 name="revoke-grace")
        token = self.fresh_token()
        txn, _ = self.session(token, port=proxy.port)
        busy, _ = self.session(token, port=proxy.port)
        try:
            self.assertEqual(txn.query("begin"), ([], None))
            self.assertEqual(txn.query("select 1"), ([("1",)], None))
            self.assertEqual(txn.status, "T")
            # The other session holds a lock and runs a long statement inside its transaction.
            self.assertEqual(busy.query("begin"), ([], None))
            rows, err = busy.query("select pg_backend_pid(), pg_advisory_lock(%d)" % ADVISORY_KEY)
            self.assertIsNone(err)
            pid = int(rows[0][0])
            busy.send(query_message("select pg_sleep(60)"))
            wait_for(lambda: self.pg.admin_query(
                "select count(*) from pg_stat_activity where pid = %s and state = 'active'", (pid,))[0][0] == 1,
                what="the busy session's statement running")

            revoked_at = time.monotonic()
            self.root.auth.token.revoke(token)
            # No COMMIT ever comes: after revoke_grace (from when vaultwire saw the
            # revocation, within a recheck) both end where they are, naming the cause.
            self.assertEndsWithFatal(txn, "57P01", TOKEN_REVOKED_AFTER_GRACE, timeout=60)
            txn_ended = time.monotonic() - revoked_at
            self.assertRefusal(self.fatal_after_row_description(busy), "57P01", TOKEN_REVOKED_AFTER_GRACE)
            busy_ended = time.monotonic() - revoked_at
            # The running statement was cancelled and its connection closed: the backend
            # is gone and its lock free.
            wait_for(lambda: self.backend_and_lock_gone(pid), timeout=30,
                     what="the busy session's backend gone and its lock free")
            freed = time.monotonic() - revoked_at
            sys.stderr.write("revoke_grace 2s, token_recheck 1s: from the token's revocation, the session in a "
                             "transaction ended after %.2fs, the one running pg_sleep(60) after %.2fs, its backend "
                             "gone and lock free after %.2fs\n" % (txn_ended, busy_ended, freed))
            self.last_closed_session(proxy, "revoke_grace")
        finally:
            txn.close()
            busy.close()

    def test_revoke_grace_ends_an_open_transaction_whose_lease_is_gone(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"revoke_grace": "2s"}),
                                 name="revoke-grace-lease")
        token = self.fresh_token()
        r, user = self.session(token, role="short-role", port=proxy.port)
        try:
            self.assertEqual(r.query("begin"), ([], None))
            self.assertEqual(r.query("select 1"), ([("1",)], None))
            lease = self.lease_of(user, proxy=proxy)
            revoked_at = time.monotonic()
            self.root.sys.revoke_lease(lease)
            # The next renewal (within ~2/3 of 10s) finds the lease gone; revoke_grace later
            # the session ends inside its transaction.
            self.assertEndsWithFatal(r, "57P01", LEASE_GONE_AFTER_GRACE, timeout=60)
            sys.stderr.write("revoke_grace 2s, a 10s lease: the session in a transaction ended %.2fs after its "
                             "lease was revoked in Vault\n" % (time.monotonic() - revoked_at))
        finally:
            r.close()

    def test_on_revoke_now_cuts_an_open_transaction(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"on_revoke": "now"}),
                                 name="on-revoke-now")
        token = self.fresh_token()
        txn, _ = self.session(token, port=proxy.port)
        try:
            self.assertEqual(txn.query("begin"), ([], None))
            self.assertEqual(txn.query("select 1"), ([("1",)], None))
            self.root.auth.token.revoke(token)
            # No COMMIT: the session ends anyway, within a few rechecks.
            self.assertEndsWithFatal(txn, "57P01", TOKEN_REVOKED)
        finally:
            txn.close()

    def test_on_revoke_ignore_lets_sessions_run(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"on_revoke": "ignore"}),
                                 name="on-revoke-ignore")
        token = self.fresh_token()
        r, _ = self.session(token, port=proxy.port)
        try:
            self.root.auth.token.revoke(token)
            # vaultwire has seen the revocation once it refuses the token ...
            fields = wait_for(lambda: self.login_refusal(token, port=proxy.port), timeout=15, interval=0.2,
                              what="a login with the revoked token refused")
            self.assertEqual((fields["S"], fields["C"]), ("FATAL", "28P01"), fields)
            # ... and the live session is left alone (several rechecks later): no FATAL, and
            # it still carries queries (the server may refuse them: Vault dropped the user).
            self.assertFalse(r.has_pending(timeout=3.0), "vaultwire wrote to a session with on_revoke = ignore")
            rows, err = r.query("select 1")
            if err is not None:
                self.assertNotEqual(err.get("C"), "57P01", err)
                self.assertEqual(err.get("S"), "ERROR", err)
            self.assertEqual(r.status, "I")
        finally:
            r.close()

    def test_a_rejected_token_is_remembered(self):
        # negative_cache long enough that timing cannot matter: the first login's Vault
        # requests answer a flood of logins with a token Vault does not know.
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"negative_cache": "1m"}),
                                 name="negative-cache")
        bad = "hvs.NotAToken" + "x" * 11

        def vault_requests():
            paths = self.vault.dev("GET", "counters")["paths"]
            return sum(n for p, n in paths.items() if p in ("database/creds/crdb-role", "auth/token/lookup-self"))

        before = vault_requests()
        for _ in range(10):
            fields = self.refused(port=proxy.port, token=bad)
            self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "28P01"), fields)
            self.assertIn("Vault rejected the token", fields.get("M", ""))
        # The first login sends the new token's creds request and its lookup-self
        # together; none after.
        self.assertEqual(vault_requests() - before, 2, "a rejected token was sent to Vault again")

    # -- a cached credential the server refuses -----------------------------

    def test_upstream_28P01_for_a_cached_credential_fetches_a_fresh_one(self):
        token = self.fresh_token()
        before = self.creds_reads()
        first, user = self.session(token)
        try:
            # The cached credential stops working (its password changed behind Vault's back).
            self.pg.admin_query('ALTER ROLE "%s" PASSWORD NULL' % user)
            second, other = self.session(token)
            second.close()
            self.assertNotEqual(other, user, "the refused credential was served again")
            self.assertEqual(self.creds_reads() - before, 2)
            # A third connection uses the fresh credential from the cache.
            third, again = self.session(token)
            third.close()
            self.assertEqual(again, other)
            self.assertEqual(self.creds_reads() - before, 2)
        finally:
            first.close()

    # -- vaultwire's own token ----------------------------------------------

    def test_token_file_revokes_idle_leases_the_client_token_may_not(self):
        client = self.fresh_token("no-revoke")
        # The client's token really may not revoke its lease.
        denied = self.vault.raw("PUT", "sys/leases/revoke", {"lease_id": "database/creds/crdb-role/x"}, token=client)
        self.assertEqual(denied.status, 403, denied)

        # Control: without token_file, vaultwire tries with the client's token, is denied,
        # and the lease stays (until its TTL).
        r, user = self.session(client)
        r.close()
        lease = self.lease_of(user)
        wait_for(lambda: self.revoke_requests(lease) > 0, timeout=30, what="vaultwire's attempt to revoke %s" % lease)
        self.assertIsNotNone(self.dev_lease(lease), "a token without revoke rights revoked a lease")
        self.proxy.wait_log(r"denied revoking lease", what="the denial logged")

        # With token_file: vaultwire revokes with its own token.
        path = os.path.join(self.tmp, "vaultwire-token")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.fresh_token("vaultwire-self") + "\n")
        proxy = self.start_proxy(self.single_listener_config(free_port(), vault={"token_file": path}),
                                 name="token-file")
        other = self.fresh_token("no-revoke")
        r, user = self.session(other, port=proxy.port)
        r.close()
        self.lease_gone(self.lease_of(user, proxy), user, timeout=30)

    # -- renewal and expiry -------------------------------------------------

    def test_lease_in_use_is_renewed_and_valid_until_advances(self):
        r, user = self.session(self.fresh_token(), role="short-role")
        try:
            lease = self.lease_of(user)
            first = self.dev_lease(lease)
            self.assertIsNotNone(first)
            expiries = {first["expire_time"]}
            valid = {self.pg.role(user)["rolvaliduntil"]}
            started = time.monotonic()
            # A 30s session on 10s leases.
            while time.monotonic() - started < 30.0:
                self.assertEqual(r.query("select 1"), ([("1",)], None))
                entry = self.dev_lease(lease)
                self.assertIsNotNone(entry, "the lease of a live session ended")
                expiries.add(entry["expire_time"])
                valid.add(self.pg.role(user)["rolvaliduntil"])
                time.sleep(0.5)  # pacing of the probe, not synchronization
        finally:
            r.close()
        # About one renewal every 6.7s: at least two in 30s.
        self.assertGreaterEqual(len(expiries), 3, sorted(expiries))
        self.assertGreater(max(parse_rfc3339(e) for e in expiries), parse_rfc3339(first["expire_time"]))
        self.assertGreaterEqual(len(valid), 3, sorted(valid))
        self.assertGreater(max(valid), min(valid))

    def test_max_ttl_notice_then_end_at_the_next_idle_point(self):
        token = self.fresh_token()
        idle, user = self.session(token, role="capped-role")
        txn, txn_user = self.session(token, role="capped-role")
        try:
            lease = self.lease_of(user)
            self.assertEqual(txn.query("begin"), ([], None))
            self.assertEqual(txn.query("select 1"), ([("1",)], None))

            # The idle session: the notice (when the capped renewal shows the max TTL) ...
            idle.sock.settimeout(30)
            t, body = idle.read_message()
            self.assertEqual(t, "N", (t, body[:200]))
            notice = error_fields(body)
            self.assertEqual((notice.get("S"), notice.get("V"), notice.get("C")), ("WARNING", "WARNING", "01000"))
            self.assertTrue(notice["M"].startswith(EXPIRES_NOTICE), notice["M"])
            # ... then the end at its next idle point: at once (it is idle) or after the
            # whole reply to a query; never in the middle of one.
            try:
                idle.send(query_message("select 1"))
            except OSError:
                pass
            seen = []
            while True:
                t, body = idle.read_message()
                if t == "E":
                    break
                seen.append(t)
            self.assertIn(seen, ([], ["T", "D", "C", "Z"]))
            self.assertRefusal(error_fields(body), "57P01", EXPIRES_FATAL)
            self.assertTrue(idle.closed_without_reply())

            # The session inside a transaction gets the notice too, is not cut at an idle
            # point it never reaches, and is closed at the expiry itself.
            txn.sock.settimeout(30)
            t, body = txn.read_message()
            self.assertEqual(t, "N", (t, body[:200]))
            self.assertTrue(error_fields(body)["M"].startswith(EXPIRES_NOTICE))
            txn_lease = self.lease_of(txn_user)
            entry = self.dev_lease(txn_lease)
            expires = parse_rfc3339(entry["expire_time"]) if entry else None
            try:
                t, body = txn.read_message()
                ended = now_utc()
                self.assertEqual(t, "E", (t, body[:200]))
                fields = error_fields(body)
                self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "57P01"), fields)
                self.assertTrue(fields["M"].startswith("terminating connection: the database credential of this "
                                                       "session expire"), fields["M"])
                self.assertTrue(txn.closed_without_reply())
            except ClosedError:
                ended = now_utc()
            if expires is not None:
                self.assertGreater(ended.timestamp(), expires.timestamp() - 2.0,
                                   "a session inside a transaction was closed well before its lease expired")
        finally:
            idle.close()
            txn.close()
        # After the last session the lease is gone (max TTL reached) and so is the user.
        self.lease_gone(lease, user, timeout=30)

    def test_renewal_answered_400_by_vaults_failing_database_is_retried_and_the_session_lives(self):
        """Vault's database connection fails while the sessions' PostgreSQL stays up:
        Vault answers the renewals 400 "failed to renew entry: ...". That is not the
        lease gone: vaultwire retries with backoff and the session goes on. The audit
        log calls such a renewal, and such a revocation, "failed" (not "gone")."""
        audit = os.path.join(self.tmp, "renew-audit.jsonl")
        proxy = self.start_proxy(self.single_listener_config(free_port(), '[audit]\nfile = "%s"\n' % audit),
                                 name="renew-retry")
        r, user = self.session(self.fresh_token(), role="renew-role", port=proxy.port)
        try:
            lease = self.lease_of(user, proxy)
            first = self.dev_lease(lease)["expire_time"]
            self.vault.dev("POST", "fail", {"path": "sys/leases/renew", "method": "PUT", "count": 2, "status": 400,
                                            "errors": [RENEW_DB_DOWN]})
            # Both failures are logged and retried, then a renewal works.
            line = proxy.wait_log(r"renewing lease %s failed \(bad_request [^\n]*; 2 in a row\); retrying in "
                                  r"(\d+)ms while its TTL lasts \((\d+)s left\)" % re.escape(lease),
                                  timeout=40, what="the second failed renewal, retried")

            def renewed_expiry():
                entry = self.dev_lease(lease)
                return entry is not None and entry["expire_time"] != first and entry["expire_time"]
            renewed = wait_for(renewed_expiry, timeout=30, what="the lease renewed after the failures")
            self.assertEqual(self.vault.dev("GET", "fail"), [], "vaultwire did not try the renewal again")
            print("\n%s; lease expire_time %s -> %s" % (line.group(0), first, renewed), file=sys.stderr)
            # The session was never told to end, and it still works.
            self.assertFalse(r.has_pending(0.5), "vaultwire sent the session something while renewals failed")
            self.assertEqual(r.query("select 1"), ([("1",)], None))
            self.assertNotRegex(proxy.output(), r"lease %s is gone" % re.escape(lease))
        finally:
            self.vault.dev("DELETE", "fail")
            r.close()
        # Idle now: the revocation fails the same way once, then is retried and works.
        self.vault.dev("POST", "fail", {"path": "sys/leases/revoke/" + lease, "count": 1, "status": 400, "errors": [
            "failed to revoke entry: resp: (*logical.Response)(nil) err: failed to connect to `host=127.0.0.1`"]})
        try:
            self.lease_gone(lease, user, timeout=30)
        finally:
            self.vault.dev("DELETE", "fail")

        def audit_results(event):
            rows = [json.loads(x) for x in (proxy.audit_text() or "").splitlines() if x.strip()]
            return [(o["result"], o.get("reason", "")) for o in rows
                    if o.get("event") == event and o.get("lease_id") == lease]
        renewals = wait_for(lambda: [x for x in audit_results("credential_renew") if x[0] == "ok"] and
                            audit_results("credential_renew"), what="the renewal audit events")
        self.assertEqual(renewals[:3], [("failed", RENEW_DB_DOWN), ("failed", RENEW_DB_DOWN), ("ok", "")])
        revocations = wait_for(lambda: len(audit_results("credential_revoke")) >= 2 and
                               audit_results("credential_revoke"), what="the revocation audit events")
        self.assertEqual([x[0] for x in revocations], ["failed", "ok"])

    # -- kill-switch: the lease ---------------------------------------------

    def test_lease_revoked_in_vault_ends_the_session(self):
        token = self.fresh_token()
        r, user = self.session(token, role="short-role")
        try:
            lease = self.lease_of(user)
            self.root.sys.revoke_lease(lease)
            self.assertIsNone(self.dev_lease(lease))
            # The next renewal (within ~2/3 of 10s) finds the lease gone.
            self.assertEndsWithFatal(r, "57P01", LEASE_GONE, timeout=30)
        finally:
            r.close()
        # The token is still good: a new connection gets a new credential.
        r, again = self.session(token, role="short-role")
        r.close()
        self.assertNotEqual(again, user)

    # -- shutdown and budget -----------------------------------------------

    def test_sigterm_revokes_every_lease(self):
        # revoke_idle_after far beyond the test: only the shutdown revokes.
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"revoke_idle_after": "1h"}),
                                 name="sigterm")
        live, live_user = self.session(self.fresh_token(), port=proxy.port)
        idle, idle_user = self.session(self.fresh_token(), port=proxy.port)
        idle.close()
        try:
            leases = {self.lease_of(live_user, proxy), self.lease_of(idle_user, proxy)}
            self.assertEqual(len(leases), 2)
            wait_for(lambda: [row for row in proxy.closed_sessions() if row[2] == idle_user],
                     what="the idle session's close line")
            self.assertEqual(leases - self.vault.dev_lease_ids(), set(), "a lease ended before the shutdown")
            proxy.signal()
            self.assertEqual(proxy.proc.wait(timeout=60), 0, proxy.output())
        finally:
            live.close()
        # Revoked before vaultwire exited; Vault dropped the users before answering.
        self.assertEqual(leases & self.vault.dev_lease_ids(), set(), "leases left live after the shutdown")
        self.assertFalse([u for u in (live_user, idle_user) if self.pg.role_exists(u)])
        stats = proxy.stats()
        self.assertIsNotNone(stats, "no stats line at shutdown")
        self.assertEqual(stats.get("vault_fetches"), 2, stats)

    def test_lease_budget_refuses_a_new_credential_with_53300(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"max_leases": 1}),
                                 name="budget")
        first = self.fresh_token()
        second = self.fresh_token()
        r, user = self.session(first, port=proxy.port)
        try:
            # The first token's own second connection needs no new credential.
            r2, user2 = self.session(first, port=proxy.port)
            r2.close()
            self.assertEqual(user2, user)
            before = self.creds_reads()
            fields = self.refused(port=proxy.port, token=second)
            self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "53300"), fields)
            self.assertIn("max_leases", fields.get("M", ""))
            self.assertEqual(self.creds_reads(), before, "a refused credential still cost a Vault request")
        finally:
            r.close()
        # Once the first lease is revoked (idle), the budget has room again.
        lease = self.lease_of(user, proxy)
        self.lease_gone(lease, user, timeout=30)
        wait_for(lambda: self.login_refusal(second, port=proxy.port) is None, timeout=30, interval=0.5,
                 what="the second token admitted after the first lease was revoked")

    def test_a_revoked_tokens_lease_does_not_hold_the_budget(self):
        # Vault revokes a token's leases with the token: the lease is no longer live, so it
        # must not keep counting against max_leases (for the rest of its TTL, an hour).
        proxy = self.start_proxy(self.single_listener_config(free_port(), credentials={"max_leases": 1}),
                                 name="budget-revoked")
        first = self.fresh_token()
        r, user = self.session(first, port=proxy.port)
        try:
            lease = self.lease_of(user, proxy)
            self.root.auth.token.revoke(first)
            self.assertEndsWithFatal(r, "57P01", TOKEN_REVOKED)
        finally:
            r.close()
        self.lease_gone(lease, user, timeout=30)
        second = self.fresh_token()
        wait_for(lambda: self.login_refusal(second, port=proxy.port) is None, timeout=30, interval=0.5,
                 what="a new token admitted once the revoked token's lease is gone")


if __name__ == "__main__":
    unittest.main()
