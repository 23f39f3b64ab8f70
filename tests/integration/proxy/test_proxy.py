"""End to end: real clients through a real vaultwire to a real PostgreSQL, with
credentials from vault-dev. Each class has its own PostgreSQL, vault-dev and
vaultwire on free loopback ports.

Run by ctest (label integration) with VAULTWIRE_BIN, VAULT_DEV_BIN and PG_HARNESS set.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "vault-dev", "conformance"))
from vaultdev_fixture import PgHarness, VaultDev, wait_for  # noqa: E402

import psycopg2  # noqa: E402

PSQL = "/usr/lib/postgresql/15/bin/psql"

CREATION = ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
            "IN ROLE app_owner; ALTER ROLE \"{{name}}\" SET ROLE app_owner;")
REVOCATION = ("REASSIGN OWNED BY \"{{name}}\" TO app_owner; DROP OWNED BY \"{{name}}\"; "
              "DROP ROLE IF EXISTS \"{{name}}\";")
POLICY = """
path "database/creds/crdb-role" { capabilities = ["read"] }
path "sys/leases/revoke/database/creds/crdb-role/*" { capabilities = ["update"] }
"""


class Vaultwire:
    """A vaultwire process with a config file; ready when it logs its listener."""

    def __init__(self, workdir, config_text):
        self.workdir = workdir
        self.config_path = os.path.join(workdir, "vaultwire.toml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.log_path = os.path.join(workdir, "vaultwire.log")
        self.proc = None
        self.port = None

    def start(self, timeout=30.0):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.environ["VAULTWIRE_BIN"], "run", "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = pattern.search(self.output())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError("vaultwire exited early:\n" + self.output())
            time.sleep(0.02)
        raise RuntimeError("vaultwire did not start:\n" + self.output())

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ProxyTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vwtest-proxy.")
        os.chmod(cls.tmp, 0o755)
        cls.pg = PgHarness()
        cls.pg.start()
        cls.vault = VaultDev()
        cls.vault.start()
        root = cls.vault.client()
        root.sys.enable_secrets_engine("database", path="database")
        root.write("database/config/crdb-config", plugin_name="postgresql-database-plugin",
                   allowed_roles="crdb-role", connection_url=cls.pg.connection_url(),
                   username=cls.pg.admin_user, password=cls.pg.admin_password)
        root.write("database/roles/crdb-role", db_name="crdb-config", creation_statements=CREATION,
                   revocation_statements=REVOCATION, default_ttl="1h", max_ttl="24h")
        root.sys.create_or_update_policy("roach-client", POLICY)
        cls.token = root.auth.token.create(policies=["roach-client"], ttl="1h")["auth"]["client_token"]
        cls.port = free_port()
        cls.proxy = Vaultwire(cls.tmp, f"""
[vault]
address = "{cls.vault.addr}"

[[listener]]
bind = "127.0.0.1:{cls.port}"
route = "main"

[route.main]
host = "localhost"
port = {cls.pg.port}
ca_file = "{cls.pg.ca}"
roles = ["crdb-role"]
default_database = "defaultdb"

[log]
level = "debug"
""")
        cls.proxy.start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.vault.stop()
        cls.pg.stop()

    def psql(self, sql, token=None, user="crdb-role", database="defaultdb"):
        env = dict(os.environ, PGPASSWORD=token if token is not None else self.token, PGCONNECT_TIMEOUT="20")
        return subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                               "-p", str(self.proxy.port), "-U", user, "-d", database, "-c", sql],
                              env=env, capture_output=True, text=True, timeout=60)

    def test_psql_session_user_is_dynamic_and_lease_is_revoked(self):
        r = self.psql("select session_user, current_user")
        self.assertEqual(r.returncode, 0, r.stderr + self.proxy.output())
        session_user, current_user = r.stdout.strip().split("|")
        self.assertRegex(session_user, r"^v-token-[A-Za-z0-9-]+-crdb-rol-[A-Za-z0-9]{20}-\d+$")
        self.assertEqual(current_user, "app_owner")
        # After the client leaves, vaultwire revokes the lease: the SQL user is gone.
        wait_for(lambda: not self.pg.role_exists(session_user), timeout=20, what="dynamic user dropped")

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
