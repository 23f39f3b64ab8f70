"""The system backend against Vault's source: policy write/delete texts, sudo paths,
the default policy, sys/health, lease revoke/renew/lookup answers, mounts, top-level
copies, writes to a path ending in '/', revocation backoff and {{expiration}} in the
server's local zone."""

import datetime
import http.client
import os
import time
import unittest

from vaultdev_fixture import (ACL_DENIED, OWNER_CREATION, OWNER_REVOCATION, TUTORIAL_CREATION,
                              UNSUPPORTED_PATH, VaultDevTestCase, parse_rfc3339, random_token)

# Vault's default policy (vault/policy_store.go defaultPolicy), as `vault read
# sys/policy/default` shows it.
VAULT_DEFAULT_POLICY = """
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}


# Allow a token to look up its resultant ACL from all policies. This is useful
# for UIs. It is an internal path because the format may change at any time
# based on how the internal ACL features and capabilities change.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow checking the status of a Control Group request if the user has the
# accessor
path "sys/control-group/request" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
"""

# Every capability but sudo, on the root-protected paths of Vault's
# logical_system.go PathsSpecial.Root (and a few paths next to them that are not).
NO_SUDO_HCL = """
path "sys/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
"""
WITH_SUDO_HCL = """
path "sys/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}
"""

HEALTH_CODES = ("activecode", "standbycode", "sealedcode", "uninitcode", "drsecondarycode",
                "performancestandbycode")

WRITE_TO_SLASH = ["cannot write to a path ending in '/'"]


