"""Revocation as real Vault does it on PostgreSQL 15: the tutorial's role cannot be
revoked (its database privileges block DROP ROLE), the owner-role pattern of DESIGN.md
can; token revocation takes its leases (and its children's) with it, also through the
token's own lease under sys/leases."""

import time
import unittest
import warnings

import hvac
import hvac.exceptions
import psycopg2

from vaultdev_fixture import (OWNER_CREATION, OWNER_REVOCATION, OWNER_ROLE, TUTORIAL_CREATION,
                              VaultDevTestCase, wait_for)

OWNER_CLIENT_HCL = """
path "database/creds/owner-role" {
  capabilities = ["read"]
}
"""

PARENT_HCL = """
path "database/creds/owner-role" {
  capabilities = ["read"]
}
path "auth/token/create" {
  capabilities = ["update"]
}
"""


class RevocationTest(VaultDevTestCase):
    # Fast revocation retries so that an expiry that cannot revoke reaches "irrevocable".
    vault_args = ["--retry-base-ms", "50", "--retry-max-attempts", "3"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        owner = dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                     default_ttl="1h", max_ttl="24h")
        cls.setup_engine(allowed_roles="crdb-role,owner-role,ephemeral-role", roles={
            "crdb-role": dict(creation_statements=TUTORIAL_CREATION, default_ttl="1h", max_ttl="24h"),
            "owner-role": owner,
            "ephemeral-role": owner,
        })
        cls.root.sys.create_or_update_policy("owner-client", OWNER_CLIENT_HCL)
        cls.root.sys.create_or_update_policy("owner-parent", PARENT_HCL)

    def creds(self, role="owner-role", client=None):
        return (client or self.root).secrets.database.generate_credentials(role)

    def lease_listed(self, lease_id):
        prefix, _, key = lease_id.rpartition("/")
        try:
            keys = self.root.sys.list_leases(prefix + "/")["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return False
        return key in keys

    # -- the tutorial's role ------------------------------------------------

    def test_tutorial_role_revoke_fails_and_keeps_lease(self):
        resp = self.creds("crdb-role")
        lease_id, username = resp["lease_id"], resp["data"]["username"]
        self.assertTrue(self.pg.role_exists(username))

        # Default revocation: REVOKE ... then DROP ROLE, which PostgreSQL refuses because
        # of the CREATE/TEMPORARY privileges on defaultdb. Vault answers 400 with the error.
        with self.assertRaises(hvac.exceptions.InvalidRequest) as cm:
            self.root.sys.revoke_lease(lease_id)
        errors = cm.exception.errors
        self.assertIsInstance(errors, list)
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("cannot be dropped because some objects depend on it", errors[0])
        self.assertIn(username, errors[0])

        # The lease is kept, the SQL user and its privilege remain.
        self.assertTrue(self.pg.role_exists(username))
        rows = self.pg.admin_query(
            "SELECT has_database_privilege(%s, 'defaultdb', 'CREATE'), "
            "has_database_privilege(%s, 'defaultdb', 'TEMPORARY')", (username, username))
        self.assertEqual(rows, [(True, True)])
        self.assertIn(lease_id, self.vault.dev_lease_ids())
        self.assertTrue(self.lease_listed(lease_id))
        lookup = self.root.sys.read_lease(lease_id)
        self.assertEqual(lookup["data"]["id"], lease_id)

        # Trying again gives the same answer.
        with self.assertRaises(hvac.exceptions.InvalidRequest) as cm:
            self.root.sys.revoke_lease(lease_id)
        self.assertIn("cannot be dropped because some objects depend on it", cm.exception.errors[0])
        self.assertTrue(self.pg.role_exists(username))
        self.assertIn(lease_id, self.vault.dev_lease_ids())

    def test_tutorial_role_expiry_retries_then_irrevocable(self):
        resp = self.creds("crdb-role")
        lease_id, username = resp["lease_id"], resp["data"]["username"]
        result = self.vault.dev("POST", "expire/lease", {"lease_id": lease_id})
        self.assertEqual(result["lease_id"], lease_id)
        self.assertIs(result["revoked"], False)
        self.assertIn("cannot be dropped because some objects depend on it", result["error"])

        def entry():
            for e in self.vault.dev_leases():
                if e["lease_id"] == lease_id:
                    return e
            return None

        final = wait_for(lambda: (entry() or {}).get("irrevocable") and entry(), timeout=30,
                         what="lease %s to be marked irrevocable" % lease_id)
        self.assertEqual(final["revoke_attempts"], 3)
        self.assertIn("cannot be dropped because some objects depend on it", final["last_error"])
        self.assertTrue(self.pg.role_exists(username))

    def test_revoke_async(self):
        resp = self.creds()
        raw = self.vault.raw("PUT", "sys/leases/revoke", body={"lease_id": resp["lease_id"], "sync": False})
        self.assertEqual(raw.status, 202, raw)
        self.wait_lease_gone(resp["lease_id"])
        self.wait_role_gone(resp["data"]["username"])

    # -- the owner-role pattern -------------------------------------------

    def test_owner_role_user_shape(self):
        resp = self.creds()
        username = resp["data"]["username"]
        row = self.pg.role(username)
        self.assertIsNotNone(row)
        self.assertTrue(row["rolcanlogin"])
        self.assertEqual(row["rolconfig"], ["role=app_owner"])
        self.assertEqual(self.pg.member_of(username), [OWNER_ROLE])
        conn = self.pg.connect(username, resp["data"]["password"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT session_user, current_user")
                self.assertEqual(cur.fetchone(), (username, OWNER_ROLE))
        finally:
            conn.close()

    def test_owner_role_revoke_drops_user(self):
        resp = self.creds()
        lease_id, username = resp["lease_id"], resp["data"]["username"]
        self.assertTrue(self.pg.role_exists(username))
        self.assertTrue(self.lease_listed(lease_id))

        raw = self.vault.raw("PUT", "sys/leases/revoke", body={"lease_id": lease_id})
        self.assertEqual(raw.status, 204, raw)
        self.assertEqual(raw.body, b"")
        # sync=true (the default): the user is gone when the call returns.
        self.assertFalse(self.pg.role_exists(username))
        self.assertNotIn(lease_id, self.vault.dev_lease_ids())
        self.assertFalse(self.lease_listed(lease_id))
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease"],
                              self.root.sys.read_lease, lease_id)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["lease not found"],
                              self.root.sys.renew_lease, lease_id)
        # Revoking an unknown (already revoked) lease is still 204.
        again = self.root.sys.revoke_lease(lease_id)
        self.assertEqual(again.status_code, 204)

    def test_owner_role_revoke_by_url_suffix(self):
        resp = self.creds()
        raw = self.vault.raw("PUT", "sys/leases/revoke/" + resp["lease_id"])
        self.assertEqual(raw.status, 204, raw)
        self.assertFalse(self.pg.role_exists(resp["data"]["username"]))

    def test_owner_role_tables_survive_revocation(self):
        resp = self.creds()
        lease_id, username, password = resp["lease_id"], resp["data"]["username"], resp["data"]["password"]
        suffix = username.rsplit("-", 2)[1].lower()
        shared, own = "shared_%s" % suffix, "own_%s" % suffix
        conn = self.pg.connect(username, password)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                # Created under the default SET ROLE app_owner.
                cur.execute('CREATE TABLE public.%s (id int PRIMARY KEY, v text)' % shared)
                cur.execute("INSERT INTO public.%s VALUES (1, 'kept')" % shared)
                # Created as the dynamic user itself: REASSIGN OWNED must move it.
                # (RESET ROLE would return to the ALTER ROLE ... SET ROLE default, app_owner.)
                cur.execute('SET ROLE "%s"' % username)
                cur.execute("SELECT current_user")
                self.assertEqual(cur.fetchone(), (username,))
                cur.execute('CREATE TABLE public.%s (id int)' % own)
                cur.execute("INSERT INTO public.%s VALUES (42)" % own)
        finally:
            conn.close()
        owners = dict(self.pg.admin_query(
            "SELECT tablename, tableowner FROM pg_tables WHERE tablename IN (%s, %s)", (shared, own)))
        self.assertEqual(owners, {shared: OWNER_ROLE, own: username})

        self.assertEqual(self.root.sys.revoke_lease(lease_id).status_code, 204)
        self.assertFalse(self.pg.role_exists(username))
        owners = dict(self.pg.admin_query(
            "SELECT tablename, tableowner FROM pg_tables WHERE tablename IN (%s, %s)", (shared, own)))
        self.assertEqual(owners, {shared: OWNER_ROLE, own: OWNER_ROLE})
        self.assertEqual(self.pg.admin_query("SELECT v FROM public.%s" % shared), [("kept",)])
        self.assertEqual(self.pg.admin_query("SELECT id FROM public.%s" % own), [(42,)])

        # The next dynamic user (via app_owner) can use both tables.
        nxt = self.creds()
        conn = self.pg.connect(nxt["data"]["username"], nxt["data"]["password"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT (SELECT count(*) FROM public.%s), (SELECT count(*) FROM public.%s)" % (shared, own))
                self.assertEqual(cur.fetchone(), (1, 1))
        finally:
            conn.close()

    def test_revoke_prefix(self):
        a, b = self.creds("ephemeral-role"), self.creds("ephemeral-role")
        other = self.creds("owner-role")
        raw = self.vault.raw("PUT", "sys/leases/revoke-prefix/database/creds/ephemeral-role")
        self.assertEqual(raw.status, 204, raw)
        self.assertEqual(raw.body, b"")
        for resp in (a, b):
            self.assertFalse(self.pg.role_exists(resp["data"]["username"]))
            self.assertNotIn(resp["lease_id"], self.vault.dev_lease_ids())
        self.assertTrue(self.pg.role_exists(other["data"]["username"]))
        self.assertIn(other["lease_id"], self.vault.dev_lease_ids())
        # A lease ID as the prefix revokes only that lease.
        c, d = self.creds("ephemeral-role"), self.creds("ephemeral-role")
        raw = self.vault.raw("PUT", "sys/leases/revoke-prefix/" + c["lease_id"])
        self.assertEqual(raw.status, 204, raw)
        self.assertFalse(self.pg.role_exists(c["data"]["username"]))
        self.assertTrue(self.pg.role_exists(d["data"]["username"]))
        self.assertIn(d["lease_id"], self.vault.dev_lease_ids())
        # No match: still 204.
        self.assertEqual(self.vault.raw("PUT", "sys/leases/revoke-prefix/database/creds/nope").status, 204)

    def test_deleted_role_revokes_with_stored_statements(self):
        # A role used only here: the lease keeps its revocation statements.
        self.root.secrets.database.create_role(
            name="gone-role", db_name="crdb-config", creation_statements=OWNER_CREATION,
            revocation_statements=OWNER_REVOCATION, default_ttl="1h", max_ttl="24h")
        self.root.secrets.database.configure(
            name="crdb-config", plugin_name="postgresql-database-plugin",
            allowed_roles="crdb-role,owner-role,ephemeral-role,gone-role",
            connection_url=self.pg.connection_url(), username=self.pg.admin_user,
            password=self.pg.admin_password)
        resp = self.creds("gone-role")
        self.assertEqual(self.root.secrets.database.delete_role("gone-role").status_code, 204)
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.secrets.database.read_role, "gone-role")
        self.assertEqual(self.root.sys.revoke_lease(resp["lease_id"]).status_code, 204)
        self.assertFalse(self.pg.role_exists(resp["data"]["username"]))

    # -- token revocation ---------------------------------------------------

    def token(self, policies=("owner-client",), client=None):
        resp = (client or self.root).auth.token.create(policies=list(policies))
        return resp["auth"]["client_token"], resp["auth"]["accessor"]

    def test_revoke_self_drops_users(self):
        token, _ = self.token()
        client = self.client(token=token)
        leases = [self.creds(client=client) for _ in range(2)]
        for r in leases:
            self.assertTrue(self.pg.role_exists(r["data"]["username"]))
        resp = client.auth.token.revoke_self()
        self.assertEqual(resp.status_code, 204)
        self.assertEqual(resp.content, b"")
        # The token is gone at once; its leases are revoked lazily: poll.
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], client.auth.token.lookup_self)
        for r in leases:
            self.wait_lease_gone(r["lease_id"])
            self.wait_role_gone(r["data"]["username"])

    def test_legacy_revoke_self_put(self):
        token, _ = self.token()
        client = self.client(token=token)
        lease = self.creds(client=client)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.revoke_self_token()  # PUT, no body; the legacy call returns nothing
        self.wait_role_gone(lease["data"]["username"])

    def test_revoke_accessor_drops_users(self):
        token, accessor = self.token()
        client = self.client(token=token)
        lease = self.creds(client=client)
        untouched_token, _ = self.token()
        untouched = self.creds(client=self.client(token=untouched_token))
        resp = self.root.auth.token.revoke_accessor(accessor)
        self.assertEqual(resp.status_code, 204)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], client.auth.token.lookup_self)
        self.wait_lease_gone(lease["lease_id"])
        self.wait_role_gone(lease["data"]["username"])
        # Another token's lease is not touched.
        self.assertTrue(self.pg.role_exists(untouched["data"]["username"]))
        self.assertIn(untouched["lease_id"], self.vault.dev_lease_ids())
        self.client(token=untouched_token).auth.token.lookup_self()

    def test_child_token_revocation_cascades(self):
        parent_token, _ = self.token(policies=("owner-parent",))
        parent = self.client(token=parent_token)
        # Policies must be a subset of the parent's; none given = the parent's.
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["child policies must be subset of parent"],
                              parent.auth.token.create, policies=["owner-client"])
        child_resp = parent.auth.token.create()
        self.assertEqual(child_resp["auth"]["policies"], ["default", "owner-parent"])
        child_token = child_resp["auth"]["client_token"]
        child = self.client(token=child_token)
        child_info = child.auth.token.lookup_self()["data"]
        self.assertIs(child_info["orphan"], False)
        grandchild = self.client(token=child.auth.token.create()["auth"]["client_token"])
        grandchild_lease = self.creds(client=grandchild)
        parent_lease = self.creds(client=parent)
        child_lease = self.creds(client=child)

        self.assertEqual(parent.auth.token.revoke_self().status_code, 204)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], child.auth.token.lookup_self)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], grandchild.auth.token.lookup_self)
        for r in (parent_lease, child_lease, grandchild_lease):
            self.wait_lease_gone(r["lease_id"])
            self.wait_role_gone(r["data"]["username"])

    def orphan(self):
        raw = self.vault.raw("POST", "auth/token/create-orphan", body={"policies": ["owner-client"], "ttl": "1h"})
        self.assertEqual(raw.status, 200, raw)
        return self.client(token=raw.json()["auth"]["client_token"])

    def test_revoking_a_token_lease_revokes_the_token_tree(self):
        """A token's lease under sys/leases revokes like the token (expiration.go
        revokeEntry: tokenStore.revokeTree): its children and every secret lease go."""
        (token, _), lease_id = self.new_token_lease("auth/token/create/",
                                                    lambda: self.token(policies=("owner-parent",)))
        parent = self.client(token=token)
        child = self.client(token=parent.auth.token.create()["auth"]["client_token"])
        leases = [self.creds(client=parent), self.creds(client=child)]
        raw = self.vault.raw("PUT", "sys/leases/revoke", body={"lease_id": lease_id})
        self.assertEqual((raw.status, raw.body), (204, b""))
        for client in (parent, child):
            self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], client.auth.token.lookup_self)
        for r in leases:
            self.wait_lease_gone(r["lease_id"])
            self.wait_role_gone(r["data"]["username"])
        self.assertFalse(self.lease_listed(lease_id))
        # sync=false: 202, the token is gone as well.
        client, lease_id = self.new_token_lease("auth/token/create-orphan/", self.orphan)
        raw = self.vault.raw("PUT", "sys/leases/revoke/" + lease_id, body={"sync": False})
        self.assertEqual((raw.status, raw.body), (202, b""))
        wait_for(lambda: not self.lease_listed(lease_id), what="the token lease revoked")
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], client.auth.token.lookup_self)

    def test_revoke_prefix_takes_token_leases(self):
        """revoke-prefix over token leases: a lease ID alone, or every token under a path."""
        (one, one_lease), (two, _) = [self.new_token_lease("auth/token/create-orphan/", self.orphan)
                                      for _ in range(2)]
        (kept_token, _), kept_lease = self.new_token_lease("auth/token/create/", self.token)
        secret = self.creds(client=two)
        raw = self.vault.raw("PUT", "sys/leases/revoke-prefix/" + one_lease)
        self.assertEqual(raw.status, 204, raw)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], one.auth.token.lookup_self)
        two.auth.token.lookup_self()
        raw = self.vault.raw("PUT", "sys/leases/revoke-prefix/auth/token/create-orphan")
        self.assertEqual(raw.status, 204, raw)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], two.auth.token.lookup_self)
        self.wait_lease_gone(secret["lease_id"])
        self.wait_role_gone(secret["data"]["username"])
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.sys.list_leases, "auth/token/create-orphan/")
        # Tokens under auth/token/create and the root token are untouched.
        self.client(token=kept_token).auth.token.lookup_self()
        self.assertTrue(self.lease_listed(kept_lease))
        self.root.auth.token.lookup_self()

    def test_token_expiry_drops_users(self):
        token, accessor = self.token()
        client = self.client(token=token)
        lease = self.creds(client=client)
        result = self.vault.dev("POST", "expire/token", {"accessor": accessor})
        self.assertEqual(result["revoked_tokens"], 1)
        self.assertEqual([(e["lease_id"], e["revoked"]) for e in result["leases"]], [(lease["lease_id"], True)])
        self.wait_lease_gone(lease["lease_id"])
        self.wait_role_gone(lease["data"]["username"])
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"], client.auth.token.lookup_self)


if __name__ == "__main__":
    unittest.main()
