"""Lease engine beyond the tutorial: renew and its TTL arithmetic (vault-api.md §4),
lookup, expiry via /_dev/expire/lease; token renewal, root tokens and token leases."""

import json
import subprocess
import time
import unittest
import urllib.request

import hvac
import hvac.exceptions

from vaultdev_fixture import (OWNER_CREATION, OWNER_REVOCATION, VaultDev, VaultDevTestCase, go_duration,
                              parse_rfc3339, random_token, wait_for)

LEASE_LOOKUP_KEYS = ["expire_time", "id", "issue_time", "last_renewal", "renewable", "ttl"]


class LeaseTest(VaultDevTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_engine(allowed_roles="short-role,long-role,tiny-role", roles={
            # expires by itself within seconds
            "tiny-role": dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                              default_ttl="2s", max_ttl="1m"),
            # default 1h, max 2h: renewals past 2h after issue are capped.
            "short-role": dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                               default_ttl="1h", max_ttl="2h"),
            # TTLs as integers and seconds strings are accepted too.
            "long-role": dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                              default_ttl=600, max_ttl="86400"),
        })

    def creds(self, role="short-role"):
        t0 = time.time()
        resp = self.root.secrets.database.generate_credentials(role)
        return resp, t0, time.time()

    def test_role_ttls_parsed(self):
        data = self.root.secrets.database.read_role("long-role")["data"]
        self.assertEqual((data["default_ttl"], data["max_ttl"]), (600, 86400))
        data = self.root.secrets.database.read_role("short-role")["data"]
        self.assertEqual((data["default_ttl"], data["max_ttl"]), (3600, 7200))
        data = self.root.secrets.database.read_role("short-role")["data"]
        self.assertEqual(data["revocation_statements"], [OWNER_REVOCATION])
        self.assertEqual(data["creation_statements"], [OWNER_CREATION])

    def test_creds_lease_duration_is_role_default(self):
        resp, t0, t1 = self.creds("long-role")
        self.assertEqual(resp["lease_duration"], 600)
        self.assertValidUntil(resp["data"]["username"], (t0 + t1) / 2 + 600 + 5, slack=3)

    def test_lookup(self):
        resp, t0, t1 = self.creds()
        lookup = self.root.sys.read_lease(resp["lease_id"])
        data = lookup["data"]
        self.assertEqual(sorted(data), LEASE_LOOKUP_KEYS)
        self.assertEqual(data["id"], resp["lease_id"])
        self.assertIs(data["renewable"], True)
        self.assertIsNone(data["last_renewal"])
        self.assertTrue(3595 <= data["ttl"] <= 3600, data["ttl"])
        issue = parse_rfc3339(data["issue_time"]).timestamp()
        expire = parse_rfc3339(data["expire_time"]).timestamp()
        self.assertTrue(t0 - 1 <= issue <= t1 + 1, (t0, issue, t1))
        self.assertTrue(abs(expire - issue - 3600) <= 1, (issue, expire))
        self.assertTrue(abs(expire - time.time() - data["ttl"]) <= 2)
        # The lookup response itself is not a lease.
        self.assertEqual(lookup["lease_id"], "")
        self.assertEqual(lookup["lease_duration"], 0)

    def test_lookup_errors(self):
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease"],
                              self.root.sys.read_lease, "database/creds/short-role/AAAAAAAAAAAAAAAAAAAAAAAA")
        raw = self.vault.raw("PUT", "sys/leases/lookup", body={})
        self.assertRawError(raw, 400, ["lease_id must be specified"])

    def test_renew_default_increment(self):
        resp, _, _ = self.creds()
        t0 = time.time()
        renewed = self.root.sys.renew_lease(resp["lease_id"])  # increment null -> role default
        t1 = time.time()
        self.assertEqual(renewed["lease_id"], resp["lease_id"])
        self.assertIs(renewed["renewable"], True)
        self.assertEqual(renewed["lease_duration"], 3600)
        self.assertIsNone(renewed["warnings"])
        self.assertIsNone(renewed["data"])
        self.assertValidUntil(resp["data"]["username"], (t0 + t1) / 2 + 3600 + 5, slack=3)
        raw = self.vault.raw("PUT", "sys/leases/renew", body={"lease_id": resp["lease_id"], "increment": 0})
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.json()["lease_duration"], 3600)
        data = self.root.sys.read_lease(resp["lease_id"])["data"]
        self.assertIsNotNone(data["last_renewal"])
        last = parse_rfc3339(data["last_renewal"]).timestamp()
        self.assertTrue(t0 - 1 <= last <= t1 + 1)

    def test_renew_shorter_moves_valid_until_back(self):
        resp, _, _ = self.creds()
        t0 = time.time()
        renewed = self.root.sys.renew_lease(resp["lease_id"], increment=1800)
        t1 = time.time()
        self.assertEqual(renewed["lease_duration"], 1800)
        self.assertIsNone(renewed["warnings"])
        self.assertValidUntil(resp["data"]["username"], (t0 + t1) / 2 + 1800 + 5, slack=3)
        data = self.root.sys.read_lease(resp["lease_id"])["data"]
        self.assertTrue(1795 <= data["ttl"] <= 1800, data["ttl"])
        expire = parse_rfc3339(data["expire_time"]).timestamp()
        self.assertTrue(abs(expire - ((t0 + t1) / 2 + 1800)) <= 2)

    def check_capped(self, lease_id, username, increment, increment_text, t_issue):
        t0 = time.time()
        renewed = self.root.sys.renew_lease(lease_id, increment=increment)
        t1 = time.time()
        left = renewed["lease_duration"]
        # Capped at issue + max_ttl (2h) - now.
        self.assertTrue(7200 - (t1 - t_issue) - 2 <= left <= 7200, left)
        self.assertLess(left, 7201)
        self.assertEqual(renewed["warnings"], [
            'TTL of "%s" exceeded the effective max_ttl of "%s"; TTL value is capped accordingly'
            % (increment_text, go_duration(left))])
        self.assertIs(renewed["renewable"], True)
        self.assertEqual(renewed["lease_id"], lease_id)
        # VALID UNTIL moved to now + capped TTL + 5 s.
        self.assertValidUntil(username, (t0 + t1) / 2 + left + 5, slack=3)
        return renewed

    def test_renew_beyond_max_ttl_is_capped(self):
        resp, t0, _ = self.creds()
        username = resp["data"]["username"]
        before = self.assertValidUntil(username, t0 + 3605, slack=3)
        self.check_capped(resp["lease_id"], username, 3 * 3600, "3h0m0s", t0)
        after = self.pg.role(username)["rolvaliduntil"].timestamp()
        self.assertGreater(after - before, 3500)
        expire = parse_rfc3339(self.root.sys.read_lease(resp["lease_id"])["data"]["expire_time"]).timestamp()
        self.assertTrue(abs(expire - (t0 + 7200)) <= 2, (expire, t0))

    def test_renew_with_go_duration_increment(self):
        resp, t0, _ = self.creds()
        self.check_capped(resp["lease_id"], resp["data"]["username"], "150m", "2h30m0s", t0)

    def test_renew_errors(self):
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["lease not found"],
                              self.root.sys.renew_lease, "database/creds/short-role/AAAAAAAAAAAAAAAAAAAAAAAA")
        raw = self.vault.raw("PUT", "sys/leases/renew", body={})
        self.assertRawError(raw, 400, ["lease_id must be specified"])
        resp, _, _ = self.creds()
        raw = self.vault.raw("PUT", "sys/leases/renew", body={"lease_id": resp["lease_id"], "increment": -5})
        self.assertEqual(raw.status, 400, raw)

    def test_renew_by_url_and_legacy_path(self):
        resp, _, _ = self.creds()
        raw = self.vault.raw("PUT", "sys/leases/renew/" + resp["lease_id"], body={"increment": 1200})
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.json()["lease_duration"], 1200)
        raw = self.vault.raw("PUT", "sys/renew", body={"lease_id": resp["lease_id"], "increment": "20m"})
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.json()["lease_duration"], 1200)
        self.assertEqual(raw.json()["lease_id"], resp["lease_id"])

    def test_default_policy_token_can_renew_and_lookup_any_lease(self):
        resp, _, _ = self.creds()
        token = self.root.auth.token.create(policies=["default"])["auth"]["client_token"]
        client = self.client(token=token)
        self.assertEqual(client.sys.renew_lease(resp["lease_id"], increment=900)["lease_duration"], 900)
        self.assertEqual(client.sys.read_lease(resp["lease_id"])["data"]["id"], resp["lease_id"])
        # ... but not revoke it (the default policy has no sys/leases/revoke).
        self.assertVaultError(hvac.exceptions.Forbidden, ["1 error occurred:\n\t* permission denied\n\n"],
                              client.sys.revoke_lease, resp["lease_id"])
        self.assertTrue(self.pg.role_exists(resp["data"]["username"]))

    def test_service_token_ttl_does_not_cap_lease(self):
        token = self.root.auth.token.create(policies=["default"], ttl="60s")
        self.assertEqual(token["auth"]["lease_duration"], 60)
        self.root.sys.create_or_update_policy("short-reader", 'path "database/creds/short-role" { capabilities = ["read"] }')
        token = self.root.auth.token.create(policies=["short-reader"], ttl="60s")["auth"]["client_token"]
        resp = self.client(token=token).secrets.database.generate_credentials("short-role")
        self.assertEqual(resp["lease_duration"], 3600)

    def test_renew_after_role_deleted(self):
        self.root.secrets.database.create_role(
            name="doomed-role", db_name="crdb-config", creation_statements=OWNER_CREATION,
            revocation_statements=OWNER_REVOCATION, default_ttl="1h", max_ttl="2h")
        self.root.secrets.database.configure(
            name="crdb-config", plugin_name="postgresql-database-plugin",
            allowed_roles="short-role,long-role,doomed-role",
            connection_url=self.pg.connection_url(), username=self.pg.admin_user, password=self.pg.admin_password)
        resp = self.root.secrets.database.generate_credentials("doomed-role")
        self.root.secrets.database.delete_role("doomed-role")
        with self.assertRaises(hvac.exceptions.InvalidRequest) as cm:
            self.root.sys.renew_lease(resp["lease_id"])
        self.assertEqual(len(cm.exception.errors), 1, cm.exception.errors)
        self.assertTrue(cm.exception.errors[0].endswith('could not find role with name "doomed-role"'),
                        cm.exception.errors)
        # Revocation still works, with the statements stored in the lease.
        self.assertEqual(self.root.sys.revoke_lease(resp["lease_id"]).status_code, 204)
        self.assertFalse(self.pg.role_exists(resp["data"]["username"]))

    def test_mount_ttls(self):
        resp = self.root.sys.enable_secrets_engine(
            "database", path="tuned", config={"default_lease_ttl": "10m", "max_lease_ttl": "30m"})
        self.assertEqual(resp.status_code, 204)
        self.root.secrets.database.configure(
            name="cfg", plugin_name="postgresql-database-plugin", allowed_roles="*", mount_point="tuned",
            connection_url=self.pg.connection_url(), username=self.pg.admin_user, password=self.pg.admin_password)
        common = dict(db_name="cfg", creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                      mount_point="tuned")
        self.root.secrets.database.create_role(name="no-ttl", **common)
        self.root.secrets.database.create_role(name="long", default_ttl="1h", max_ttl="2h", **common)
        self.root.secrets.database.create_role(name="short", default_ttl="2m", max_ttl="5m", **common)
        # role default 0 -> mount default
        self.assertEqual(self.root.secrets.database.generate_credentials("no-ttl", mount_point="tuned")
                         ["lease_duration"], 600)
        # capped by the mount max
        self.assertEqual(self.root.secrets.database.generate_credentials("long", mount_point="tuned")
                         ["lease_duration"], 1800)
        short = self.root.secrets.database.generate_credentials("short", mount_point="tuned")
        self.assertEqual(short["lease_duration"], 120)
        self.assertLeaseId(short["lease_id"], "tuned/creds/short")
        renewed = self.root.sys.renew_lease(short["lease_id"], increment=3600)
        self.assertTrue(298 <= renewed["lease_duration"] <= 300, renewed)
        self.assertEqual(renewed["warnings"], [
            'TTL of "1h0m0s" exceeded the effective max_ttl of "%s"; TTL value is capped accordingly'
            % go_duration(renewed["lease_duration"])])
        raw = self.vault.raw("POST", "sys/mounts/bad", body={
            "type": "database", "config": {"default_lease_ttl": "2h", "max_lease_ttl": "1h"}})
        self.assertRawError(raw, 400, ["given default lease TTL greater than given max lease TTL"])

    def test_token_renew_self(self):
        resp = self.root.auth.token.create(policies=["default"], ttl="1h")
        client = self.client(token=resp["auth"]["client_token"])
        renewed = client.auth.token.renew_self(increment="2h")
        self.assertEqual(renewed["auth"]["lease_duration"], 7200)
        self.assertEqual(renewed["auth"]["client_token"], resp["auth"]["client_token"])
        self.assertTrue(7195 <= client.auth.token.lookup_self()["data"]["ttl"] <= 7200)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["lease is not renewable"],
                              self.root.auth.token.renew_self)

    def test_token_lookup_self_fields(self):
        resp = self.root.auth.token.create(policies=["default"], ttl="1h", display_name="My App!")
        data = self.client(token=resp["auth"]["client_token"]).auth.token.lookup_self()["data"]
        for key in ("accessor", "creation_time", "creation_ttl", "display_name", "entity_id", "expire_time",
                    "explicit_max_ttl", "id", "issue_time", "meta", "num_uses", "orphan", "path", "policies",
                    "renewable", "ttl", "type"):
            self.assertIn(key, data)
        self.assertEqual(data["display_name"], "token-My-App")
        self.assertEqual(data["creation_ttl"], 3600)
        self.assertTrue(3595 <= data["ttl"] <= 3600)
        self.assertEqual(data["explicit_max_ttl"], 0)
        self.assertEqual(data["type"], "service")
        self.assertEqual(data["path"], "auth/token/create")
        self.assertIs(data["renewable"], True)
        self.assertEqual(data["entity_id"], "")
        self.assertIsNone(data["meta"])
        self.assertTrue(abs(data["creation_time"] - time.time()) < 5)
        expire = parse_rfc3339(data["expire_time"]).timestamp()
        self.assertTrue(abs(expire - time.time() - 3600) < 5)

    def test_root_tokens_with_and_without_a_lease(self):
        # The dev root token is made through auth/token/create (vault server -dev): it has
        # a lease entry, so its lookup says renewable false and has an issue_time.
        data = self.root.auth.token.lookup_self()["data"]
        self.assertIs(data["renewable"], False)
        self.assertIn("issue_time", data)
        self.assertEqual(data["ttl"], 0)
        self.assertEqual((data["path"], data["display_name"], data["creation_ttl"]), ("auth/token/create", "token", 0))
        # A root token as operator init / generate-root make it has no lease: handleLookup
        # (token_store.go) sends no renewable or issue_time, and renewing it answers
        # expiration.go RenewToken's "invalid lease ID".
        minted = self.vault.dev("POST", "root-token")
        bare = self.client(token=minted["token"])
        data = bare.auth.token.lookup_self()["data"]
        self.assertNotIn("renewable", data)
        self.assertNotIn("issue_time", data)
        self.assertEqual((data["ttl"], data["expire_time"], data["policies"], data["orphan"]),
                         (0, None, ["root"], True))
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease ID"], bare.auth.token.renew_self)
        self.assertEqual(bare.read("database/roles/tiny-role")["data"]["db_name"], "crdb-config")
        self.assertEqual((data["path"], data["display_name"]), ("auth/token/root", "root"))

    def test_root_token_without_root_token_flag_is_the_init_root_token(self):
        # `vault server -dev` without -dev-root-token-id keeps the root token initialization
        # made (token_store.go rootToken): path auth/token/root, display name root, no lease.
        proc = subprocess.Popen([self.vault.binary, "--listen", "127.0.0.1:0", "--quiet"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        try:
            m = VaultDev.LISTEN_RE.search(proc.stdout.readline())
            self.assertIsNotNone(m)
            self.assertRegex(m.group(4), r"^hvs\.[0-9A-Za-z]{24}$")
            req = urllib.request.Request(m.group(1) + "/v1/auth/token/lookup-self",
                                         headers={"X-Vault-Token": m.group(4)})
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = json.loads(resp.read())["data"]
            self.assertEqual((data["path"], data["display_name"], data["policies"], data["ttl"]),
                             ("auth/token/root", "root", ["root"], 0))
            self.assertNotIn("renewable", data)
            self.assertNotIn("issue_time", data)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stdout.close()

    def test_display_name_drops_one_trailing_dash(self):
        # token_store.go handleCreateCommon: strings.TrimSuffix(full, "-") removes one "-".
        resp = self.root.auth.token.create(policies=["default"], display_name="My App!!")
        data = self.root.auth.token.lookup(resp["auth"]["client_token"])["data"]
        self.assertEqual(data["display_name"], "token-My-App-")

    def test_token_renew_without_increment_keeps_its_ttl(self):
        """expiration.go RenewToken: CalculateTTL(increment, the lease's Auth.TTL, ...): with
        no increment a token is renewed by its own TTL (the creation TTL, then the TTL of
        the last renewal), capped by its explicit max TTL; not by the mount's 768h."""
        resp = self.root.auth.token.create(policies=["default"], ttl="1h")
        client = self.client(token=resp["auth"]["client_token"])
        renewed = client.auth.token.renew_self()
        self.assertEqual((renewed["auth"]["lease_duration"], renewed["warnings"]), (3600, None))
        self.assertTrue(3595 <= client.auth.token.lookup_self()["data"]["ttl"] <= 3600)
        self.assertEqual(client.auth.token.renew_self(increment="2h")["auth"]["lease_duration"], 7200)
        self.assertEqual(client.auth.token.renew_self()["auth"]["lease_duration"], 7200)
        self.assertEqual(client.auth.token.lookup_self()["data"]["creation_ttl"], 3600)
        # auth/token/renew of another token: the same.
        other = self.root.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
        raw = self.vault.raw("POST", "auth/token/renew", body={"token": other})
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.json()["auth"]["lease_duration"], 600)
        # Capped by the explicit max TTL, counted from the issue time.
        capped = self.client(token=self.root.auth.token.create(
            policies=["default"], ttl="1h", explicit_max_ttl="1h")["auth"]["client_token"])
        wait_for(lambda: capped.auth.token.lookup_self()["data"]["ttl"] < 3600, what="a second after the issue")
        renewed = capped.auth.token.renew_self()
        left = renewed["auth"]["lease_duration"]
        self.assertTrue(3590 <= left < 3600, left)
        self.assertEqual(renewed["warnings"], [
            'TTL of "1h0m0s" exceeded the effective max_ttl of "%s"; TTL value is capped accordingly'
            % go_duration(left)])

    def test_token_leases_under_sys_leases(self):
        """expiration.go RegisterAuth: a token's lease is <token path>/<SaltID(token)>, where
        token_store.go SaltID is "h" + hex HMAC-SHA256 for IDs with a dot and hex SHA1 for a
        dot-less custom ID in the root namespace; ".<namespace id>" follows in a namespace."""
        self.assertIn("auth/", self.root.sys.list_leases("")["data"]["keys"])
        self.assertEqual(self.root.sys.list_leases("auth/")["data"]["keys"], ["token/"])
        self.assertIn("create/", self.root.sys.list_leases("auth/token/")["data"]["keys"])
        resp, lease_id = self.new_token_lease(
            "auth/token/create/", lambda: self.root.auth.token.create(policies=["default"], ttl="1h"))
        self.assertRegex(lease_id, r"^auth/token/create/h[0-9a-f]{64}$")
        data = self.root.sys.read_lease(lease_id)["data"]
        self.assertEqual(sorted(data), LEASE_LOOKUP_KEYS)
        self.assertEqual((data["id"], data["renewable"], data["last_renewal"]), (lease_id, True, None))
        self.assertTrue(3595 <= data["ttl"] <= 3600, data["ttl"])
        client = self.client(token=resp["auth"]["client_token"])
        me = client.auth.token.lookup_self()["data"]
        self.assertEqual((data["issue_time"], data["expire_time"]), (me["issue_time"], me["expire_time"]))
        client.auth.token.renew_self(increment="2h")
        data = self.root.sys.read_lease(lease_id)["data"]
        self.assertIsNotNone(data["last_renewal"])
        self.assertTrue(7195 <= data["ttl"] <= 7200, data["ttl"])
        # expiration.go Renew: a token's lease is not renewed through sys/leases.
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["tokens cannot be renewed through this endpoint"],
                              self.root.sys.renew_lease, lease_id)
        # A dot-less custom ID: the SHA1 form. A non-expiring root token's lease.
        _, custom_lease = self.new_token_lease("auth/token/create/", lambda: self.root.auth.token.create(
            id="custom-" + random_token()[4:], policies=["root"]))
        self.assertRegex(custom_lease, r"^auth/token/create/[0-9a-f]{40}$")
        data = self.root.sys.read_lease(custom_lease)["data"]
        self.assertEqual((data["expire_time"], data["ttl"], data["renewable"]), (None, 0, False))
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["lease is not renewable"],
                              self.root.sys.renew_lease, custom_lease)
        # create-orphan has its own path; a namespace's token leases end in its ID.
        _, orphan_lease = self.new_token_lease("auth/token/create-orphan/", lambda: self.vault.raw(
            "POST", "auth/token/create-orphan", body={"policies": ["default"], "ttl": "1h"}))
        self.assertRegex(orphan_lease, r"^auth/token/create-orphan/h[0-9a-f]{64}$")
        in_ns = self.client(namespace="token-leases")
        _, ns_lease = self.new_token_lease("auth/token/create/", lambda: in_ns.auth.token.create(
            policies=["default"], ttl="1h"), client=in_ns)
        self.assertRegex(ns_lease, r"^auth/token/create/h[0-9a-f]{64}\.[0-9A-Za-z]{5}$")
        self.assertEqual(in_ns.sys.read_lease(ns_lease)["data"]["id"], ns_lease)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease"], self.root.sys.read_lease, ns_lease)
        # Revoking the token removes its lease.
        self.assertEqual(client.auth.token.revoke_self().status_code, 204)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease"], self.root.sys.read_lease, lease_id)
        self.assertNotIn(lease_id.rpartition("/")[2], self.root.sys.list_leases("auth/token/create/")["data"]["keys"])

    def test_lease_expires_by_itself(self):
        resp, t0, t1 = self.creds("tiny-role")
        self.assertEqual(resp["lease_duration"], 2)
        self.assertValidUntil(resp["data"]["username"], (t0 + t1) / 2 + 2 + 5, slack=3)
        self.wait_lease_gone(resp["lease_id"], timeout=30)
        self.wait_role_gone(resp["data"]["username"], timeout=30)
        self.assertGreaterEqual(time.time() - t0, 1.5)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease"],
                              self.root.sys.read_lease, resp["lease_id"])

    def test_token_expires_by_itself(self):
        self.root.sys.create_or_update_policy("long-reader", 'path "database/creds/long-role" { capabilities = ["read"] }')
        resp = self.root.auth.token.create(policies=["long-reader"], ttl="2s")
        self.assertEqual(resp["auth"]["lease_duration"], 2)
        client = self.client(token=resp["auth"]["client_token"])
        lease = client.secrets.database.generate_credentials("long-role")
        self.assertEqual(lease["lease_duration"], 600)  # not capped by the token's TTL

        def token_gone():
            try:
                client.auth.token.lookup_self()
                return False
            except hvac.exceptions.Forbidden:
                return True

        wait_for(token_gone, timeout=30, what="the 2s token to expire")
        self.wait_lease_gone(lease["lease_id"])
        self.wait_role_gone(lease["data"]["username"])

    def test_expire_lease_runs_revocation(self):
        resp, _, _ = self.creds()
        lease_id, username = resp["lease_id"], resp["data"]["username"]
        self.assertIn(lease_id, self.vault.dev_lease_ids())
        other, _, _ = self.creds()
        result = self.vault.dev("POST", "expire/lease", {"lease_id": lease_id})
        self.assertEqual((result["lease_id"], result["revoked"]), (lease_id, True))
        self.wait_lease_gone(lease_id)
        self.wait_role_gone(username)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid lease"], self.root.sys.read_lease, lease_id)
        # Only that lease.
        self.assertTrue(self.pg.role_exists(other["data"]["username"]))
        self.assertIn(other["lease_id"], self.vault.dev_lease_ids())

    def test_dev_leases_view(self):
        resp, t0, t1 = self.creds("long-role")
        entries = [e for e in self.vault.dev_leases() if e["lease_id"] == resp["lease_id"]]
        self.assertEqual(len(entries), 1)
        e = entries[0]
        self.assertEqual(e["username"], resp["data"]["username"])
        self.assertEqual(e["role"], "long-role")
        self.assertEqual(e["token_accessor"], self.root.auth.token.lookup_self()["data"]["accessor"])
        self.assertEqual(e["namespace"], "")
        expire = parse_rfc3339(e["expire_time"]).timestamp()
        self.assertTrue(t0 + 600 - 2 <= expire <= t1 + 600 + 2, (t0, expire))


if __name__ == "__main__":
    unittest.main()