class SysBackendTest(VaultDevTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        owner = dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                     default_ttl="1h", max_ttl="24h")
        cls.setup_engine(allowed_roles="owner-role,shrink-role,crdb-role", roles={
            "owner-role": owner,
            "shrink-role": owner,
            # The tutorial's role: PostgreSQL 15 refuses to drop its users, so an
            # expired lease of it stays (vault-api.md §4).
            "crdb-role": dict(creation_statements=TUTORIAL_CREATION, default_ttl="1h", max_ttl="24h"),
        })
        cls.root.sys.create_or_update_policy("sys-nosudo", NO_SUDO_HCL)
        cls.root.sys.create_or_update_policy("sys-sudo", WITH_SUDO_HCL)

    def token(self, *policies):
        return self.root.auth.token.create(policies=list(policies))["auth"]["client_token"]

    # -- sys/policy (A1, A2) --------------------------------------------------------

    def test_default_policy_cannot_be_deleted_unquoted(self):
        """policy_store.go DeletePolicy: `cannot delete default policy`, without quotes,
        on both endpoints (the immutable ones are `cannot delete "root" policy`)."""
        for path in ("sys/policy/default", "sys/policies/acl/default"):
            self.assertRawError(self.vault.raw("DELETE", path), 400, ["cannot delete default policy"])
            self.assertRawError(self.vault.raw("DELETE", path.replace("default", "root")), 400,
                                ['cannot delete "root" policy'])
        self.assertEqual(self.root.sys.read_policy("default")["data"]["name"], "default")

    def test_legacy_rules_answered_200_with_a_warning(self):
        """logical_system.go handlePoliciesSet: on sys/policy/:name an empty `policy` takes
        `rules`, and the answer is the response carrying the deprecation warning."""
        hcl = 'path "database/creds/owner-role" {\n  capabilities = ["read"]\n}\n'
        raw = self.vault.raw("PUT", "sys/policy/legacy-rules", body={"rules": hcl})
        self.assertEqual(raw.status, 200, raw)
        self.assertEqual(raw.header("Content-Type"), "application/json")
        body = raw.json()
        self.assertEqual(list(body), ["request_id", "lease_id", "renewable", "lease_duration", "data",
                                      "wrap_info", "warnings", "auth", "mount_type"])
        self.assertEqual(body["warnings"], ["'rules' is deprecated, please use 'policy' instead"])
        self.assertEqual((body["lease_id"], body["renewable"], body["lease_duration"]), ("", False, 0))
        self.assertIsNone(body["data"])
        self.assertIsNone(body["auth"])
        self.assertEqual(body["mount_type"], "system")
        self.assertEqual(self.root.sys.read_policy("legacy-rules")["data"]["rules"], hcl)
        # `policy` wins and gets no warning; sys/policies/acl does not read `rules`.
        raw = self.vault.raw("PUT", "sys/policy/legacy-rules", body={"policy": hcl, "rules": "x"})
        self.assertEqual((raw.status, raw.body), (204, b""))
        raw = self.vault.raw("PUT", "sys/policies/acl/legacy-acl", body={"rules": hcl})
        self.assertRawError(raw, 400, ["'policy' parameter not supplied or empty"])
        # Both empty: the error, without the warning.
        raw = self.vault.raw("PUT", "sys/policy/legacy-rules", body={"rules": ""})
        self.assertRawError(raw, 400, ["'policy' parameter not supplied or empty"])

    def test_policy_checks_run_before_the_root_check(self):
        """handlePoliciesSet checks for an empty policy and parses it before SetPolicy
        refuses `root`."""
        raw = self.vault.raw("PUT", "sys/policy/root", body={"policy": ""})
        self.assertRawError(raw, 400, ["'policy' parameter not supplied or empty"])
        raw = self.vault.raw("PUT", "sys/policies/acl/root", body={"policy": 'path "x" { capabilities = ["fly"] }'})
        self.assertRawError(raw, 400, ['failed to parse policy: path "x": invalid capability "fly"'])
        raw = self.vault.raw("PUT", "sys/policy/root", body={"policy": 'path "x" { capabilities = ["read"] }'})
        self.assertRawError(raw, 400, ['cannot update "root" policy'])

    def test_invalid_capability_full_text(self):
        raw = self.vault.raw("PUT", "sys/policy/badcap", body={"policy": 'path "x" { capabilities = ["fly"] }'})
        self.assertRawError(raw, 400, ['failed to parse policy: path "x": invalid capability "fly"'])

    # -- sudo paths (A7) ----------------------------------------------------------

    def test_root_protected_paths_need_sudo(self):
        """logical_system.go PathsSpecial.Root: every capability but sudo is refused
        there; with sudo the request reaches the backend."""
        nosudo, sudo = self.token("sys-nosudo"), self.token("sys-sudo")
        cases = [
            ("GET", "sys/leases"), ("PUT", "sys/rotate"), ("PUT", "sys/config/cors"),
            ("GET", "sys/raw"), ("GET", "sys/raw/logical/x"), ("PUT", "sys/plugins/catalog/database/x"),
            ("PUT", "sys/plugins/runtimes/catalog/container/x"), ("PUT", "sys/config/auditing/request-headers/x"),
            ("PUT", "sys/config/ui/headers/x"), ("PUT", "sys/storage/raft/snapshot-auto/config/x"),
            ("GET", "sys/internal/inspect/router"), ("PUT", "sys/seal"), ("PUT", "sys/step-down"),
            ("PUT", "sys/replication/reindex"), ("PUT", "sys/replication/dr/reindex"),
            ("PUT", "sys/replication/performance/reindex"), ("PUT", "sys/replication/primary/secondary-token"),
            ("PUT", "sys/replication/dr/primary/secondary-token"),
            ("PUT", "sys/replication/performance/primary/secondary-token"),
            ("PUT", "sys/audit"), ("PUT", "sys/audit/file"), ("PUT", "sys/auth/userpass"), ("PUT", "sys/remount"),
            ("PUT", "sys/revoke-force/database/creds/nothing"), ("PUT", "sys/leases/revoke-force/database/x"),
        ]
        for method, path in cases:
            self.assertRawError(self.vault.raw(method, path, token=nosudo), 403, [ACL_DENIED])
            raw = self.vault.raw(method, path, token=sudo)
            self.assertNotEqual(raw.status, 403, (method, path, raw))

    def test_paths_next_to_root_protected_ones_need_no_sudo(self):
        """sys/audit-hash is not sys/audit (Vault's list has `audit` and `audit/*`);
        `leases` is exact, so LIST sys/leases/ is not protected; `raw` is exact."""
        nosudo = self.token("sys-nosudo")
        for method, path in (("PUT", "sys/audit-hash/file"), ("PUT", "sys/auditx"), ("LIST", "sys/leases/"),
                             ("PUT", "sys/rawx"), ("PUT", "sys/rotatex"), ("PUT", "sys/sealx")):
            raw = self.vault.raw(method, path, token=nosudo)
            self.assertRawError(raw, 404, [UNSUPPORTED_PATH])

    # -- default policy (A8) -----------------------------------------------------------

    def test_default_policy_is_vaults_text(self):
        self.assertEqual(self.root.sys.read_policy("default")["data"]["rules"], VAULT_DEFAULT_POLICY)
        raw = self.vault.raw("GET", "sys/policies/acl/default")
        self.assertEqual(raw.json()["data"]["policy"], VAULT_DEFAULT_POLICY)
        token = self.token("default")
        raw = self.vault.raw("POST", "sys/capabilities-self", token=token,
                             body={"paths": ["sys/control-group/request"]})
        self.assertEqual(raw.json()["data"]["capabilities"], ["update"])

    # -- capabilities: top-level copy (B2) ------------------------------------------

    def test_capabilities_copy_data_to_the_top_level(self):
        """http/handler.go injectDataIntoTopRoutes lists sys/capabilities and
        sys/capabilities-self; logical.HTTPSysInjector writes the data keys first."""
        token = self.token("default")
        for path, body, tok in (("sys/capabilities-self", {"paths": ["sys/leases/renew"]}, token),
                                ("sys/capabilities", {"paths": ["sys/leases/renew"], "token": token}, None)):
            raw = self.vault.raw("POST", path, body=body, token=tok)
            self.assertEqual(raw.status, 200, (path, raw))
            data = raw.json()
            self.assertEqual(data["data"], {"capabilities": ["update"], "sys/leases/renew": ["update"]})
            self.assertEqual(data["capabilities"], ["update"])
            self.assertEqual(data["sys/leases/renew"], ["update"])
            self.assertEqual(sorted(list(data)[:2]), ["capabilities", "sys/leases/renew"], path)
            self.assertEqual(list(data)[2], "request_id")
        # The other sys answers that copy put the copied keys first too.
        body = self.vault.raw("GET", "sys/policy/default").json()
        self.assertEqual(sorted(list(body)[:2]), ["name", "rules"])
        self.assertEqual(body["rules"], VAULT_DEFAULT_POLICY)

    # -- writes to a path ending in '/' (B3) ------------------------------------------

    def test_write_to_a_path_ending_in_slash_is_refused(self):
        """request_handling.go handleCancelableRequest refuses it before the token is
        checked."""
        for method, path in (("PUT", "sys/leases/revoke-prefix/database/creds/owner-role/"),
                             ("POST", "database/roles/"), ("POST", "sys/policy/p/"), ("PUT", "sys/mounts/db-slash/")):
            self.assertRawError(self.vault.raw(method, path, body={}), 400, WRITE_TO_SLASH)
            self.assertRawError(self.vault.raw(method, path, body={}, token=random_token()), 400, WRITE_TO_SLASH)
            self.assertRawError(self.vault.raw(method, path, body={}, no_token=True), 400, WRITE_TO_SLASH)
        self.assertIsNone(self.root.sys.list_mounted_secrets_engines()["data"].get("db-slash/"))
        # Reads, lists and deletes of such paths are not writes.
        self.assertEqual(self.vault.raw("LIST", "database/roles/").status, 200)
        self.assertNotEqual(self.vault.raw("DELETE", "database/roles/").status, 400)

    # -- mounts (A16, B8) -----------------------------------------------------------

    def test_mount_conflict_is_400_with_the_existing_path(self):
        """mount.go mountInternal raises a coded 409, but handleError's error response
        makes RespondErrorCommon answer 400; nested paths name the existing mount."""
        for path in ("database", "database/sub", "database/sub/deeper"):
            raw = self.vault.raw("POST", "sys/mounts/" + path, body={"type": "database"})
            self.assertRawError(raw, 400, ["path is already in use at database/"])
        # The conflict is found before the plugin catalog is asked.
        raw = self.vault.raw("POST", "sys/mounts/database", body={"type": "nosuch"})
        self.assertRawError(raw, 400, ["path is already in use at database/"])

    def test_protected_mount_paths(self):
        """mount.go: protectedMounts (audit/, auth/, sys/, cubbyhole/, identity/) are
        refused by prefix with `cannot mount "<path>"` (a coded 403 that clients see as
        400), before conflicts and the plugin catalog; singleton types cannot be mounted;
        unmounting sys/, cubbyhole/ or identity/ answers `cannot unmount "<path>"`."""
        for path, shown in (("sys", "sys/"), ("sys/x", "sys/x/"), ("auth", "auth/"), ("auth/db", "auth/db/"),
                            ("audit", "audit/"), ("audit/x", "audit/x/"), ("cubbyhole", "cubbyhole/"),
                            ("identity/x", "identity/x/")):
            for mount_type in ("database", "nosuch"):
                raw = self.vault.raw("POST", "sys/mounts/" + path, body={"type": mount_type})
                self.assertRawError(raw, 400, ['cannot mount "%s"' % shown])
        for mount_type in ("token", "system", "cubbyhole", "identity"):
            raw = self.vault.raw("POST", "sys/mounts/single-" + mount_type, body={"type": mount_type})
            self.assertRawError(raw, 400, ['mount type of "%s" is not mountable' % mount_type])
        for path in ("sys", "cubbyhole", "identity"):
            self.assertRawError(self.vault.raw("DELETE", "sys/mounts/" + path), 400, ['cannot unmount "%s/"' % path])
        # Not mounts: nothing to unmount.
        for path in ("auth", "audit", "sys/x"):
            self.assertEqual(self.vault.raw("DELETE", "sys/mounts/" + path).status, 204, path)
        # sysfoo/ is not under sys/.
        self.assertEqual(self.vault.raw("POST", "sys/mounts/sysfoo", body={"type": "database"}).status, 204)
        self.assertEqual(self.vault.raw("DELETE", "sys/mounts/sysfoo").status, 204)

    # -- database config read: URL password masking (C1) ----------------------------

    def test_config_read_masks_every_occurrence_of_the_decoded_password(self):
        """builtin/logical/database/path_config_connection.go connectionReadHandler:
        strings.Replace(connURL, password, "*****", -1), with the password url.Parse
        decoded from the userinfo (an escaped one is left as it is)."""
        for name, url, shown in (
                ("mask-all", "postgresql://vault:s3cret@127.0.0.1:1/db?application_name=s3cret",
                 "postgresql://vault:*****@127.0.0.1:1/db?application_name=*****"),
                ("mask-escaped", "postgresql://vault:a%2Fb@127.0.0.1:1/db",
                 "postgresql://vault:a%2Fb@127.0.0.1:1/db"),
                ("mask-templated", "postgresql://{{username}}:{{password}}@127.0.0.1:1/db",
                 "postgresql://{{username}}:{{password}}@127.0.0.1:1/db")):
            raw = self.vault.raw("POST", "database/config/" + name, body={
                "plugin_name": "postgresql-database-plugin", "connection_url": url, "verify_connection": False,
                "username": "vault", "password": "pw"})
            self.assertIn(raw.status, (200, 204), raw)
            data = self.root.secrets.database.read_connection(name)["data"]
            self.assertEqual(data["connection_details"]["connection_url"], shown)
            self.assertNotIn("password", data["connection_details"])

    # -- sys/health (A12) -------------------------------------------------------------

    def test_health_bad_code_is_400_with_empty_errors(self):
        """http/sys_health.go fetchStatusCode: strconv.Atoi, no range check; a bad value
        makes getSysHealth return no body and handleSysHealthGet answers
        respondError(w, 400, nil)."""
        for name in HEALTH_CODES:
            for bad in ("abc", "", "1.5", " 200", "200 ", "0x10"):
                raw = self.vault.raw("GET", "sys/health?%s=%s" % (name, bad.replace(" ", "%20")), no_token=True)
                self.assertRawError(raw, 400, [])
        # A '+' in a query is a space (url.ParseQuery), which Atoi refuses; %2B is a sign.
        self.assertRawError(self.vault.raw("GET", "sys/health?activecode=+201", no_token=True), 400, [])
        for good, status in (("%2B201", 201), ("0201", 201), ("299", 299), ("599", 599)):
            raw = self.vault.raw("GET", "sys/health?activecode=" + good, no_token=True)
            self.assertEqual(raw.status, status, (good, raw))
            self.assertIs(raw.json()["sealed"], False)

    def test_health_code_outside_http_range_drops_the_connection(self):
        """Go's net/http panics on WriteHeader with a code outside 100-999
        (checkWriteHeaderCode); the connection is closed without an answer."""
        for code in ("0", "-5", "99", "1000"):
            conn = self.vault.connection()
            try:
                conn.request("GET", "/v1/sys/health?activecode=" + code)
                try:
                    resp = conn.getresponse()
                    self.fail("activecode=%s answered %d %r" % (code, resp.status, resp.read()))
                except (http.client.HTTPException, OSError):
                    pass
            finally:
                conn.close()
        self.assertEqual(self.vault.raw("GET", "sys/health", no_token=True).status, 200)

    def test_sealed_health_has_no_cluster_name_or_id(self):
        """sys_health.go: ClusterName/ClusterID are `omitempty` and set only `if !sealed`."""
        body = self.vault.raw("GET", "sys/health", no_token=True).json()
        self.assertRegex(body["cluster_name"], "^vault-cluster-")
        self.assertIn("cluster_id", body)
        try:
            self.vault.dev("POST", "seal")
            raw = self.vault.raw("GET", "sys/health", no_token=True)
            self.assertEqual(raw.status, 503, raw)
            body = raw.json()
            self.assertIs(body["sealed"], True)
            self.assertNotIn("cluster_name", body)
            self.assertNotIn("cluster_id", body)
            self.assertRawError(self.vault.raw("GET", "sys/health?sealedcode=x", no_token=True), 400, [])
        finally:
            self.vault.dev("POST", "unseal")

    # -- GET ?list=<not a bool> (B9) --------------------------------------------------

    def test_list_query_that_is_not_a_bool_is_400(self):
        """http/logical.go buildLogicalRequestNoAuth: strconv.ParseBool fails → 400, no
        error text, before the token is checked; `list=` (empty) is a read."""
        for value in ("yes", "2", "on"):
            for kw in ({}, {"token": random_token()}):
                raw = self.vault.raw("GET", "database/roles?list=" + value, **kw)
                self.assertRawError(raw, 400, [])
        self.assertEqual(self.vault.raw("GET", "database/roles/owner-role?list=").status, 200)
        self.assertEqual(self.vault.raw("GET", "database/roles?list=false").status, 404)

    # -- leases (A11, B9, C2, D) -------------------------------------------------------

    def test_async_revoke_of_unknown_lease_is_202(self):
        """logical_system.go handleRevoke: sync=false → LazyRevoke (nil for an unknown
        lease), then RespondWithStatusCode(nil, nil, 202)."""
        unknown = "database/creds/owner-role/" + "A" * 24
        raw = self.vault.raw("PUT", "sys/leases/revoke", body={"lease_id": unknown, "sync": False})
        self.assertEqual((raw.status, raw.body), (202, b""))
        raw = self.vault.raw("PUT", "sys/leases/revoke/" + unknown, body={"sync": "false"})
        self.assertEqual((raw.status, raw.body), (202, b""))
        raw = self.vault.raw("PUT", "sys/leases/revoke", body={"lease_id": unknown})
        self.assertEqual((raw.status, raw.body), (204, b""))

    def test_mount_type_in_envelopes(self):
        """sdk/logical/translate_response.go: mount_type is the type of the mount that
        answered: database for creds, token for the token store, system for sys/."""
        creds = self.vault.raw("GET", "database/creds/owner-role").json()
        self.assertEqual(list(creds)[-1], "mount_type")
        self.assertEqual(creds["mount_type"], "database")
        renewed = self.vault.raw("PUT", "sys/leases/renew", body={"lease_id": creds["lease_id"]}).json()
        self.assertEqual(list(renewed)[-1], "mount_type")
        self.assertEqual(renewed["mount_type"], "system")
        self.assertEqual(renewed["lease_id"], creds["lease_id"])
        created = self.vault.raw("POST", "auth/token/create", body={"policies": ["default"]}).json()
        self.assertEqual(created["mount_type"], "token")
        looked_up = self.vault.raw("PUT", "sys/leases/lookup", body={"lease_id": creds["lease_id"]}).json()
        self.assertEqual(looked_up["mount_type"], "system")

    def test_renew_past_the_max_ttl(self):
        """The database backend's renew runs framework.CalculateTTL with the role's
        current max_ttl from the lease's issue time; its error comes back wrapped by
        expiration.go renewEntry."""
        creds = self.root.secrets.database.generate_credentials("shrink-role")
        time.sleep(2.1)
        self.root.secrets.database.create_role(name="shrink-role", db_name="crdb-config",
                                               creation_statements=OWNER_CREATION,
                                               revocation_statements=OWNER_REVOCATION,
                                               default_ttl="1s", max_ttl="1s")
        raw = self.vault.raw("PUT", "sys/leases/renew", body={"lease_id": creds["lease_id"]})
        self.assertRawError(raw, 400, [
            "failed to renew entry: resp: (*logical.Response)(nil) err: past the max TTL, cannot renew"])

    def test_expired_lease_renew_and_lookup(self):
        """expiration.go leaseEntry.renewable: an expired lease that is still there
        (its revocation failed) cannot be renewed (`lease expired`) and looks up as not
        renewable (logical_system.go handleLeaseLookup), with a negative ttl."""
        creds = self.root.secrets.database.generate_credentials("crdb-role")
        lease_id = creds["lease_id"]
        self.assertIs(self.root.sys.read_lease(lease_id)["data"]["renewable"], True)
        result = self.vault.dev("POST", "expire/lease", {"lease_id": lease_id})
        self.assertIs(result["revoked"], False)
        raw = self.vault.raw("PUT", "sys/leases/renew", body={"lease_id": lease_id})
        self.assertRawError(raw, 400, ["lease expired"])
        data = self.root.sys.read_lease(lease_id)["data"]
        self.assertIs(data["renewable"], False)
        # leaseEntry.ttl is ExpireTime minus now (rounded to the second): negative once
        # the lease has expired.
        self.assertLessEqual(data["ttl"], 0)
        time.sleep(1.6)
        self.assertLessEqual(self.root.sys.read_lease(lease_id)["data"]["ttl"], -1)

    # -- tokens in the system answers (D) -------------------------------------------------

    def test_malformed_hvs_tokens_are_bare_permission_denied(self):
        """request_handling.go: a failed token check is logical.ErrPermissionDenied."""
        for token in ("hvs." + "x" * 100, "hvs.!!", "hvs.", "s.abc", "hvb.AAAA"):
            self.assertRawError(self.vault.raw("GET", "database/creds/owner-role", token=token), 403,
                                ["permission denied"])
            self.assertRawError(self.vault.raw("PUT", "sys/leases/lookup", body={"lease_id": "x"}, token=token),
                                403, ["permission denied"])

    def test_bad_token_comes_from_token_lookup_only(self):
        """token_store.go handleLookup: ErrorResponse("bad token") with
        ErrPermissionDenied → 403 with the response's text."""
        raw = self.vault.raw("POST", "auth/token/lookup", body={"token": random_token()})
        self.assertRawError(raw, 403, ["bad token"])


