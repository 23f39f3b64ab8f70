"""vaultwire against a CockroachDB stand-in (tests/support/crdb-upstream), end to end with
vault-dev and real clients.

The stand-in fronts the harness PostgreSQL and behaves as CockroachDB Serverless does
for the cluster vaultwire-test-10 (its SQL proxy's cluster rules, its source-address
rule for cancels), hashing passwords at 200,000 SCRAM iterations. vault-dev's
connection goes through it too, with the cockroachdb dialect's creation statements
(`vaultwire provision --dialect cockroachdb`). Checked through vaultwire:
- a login at 200,000 SCRAM iterations, CockroachDB's ParameterStatus set, current_user
  the route's session_role and session_user the dynamic user;
- the session role again after upstream reuse, although the client reset it (the
  stand-in's DISCARD ALL keeps the role, as CockroachDB's does);
- a client --cluster naming another cluster refused with 08P01; the same cluster, in
  options or as a database prefix, reaching the stand-in once (it refuses two);
- a crdb: startup parameter refused with 08P01, as a parameter and inside options;
- a cancel, which the stand-in forwards only from the session's own source address.
"""
import os
import re
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support", "crdb-upstream"))
from proxy_fixture import ProxyTestCase, wait_for  # noqa: E402
from standin import StandIn  # noqa: E402

import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402

CLUSTER = "vaultwire-test-10"
ITERATIONS = 200000
CRDB_CREATION = ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; "
                 "GRANT app_owner TO \"{{name}}\";")
CRDB_REVOCATION = ("REASSIGN OWNED BY \"{{name}}\" TO app_owner; DROP OWNED BY \"{{name}}\"; "
                   "DROP ROLE IF EXISTS \"{{name}}\";")


