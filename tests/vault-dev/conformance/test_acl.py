"""ACL engine (vault-api.md §3): exact beats glob, `+` segments, no fallback to a worse
glob, deny wins across policies, sudo for root-protected paths, the default policy."""

import unittest

import hvac
import hvac.exceptions

from vaultdev_fixture import ACL_DENIED, OWNER_CREATION, OWNER_REVOCATION, VaultDevTestCase

ROLES = ["r1", "r2", "r22", "plus-role", "deny-role", "other"]

POLICIES = {
    # An exact rule wins over a glob that would deny.
    "exact-vs-glob": """
path "database/creds/r1" {
  capabilities = ["read"]
}
path "database/creds/*" {
  capabilities = ["deny"]
}
""",
    # No fallback: the longer glob is best for r2* and has no read.
    "longest-glob": """
path "database/creds/r*" {
  capabilities = ["read"]
}
path "database/creds/r2*" {
  capabilities = ["list"]
}
""",
    # `+` matches exactly one segment.
    "plus": """
path "database/+/plus-role" {
  capabilities = ["read"]
}
path "database/+" {
  capabilities = ["read"]
}
""",
    "deny-a": """
path "database/creds/deny-role" {
  capabilities = ["read"]
}
""",
    "deny-b": """
path "database/creds/deny-role" {
  capabilities = ["deny"]
}
""",
    "union-a": """
path "database/roles/r1" {
  capabilities = ["read"]
}
""",
    "union-b": """
path "database/roles/r1" {
  capabilities = ["update"]
}
""",
    "lease-list": """
path "sys/leases/lookup/*" {
  capabilities = ["list"]
}
""",
    "lease-list-sudo": """
path "sys/leases/lookup/*" {
  capabilities = ["list", "sudo"]
}
""",
    "lease-list-exact": """
path "sys/leases/lookup/database/creds/r1" {
  capabilities = ["list", "sudo"]
}
""",
    # Ranking: the later first wildcard wins ("database/creds/*" over "database/+/r2").
    "rank-later-wildcard": """
path "database/+/r2" {
  capabilities = ["deny"]
}
path "database/creds/*" {
  capabilities = ["read"]
}
""",
    # Same first-wildcard position: no trailing * wins ("database/creds/+" over "database/creds/*").
    # (With "database/creds/r*" the * would be later, at index 16, and win.)
    "rank-no-trailing-star": """
path "database/creds/*" {
  capabilities = ["read"]
}
path "database/creds/+" {
  capabilities = ["list"]
}
""",
    "list-roles-noslash": """
path "database/roles" {
  capabilities = ["list"]
}
""",
    "list-roles-slash": """
path "database/roles/" {
  capabilities = ["list"]
}
""",
    "prefix-nosudo": """
path "sys/leases/revoke-prefix/*" {
  capabilities = ["update"]
}
""",
    "prefix-sudo": """
path "sys/leases/revoke-prefix/*" {
  capabilities = ["update", "sudo"]
}
""",
}