class RevocationBackoffTest(VaultDevTestCase):
    """expiration.go revokeExponentialBackoff: after the n-th failed attempt the next
    comes after base·2^n with ±50 % jitter (base 10 s in Vault; 1 s here)."""

    vault_args = ["--retry-base-ms", "1000", "--retry-max-attempts", "2"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_engine(allowed_roles="crdb-role", roles={
            "crdb-role": dict(creation_statements=TUTORIAL_CREATION, default_ttl="1h", max_ttl="24h"),
        })

    def entry(self, lease_id):
        for e in self.vault.dev_leases():
            if e["lease_id"] == lease_id:
                return e
        return None

    def test_first_retry_after_base_times_two_with_jitter(self):
        delays = []
        for _ in range(6):
            lease_id = self.root.secrets.database.generate_credentials("crdb-role")["lease_id"]
            self.assertIsNone(self.entry(lease_id)["next_attempt"])
            t0 = time.time()
            result = self.vault.dev("POST", "expire/lease", {"lease_id": lease_id})
            t1 = time.time()
            self.assertIs(result["revoked"], False)
            e = self.entry(lease_id)
            self.assertEqual(e["revoke_attempts"], 1)
            nxt = parse_rfc3339(e["next_attempt"]).timestamp()
            # 1 s · 2^1 · [0.5, 1.5): between 1 s and 3 s after the failure.
            self.assertGreaterEqual(nxt - t0, 1.0 - 0.05, e)
            self.assertLessEqual(nxt - t1, 3.0 + 0.05, e)
            delays.append(nxt - t1)
        # The jitter spreads them over [1 s, 3 s); without it every one would be 1 s.
        self.assertGreater(max(delays), 1.3, delays)
        self.assertGreater(max(delays) - min(delays), 0.05, delays)

    def test_irrevocable_lease_renew_and_lookup(self):
        """After the last attempt: leaseEntry.renewable reports `lease is expired and has
        failed previous revocation attempts` and the lookup says not renewable."""
        lease_id = self.root.secrets.database.generate_credentials("crdb-role")["lease_id"]
        self.vault.dev("POST", "expire/lease", {"lease_id": lease_id})
        deadline = time.time() + 30
        while not (self.entry(lease_id) or {}).get("irrevocable"):
            self.assertLess(time.time(), deadline, self.entry(lease_id))
            time.sleep(0.1)
        e = self.entry(lease_id)
        self.assertEqual(e["revoke_attempts"], 2)
        self.assertIsNone(e["next_attempt"])
        raw = self.vault.raw("PUT", "sys/leases/renew", body={"lease_id": lease_id})
        self.assertRawError(raw, 400, ["lease is expired and has failed previous revocation attempts"])
        self.assertIs(self.root.sys.read_lease(lease_id)["data"]["renewable"], False)


def _local_zone():
    """A zone 5:30 east of UTC: the zoneinfo name if installed, else a POSIX TZ."""
    if os.path.exists("/usr/share/zoneinfo/Asia/Kolkata"):
        return "Asia/Kolkata"
    return "UTC-05:30"


class LocalZoneExpirationTest(VaultDevTestCase):
    """{{expiration}} is Go's time.Now().Add(ttl + 5 s) (builtin/logical/database
    path_creds_create.go) formatted as "2006-01-02 15:04:05-0700" (plugins/database/
    postgresql postgresql.go expirationFormat); time.Now() is in the server's local zone."""

    @classmethod
    def setUpClass(cls):
        old = os.environ.get("TZ")
        os.environ["TZ"] = _local_zone()
        try:
            super().setUpClass()
        finally:
            if old is None:
                del os.environ["TZ"]
            else:
                os.environ["TZ"] = old
        cls.setup_engine(allowed_roles="zone-role", roles={
            "zone-role": dict(
                creation_statements=(
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; "
                    "COMMENT ON ROLE \"{{name}}\" IS '{{expiration}}';"),
                renew_statements=(
                    "ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}'; "
                    "COMMENT ON ROLE \"{{name}}\" IS '{{expiration}}';"),
                default_ttl="1h", max_ttl="24h"),
        })

    def literal(self, username):
        rows = self.pg.admin_query(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (username,))
        return rows[0][0]

    def test_expiration_in_local_zone(self):
        t0 = time.time()
        creds = self.root.secrets.database.generate_credentials("zone-role")
        t1 = time.time()
        username = creds["data"]["username"]
        text = self.literal(username)
        self.assertRegex(text, r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+0530$")
        at = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S%z").timestamp()
        self.assertTrue(t0 + 3605 - 1 <= at <= t1 + 3605 + 1, (t0, text, t1))
        self.assertValidUntil(username, at, slack=1)
        # Renewals too.
        t0 = time.time()
        self.root.sys.renew_lease(creds["lease_id"], increment=600)
        t1 = time.time()
        text = self.literal(username)
        self.assertRegex(text, r"\+0530$")
        at = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S%z").timestamp()
        self.assertTrue(t0 + 605 - 1 <= at <= t1 + 605 + 1, (t0, text, t1))
        self.assertValidUntil(username, at, slack=1)


if __name__ == "__main__":
    unittest.main()
