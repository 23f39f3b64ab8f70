"""Refusals a client sees from a real vaultwire, each with the exact SQLSTATE and
message (DESIGN.md "Errors a client sees"): Vault sealed, failing or unreachable
(08001); a 500 or a 429 for one role is that request's error, not an outage, and a
429's Retry-After holds the role (08001 saying when to retry); upstream verify-full
failures (08001, and no login reaches the server); the server's own refusal of the
login passed through; too many clients (53300).
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import CREATION, REVOCATION, ProxyTestCase, free_port, wait_for  # noqa: E402

NOLOGIN_CREATION = ("CREATE ROLE \"{{name}}\" WITH NOLOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
                    "IN ROLE app_owner;")
# Roles whose creds requests Vault fails: a quota's 429s (injected), the backend's 500
# for a role its connection does not allow (real), a 429 with Retry-After (injected).
FAILING_ROLES = ["quota-role", "unlisted-role", "limited-role"]
POLICY = """
path "database/creds/crdb-role" { capabilities = ["read"] }
path "database/creds/nologin-role" { capabilities = ["read"] }
path "database/creds/quota-role" { capabilities = ["read"] }
path "database/creds/unlisted-role" { capabilities = ["read"] }
path "database/creds/limited-role" { capabilities = ["read"] }
path "sys/leases/revoke/database/creds/crdb-role/*" { capabilities = ["update"] }
path "sys/leases/revoke/database/creds/nologin-role/*" { capabilities = ["update"] }
"""


class ErrorsTest(ProxyTestCase):
    listeners = 3

    @classmethod
    def setup_vault(cls):
        cls.root.write("database/roles/nologin-role", db_name="crdb-config", creation_statements=NOLOGIN_CREATION,
                       revocation_statements=REVOCATION, default_ttl="1h", max_ttl="24h")
        for role in ("quota-role", "limited-role"):
            cls.root.write("database/roles/" + role, db_name="crdb-config", creation_statements=CREATION,
                           revocation_statements=REVOCATION, default_ttl="1h", max_ttl="24h")
        # A connection that allows no role: creds for its role fail in the backend (500).
        cls.root.write("database/config/narrow-config", plugin_name="postgresql-database-plugin",
                       allowed_roles="nobody", connection_url=cls.pg.connection_url(),
                       username=cls.pg.admin_user, password=cls.pg.admin_password)
        cls.root.write("database/roles/unlisted-role", db_name="narrow-config", creation_statements=CREATION,
                       revocation_statements=REVOCATION, default_ttl="1h", max_ttl="24h")
        cls.root.sys.create_or_update_policy("errors-client", POLICY)
        cls.token = cls.make_token(["errors-client"])

    @classmethod
    def proxy_config(cls):
        cls.port_bad_ca, cls.port_bad_name = free_port(), free_port()
        roles = 'roles = ["crdb-role", "nologin-role", "quota-role", "unlisted-role", "limited-role"]'
        return f"""
[vault]
address = "{cls.vault.addr}"

[[listener]]
bind = "127.0.0.1:{cls.port}"
route = "main"

[[listener]]
bind = "127.0.0.1:{cls.port_bad_ca}"
route = "badca"

[[listener]]
bind = "127.0.0.1:{cls.port_bad_name}"
route = "badname"

[route.main]
host = "localhost"
port = {cls.pg.port}
ca_file = "{cls.pg.ca}"
{roles}
default_database = "defaultdb"

[route.badca]
host = "localhost"
port = {cls.pg.port}
ca_file = "{cls.pg.env["PGH_OTHER_CA"]}"
roles = ["crdb-role"]

[route.badname]
host = "localhost"
port = {cls.pg.port}
server_name = "wrong.example"
ca_file = "{cls.pg.ca}"
roles = ["crdb-role"]

{cls.broker_tables()}
[log]
level = "trace"
"""

    # -- Vault -------------------------------------------------------------

    # A fresh token in each: a credential cached for the class token would be served
    # without asking Vault.

    def test_vault_sealed_08001(self):
        token = self.make_token(["errors-client"])
        self.vault.dev("POST", "seal")
        try:
            fields = self.refused(token=token)
        finally:
            self.vault.dev("POST", "unseal")
        self.assertRefusal(fields, "08001", "Vault at %s is unavailable: Vault is sealed (HTTP 503)" % self.vault.addr)

    def test_vault_503_08001(self):
        token = self.make_token(["errors-client"])
        self.vault.dev("POST", "fail", {"path": "database/creds/crdb-role", "count": 1000, "status": 503})
        try:
            fields = self.refused(token=token)
        finally:
            self.vault.dev("DELETE", "fail")
        self.assertRefusal(fields, "08001", "Vault at %s is unavailable: injected failure (vault-dev /_dev/fail) "
                                            "(HTTP 503)" % self.vault.addr)

    def test_vault_unreachable_08001(self):
        closed = free_port()
        proxy = self.start_proxy(f"""
