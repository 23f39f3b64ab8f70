"""route.session_role against PostgreSQL 15, end to end through vaultwire and vault-dev.

The Vault role here creates users IN ROLE app_owner but without the `ALTER ROLE ... SET
ROLE` default, so only vaultwire's SET ROLE can make current_user the owner role:
- with session_role = "app_owner", session_user is the dynamic user and current_user
  app_owner on a new upstream, what the session creates is owned by app_owner, a
  client's RESET ROLE is its own business, and after reuse (DISCARD ALL resets the role
  on PostgreSQL) the next client is app_owner again;
- without session_role current_user is the dynamic user (the control);
- a session_role the server refuses reaches the client as FATAL with the server's
  SQLSTATE and text, and that upstream connection is not kept.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import free_port, toml_value  # noqa: E402
from test_reuse import ReuseTestBase  # noqa: E402

PLAIN_CREATION = ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
                  "IN ROLE app_owner;")


class SessionRoleTest(ReuseTestBase):
    pool_settings = {"reuse": True}
    LONG_IDLE = {"revoke_idle_after": "60s"}

    @classmethod
    def setup_vault(cls):
        cls.root.write("database/roles/crdb-role", db_name="crdb-config", creation_statements=PLAIN_CREATION,
                       revocation_statements=cls.root.read("database/roles/crdb-role")["data"]
                       ["revocation_statements"], default_ttl="1h", max_ttl="24h")

    def proxy_with_role(self, role):
        text = self.single_listener_config(free_port(), credentials=self.LONG_IDLE)
        if role is not None:
            anchor = 'default_database = "defaultdb"\n'
            self.assertIn(anchor, text)
            text = text.replace(anchor, anchor + "session_role = %s\n" % toml_value(role), 1)
        return self.start_proxy(text, name="%s-%d" % (self._testMethodName, len(self.proxies)))

    def users(self, conn):
        return self.one(conn, "select session_user"), self.one(conn, "select current_user")

    def test_current_user_is_the_session_role_before_and_after_reuse(self):
        proxy = self.proxy_with_role("app_owner")
        a = self.pg_connect(proxy)
        a.autocommit = True
        pid = self.one(a, "select pg_backend_pid()")
        dynamic, current = self.users(a)
        self.assertTrue(dynamic.startswith("v-"), dynamic)
        self.assertEqual(current, "app_owner")
        table = "owned_by_session_role_%d" % pid
        with a.cursor() as cur:
            cur.execute("create table %s (x int)" % table)
        self.assertEqual(self.pg.admin_query("select tableowner from pg_tables where tablename = %s",
                                             (table,))[0][0], "app_owner")
        with a.cursor() as cur:
            cur.execute("reset role")
        self.assertEqual(self.users(a), (dynamic, dynamic), "RESET ROLE is the client's business")
        session = proxy.opened_sessions()[-1][0]
        a.close()  # Terminate while idle: the upstream goes to the pool
        proxy.wait_log(r"%s: .* upstream connection kept for reuse" % session, timeout=30,
                       what="session %s's upstream kept" % session)

        b = self.pg_connect(proxy)
        try:
            b.autocommit = True
            self.assertEqual(self.one(b, "select pg_backend_pid()"), pid, "not reused:\n" + proxy.output()[-3000:])
            self.assertEqual(self.open_kinds(proxy), ["new", "reused"])
            self.assertEqual(self.users(b), (dynamic, "app_owner"))
        finally:
            b.close()

    def test_without_session_role_current_user_is_the_dynamic_user(self):
        proxy = self.proxy_with_role(None)
        conn = self.pg_connect(proxy)
        try:
            dynamic, current = self.users(conn)
            self.assertTrue(dynamic.startswith("v-"), dynamic)
            self.assertEqual(current, dynamic)
        finally:
            conn.close()

    def test_a_refused_session_role_is_fatal_and_not_kept(self):
        proxy = self.proxy_with_role("no_such_role")
        fields = self.refused(port=proxy.port)
        self.assertEqual((fields.get("S"), fields.get("V"), fields.get("C")), ("FATAL", "FATAL", "22023"), fields)
        self.assertEqual(fields.get("M"), 'role "no_such_role" does not exist')
        self.last_closed_session(proxy, "upstream_refused")
        stats = self.stop_for_stats(proxy)
        self.assertEqual(stats.get("pool_checkins"), 0, stats)


if __name__ == "__main__":
    unittest.main()
