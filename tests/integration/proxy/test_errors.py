"""Refusals a client sees from a real vaultwire, each with the exact SQLSTATE and
message (DESIGN.md "Errors a client sees"): Vault sealed, failing or unreachable
(08001); upstream verify-full failures (08001, and no login reaches the server);
the server's own refusal of the login passed through; too many clients (53300).
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import CREATION, REVOCATION, ProxyTestCase, free_port, wait_for  # noqa: E402

NOLOGIN_CREATION = ("CREATE ROLE \"{{name}}\" WITH NOLOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
                    "IN ROLE app_owner;")
POLICY = """
path "database/creds/crdb-role" { capabilities = ["read"] }
path "database/creds/nologin-role" { capabilities = ["read"] }
path "sys/leases/revoke/database/creds/crdb-role/*" { capabilities = ["update"] }
path "sys/leases/revoke/database/creds/nologin-role/*" { capabilities = ["update"] }
"""


class ErrorsTest(ProxyTestCase):
    listeners = 3

    @classmethod
    def setup_vault(cls):
        cls.root.write("database/roles/nologin-role", db_name="crdb-config", creation_statements=NOLOGIN_CREATION,
                       revocation_statements=REVOCATION, default_ttl="1h", max_ttl="24h")
        cls.root.sys.create_or_update_policy("errors-client", POLICY)
        cls.token = cls.make_token(["errors-client"])

    @classmethod
    def proxy_config(cls):
        cls.port_bad_ca, cls.port_bad_name = free_port(), free_port()
        roles = 'roles = ["crdb-role", "nologin-role"]'
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
