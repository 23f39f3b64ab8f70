"""End to end: real clients through a real vaultwire to a real PostgreSQL, with
credentials from vault-dev. Each class has its own PostgreSQL, vault-dev and
vaultwire on free loopback ports.

Run by ctest (label integration) with VAULTWIRE_BIN, VAULT_DEV_BIN and PG_HARNESS set.
"""
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import ProxyTestCase, wait_for  # noqa: E402

import psycopg2  # noqa: E402


class ProxyTest(ProxyTestCase):
    def test_psql_session_user_is_dynamic_and_lease_is_revoked(self):
        r = self.psql("select session_user, current_user")
        self.assertEqual(r.returncode, 0, r.stderr + self.proxy.output())
        session_user, current_user = r.stdout.strip().split("|")
        self.assertRegex(session_user, r"^v-token-[A-Za-z0-9-]+-crdb-rol-[A-Za-z0-9]{20}-\d+$")
        self.assertEqual(current_user, "app_owner")
        # The credential is cached for the token; once no session has used it for
        # [credentials] revoke_idle_after (2s in the fixture), vaultwire revokes the lease
        # and Vault drops the SQL user.
        rows = wait_for(lambda: [row for row in self.proxy.closed_sessions() if row[2] == session_user],
                        what="the psql session's close line")
        lease = rows[-1][3]
        self.assertRegex(lease, r"^database/creds/crdb-role/")
        self.lease_gone(lease, session_user, timeout=30)

    def test_privileged_query_is_refused(self):
        r = self.psql("select * from pg_authid")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("permission denied for table pg_authid", r.stderr)

    def test_bad_token_gets_28P01_with_vaults_text(self):
        r = self.psql("select 1", token="hvs.not-a-token")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Vault rejected the token: permission denied", r.stderr)
        conn_err = None
        try:
            psycopg2.connect(host="127.0.0.1", port=self.proxy.port, user="crdb-role", dbname="defaultdb",
                             password="hvs.not-a-token", sslmode="disable")
        except psycopg2.OperationalError as e:
            conn_err = str(e)
        self.assertIn("Vault rejected the token", conn_err)

    def test_role_not_allowed_gets_28000(self):
        r = self.psql("select 1", user="someone-else")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('role "someone-else" is not allowed on this listener; allowed roles: crdb-role', r.stderr)

    def test_psycopg2_roundtrip_and_cancel(self):
        conn = psycopg2.connect(host="127.0.0.1", port=self.proxy.port, user="crdb-role", dbname="defaultdb",
                                password=self.token, sslmode="disable")
        try:
            cur = conn.cursor()
            cur.execute("create table if not exists t_rt (id int primary key, payload text)")
            cur.execute("insert into t_rt select g, repeat('x', 1000) from generate_series(1, 2000) g "
                        "on conflict do nothing")
            cur.execute("select count(*), sum(length(payload)) from t_rt")
            self.assertEqual(cur.fetchone(), (2000, 2000000))
            conn.commit()
            # Cancel a long query through vaultwire's own key.
            timer = threading.Timer(0.5, conn.cancel)
            timer.start()
            with self.assertRaises(psycopg2.errors.QueryCanceled):
                cur.execute("select pg_sleep(30)")
            timer.join()
            conn.rollback()
            cur.execute("select 1")
            self.assertEqual(cur.fetchone(), (1,))
        finally:
            conn.close()

    def test_no_token_in_log(self):
        self.psql("select 1")
        log = self.proxy.output()
        self.assertTrue(len(self.token) > 10)
        self.assertNotIn(self.token, log)
        for secret in self.vault.dev("GET", "secrets")["passwords"]:
            self.assertNotIn(secret, log)


if __name__ == "__main__":
    unittest.main()