class CrdbUpstreamTest(ProxyTestCase):
    pool_settings = {"reuse": True}
    credentials_settings = {"revoke_idle_after": "60s"}
    crdb = None

    @classmethod
    def setup_vault(cls):
        cls.crdb = StandIn(os.path.join(cls.pg.dir, "env"), cls.tmp, "--scram-iterations", str(ITERATIONS),
                           "--cluster", CLUSTER, "--check-cancel-source").start()
        url = ("postgresql://{{username}}:{{password}}@localhost:%d/defaultdb?sslmode=verify-full&sslrootcert=%s"
               "&options=--cluster%%3D%s" % (cls.crdb.port, cls.pg.ca, CLUSTER))
        cls.root.write("database/config/crdb-config", plugin_name="postgresql-database-plugin",
                       allowed_roles="*", connection_url=url, username=cls.pg.admin_user,
                       password=cls.pg.admin_password)
        cls.root.write("database/roles/crdb-role", db_name="crdb-config", creation_statements=CRDB_CREATION,
                       revocation_statements=CRDB_REVOCATION, default_ttl="1h", max_ttl="24h")

    @classmethod
    def route_config(cls, name="main", extra=""):
        return f"""
[route.{name}]
host = "localhost"
port = {cls.crdb.port}
ca_file = "{cls.pg.ca}"
roles = ["crdb-role"]
default_database = "defaultdb"
options = "--cluster={CLUSTER}"
session_role = "app_owner"
{extra}
"""

    @classmethod
    def _teardown_fixtures(cls):
        try:
            super()._teardown_fixtures()
        finally:
            if cls.crdb is not None:
                cls.crdb.stop()

    def users(self, conn):
        with conn.cursor() as cur:
            cur.execute("select session_user, current_user")
            return cur.fetchone()

    def test_login_at_200000_iterations_with_the_session_role(self):
        conn = self.connect()
        try:
            dynamic, current = self.users(conn)
            self.assertTrue(dynamic.startswith("v-"), dynamic)
            self.assertEqual(current, "app_owner")
            self.assertIsNotNone(conn.get_parameter_status("crdb_version"), "CockroachDB's ParameterStatus set")
            stored = self.pg.admin_query("select rolpassword from pg_authid where rolname = %s", (dynamic,))[0][0]
            self.assertTrue(stored.startswith("SCRAM-SHA-256$%d:" % ITERATIONS), stored[:30])
            self.assertRegex(self.proxy.output(), r"scram keys derived for user %s \(%d iterations\)"
                             % (re.escape(dynamic), ITERATIONS))
            self.assertEqual(self.crdb.logins(dynamic)[0], ("defaultdb", "", CLUSTER))
        finally:
            conn.close()

    def test_the_session_role_comes_back_after_reuse(self):
        a = self.connect()
        a.autocommit = True
        with a.cursor() as cur:
            cur.execute("select pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute("reset role")
        dynamic, current = self.users(a)
        self.assertEqual(current, dynamic, "RESET ROLE is the client's business")
        session = self.proxy.opened_sessions()[-1][0]
        a.close()
        self.proxy.wait_log(r"%s: .* upstream connection kept for reuse" % session, timeout=30,
                            what="session %s's upstream kept" % session)
        b = self.connect()
        try:
            with b.cursor() as cur:
                cur.execute("select pg_backend_pid()")
                self.assertEqual(cur.fetchone()[0], pid, "not reused:\n" + self.proxy.output()[-3000:])
            self.assertEqual(self.users(b), (dynamic, "app_owner"))
        finally:
            b.close()

    def test_a_client_cluster_must_be_the_routes(self):
        fields = self.refused(params=[("options", "--cluster=happy-koala-11")])
        self.assertRefusal(fields, "08P01", "startup parameter options: --cluster=happy-koala-11 names another "
                                            "cluster than this route's (%s)" % CLUSTER)
        fields = self.refused(database="happy-koala-11.defaultdb")
        self.assertEqual(fields.get("C"), "08P01", fields)
        # The same cluster twice would be "multiple cluster flags provided" at the stand-in:
        # vaultwire drops the client's copy.
        for kw in ({"params": [("options", "--cluster=%s -c statement_timeout=10s" % CLUSTER)]},
                   {"database": "%s.defaultdb" % CLUSTER}):
            with self.raw() as r:
                r.login(self.token, **kw)
                rows, error = r.query("select current_database(), current_setting('statement_timeout')")
                self.assertIsNone(error, kw)
                self.assertEqual(rows[0][0], "defaultdb")

    def test_crdb_parameters_are_refused(self):
        fields = self.refused(params=[("crdb:jwt_auth_enabled", "true")])
        self.assertRefusal(fields, "08P01", "startup parameter \"crdb:jwt_auth_enabled\" is not allowed through "
                                            "vaultwire: it would change the role or how the server authenticates "
                                            "this connection")
        fields = self.refused(params=[("options", "-c crdb:jwt_auth_enabled=true")])
        self.assertEqual((fields.get("C"), fields.get("S")), ("08P01", "FATAL"), fields)
        self.assertIn('"crdb:jwt_auth_enabled"', fields.get("M"))

    def test_a_cancel_reaches_the_server_from_the_sessions_address(self):
        conn = self.connect()
        outcome = {}

        def sleep():
            try:
                with conn.cursor() as cur:
                    cur.execute("select pg_sleep(30)")
                outcome["result"] = "finished"
            except psycopg2.errors.QueryCanceled:
                outcome["result"] = "canceled"
            except Exception as e:  # noqa: BLE001
                outcome["result"] = repr(e)

        t = threading.Thread(target=sleep)
        t.start()
        try:
            wait_for(lambda: self.pg.admin_query("select count(*) from pg_stat_activity where state = 'active' "
                                                 "and query = 'select pg_sleep(30)'")[0][0] == 1,
                     timeout=20, what="the sleep running on the server")
            conn.cancel()
            t.join(25)
            self.assertEqual(outcome.get("result"), "canceled", self.crdb.output()[-2000:])
            self.assertIn("crdb-upstream: cancel forwarded", self.crdb.output())
            self.assertNotIn("cancel dropped", self.crdb.output())
        finally:
            t.join(30)
            conn.close()


if __name__ == "__main__":
    unittest.main()