class AclTest(VaultDevTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        spec = dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                    default_ttl="1h", max_ttl="24h")
        cls.setup_engine(allowed_roles="*", roles={name: spec for name in ROLES})
        for name, hcl in POLICIES.items():
            cls.root.sys.create_or_update_policy(name, hcl)
        # One lease so that sys/leases/lookup/database/creds/r1/ lists something.
        cls.r1_lease = cls.root.secrets.database.generate_credentials("r1")["lease_id"]

    def token_client(self, *policies):
        resp = self.root.auth.token.create(policies=list(policies))
        return self.client(token=resp["auth"]["client_token"])

    def assertAllowed(self, client, role):
        resp = client.secrets.database.generate_credentials(role)
        self.assertIn("username", resp["data"])

    def assertDenied(self, func, *args, **kwargs):
        self.assertVaultError(hvac.exceptions.Forbidden, [ACL_DENIED], func, *args, **kwargs)

    def test_exact_beats_glob(self):
        c = self.token_client("exact-vs-glob")
        self.assertAllowed(c, "r1")
        self.assertDenied(c.secrets.database.generate_credentials, "r2")
        self.assertDenied(c.secrets.database.generate_credentials, "other")

    def test_longest_glob_no_fallback(self):
        c = self.token_client("longest-glob")
        self.assertAllowed(c, "r1")
        self.assertDenied(c.secrets.database.generate_credentials, "r2")
        self.assertDenied(c.secrets.database.generate_credentials, "r22")
        self.assertDenied(c.secrets.database.generate_credentials, "other")

    def test_plus_matches_one_segment(self):
        c = self.token_client("plus")
        self.assertAllowed(c, "plus-role")
        self.assertEqual(c.secrets.database.read_role("plus-role")["data"]["db_name"], "crdb-config")
        self.assertDenied(c.secrets.database.generate_credentials, "other")
        # "database/+" is one segment after database/: not database/creds/other.
        raw = self.vault.raw("GET", "database/creds/other", token=c.token)
        self.assertRawError(raw, 403, [ACL_DENIED])

    def test_rank_later_first_wildcard(self):
        c = self.token_client("rank-later-wildcard")
        self.assertAllowed(c, "r2")
        self.assertAllowed(c, "other")

    def test_rank_no_trailing_star(self):
        c = self.token_client("rank-no-trailing-star")
        self.assertDenied(c.secrets.database.generate_credentials, "r1")
        self.assertDenied(c.secrets.database.generate_credentials, "other")
        # Only the glob matches two segments below creds/.
        raw = self.vault.raw("GET", "database/creds/r1/extra", token=c.token)
        self.assertNotEqual(raw.status, 403, raw)

    def test_rank_later_glob_beats_plus(self):
        self.root.sys.create_or_update_policy("rank-later-glob", """
path "database/creds/r*" {
  capabilities = ["read"]
}
path "database/creds/+" {
  capabilities = ["list"]
}
""")
        c = self.token_client("rank-later-glob")
        self.assertAllowed(c, "r1")
        self.assertDenied(c.secrets.database.generate_credentials, "other")

    def test_rank_fewer_plus(self):
        self.root.sys.create_or_update_policy("rank-fewer-plus", """
path "database/+/+" {
  capabilities = ["deny"]
}
path "database/+/r1" {
  capabilities = ["read"]
}
""")
        c = self.token_client("rank-fewer-plus")
        self.assertAllowed(c, "r1")
        self.assertDenied(c.secrets.database.generate_credentials, "r2")

    def test_deny_wins_across_policies(self):
        self.assertAllowed(self.token_client("deny-a"), "deny-role")
        c = self.token_client("deny-a", "deny-b")
        self.assertDenied(c.secrets.database.generate_credentials, "deny-role")

    def test_same_pattern_capabilities_merge(self):
        read_only = self.token_client("union-a")
        self.assertEqual(read_only.secrets.database.read_role("r1")["data"]["default_ttl"], 3600)
        self.assertDenied(read_only.secrets.database.create_role, name="r1", db_name="crdb-config",
                          creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                          default_ttl="1h", max_ttl="24h")
        both = self.token_client("union-a", "union-b")
        resp = both.secrets.database.create_role(
            name="r1", db_name="crdb-config", creation_statements=OWNER_CREATION,
            revocation_statements=OWNER_REVOCATION, default_ttl="1h", max_ttl="24h")
        self.assertEqual(resp.status_code, 204)
        self.assertEqual(both.secrets.database.read_role("r1")["data"]["db_name"], "crdb-config")

    def test_list_exact_rule_with_and_without_slash(self):
        for policy in ("list-roles-noslash", "list-roles-slash"):
            c = self.token_client(policy)
            self.assertEqual(sorted(c.secrets.database.list_roles()["data"]["keys"]), sorted(ROLES), policy)
            raw = self.vault.raw("GET", "database/roles?list=true", token=c.token)
            self.assertEqual(raw.status, 200, (policy, raw))
            # list is not read
            self.assertDenied(c.secrets.database.read_role, "r1")

    def test_lease_list_needs_sudo(self):
        key = self.r1_lease.rsplit("/", 1)[1]
        c = self.token_client("lease-list")
        self.assertDenied(c.sys.list_leases, "database/creds/r1/")
        c = self.token_client("lease-list-sudo")
        self.assertIn(key, c.sys.list_leases("database/creds/r1/")["data"]["keys"])
        # An exact rule without the trailing slash applies to the LIST of the path with it.
        c = self.token_client("lease-list-exact")
        self.assertIn(key, c.sys.list_leases("database/creds/r1/")["data"]["keys"])
        self.assertDenied(c.sys.list_leases, "database/creds/r2/")

    def test_revoke_prefix_needs_sudo(self):
        c = self.token_client("prefix-nosudo")
        raw = self.vault.raw("PUT", "sys/leases/revoke-prefix/database/creds/nothing", token=c.token)
        self.assertRawError(raw, 403, [ACL_DENIED])
        c = self.token_client("prefix-sudo")
        raw = self.vault.raw("PUT", "sys/leases/revoke-prefix/database/creds/nothing", token=c.token)
        self.assertEqual((raw.status, raw.body), (204, b""))

    def test_default_policy(self):
        # (A root child without policies inherits ["root"]: ask for "default" explicitly.)
        resp = self.root.auth.token.create(policies=["default"])
        self.assertEqual(resp["auth"]["policies"], ["default"])
        c = self.client(token=resp["auth"]["client_token"])
        self.assertEqual(c.auth.token.lookup_self()["data"]["policies"], ["default"])
        self.assertDenied(c.secrets.database.generate_credentials, "r1")
        self.assertDenied(c.secrets.database.list_roles)
        self.assertDenied(c.sys.revoke_lease, self.r1_lease)
        self.assertDenied(c.sys.create_or_update_policy, "x", 'path "x" { capabilities = ["read"] }')
        self.assertDenied(c.sys.enable_secrets_engine, "database", path="db2")
        self.assertDenied(c.auth.token.create, policies=["default"])
        # renew and lookup of leases are in the default policy.
        self.assertEqual(c.sys.read_lease(self.r1_lease)["data"]["id"], self.r1_lease)

    def test_root_child_without_policies_is_root(self):
        resp = self.root.auth.token.create()
        self.assertEqual(resp["auth"]["policies"], ["root"])
        # a root-policy token with no ttl never expires
        self.assertEqual(resp["auth"]["lease_duration"], 0)
        self.assertIs(resp["auth"]["renewable"], False)
        c = self.client(token=resp["auth"]["client_token"])
        self.assertAllowed(c, "other")

    def test_policy_name_lowercased(self):
        self.root.sys.create_or_update_policy("Upper-R1", 'path "database/creds/r1" {\n  capabilities = ["read"]\n}\n')
        c = self.token_client("upper-r1")
        self.assertAllowed(c, "r1")


if __name__ == "__main__":
    unittest.main()
