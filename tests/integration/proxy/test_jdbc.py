"""pgjdbc (Debian's libpostgresql-jdbc-java) through vaultwire: login with the Vault
token, simple and extended-protocol queries past the server-side prepare threshold,
and a cancel (pgjdbc sends CancelRequest in plaintext on a new connection)."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import ProxyTestCase, wait_for  # noqa: E402

JAVA = "/usr/bin/java"
JDBC_JAR = "/usr/share/java/postgresql.jar"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "java", "JdbcSmoke.java")


class JdbcTest(ProxyTestCase):
    def run_java(self, token, user="crdb-role"):
        env = dict(os.environ, VW_TOKEN=token)
        r = subprocess.run([JAVA, "-cp", JDBC_JAR, SOURCE, str(self.proxy.port), user], env=env,
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def test_jdbc_login_queries_and_cancel(self):
        out = self.run_java(self.token)
        self.assertNotIn("error", out, out)
        self.assertRegex(out["session_user"], r"^v-token-[A-Za-z0-9-]+-crdb-rol-[A-Za-z0-9]{20}-\d+$")
        self.assertEqual(out["current_user"], "app_owner")
        self.assertEqual(out["extended"], "ok")
        self.assertEqual(out["cancel"], "57014")  # query_canceled, through vaultwire's key
        wait_for(lambda: not self.pg.role_exists(out["session_user"]), timeout=20, what="dynamic user dropped")

    def test_jdbc_bad_token_gets_28P01(self):
        out = self.run_java("hvs.not-a-token")
        self.assertTrue(out.get("error", "").startswith("28P01 "), out)
        self.assertIn("Vault rejected the token: permission denied", out["error"])


if __name__ == "__main__":
    unittest.main()
