"""Status codes, error texts and envelopes (vault-api.md §1, §2), seal/unseal, and
fault injection through /_dev/fail."""

import json
import time
import unittest
import warnings

import requests

import hvac
import hvac.exceptions

from vaultdev_fixture import (ACL_DENIED, OWNER_CREATION, OWNER_REVOCATION, TUTORIAL_CREATION,
                              UNSUPPORTED_OPERATION, UNSUPPORTED_PATH, UUID_RE, VaultDevTestCase,
                              multierror, random_token)

ENVELOPE_KEYS = ["request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
                 "warnings", "auth"]


class ErrorsTest(VaultDevTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_engine(allowed_roles="crdb-role,owner-role", roles={
            "crdb-role": dict(creation_statements=TUTORIAL_CREATION, default_ttl="1h", max_ttl="24h"),
            "owner-role": dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                               default_ttl="1h", max_ttl="24h"),
            # Exists but the config does not allow it.
            "other-role": dict(creation_statements=TUTORIAL_CREATION),
        })
        cls.root.sys.create_or_update_policy(
            "owner-reader", 'path "database/creds/owner-role" {\n  capabilities = ["read"]\n}\n')

    def setUp(self):
        self.vault.dev("POST", "counters/reset")

    # -- backend errors -------------------------------------------------------

    def test_unknown_role_is_400(self):
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["unknown role: x"],
                              self.root.secrets.database.generate_credentials, "x")
        raw = self.vault.raw("GET", "database/creds/x")
        self.assertRawError(raw, 400, ["unknown role: x"])

    def test_role_not_allowed_is_500(self):
        self.assertVaultError(hvac.exceptions.InternalServerError,
                              ['1 error occurred:\n\t* "other-role" is not an allowed role\n\n'],
                              self.root.secrets.database.generate_credentials, "other-role")
        self.assertEqual(self.pg.roles_with_prefix("v-token-other-ro"), [])

    def test_role_validation(self):
        raw = self.vault.raw("POST", "database/roles/bad-role", body={"creation_statements": TUTORIAL_CREATION})
        self.assertRawError(raw, 400, ["database name is required"])
        raw = self.vault.raw("POST", "database/roles/bad-role",
                             body={"db_name": "crdb-config", "creation_statements": TUTORIAL_CREATION,
                                   "default_ttl": -1})
        self.assertEqual(raw.status, 400, raw)
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.secrets.database.read_role, "bad-role")

    def test_sql_error_is_500(self):
        self.root.secrets.database.configure(
            name="crdb-config", plugin_name="postgresql-database-plugin",
            allowed_roles="crdb-role,owner-role,broken-role",
            connection_url=self.pg.connection_url(), username=self.pg.admin_user, password=self.pg.admin_password)
        self.root.secrets.database.create_role(
            name="broken-role", db_name="crdb-config",
            creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'; "
                                "GRANT SELECT ON TABLE no_such_table TO \"{{name}}\";")
        with self.assertRaises(hvac.exceptions.InternalServerError) as cm:
            self.root.secrets.database.generate_credentials("broken-role")
        errors = cm.exception.errors
        self.assertEqual(len(errors), 1, errors)
        self.assertTrue(errors[0].startswith("1 error occurred:\n\t* failed to execute query: "), errors[0])
        self.assertTrue(errors[0].endswith("\n\n"), errors[0])
        self.assertIn('relation "no_such_table" does not exist', errors[0])
        self.assertIn("42P01", errors[0])
        # One transaction: the CREATE ROLE was rolled back.
        self.assertEqual(self.pg.roles_with_prefix("v-token-broken-r"), [])

    def test_missing_config_is_500(self):
        self.root.secrets.database.create_role(name="orphan-role", db_name="nope",
                                               creation_statements=OWNER_CREATION)
        with self.assertRaises(hvac.exceptions.InternalServerError) as cm:
            self.root.secrets.database.generate_credentials("orphan-role")
        self.assertEqual(len(cm.exception.errors), 1)
        self.assertTrue(cm.exception.errors[0].startswith("1 error occurred:\n\t* "), cm.exception.errors)
        self.assertIn('failed to find entry for connection with name: "nope"', cm.exception.errors[0])

    def test_empty_creation_statements_is_500(self):
        self.root.secrets.database.configure(
            name="empty-config", plugin_name="postgresql-database-plugin", allowed_roles="empty-role",
            connection_url=self.pg.connection_url(), username=self.pg.admin_user, password=self.pg.admin_password)
        raw = self.vault.raw("POST", "database/roles/empty-role", body={"db_name": "empty-config"})
        self.assertEqual(raw.status, 204, raw)
        with self.assertRaises(hvac.exceptions.InternalServerError) as cm:
            self.root.secrets.database.generate_credentials("empty-role")
        self.assertIn("empty creation statements", cm.exception.errors[0])

    def test_display_name_in_username(self):
        token = self.root.auth.token.create(policies=["owner-reader"], display_name="My App!")
        t0 = time.time()
        resp = self.client(token=token["auth"]["client_token"]).secrets.database.generate_credentials("owner-role")
        t1 = time.time()
        # "token-My-App" (not lowercased) truncated to 8; role "owner-role" to 8.
        self.assertUsername(resp["data"]["username"], "token-My-App", "owner-role", t0, t1)
        self.assertTrue(resp["data"]["username"].startswith("v-token-My-owner-ro-"), resp["data"]["username"])
        self.assertTrue(self.pg.role_exists(resp["data"]["username"]))

    def test_namespace_header_trailing_slash(self):
        a = self.vault.raw("GET", "sys/policy/default", namespace="admin").json()
        b = self.vault.raw("GET", "sys/policy/default", namespace="admin/").json()
        self.assertEqual(a["data"]["name"], "default")
        self.assertEqual(a["data"], b["data"])
        # a namespace's mounts differ from root's
        raw = self.vault.raw("GET", "database/roles/owner-role", namespace="admin/")
        self.assertRawError(raw, 404, ['no handler for route "database/roles/owner-role". route entry not found.'])

    def test_config_update_merges(self):
        raw = self.vault.raw("POST", "database/config/merge-config", body={
            "plugin_name": "postgresql-database-plugin", "connection_url": self.pg.connection_url(),
            "username": self.pg.admin_user, "password": self.pg.admin_password, "allowed_roles": "a"})
        self.assertEqual(raw.status, 204, raw)
        raw = self.vault.raw("POST", "database/config/merge-config", body={"allowed_roles": ["merge-role", "b"]})
        self.assertEqual(raw.status, 204, raw)
        data = self.root.secrets.database.read_connection("merge-config")["data"]
        self.assertEqual(data["allowed_roles"], ["merge-role", "b"])
        self.assertEqual(data["plugin_name"], "postgresql-database-plugin")
        self.assertEqual(data["connection_details"],
                         {"connection_url": self.pg.connection_url(), "username": self.pg.admin_user})
        # The role update keeps omitted fields.
        self.root.secrets.database.create_role(name="merge-role", db_name="merge-config",
                                               creation_statements=OWNER_CREATION,
                                               revocation_statements=OWNER_REVOCATION, default_ttl="1h")
        raw = self.vault.raw("POST", "database/roles/merge-role", body={"default_ttl": "30m"})
        self.assertEqual(raw.status, 204, raw)
        role = self.root.secrets.database.read_role("merge-role")["data"]
        self.assertEqual(role["default_ttl"], 1800)
        self.assertEqual(role["creation_statements"], [OWNER_CREATION])
        self.assertEqual(role["revocation_statements"], [OWNER_REVOCATION])
        self.assertEqual(role["db_name"], "merge-config")
        # ... and the merged config still connects (the stored password was kept).
        resp = self.root.secrets.database.generate_credentials("merge-role")
        self.assertEqual(resp["lease_duration"], 1800)
        self.assertIn("merge-config", self.root.secrets.database.list_connections()["data"]["keys"])
        self.assertEqual(self.root.secrets.database.delete_connection("merge-config").status_code, 204)
        self.assertNotIn("merge-config", self.root.secrets.database.list_connections()["data"]["keys"])
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.secrets.database.read_connection,
                              "merge-config")

    def test_unverified_config_fails_at_creds(self):
        wrong = "wrong-" + random_token()
        raw = self.vault.raw("POST", "database/config/unverified", body={
            "plugin_name": "postgresql-database-plugin", "connection_url": self.pg.connection_url(),
            "username": self.pg.admin_user, "password": wrong, "allowed_roles": "unverified-role",
            "verify_connection": False})
        self.assertEqual(raw.status, 204, raw)
        self.root.secrets.database.create_role(name="unverified-role", db_name="unverified",
                                               creation_statements=OWNER_CREATION)
        with self.assertRaises(hvac.exceptions.InternalServerError) as cm:
            self.root.secrets.database.generate_credentials("unverified-role")
        self.assertTrue(cm.exception.errors[0].startswith("1 error occurred:\n\t* "), cm.exception.errors)
        self.assertNotIn(wrong, cm.exception.errors[0])

    def test_scram_password_authentication(self):
        raw = self.vault.raw("POST", "database/config/scram-config", body={
            "plugin_name": "postgresql-database-plugin", "connection_url": self.pg.connection_url(),
            "username": self.pg.admin_user, "password": self.pg.admin_password, "allowed_roles": "scram-role",
            "password_authentication": "scram-sha-256"})
        self.assertEqual(raw.status, 204, raw)
        # The comment shows what {{password}} became in SQL: the SCRAM verifier.
        self.root.secrets.database.create_role(
            name="scram-role", db_name="scram-config",
            creation_statements=OWNER_CREATION + " COMMENT ON ROLE \"{{name}}\" IS '{{password}}';",
            revocation_statements=OWNER_REVOCATION)
        resp = self.root.secrets.database.generate_credentials("scram-role")
        username, password = resp["data"]["username"], resp["data"]["password"]
        self.assertPassword(password)
        comment = self.pg.admin_query(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (username,))[0][0]
        self.assertRegex(comment, r"^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")
        stored = self.pg.admin_query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (username,))[0][0]
        self.assertEqual(stored, comment)
        self.pg.connect(username, password).close()

    def test_config_errors(self):
        raw = self.vault.raw("POST", "database/config/bad", body={"connection_url": self.pg.connection_url()})
        self.assertRawError(raw, 400, ["empty plugin name"])
        wrong = "wrong-password-" + random_token()
        raw = self.vault.raw("POST", "database/config/bad", body={
            "plugin_name": "postgresql-database-plugin", "connection_url": self.pg.connection_url(),
            "username": self.pg.admin_user, "password": wrong, "allowed_roles": "*"})
        self.assertEqual(raw.status, 400, raw)
        self.assertEqual(raw.header("Content-Type"), "application/json")
        errors = raw.json()["errors"]
        self.assertEqual(len(errors), 1, errors)
        self.assertTrue(errors[0].startswith("error creating database object: error verifying connection: "),
                        errors[0])
        self.assertNotIn(wrong, errors[0])
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.secrets.database.read_connection, "bad")

    def test_literal_password_in_url_warns(self):
        url = self.pg.connection_url(templated=False, user=self.pg.admin_user, password=self.pg.admin_password)
        resp = self.root.secrets.database.configure(
            name="literal-config", plugin_name="postgresql-database-plugin", allowed_roles="",
            connection_url=url)
        self.assertIsInstance(resp, dict)
        self.assertEqual(resp["warnings"], [
            "Password found in connection_url, use a templated url to enable root rotation and prevent "
            "read access to password information."])
        data = self.root.secrets.database.read_connection("literal-config")["data"]
        self.assertNotIn(self.pg.admin_password, json.dumps(data))
        # builtin/logical/database/path_config_connection.go connectionReadHandler:
        # strings.Replace(connURL, password, "*****", -1).
        self.assertEqual(data["connection_details"]["connection_url"],
                         url.replace(":%s@" % self.pg.admin_password, ":*****@"))
        self.assertEqual(data["allowed_roles"], [])

    def test_mount_errors(self):
        raw = self.vault.raw("POST", "sys/mounts/database", body={"type": "database"})
        self.assertRawError(raw, 400, ["path is already in use at database/"])
        raw = self.vault.raw("POST", "sys/mounts/other", body={})
        self.assertRawError(raw, 400, ["backend type must be specified as a string"])
        raw = self.vault.raw("POST", "sys/mounts/other", body={"type": "nosuch"})
        self.assertRawError(raw, 400, ["plugin not found in the catalog: nosuch"])

    def test_policy_errors(self):
        raw = self.vault.raw("PUT", "sys/policy/empty", body={"policy": ""})
        self.assertRawError(raw, 400, ["'policy' parameter not supplied or empty"])
        raw = self.vault.raw("PUT", "sys/policy/root", body={"policy": 'path "x" { capabilities = ["read"] }'})
        self.assertRawError(raw, 400, ['cannot update "root" policy'])
        raw = self.vault.raw("DELETE", "sys/policy/default")
        self.assertRawError(raw, 400, ["cannot delete default policy"])
        raw = self.vault.raw("PUT", "sys/policy/badcap", body={"policy": 'path "x" { capabilities = ["fly"] }'})
        self.assertRawError(raw, 400, ['failed to parse policy: path "x": invalid capability "fly"'])
        raw = self.vault.raw("PUT", "sys/policy/unparsable", body={"policy": 'path "x" { capabilities = '})
        self.assertEqual(raw.status, 400, raw)
        self.assertTrue(raw.json()["errors"][0].startswith("failed to parse policy: "), raw)

    # -- authentication and authorization ----------------------------------------

    def test_bad_token_is_403_permission_denied(self):
        client = self.client(token=random_token())
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"],
                              client.secrets.database.generate_credentials, "crdb-role")
        self.assertFalse(client.is_authenticated())

    def test_missing_token_is_403(self):
        raw = self.vault.raw("GET", "database/creds/crdb-role", no_token=True)
        self.assertRawError(raw, 403, ["permission denied"])

    def test_bearer_header(self):
        raw = self.vault.raw("GET", "auth/token/lookup-self", no_token=True,
                             headers={"Authorization": "Bearer " + self.vault.root_token})
        self.assertEqual(raw.status, 200, raw)
        data = raw.json()["data"]
        self.assertEqual(data["id"], self.vault.root_token)
        self.assertEqual(data["policies"], ["root"])
        # --root-token is -dev-root-token-id: a token made by auth/token/create without a
        # display_name (command/server.go enableDev), so "token" as every such token.
        self.assertEqual(data["path"], "auth/token/create")
        self.assertEqual(data["display_name"], "token")
        self.assertEqual(data["ttl"], 0)
        self.assertIsNone(data["expire_time"])
        self.assertIs(data["renewable"], False)

    def test_acl_denied_is_403_multierror(self):
        token = self.root.auth.token.create(policies=["owner-reader"])["auth"]["client_token"]
        client = self.client(token=token)
        self.assertVaultError(hvac.exceptions.Forbidden, [ACL_DENIED],
                              client.secrets.database.generate_credentials, "crdb-role")
        # ACL is checked before the backend: an unknown role is also 403 for this token.
        self.assertVaultError(hvac.exceptions.Forbidden, [ACL_DENIED],
                              client.secrets.database.generate_credentials, "x")
        raw = self.vault.raw("GET", "database/roles/crdb-role", token=token)
        self.assertRawError(raw, 403, [ACL_DENIED])
        # The allowed path still works.
        self.assertIn("username", client.secrets.database.generate_credentials("owner-role")["data"])

    def test_invalid_token_in_vault_1_17s_words(self):
        """Vault 1.17 adds "invalid token" to the refusal of an unknown, revoked or
        expired token (hashicorp/vault PR #25953; docs/concepts/tokens.mdx "Error
        Responses"): the token check's two errors in one multierror. A missing token and
        a policy's denial are answered as before."""
        self.assertEqual(self.vault.dev("GET", "invalid-token"), {"style": "legacy"})
        both = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
        revoked = self.root.auth.token.create(policies=["owner-reader"])["auth"]["client_token"]
        self.assertEqual(self.client(token=revoked).auth.token.revoke_self().status_code, 204)
        limited = self.root.auth.token.create(policies=["owner-reader"])["auth"]["client_token"]
        self.assertEqual(self.vault.dev("POST", "invalid-token", {"style": "1.17"}), {"style": "1.17"})
        try:
            for token in (random_token(), revoked):
                self.assertRawError(self.vault.raw("GET", "database/creds/owner-role", token=token), 403, [both])
                self.assertRawError(self.vault.raw("GET", "auth/token/lookup-self", token=token), 403, [both])
            self.assertRawError(self.vault.raw("GET", "database/creds/owner-role", no_token=True), 403,
                                ["permission denied"])
            self.assertRawError(self.vault.raw("GET", "database/creds/crdb-role", token=limited), 403, [ACL_DENIED])
            self.assertFalse(self.client(token=random_token()).is_authenticated())
        finally:
            self.vault.dev("POST", "invalid-token", {"style": "legacy"})
        self.assertRawError(self.vault.raw("GET", "database/creds/owner-role", token=revoked), 403,
                            ["permission denied"])
        self.assertEqual(self.vault.raw("POST", "/_dev/invalid-token", body={"style": "1.18"}, no_token=True).status,
                         400)

    def test_revoked_token_is_403(self):
        token = self.root.auth.token.create(policies=["owner-reader"])["auth"]["client_token"]
        client = self.client(token=token)
        self.assertEqual(client.auth.token.revoke_self().status_code, 204)
        self.assertVaultError(hvac.exceptions.Forbidden, ["permission denied"],
                              client.secrets.database.generate_credentials, "owner-role")

    def test_token_create_errors_and_policy_normalisation(self):
        resp = self.root.auth.token.create(policies=["Owner-Reader", "owner-reader", "crdb-read"])
        self.assertEqual(resp["auth"]["policies"], ["crdb-read", "default", "owner-reader"])
        self.assertEqual(resp["warnings"], ['Policy "crdb-read" does not exist'])
        token = self.root.auth.token.create(policies=["owner-reader"])["auth"]["client_token"]
        self.root.sys.create_or_update_policy(
            "token-maker", 'path "auth/token/create" {\n  capabilities = ["update"]\n}\n')
        maker = self.root.auth.token.create(policies=["token-maker"])["auth"]["client_token"]
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["child policies must be subset of parent"],
                              self.client(token=maker).auth.token.create, policies=["owner-reader"])
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["root or sudo privileges required to create orphan token"],
                              self.client(token=maker).auth.token.create, no_parent=True)
        # Default: the parent's policies.
        child = self.client(token=maker).auth.token.create()
        self.assertEqual(child["auth"]["policies"], ["default", "token-maker"])
        del token

    def test_token_lookup_without_a_token_looks_up_the_caller(self):
        # token_store.go handleLookup: an empty "token" is the request's own token.
        resp = self.root.auth.token.create(policies=["owner-reader"], display_name="self")
        token = resp["auth"]["client_token"]
        self.root.sys.create_or_update_policy(
            "looker", 'path "auth/token/lookup" {\n  capabilities = ["update"]\n}\n')
        looker = self.root.auth.token.create(policies=["looker"])["auth"]["client_token"]
        raw = self.vault.raw("POST", "auth/token/lookup", body={}, token=looker)
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.json()["data"]["id"], looker)
        raw = self.vault.raw("POST", "auth/token/lookup", body={"token": token}, token=looker)
        self.assertEqual(raw.json()["data"]["display_name"], "token-self")
        self.assertRawError(self.vault.raw("POST", "auth/token/lookup", body={"token": random_token()}), 403,
                            ["bad token"])

    def test_renew_and_revoke_orphan_of_an_unknown_token(self):
        # token_store.go handleRenew and handleRevokeOrphan; handleRevokeTree ignores it.
        unknown = random_token()
        self.assertRawError(self.vault.raw("POST", "auth/token/renew", body={"token": unknown}), 400,
                            ["token not found"])
        self.assertRawError(self.vault.raw("POST", "auth/token/renew", body={}), 400, ["missing token ID"])
        self.assertRawError(self.vault.raw("POST", "auth/token/revoke-orphan", body={"token": unknown}), 400,
                            ["token to revoke not found"])
        self.assertEqual(self.vault.raw("POST", "auth/token/revoke", body={"token": unknown}).status, 204)
        # The privilege check comes first.
        self.root.sys.create_or_update_policy(
            "orphaner", 'path "auth/token/revoke-orphan" {\n  capabilities = ["update"]\n}\n')
        orphaner = self.root.auth.token.create(policies=["orphaner"])["auth"]["client_token"]
        raw = self.vault.raw("POST", "auth/token/revoke-orphan", body={"token": unknown}, token=orphaner)
        self.assertRawError(raw, 400, ["root or sudo privileges required to revoke and orphan"])

    def test_only_a_root_parent_creates_root_tokens(self):
        # token_store.go handleCreateCommon: sudo lifts the subset rule, not the root rule.
        self.root.sys.create_or_update_policy(
            "sudo-maker", 'path "auth/token/create" {\n  capabilities = ["update", "sudo"]\n}\n')
        sudo = self.client(token=self.root.auth.token.create(policies=["sudo-maker"])["auth"]["client_token"])
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["root tokens may not be created without parent token being root"],
                              sudo.auth.token.create, policies=["root"])
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["root tokens may not be created without parent token being root"],
                              sudo.auth.token.create, policies=["owner-reader", "Root"])
        self.assertEqual(sudo.auth.token.create(policies=["owner-reader"])["auth"]["policies"],
                         ["default", "owner-reader"])

    def test_expiring_root_cannot_create_a_non_expiring_root(self):
        parent = self.client(token=self.root.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"])
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["expiring root tokens cannot create non-expiring root tokens"],
                              parent.auth.token.create, policies=["root"])
        child = parent.auth.token.create(policies=["root"], ttl="10m")
        self.assertEqual((child["auth"]["policies"], child["auth"]["lease_duration"]), (["root"], 600))
        # A root token bounded only by its explicit max TTL expires: it may not either.
        bounded = self.root.auth.token.create(policies=["root"], explicit_max_ttl="1h")
        self.assertEqual((bounded["auth"]["lease_duration"], bounded["warnings"]), (3600, None))
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["expiring root tokens cannot create non-expiring root tokens"],
                              self.client(token=bounded["auth"]["client_token"]).auth.token.create,
                              policies=["root"])
        # The dev root token never expires: its root children may be non-expiring.
        self.assertEqual(self.root.auth.token.create(policies=["root"])["auth"]["lease_duration"], 0)

    def test_default_policy_only_when_the_parent_has_it(self):
        """token_store.go handleCreateCommon: without policies the child copies the parent's
        list as it is; with policies a non-sudo caller gets "default" only if its token has
        it; no_default_policy removes "default" even when it was asked for by name."""
        self.root.sys.create_or_update_policy(
            "bare-maker", 'path "auth/token/create" {\n  capabilities = ["update"]\n}\n')
        bare = self.root.auth.token.create(policies=["bare-maker", "owner-reader"], no_default_policy=True)
        self.assertEqual(bare["auth"]["policies"], ["bare-maker", "owner-reader"])
        maker = self.client(token=bare["auth"]["client_token"])
        self.assertEqual(maker.auth.token.create()["auth"]["policies"], ["bare-maker", "owner-reader"])
        self.assertEqual(maker.auth.token.create(policies=["owner-reader"])["auth"]["policies"], ["owner-reader"])
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["child policies must be subset of parent"],
                              maker.auth.token.create, policies=["owner-reader", "default"])
        asked = self.root.auth.token.create(policies=["default", "owner-reader"], no_default_policy=True)
        self.assertEqual(asked["auth"]["policies"], ["owner-reader"])
        # A root caller without policies: its own list, ["root"].
        self.assertEqual(self.root.auth.token.create()["auth"]["policies"], ["root"])

    def test_token_create_warnings(self):
        """handleCreateCommon's warnings in its order: CalculateTTL's, the custom ID's,
        then one per policy that does not exist."""
        custom = "custom-" + random_token()[4:]
        resp = self.root.auth.token.create(id=custom, policies=["no-such-policy"], ttl="2h", explicit_max_ttl="1h")
        self.assertEqual(resp["auth"]["client_token"], custom)
        self.assertEqual(resp["auth"]["lease_duration"], 3600)
        self.assertEqual(resp["warnings"], [
            'TTL of "2h0m0s" exceeded the effective max_ttl of "1h0m0s"; TTL value is capped accordingly',
            "Supplying a custom ID for the token uses the weaker SHA1 hashing instead of the more secure SHA2-256 "
            "HMAC for token obfuscation. SHA1 hashed tokens on the wire leads to less secure lookups.",
            'Policy "no-such-policy" does not exist'])
        # No ttl: the mount default (768h) is what the explicit max caps.
        resp = self.root.auth.token.create(policies=["owner-reader"], explicit_max_ttl="1h")
        self.assertEqual(resp["auth"]["lease_duration"], 3600)
        self.assertEqual(resp["warnings"], [
            'TTL of "768h0m0s" exceeded the effective max_ttl of "1h0m0s"; TTL value is capped accordingly'])
        # Periods: root or sudo only, capped at the max TTL.
        resp = self.root.auth.token.create(policies=["owner-reader"], period="800h")
        self.assertEqual(resp["auth"]["lease_duration"], 768 * 3600)
        self.assertEqual(resp["warnings"], [
            'period of "800h0m0s" exceeded the effective max_ttl of "768h0m0s"; period value is capped accordingly'])
        self.root.sys.create_or_update_policy(
            "period-maker", 'path "auth/token/create" {\n  capabilities = ["update"]\n}\n')
        maker = self.client(token=self.root.auth.token.create(policies=["period-maker"])["auth"]["client_token"])
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["root or sudo privileges required to create periodic token"],
                              maker.auth.token.create, period="1h")

    # -- not found, unsupported -------------------------------------------------

    def test_missing_item_is_404_empty_errors(self):
        for path in ("database/roles/nope", "database/config/nope", "sys/policy/nope"):
            raw = self.vault.raw("GET", path)
            self.assertEqual(raw.status, 404, (path, raw))
            self.assertEqual(raw.header("Content-Type"), "application/json", path)
            self.assertEqual(raw.body.strip(), b'{"errors":[]}', path)
        exc = self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.secrets.database.read_role, "nope")
        self.assertIsInstance(exc.errors, list)
        # legacy client.read returns None on 404
        self.assertIsNone(self.root.read("database/roles/nope"))

    def test_empty_list_is_404(self):
        raw = self.vault.raw("LIST", "sys/leases/lookup/database/creds/unused-role/")
        self.assertEqual(raw.status, 404, raw)
        self.assertEqual(raw.header("Content-Type"), "application/json")
        self.assertEqual(raw.json(), {"errors": []})
        self.assertVaultError(hvac.exceptions.InvalidPath, [], self.root.sys.list_leases,
                              "database/creds/unused-role/")

    def test_list_verb_variants(self):
        expected = ["crdb-role", "other-role", "owner-role"]
        for method, path in (("LIST", "database/roles"), ("LIST", "database/roles/"),
                             ("GET", "database/roles?list=true"), ("GET", "database/roles/?list=True"),
                             ("GET", "database/roles?list=1")):
            raw = self.vault.raw(method, path)
            self.assertEqual(raw.status, 200, (method, path, raw))
            keys = raw.json()["data"]["keys"]
            self.assertTrue(set(expected) <= set(keys), (method, path, keys))
        strict = self.vault.client(strict_http=True)
        self.assertTrue(set(expected) <= set(strict.secrets.database.list_roles()["data"]["keys"]))

    def test_no_handler_is_404(self):
        raw = self.vault.raw("GET", "foo/bar")
        self.assertRawError(raw, 404, ['no handler for route "foo/bar". route entry not found.'])

    def test_unsupported_path_is_404(self):
        raw = self.vault.raw("GET", "database/nosuch")
        self.assertRawError(raw, 404, [UNSUPPORTED_PATH])

    def test_unsupported_operation_is_405(self):
        raw = self.vault.raw("DELETE", "database/creds/crdb-role")
        self.assertRawError(raw, 405, [UNSUPPORTED_OPERATION])

    # -- envelopes ------------------------------------------------------------

    def test_success_envelope(self):
        raw = self.vault.raw("GET", "database/creds/owner-role")
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.header("Content-Type"), "application/json")
        self.assertEqual(raw.header("Cache-Control"), "no-store")
        body = raw.json()
        keys = list(body)
        self.assertEqual(keys[:8], ENVELOPE_KEYS)
        if len(keys) > 8:
            self.assertEqual(keys[8:], ["mount_type"])
            self.assertEqual(body["mount_type"], "database")
        self.assertRegex(body["request_id"], UUID_RE)
        self.assertEqual(sorted(body["data"]), ["password", "username"])
        self.assertEqual(body["lease_duration"], 3600)
        self.assertIs(body["renewable"], True)
        # request ids differ between requests
        again = self.vault.raw("GET", "database/creds/owner-role").json()
        self.assertNotEqual(again["request_id"], body["request_id"])

    def test_204_empty_bodies(self):
        cases = [
            ("PUT", "sys/policy/p204", {"policy": 'path "x" {\n  capabilities = ["read"]\n}\n'}),
            ("POST", "sys/policies/acl/p204b", {"policy": 'path "x" {\n  capabilities = ["read"]\n}\n'}),
            ("POST", "database/roles/r204", {"db_name": "crdb-config", "creation_statements": TUTORIAL_CREATION}),
            ("PUT", "sys/leases/revoke", {"lease_id": "database/creds/crdb-role/AAAAAAAAAAAAAAAAAAAAAAAA"}),
            ("POST", "sys/mounts/db204", {"type": "database"}),
            ("DELETE", "database/roles/r204", None),
            ("DELETE", "sys/policy/p204", None),
        ]
        for method, path, body in cases:
            raw = self.vault.raw(method, path, body=body)
            self.assertEqual(raw.status, 204, (method, path, raw))
            self.assertEqual(raw.body, b"", (method, path))
        token = self.root.auth.token.create(policies=["owner-reader"])["auth"]["client_token"]
        raw = self.vault.raw("POST", "auth/token/revoke-self", token=token)
        self.assertEqual((raw.status, raw.body), (204, b""))

    def test_sys_mounts_top_level_copy(self):
        body = self.vault.raw("GET", "sys/mounts").json()
        self.assertEqual(body["data"]["database/"]["type"], "database")
        self.assertEqual(body["database/"], body["data"]["database/"])
        # sys/leases does not copy. Token leases are leases too (auth/token/...).
        self.root.secrets.database.generate_credentials("owner-role")
        body = self.vault.raw("LIST", "sys/leases/lookup/").json()
        self.assertEqual(body["data"], {"keys": ["auth/", "database/"]})
        self.assertNotIn("keys", body)

    def test_policy_read_forms(self):
        hcl = 'path "database/creds/owner-role" {\n  capabilities = ["read"]\n}\n'
        self.assertEqual(self.vault.raw("PUT", "sys/policies/acl/Mixed-Case", body={"policy": hcl}).status, 204)
        raw = self.vault.raw("GET", "sys/policies/acl/mixed-case")
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.json()["data"], {"name": "mixed-case", "policy": hcl})
        self.assertNotIn("policy", raw.json())  # no top-level copy for sys/policies
        raw = self.vault.raw("GET", "sys/policy/mixed-case")
        self.assertEqual(raw.json()["data"], {"name": "mixed-case", "rules": hcl})
        self.assertEqual(raw.json()["rules"], hcl)
        listing = self.vault.raw("GET", "sys/policy").json()
        self.assertIn("root", listing["data"]["keys"])
        self.assertIn("default", listing["data"]["policies"])
        self.assertIn("mixed-case", listing["data"]["keys"])
        # JSON policies are accepted too.
        js = json.dumps({"path": {"database/creds/owner-role": {"capabilities": ["read"]}}})
        self.assertEqual(self.vault.raw("PUT", "sys/policy/json-pol", body={"policy": js}).status, 204)
        token = self.root.auth.token.create(policies=["json-pol"])["auth"]["client_token"]
        self.client(token=token).secrets.database.generate_credentials("owner-role")

    # -- seal -------------------------------------------------------------------

    def test_sealed_is_503(self):
        self.assertEqual(self.vault.raw("GET", "sys/health", no_token=True).status, 200)
        try:
            self.vault.dev("POST", "seal")
            self.assertVaultError(hvac.exceptions.VaultDown, ["Vault is sealed"],
                                  self.root.secrets.database.generate_credentials, "owner-role")
            raw = self.vault.raw("GET", "database/creds/owner-role")
            self.assertRawError(raw, 503, ["Vault is sealed"])
            raw = self.vault.raw("GET", "sys/health", no_token=True)
            self.assertEqual(raw.status, 503, raw)
            body = raw.json()
            self.assertIs(body["sealed"], True)
            self.assertIs(body["initialized"], True)
            self.assertIs(body["standby"], False)
            head = self.vault.raw("HEAD", "sys/health", no_token=True)
            self.assertEqual((head.status, head.body), (503, b""))
            self.assertEqual(self.root.sys.read_health_status().status_code, 503)
            # sealedcode override
            raw = self.vault.raw("GET", "sys/health?sealedcode=299", no_token=True)
            self.assertEqual(raw.status, 299, raw)
        finally:
            self.vault.dev("POST", "unseal")
        raw = self.vault.raw("GET", "sys/health", no_token=True)
        self.assertEqual(raw.status, 200, raw)
        self.assertIs(raw.json()["sealed"], False)
        self.assertIn("username", self.root.secrets.database.generate_credentials("owner-role")["data"])

    def test_health_body(self):
        raw = self.vault.raw("GET", "sys/health", no_token=True)
        self.assertEqual(raw.status, 200, raw)
        body = raw.json()
        for key, value in (("initialized", True), ("sealed", False), ("standby", False),
                           ("performance_standby", False), ("replication_performance_mode", "disabled"),
                           ("replication_dr_mode", "disabled")):
            self.assertEqual(body[key], value, key)
        self.assertTrue(abs(body["server_time_utc"] - time.time()) < 5)
        self.assertIsInstance(body["version"], str)
        raw = self.vault.raw("GET", "sys/health?activecode=201", no_token=True)
        self.assertEqual(raw.status, 201)
        raw = self.vault.raw("GET", "sys/health?activecode=abc", no_token=True)
        self.assertRawError(raw, 400, [])

    # -- fault injection ----------------------------------------------------------

    INJECTED = ["injected failure (vault-dev /_dev/fail)"]

    def test_dev_fail_503_visible_to_client(self):
        self.vault.dev("POST", "fail", {"path": "database/creds/owner-role", "count": 1, "status": 503,
                                        "delay_ms": 0, "mode": "status"})
        self.assertVaultError(hvac.exceptions.VaultDown, self.INJECTED,
                              self.root.secrets.database.generate_credentials, "owner-role")
        # count=1: the next request goes through.
        self.assertIn("username", self.root.secrets.database.generate_credentials("owner-role")["data"])

    def test_dev_fail_429_visible_to_client(self):
        self.vault.dev("POST", "fail", {"path": "database/creds/", "count": 2, "status": 429,
                                        "delay_ms": 0, "mode": "status"})
        for role in ("owner-role", "crdb-role"):  # a prefix matches both
            self.assertVaultError(hvac.exceptions.RateLimitExceeded, self.INJECTED,
                                  self.root.secrets.database.generate_credentials, role)
        self.assertIn("username", self.root.secrets.database.generate_credentials("owner-role")["data"])

    def test_dev_fail_only_matching_prefix(self):
        self.vault.dev("POST", "fail", {"path": "database/creds/crdb-role", "count": 1, "status": 503,
                                        "delay_ms": 0, "mode": "status"})
        self.assertIn("username", self.root.secrets.database.generate_credentials("owner-role")["data"])
        with self.assertRaises(hvac.exceptions.VaultDown):
            self.root.secrets.database.generate_credentials("crdb-role")

    def test_dev_fail_with_vaults_errors_and_headers(self):
        """/_dev/fail can answer with Vault's own errors[] and headers: a renewal whose
        database call failed (400 "failed to renew entry: ...", expiration.go
        renewEntry) and a quota's 429 with Retry-After (http/util.go
        rateLimitQuotaWrapping)."""
        # The real path first: the backend's renew error (the role's renew statement
        # fails in PostgreSQL) wrapped by renewEntry, answered 400 by handleRenew
        # (logical_system.go, handleErrorNoReadOnlyForward); the lease is still there.
        self.root.secrets.database.configure(
            name="renew-config", plugin_name="postgresql-database-plugin", allowed_roles="badrenew-role",
            connection_url=self.pg.connection_url(), username=self.pg.admin_user, password=self.pg.admin_password)
        self.root.secrets.database.create_role(
            name="badrenew-role", db_name="renew-config", creation_statements=OWNER_CREATION,
            revocation_statements=OWNER_REVOCATION, renew_statements='ALTER ROLE "{{name}}" NO_SUCH_OPTION;')
        bad = self.root.secrets.database.generate_credentials("badrenew-role")["lease_id"]
        with self.assertRaises(hvac.exceptions.InvalidRequest) as cm:
            self.root.sys.renew_lease(bad)
        self.assertEqual(len(cm.exception.errors), 1, cm.exception.errors)
        self.assertTrue(cm.exception.errors[0].startswith("failed to renew entry: resp: (*logical.Response)(nil) err: "),
                        cm.exception.errors)
        self.assertEqual(self.root.sys.read_lease(bad)["data"]["id"], bad)
        self.assertEqual(self.root.sys.revoke_lease(bad).status_code, 204)
        # The same shape injected, for a renewal vault-dev would otherwise grant.
        lease = self.root.secrets.database.generate_credentials("owner-role")["lease_id"]
        db_down = ("failed to renew entry: resp: (*logical.Response)(nil) err: failed to connect to `host=127.0.0.1 "
                   "user=vault database=app`: dial error (dial tcp 127.0.0.1:5432: connect: connection refused)")
        self.vault.dev("POST", "fail", {"path": "sys/leases/renew", "count": 1, "status": 400, "errors": [db_down]})
        self.assertVaultError(hvac.exceptions.InvalidRequest, [db_down], self.root.sys.renew_lease, lease)
        self.assertEqual(self.root.sys.renew_lease(lease)["lease_id"], lease)  # used up: the real answer
        quota = 'request path "database/creds/owner-role": rate limit quota exceeded'
        rule = {"path": "database/creds/owner-role", "count": 1, "status": 429, "errors": [quota],
                "headers": {"Retry-After": "7"}}
        self.vault.dev("POST", "fail", rule)
        self.assertEqual(self.vault.dev("GET", "fail"), [dict(rule, method="", delay_ms=0, mode="status")])
        raw = self.vault.raw("GET", "database/creds/owner-role")
        self.assertRawError(raw, 429, [quota])
        self.assertEqual(raw.header("Retry-After"), "7")
        self.assertEqual(self.vault.raw("POST", "/_dev/fail", body={"path": "x", "errors": "no"}, no_token=True).status,
                         400)
        self.assertEqual(self.vault.raw("POST", "/_dev/fail", body={"path": "x", "headers": {"a": 1}},
                                        no_token=True).status, 400)

    def test_dev_fail_delay(self):
        self.vault.dev("POST", "fail", {"path": "database/creds/owner-role", "count": 1, "delay_ms": 400,
                                        "mode": "delay"})
        t0 = time.monotonic()
        resp = self.root.secrets.database.generate_credentials("owner-role")
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        self.assertIn("username", resp["data"])
        self.assertEqual(self.vault.dev("GET", "fail"), [])  # count=1: used up

    def test_dev_fail_reset(self):
        self.vault.dev("POST", "fail", {"path": "database/creds/owner-role", "count": 1, "mode": "reset"})
        # A partial response head, then RST: requests reports a broken connection.
        with self.assertRaises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            self.client().secrets.database.generate_credentials("owner-role")
        self.assertIn("username", self.client().secrets.database.generate_credentials("owner-role")["data"])

    def test_dev_fail_method_filter_and_clear(self):
        self.vault.dev("POST", "fail", {"path": "database/roles/", "count": 5, "status": 500, "method": "POST"})
        self.assertEqual(self.root.secrets.database.read_role("owner-role")["data"]["db_name"], "crdb-config")
        self.assertEqual(len(self.vault.dev("GET", "fail")), 1)
        self.vault.dev("POST", "fail/clear")
        self.assertEqual(self.vault.dev("GET", "fail"), [])
        self.assertEqual(self.vault.raw("POST", "database/roles/r-clear", body={
            "db_name": "crdb-config", "creation_statements": TUTORIAL_CREATION}).status, 204)

    def test_dev_counters(self):
        self.vault.dev("POST", "counters/reset")
        self.assertEqual(self.vault.dev("GET", "counters")["total"], 0)
        for _ in range(3):
            self.root.secrets.database.generate_credentials("owner-role")
        self.root.secrets.database.list_roles()
        after = self.vault.dev("GET", "counters")
        self.assertEqual(after["total"], 4)
        self.assertEqual(after["paths"]["database/creds/owner-role"], 3)
        self.assertEqual(after["requests"]["GET database/creds/owner-role"], 3)
        self.assertEqual(after["requests"]["LIST database/roles"], 1)

    def test_legacy_create_token_sends_nulls(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            resp = self.root.create_token(policies=["owner-reader"])
        auth = resp["auth"]
        self.assertEqual(auth["policies"], ["default", "owner-reader"])
        self.assertIs(auth["renewable"], True)
        info = self.client(token=auth["client_token"]).auth.token.lookup_self()["data"]
        self.assertEqual(info["display_name"], "token")
        self.assertEqual(info["num_uses"], 0)


if __name__ == "__main__":
    unittest.main()
