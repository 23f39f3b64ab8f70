"""Namespaces (X-Vault-Namespace: admin, as on HCP Vault in the tutorial): tokens, mounts,
roles, policies and leases are separate; the root token works everywhere."""

import re
import time
import unittest

import hvac
import hvac.exceptions

from vaultdev_fixture import (ACL_DENIED, BASE62_RE, OWNER_CREATION, OWNER_REVOCATION,
                              TUTORIAL_CREATION, VaultDevTestCase)

NS = "admin"
ROLE_SPEC = dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                 default_ttl="1h", max_ttl="24h")


class NamespaceTest(VaultDevTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = cls.vault.client(namespace=NS)  # root token, admin namespace
        # root namespace: role "root-role"
        cls.setup_engine(client=cls.root, allowed_roles="root-role", roles={"root-role": ROLE_SPEC})
        # admin namespace: role "crdb-role" (the tutorial's names), plus an admin-only mount
        cls.setup_engine(client=cls.admin, allowed_roles="crdb-role", roles={"crdb-role": ROLE_SPEC})
        cls.admin.sys.enable_secrets_engine("database", path="adminonly")
        policy = 'path "database/creds/crdb-role" {\n  capabilities = [ "read" ]\n}\n'
        cls.admin.sys.create_or_update_policy("roach-client", policy)
        cls.root.sys.create_or_update_policy(
            "root-reader", 'path "database/creds/root-role" {\n  capabilities = [ "read" ]\n}\n')

    def ns_suffix(self, lease_id):
        m = re.match(r"^database/creds/crdb-role/%s{24}\.(%s+)$" % (BASE62_RE, BASE62_RE), lease_id)
        self.assertIsNotNone(m, "lease id %r has no .<nsid> suffix" % lease_id)
        return m.group(1)

    def test_lease_ids_in_admin_have_suffix(self):
        a = self.admin.secrets.database.generate_credentials("crdb-role")
        b = self.admin.secrets.database.generate_credentials("crdb-role")
        sa, sb = self.ns_suffix(a["lease_id"]), self.ns_suffix(b["lease_id"])
        self.assertEqual(sa, sb)
        self.assertEqual(a["lease_duration"], 3600)
        self.assertTrue(self.pg.role_exists(a["data"]["username"]))
        r = self.root.secrets.database.generate_credentials("root-role")
        self.assertLeaseId(r["lease_id"], "database/creds/root-role")
        # Listing in admin shows the suffixed keys; root namespace does not see them.
        keys = self.admin.sys.list_leases("database/creds/crdb-role/")["data"]["keys"]
        self.assertIn(a["lease_id"].rsplit("/", 1)[1], keys)
        self.assertIn(b["lease_id"].rsplit("/", 1)[1], keys)
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.sys.list_leases, "database/creds/crdb-role/")
        self.assertEqual(self.admin.sys.list_leases("database/creds/")["data"]["keys"], ["crdb-role/"])
        # /_dev/leases records the namespace
        dev = {e["lease_id"]: e for e in self.vault.dev_leases()}
        self.assertEqual(dev[a["lease_id"]]["namespace"].strip("/"), NS)
        self.assertEqual(dev[r["lease_id"]]["namespace"].strip("/"), "")
        # Lease operations are namespaced too.
        self.assertEqual(self.admin.sys.read_lease(a["lease_id"])["data"]["id"], a["lease_id"])
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease"], self.root.sys.read_lease, a["lease_id"])
        self.assertEqual(self.admin.sys.revoke_lease(a["lease_id"]).status_code, 204)
        self.assertFalse(self.pg.role_exists(a["data"]["username"]))

    def test_token_created_in_admin_only_works_there(self):
        resp = self.admin.auth.token.create(policies=["roach-client"])
        token, accessor = resp["auth"]["client_token"], resp["auth"]["accessor"]
        self.assertEqual(resp["auth"]["policies"], ["default", "roach-client"])
        lease = self.client(token=token, namespace=NS).secrets.database.generate_credentials("crdb-role")
        suffix = self.ns_suffix(lease["lease_id"])
        self.assertRegex(accessor, r"^%s{24}\.%s$" % (BASE62_RE, re.escape(suffix)))
        self.assertTrue(lease["data"]["username"].startswith("v-token-to-crdb-rol-"), lease["data"]["username"])
        # In the root namespace the token does not exist.
        outside = self.client(token=token)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], outside.auth.token.lookup_self)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"],
                              outside.secrets.database.generate_credentials, "root-role")
        # In admin, the tutorial's limits: no lease listing.
        inside = self.client(token=token, namespace=NS)
        self.assertVaultError(hvac.exceptions.Forbidden, [ACL_DENIED], inside.sys.list_leases,
                              "database/creds/crdb-role/")
        info = inside.auth.token.lookup_self()["data"]
        self.assertEqual(info["accessor"], accessor)

    def test_revoke_from_other_namespace_does_nothing(self):
        a = self.admin.secrets.database.generate_credentials("crdb-role")
        # Unknown in the root namespace: 204 as for any unknown lease, but nothing happens.
        self.assertEqual(self.root.sys.revoke_lease(a["lease_id"]).status_code, 204)
        self.assertTrue(self.pg.role_exists(a["data"]["username"]))
        self.assertIn(a["lease_id"], self.vault.dev_lease_ids())
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["lease not found"],
                              self.root.sys.renew_lease, a["lease_id"])
        self.assertEqual(self.admin.sys.renew_lease(a["lease_id"], increment=600)["lease_duration"], 600)

    def test_root_token_in_admin(self):
        data = self.admin.auth.token.lookup_self()["data"]
        self.assertEqual(data["policies"], ["root"])
        self.assertEqual(data["id"], self.vault.root_token)

    def test_token_created_in_root_is_403_in_admin(self):
        resp = self.root.auth.token.create(policies=["root-reader"])
        token = resp["auth"]["client_token"]
        self.assertRegex(resp["auth"]["accessor"], r"^%s{24}$" % BASE62_RE)
        self.client(token=token).secrets.database.generate_credentials("root-role")
        inside = self.client(token=token, namespace=NS)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], inside.auth.token.lookup_self)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"],
                              inside.secrets.database.generate_credentials, "crdb-role")

    def test_roles_and_configs_are_separate(self):
        self.assertEqual(self.admin.secrets.database.list_roles()["data"]["keys"], ["crdb-role"])
        self.assertEqual(self.root.secrets.database.list_roles()["data"]["keys"], ["root-role"])
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.secrets.database.read_role, "crdb-role")
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.admin.secrets.database.read_role, "root-role")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["unknown role: crdb-role"],
                              self.root.secrets.database.generate_credentials, "crdb-role")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["unknown role: root-role"],
                              self.admin.secrets.database.generate_credentials, "root-role")
        # Writing a role in one namespace does not touch the other.
        self.root.secrets.database.create_role(name="crdb-role", db_name="crdb-config",
                                               creation_statements=TUTORIAL_CREATION, default_ttl="2h")
        self.assertEqual(self.root.secrets.database.read_role("crdb-role")["data"]["default_ttl"], 7200)
        self.assertEqual(self.admin.secrets.database.read_role("crdb-role")["data"]["default_ttl"], 3600)
        self.assertEqual(self.root.secrets.database.delete_role("crdb-role").status_code, 204)
        self.assertEqual(self.admin.secrets.database.read_role("crdb-role")["data"]["default_ttl"], 3600)

    def test_mounts_are_separate(self):
        raw = self.vault.raw("GET", "adminonly/roles/x", namespace=NS)
        self.assertRawError(raw, 404, [])
        raw = self.vault.raw("GET", "adminonly/roles/x")
        self.assertRawError(raw, 404, ['no handler for route "adminonly/roles/x". route entry not found.'])
        # Enabling "database" again is a conflict in each namespace, but a new one is free.
        raw = self.vault.raw("POST", "sys/mounts/database", body={"type": "database"}, namespace=NS)
        self.assertRawError(raw, 400, ["path is already in use at database/"])
        raw = self.vault.raw("POST", "sys/mounts/adminonly", body={"type": "database"})
        self.assertEqual(raw.status, 204, raw)

    def test_policies_are_separate(self):
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.sys.read_policy, "roach-client")
        self.assertEqual(self.admin.sys.read_policy("roach-client")["data"]["name"], "roach-client")
        # A root-namespace token with a policy named like the admin one gets nothing from it.
        resp = self.root.auth.token.create(policies=["roach-client"])
        self.assertEqual(resp["warnings"], ['Policy "roach-client" does not exist'])
        c = self.client(token=resp["auth"]["client_token"])
        self.assertVaultError(hvac.exceptions.Forbidden, [ACL_DENIED],
                              c.secrets.database.generate_credentials, "root-role")

    def test_admin_token_revocation_drops_users(self):
        resp = self.admin.auth.token.create(policies=["roach-client"])
        client = self.client(token=resp["auth"]["client_token"], namespace=NS)
        lease = client.secrets.database.generate_credentials("crdb-role")
        self.assertEqual(client.auth.token.revoke_self().status_code, 204)
        self.wait_lease_gone(lease["lease_id"])
        self.wait_role_gone(lease["data"]["username"])


if __name__ == "__main__":
    unittest.main()
