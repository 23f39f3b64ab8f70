"""The CockroachDB dynamic-secrets tutorial, step by step, through hvac, against vault-dev
and a real PostgreSQL 15 (standing in for CockroachDB).

Steps are numbered methods sharing class state; a step whose prerequisite failed is
skipped rather than failing a second time.
"""

import re
import time
import unittest

import hvac
import hvac.exceptions
import psycopg2
import psycopg2.errors

from vaultdev_fixture import (ACL_DENIED, BASE62_RE, DEV_DEFAULT_MAX_TTL, ROACH_CLIENT_HCL,
                              TUTORIAL_CREATION, UUID_RE, VaultDevTestCase)


class TutorialTest(VaultDevTestCase):
    done = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.done = set()
        cls.creds = []  # (response, t_before, t_after) of root's reads

    def require(self, *steps):
        missing = [s for s in steps if s not in self.done]
        if missing:
            self.skipTest("prerequisite step(s) failed: %s" % ", ".join(missing))

    def mark(self, step):
        type(self).done.add(step)

    # Step 1: "vault secrets enable database"
    def test_01_enable_database_engine(self):
        resp = self.root.sys.enable_secrets_engine("database")
        self.assertEqual(resp.status_code, 204)
        self.assertEqual(resp.content, b"")
        self.mark("mount")

    # Step 2: "vault write database/config/crdb-config ..."
    def test_02_write_config(self):
        self.require("mount")
        url = self.pg.connection_url()
        self.assertIn("{{username}}:{{password}}@127.0.0.1:", url)
        resp = self.root.secrets.database.configure(
            name="crdb-config", plugin_name="postgresql-database-plugin", allowed_roles="crdb-role",
            username=self.pg.admin_user, password=self.pg.admin_password, connection_url=url)
        # A templated URL: no warning, so 204 with an empty body.
        self.assertEqual(resp.status_code, 204)
        self.assertEqual(resp.content, b"")
        self.mark("config")

        read = self.root.secrets.database.read_connection("crdb-config")
        self.assertEqual(read["data"], {
            "allowed_roles": ["crdb-role"],
            "connection_details": {"connection_url": url, "username": self.pg.admin_user},
            "password_policy": "",
            "plugin_name": "postgresql-database-plugin",
            "plugin_version": "",
            "root_credentials_rotate_statements": [],
            "verify_connection": True,
        })

    # Step 3.1: "vault write database/roles/crdb-role ..."
    def test_03_write_role(self):
        self.require("config")
        resp = self.root.secrets.database.create_role(
            name="crdb-role", db_name="crdb-config", creation_statements=TUTORIAL_CREATION,
            default_ttl="1h", max_ttl="24h")
        self.assertEqual(resp.status_code, 204)
        self.assertEqual(resp.content, b"")
        self.mark("role")

    # Step 3.2: "vault list database/roles/"
    def test_04_list_roles(self):
        self.require("role")
        resp = self.root.secrets.database.list_roles()
        self.assertEqual(resp["data"], {"keys": ["crdb-role"]})

    # Step 3.3: "vault read database/roles/crdb-role"
    def test_05_read_role(self):
        self.require("role")
        resp = self.root.secrets.database.read_role("crdb-role")
        self.assertEqual(resp["data"], {
            "db_name": "crdb-config",
            "creation_statements": [TUTORIAL_CREATION],
            "revocation_statements": [],
            "rollback_statements": [],
            "renew_statements": [],
            "default_ttl": 3600,
            "max_ttl": 86400,
            "credential_type": "password",
        })
        self.assertEqual(resp["lease_id"], "")
        self.assertEqual(resp["lease_duration"], 0)
        self.assertFalse(resp["renewable"])

    # Step 3.4: "show users" before any credential: no dynamic users yet.
    def test_06_no_dynamic_users_yet(self):
        self.require("role")
        self.assertEqual(self.pg.roles_with_prefix("v-"), [])

    # Step 3.4: "vault read database/creds/crdb-role", several times.
    def test_07_read_creds_several_times(self):
        self.require("role")
        for _ in range(5):
            t0 = time.time()
            resp = self.root.secrets.database.generate_credentials("crdb-role")
            t1 = time.time()
            self.creds.append((resp, t0, t1))
            self.assertRegex(resp["request_id"], UUID_RE)
            self.assertLeaseId(resp["lease_id"], "database/creds/crdb-role")
            self.assertEqual(resp["lease_duration"], 3600)
            self.assertIs(resp["renewable"], True)
            self.assertIsNone(resp["wrap_info"])
            self.assertIsNone(resp["warnings"])
            self.assertIsNone(resp["auth"])
            self.assertEqual(sorted(resp["data"]), ["password", "username"])
            # The dev root token (-dev-root-token-id) has display name "token": v-token-crdb-rol-...
            self.assertUsername(resp["data"]["username"], "token", "crdb-role", t0, t1)
            self.assertPassword(resp["data"]["password"])
        self.assertEqual(len({r["lease_id"] for r, _, _ in self.creds}), 5)
        self.assertEqual(len({r["data"]["username"] for r, _, _ in self.creds}), 5)
        self.assertEqual(len({r["data"]["password"] for r, _, _ in self.creds}), 5)
        self.mark("creds")

    # Step 3.4: "show users" again: the users exist with VALID UNTIL = now + 1h + 5s.
    def test_08_sql_users_exist_with_valid_until(self):
        self.require("creds")
        names = sorted(r["data"]["username"] for r, _, _ in self.creds)
        self.assertEqual(self.pg.roles_with_prefix("v-"), names)
        for resp, t0, t1 in self.creds:
            username = resp["data"]["username"]
            row = self.pg.role(username)
            self.assertTrue(row["rolcanlogin"])
            got = row["rolvaliduntil"].timestamp()
            # {{expiration}} = now + TTL + 5 s, whole seconds.
            self.assertGreaterEqual(got, int(t0) + 3600 + 5 - 1)
            self.assertLessEqual(got, t1 + 3600 + 5 + 1)
            self.assertEqual(self.pg.member_of(username), [])

    # Step 3.4: "vault list sys/leases/lookup/database/creds/crdb-role/" as admin.
    def test_09_list_leases_as_root(self):
        self.require("creds")
        resp = self.root.sys.list_leases("database/creds/crdb-role/")
        expected = sorted(r["lease_id"].rsplit("/", 1)[1] for r, _, _ in self.creds)
        self.assertEqual(sorted(resp["data"]["keys"]), expected)
        # The CLI's form (GET ?list=true, no trailing slash) gives the same keys.
        raw = self.vault.raw("GET", "sys/leases/lookup/database/creds/crdb-role?list=true")
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(sorted(raw.json()["data"]["keys"]), expected)
        # Keys are the next segment only.
        self.assertEqual(self.root.sys.list_leases("database/")["data"]["keys"], ["creds/"])
        self.assertEqual(self.root.sys.list_leases("database/creds/")["data"]["keys"], ["crdb-role/"])
        # vault-dev's view agrees.
        dev = {e["lease_id"]: e for e in self.vault.dev_leases()}
        for r, _, _ in self.creds:
            self.assertIn(r["lease_id"], dev)
            self.assertEqual(dev[r["lease_id"]]["username"], r["data"]["username"])
            self.assertEqual(dev[r["lease_id"]]["role"], "crdb-role")

    # Step 3.6: "vault policy write roach-client -"
    def test_10_write_policy(self):
        resp = self.root.sys.create_or_update_policy("roach-client", ROACH_CLIENT_HCL)
        self.assertEqual(resp.status_code, 204)
        self.assertEqual(resp.content, b"")
        read = self.root.sys.read_policy("roach-client")
        self.assertEqual(read["data"], {"name": "roach-client", "rules": ROACH_CLIENT_HCL})
        # sys/policy copies data to the top level.
        self.assertEqual(read["name"], "roach-client")
        self.assertEqual(read["rules"], ROACH_CLIENT_HCL)
        self.mark("policy")

    # Step 3.7: "vault token create -policy=roach-client" (the CLI sends no display name).
    def test_11_create_token(self):
        self.require("policy")
        resp = self.root.auth.token.create(policies=["roach-client"], display_name=None)
        auth = resp["auth"]
        self.assertTrue(auth["client_token"].startswith("hvs."), auth["client_token"])
        self.assertRegex(auth["accessor"], r"^%s{24}$" % BASE62_RE)
        self.assertEqual(auth["policies"], ["default", "roach-client"])
        self.assertEqual(auth["token_policies"], ["default", "roach-client"])
        self.assertEqual(auth["lease_duration"], DEV_DEFAULT_MAX_TTL)
        self.assertIs(auth["renewable"], True)
        self.assertEqual(auth["token_type"], "service")
        self.assertIs(auth["orphan"], False)
        self.assertIsNone(auth["metadata"])
        self.assertEqual(auth["entity_id"], "")
        self.assertNotIn("identity_policies", auth)
        self.assertEqual(resp["lease_id"], "")
        self.assertIs(resp["renewable"], False)
        self.assertEqual(resp["lease_duration"], 0)
        self.assertIsNone(resp["data"])
        self.assertIsNone(resp["warnings"])
        type(self).client_token = auth["client_token"]
        self.mark("token")

        info = self.client(token=self.client_token).auth.token.lookup_self()["data"]
        self.assertEqual(info["display_name"], "token")
        self.assertEqual(info["policies"], ["default", "roach-client"])
        self.assertEqual(info["path"], "auth/token/create")
        self.assertEqual(info["accessor"], auth["accessor"])
        self.assertIs(info["orphan"], False)

    # Step 4.2: as the client, listing leases is forbidden.
    def test_12_client_cannot_list_leases(self):
        self.require("token", "creds")
        client = self.client(token=self.client_token)
        with self.assertRaises(hvac.exceptions.Forbidden) as cm:
            client.sys.list_leases("database/creds/crdb-role/")
        self.assertEqual(cm.exception.errors, [ACL_DENIED])
        # The CLI's form: GET ...?list=true, without the trailing slash.
        raw = self.vault.raw("GET", "sys/leases/lookup/database/creds/crdb-role?list=true", token=self.client_token)
        self.assertRawError(raw, 403, [ACL_DENIED])

    # Step 4.3: as the client, reading creds works.
    def test_13_client_reads_creds(self):
        self.require("token")
        client = self.client(token=self.client_token)
        t0 = time.time()
        resp = client.secrets.database.generate_credentials("crdb-role")
        t1 = time.time()
        self.assertLeaseId(resp["lease_id"], "database/creds/crdb-role")
        self.assertEqual(resp["lease_duration"], 3600)
        self.assertIs(resp["renewable"], True)
        # Display name "token" -> v-token-crdb-rol-..., as in the tutorial's output.
        self.assertUsername(resp["data"]["username"], "token", "crdb-role", t0, t1)
        self.assertPassword(resp["data"]["password"])
        type(self).client_creds = resp
        self.mark("client_creds")

        # Only creds/crdb-role: reading the role definition is denied.
        with self.assertRaises(hvac.exceptions.Forbidden) as cm:
            client.secrets.database.read_role("crdb-role")
        self.assertEqual(cm.exception.errors, [ACL_DENIED])

    # Step 4.4: connect to the database with the dynamic credentials (TLS verify-full).
    def test_14_client_connects_to_database(self):
        self.require("client_creds")
        username = self.client_creds["data"]["username"]
        conn = self.pg.connect(username, self.client_creds["data"]["password"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT session_user, current_user, current_database(), "
                            "(SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())")
                self.assertEqual(cur.fetchone(), (username, username, "defaultdb", True))
                # "show tables;"
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                self.assertEqual(cur.fetchall(), [])
        finally:
            conn.close()

    # Step 4.4: a forbidden operation: "show users" -> SQLSTATE 42501.
    def test_15_client_cannot_list_users(self):
        self.require("client_creds")
        conn = self.pg.connect(self.client_creds["data"]["username"], self.client_creds["data"]["password"])
        try:
            with conn.cursor() as cur:
                with self.assertRaises(psycopg2.errors.InsufficientPrivilege) as cm:
                    cur.execute("SELECT * FROM pg_authid")
                self.assertEqual(cm.exception.pgcode, "42501")
                self.assertIn("permission denied for table pg_authid", str(cm.exception))
        finally:
            conn.close()

    # hvac's own token.create() sends display_name "token" -> "token-token" -> v-token-to-...
    def test_16_hvac_token_create_display_name(self):
        self.require("policy", "role")
        resp = self.root.auth.token.create(policies=["roach-client"])
        token = resp["auth"]["client_token"]
        info = self.client(token=token).auth.token.lookup_self()["data"]
        self.assertEqual(info["display_name"], "token-token")
        t0 = time.time()
        creds = self.client(token=token).secrets.database.generate_credentials("crdb-role")
        t1 = time.time()
        self.assertUsername(creds["data"]["username"], "token-token", "crdb-role", t0, t1)
        self.assertTrue(creds["data"]["username"].startswith("v-token-to-crdb-rol-"))
        self.assertTrue(self.pg.role_exists(creds["data"]["username"]))


if __name__ == "__main__":
    unittest.main()