[vault]
address = "http://127.0.0.1:{closed}"
request_timeout = "2s"

[[listener]]
bind = "127.0.0.1:{free_port()}"
route = "main"
{self.route_config()}
{self.broker_tables()}
[log]
level = "trace"
""", name="unreachable-vault")
        fields = self.refused(port=proxy.port)
        self.assertEqual((fields["S"], fields["C"]), ("FATAL", "08001"))
        # libcurl's text after the address.
        self.assertRegex(fields["M"], r"^cannot reach Vault at http://127\.0\.0\.1:%d: Failed to connect to "
                                      r"127\.0\.0\.1 port %d after \d+ ms: Couldn't connect to server$" % (closed, closed))

    def assertGoodLogin(self, token, user="crdb-role"):
        with self.raw() as r:
            self.assertEqual(r.login(token, user=user)[-1][0], "Z")
            self.assertEqual(r.query("select 1"), ([("1",)], None))

    def test_500s_and_429s_for_one_role_are_not_an_outage(self):
        """Seven 500s (the backend: "not an allowed role") and seven 429s (a quota) for
        one role: each is that login's 08001 with Vault's text, every one reaches Vault,
        and another token's first login for another role works: the circuit breaker
        counts outages only."""
        refusals = {}
        for role in ("unlisted-role", "quota-role"):
            if role == "quota-role":
                self.vault.dev("POST", "fail", {
                    "path": "database/creds/quota-role", "count": 7, "status": 429,
                    "errors": ['request path "database/creds/quota-role": lease count quota exceeded']})
            try:
                reads = self.creds_reads(role)
                for _ in range(7):
                    fields = self.refused(token=self.make_token(["errors-client"]), user=role)
                    self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "08001"), fields)
                    refusals.setdefault(role, set()).add(fields["M"])
                self.assertEqual(self.creds_reads(role), reads + 7, "a login was refused without asking Vault")
            finally:
                self.vault.dev("DELETE", "fail")
        self.assertEqual(refusals, {
            "unlisted-role": {'Vault at %s is unavailable: "unlisted-role" is not an allowed role (HTTP 500)'
                              % self.vault.addr},
            "quota-role": {'Vault at %s is unavailable: request path "database/creds/quota-role": lease count '
                           'quota exceeded (HTTP 429)' % self.vault.addr},
        })
        self.assertGoodLogin(self.make_token(["errors-client"]))
        self.assertNotRegex(self.proxy.output(), r"circuit breaker open")
        print("\n14 refusals, each with Vault's own text; then a first login for crdb-role worked", file=sys.stderr)

    def test_429_with_retry_after_holds_the_role_until_then(self):
        self.vault.dev("POST", "fail", {
            "path": "database/creds/limited-role", "count": 1, "status": 429,
            "errors": ['request path "database/creds/limited-role": rate limit quota exceeded'],
            "headers": {"Retry-After": "30"}})
        try:
            fields = self.refused(token=self.make_token(["errors-client"]), user="limited-role")
        finally:
            self.vault.dev("DELETE", "fail")
        self.assertRefusal(fields, "08001", 'Vault at %s is unavailable: request path "database/creds/limited-role": '
                                            'rate limit quota exceeded (HTTP 429); retry after 30s' % self.vault.addr)
        # Another token, same role: refused without asking Vault, saying when to retry.
        reads = self.creds_reads("limited-role")
        fields = self.refused(token=self.make_token(["errors-client"]), user="limited-role")
        self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "08001"), fields)
        m = re.fullmatch(r'Vault at %s refused more requests for role "limited-role" \(request path '
                         r'"database/creds/limited-role": rate limit quota exceeded, HTTP 429\); retry after (\d+)s'
                         % re.escape(self.vault.addr), fields.get("M", ""))
        self.assertIsNotNone(m, fields)
        self.assertTrue(1 <= int(m.group(1)) <= 30, fields)
        self.assertEqual(self.creds_reads("limited-role"), reads, "a held role's login reached Vault")
        print("\nheld: %s" % fields["M"], file=sys.stderr)
        # Other roles are not held.
        self.assertGoodLogin(self.make_token(["errors-client"]))

    # -- upstream TLS --------------------------------------------------------

    def assertNoLoginBy(self, user):
        self.assertRegex(user, r"^v-token-")
        self.assertNotIn('identity="%s"' % user, self.pg.log_text())
        self.assertNotIn("user=%s " % user, self.pg.log_text())

    def test_upstream_unknown_ca_08001(self):
        fields = self.refused(port=self.port_bad_ca)
        # The server sends its chain up to the root, which the route's CA file does not hold.
        self.assertRefusal(fields, "08001", "TLS with the server localhost failed: certificate verify failed: "
                                            "self-signed certificate in certificate chain")
        _, _, user, _ = self.last_closed_session(self.proxy, "upstream_tls_failed")
        self.assertNoLoginBy(user)

    def test_upstream_hostname_mismatch_08001(self):
        fields = self.refused(port=self.port_bad_name)
        self.assertRefusal(fields, "08001",
                           "TLS with the server wrong.example failed: certificate verify failed: hostname mismatch")
        _, _, user, _ = self.last_closed_session(self.proxy, "upstream_tls_failed")
        self.assertNoLoginBy(user)

    def test_upstream_tls_failure_leaves_no_lease_or_user(self):
        for port in (self.port_bad_ca, self.port_bad_name):
            before = {row[0] for row in self.proxy.closed_sessions()}
            self.refused(port=port)
            row = wait_for(lambda: [r for r in self.proxy.closed_sessions() if r[0] not in before
                                    and r[1] == "upstream_tls_failed"], what="the refused session's line")[0]
            _, _, user, lease = row
            self.assertRegex(lease, r"^database/creds/crdb-role/")
            wait_for(lambda: lease not in self.vault.dev_lease_ids(), timeout=20, what="lease %s revoked" % lease)
            wait_for(lambda: not self.pg.role_exists(user), timeout=20, what="SQL user %s dropped" % user)

    # -- upstream refuses the login ------------------------------------------

    def test_upstream_refusal_is_passed_through(self):
        fields = self.refused(user="nologin-role")
        _, _, user, lease = self.last_closed_session(self.proxy, "upstream_refused")
        self.assertRegex(user, r"^v-token-[A-Za-z0-9-]+-nologin--[A-Za-z0-9]{20}-\d+$")
        # PostgreSQL's own ErrorResponse, as it sent it (with its routine and file fields).
        self.assertRefusal(fields, "28000", 'role "%s" is not permitted to log in' % user)
        self.assertEqual(fields.get("R"), "InitializeSessionUserId")
        # Nothing left behind: the lease is revoked and the SQL user dropped.
        self.assertRegex(lease, r"^database/creds/nologin-role/")
        wait_for(lambda: lease not in self.vault.dev_lease_ids(), timeout=20, what="lease %s revoked" % lease)
        wait_for(lambda: not self.pg.role_exists(user), timeout=20, what="SQL user %s dropped" % user)

    # -- limits --------------------------------------------------------------

    def test_max_client_connections_53300(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), "[limits]\nmax_client_connections = 2\n"),
                                 name="two-clients")
        first, second = self.raw(proxy.port), self.raw(proxy.port)
        try:
            self.assertEqual(first.login(self.token)[-1][0], "Z")
            self.assertEqual(second.login(self.token)[-1][0], "Z")
            reads = self.creds_reads()
            fields = self.refused(port=proxy.port)
            self.assertRefusal(fields, "53300", "too many client connections (limit 2)")
            self.assertEqual(self.creds_reads(), reads, "a refused client still cost a Vault credential")
            for sslmode in ("disable", "prefer"):  # libpq shows no SQLSTATE for connection errors
                r = self.psql("select 1", port=proxy.port, sslmode=sslmode)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("failed: FATAL:  too many client connections (limit 2)\n", r.stderr)
            rows, err = first.query("select 1")
            self.assertEqual((rows, err), ([("1",)], None))
        finally:
            first.close()
        # A slot frees when a client leaves.
        def admitted():
            with self.raw(proxy.port) as r:
                try:
                    r.login(self.token)
                    return True
                except Exception:
                    return False
        try:
            wait_for(admitted, timeout=20, interval=0.1, what="a client admitted after one left")
        finally:
            second.close()


if __name__ == "__main__":
    unittest.main()
