"""How clients reach vault-dev, as they reach Vault: a unix-socket listener, a TLS
listener that requires a client certificate, a standby that redirects to the active
node, and Vault Proxy's use_auto_auth_token = "force". Each case names the Vault
source it follows; hvac (Vault's Python client, as Debian ships it) is used where it
can speak the mode, raw HTTP for exact bytes.
"""
import http.client
import json
import os
import ssl
import unittest

from vaultdev_fixture import (OWNER_CREATION, UnixHTTPConnection, VaultDev, VaultDevTestCase, make_tls_material,
                              random_token, shared_tempdir)


def request(conn, method, path, token=None, body=None):
    headers = {"X-Vault-Request": "true"}
    if token:
        headers["X-Vault-Token"] = token
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class UnixSocketListener(VaultDevTestCase):
    """command/server/listener_unix.go and command/agentproxyshared/listener.go
    (unixListenerFactory) with listenerutil.UnixSocketListener: a stale file at the path
    is removed first, and the socket file goes when the listener closes."""

    @classmethod
    def setUpClass(cls):
        cls.dir = shared_tempdir("vdunix.")
        cls.socket_path = os.path.join(cls.dir, "vault.sock")
        with open(cls.socket_path, "w") as f:  # a stale file where the socket goes
            f.write("stale")
        cls.vault_args = ["--unix-socket", cls.socket_path]
        super().setUpClass()

    def test_api_over_the_socket(self):
        status, headers, body = request(UnixHTTPConnection(self.socket_path), "GET", "/v1/sys/health")
        self.assertEqual(status, 200, body)
        status, _, body = request(UnixHTTPConnection(self.socket_path), "GET", "/v1/auth/token/lookup-self",
                                  token=self.vault.root_token)
        self.assertEqual(status, 200, body)
        self.assertIn(b'"display_name":"token"', body)
        # The same Vault behind both listeners: a token made over TCP works on the socket.
        token = self.root.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
        status, _, _ = request(UnixHTTPConnection(self.socket_path), "GET", "/v1/auth/token/lookup-self",
                               token=token)
        self.assertEqual(status, 200)
        status, _, body = request(UnixHTTPConnection(self.socket_path), "GET", "/v1/auth/token/lookup-self",
                                  token=random_token())
        self.assertEqual((status, body), (403, b'{"errors":["permission denied"]}'))

    def test_socket_file_removed_at_exit(self):
        other_path = os.path.join(self.dir, "other.sock")
        other = VaultDev(extra_args=["--unix-socket", other_path])
        other.start()
        try:
            self.assertTrue(os.path.exists(other_path))
        finally:
            other.stop()
        self.assertFalse(os.path.exists(other_path), "the socket file outlived vault-dev")


class ClientCertificateListener(unittest.TestCase):
    """tls_require_and_verify_client_cert = true with tls_client_ca_file
    (internalshared/listenerutil/listener.go TLSConfig: tls.RequireAndVerifyClientCert
    with the client CA pool): no certificate, or one from another CA, fails the
    handshake; the client CA's certificate is served."""

    @classmethod
    def setUpClass(cls):
        cls.dir = shared_tempdir("vdmtls.")
        cls.tls = make_tls_material(cls.dir)
        t = cls.tls
        cls.vault = VaultDev(extra_args=["--tls-cert", t["server_cert"], "--tls-key", t["server_key"],
                                         "--tls-client-ca", t["client_ca"]],
                             ca=t["server_ca"], client_cert=(t["client_cert"], t["client_key"]))
        cls.vault.start()
        cls.addClassCleanup(cls.vault.stop)

    def test_certificate_required_and_verified(self):
        self.assertTrue(self.vault.addr.startswith("https://"))
        status, _, body = request(self.vault.connection(), "GET", "/v1/auth/token/lookup-self",
                                  token=self.vault.root_token)
        self.assertEqual(status, 200, body)
        # hvac with the client certificate, as a Vault client configured with
        # VAULT_CLIENT_CERT / VAULT_CLIENT_KEY.
        self.assertEqual(self.vault.client().auth.token.lookup_self()["data"]["display_name"], "token")
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            ctx = ssl.create_default_context(cafile=self.tls["server_ca"])
            request(http.client.HTTPSConnection("localhost", self.vault.port, context=ctx, timeout=30),
                    "GET", "/v1/sys/health")
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            request(self.vault.connection(cert=(self.tls["stranger_cert"], self.tls["stranger_key"])),
                    "GET", "/v1/sys/health")


class Standby(VaultDevTestCase):
    """A standby that cannot forward (http/handler.go handleRequestForwarding falls back
    to respondStandby): 307 to the leader's scheme and host with the request's path and
    raw query, no body; sys/health and sys/seal-status are served by the standby itself
    (http/handler.go Handler), sys/health with the standby's code unless standbyok
    (http/sys_health.go getSysHealth)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.standby = VaultDev(extra_args=["--standby-of", cls.vault.addr + "/"])
        cls.standby.start()
        cls.addClassCleanup(cls.standby.stop)

    def test_redirect_keeps_path_and_query(self):
        for method, body in (("GET", None), ("PUT", b'{"lease_id":"x"}'), ("LIST", None)):
            status, headers, payload = request(self.standby.connection(), method,
                                               "/v1/database/creds/crdb-role?x=1&y=%2F", token=self.vault.root_token,
                                               body=body)
            self.assertEqual(status, 307, method)
            self.assertEqual(headers.get("Location"), self.vault.addr + "/v1/database/creds/crdb-role?x=1&y=%2F")
            self.assertEqual(payload, b"")
            self.assertNotIn("Content-Type", headers)
            self.assertEqual(headers.get("Cache-Control"), "no-store")

    def test_health_and_seal_status_served_by_the_standby(self):
        status, _, body = request(self.standby.connection(), "GET", "/v1/sys/health")
        self.assertEqual(status, 429, body)
        self.assertIn(b'"standby":true', body)
        self.assertEqual(request(self.standby.connection(), "GET", "/v1/sys/health?standbyok=true")[0], 200)
        self.assertEqual(request(self.standby.connection(), "GET", "/v1/sys/health?standbycode=299")[0], 299)
        self.assertEqual(request(self.standby.connection(), "GET", "/v1/sys/health?standbyok=maybe")[:3:2],
                         (400, b'{"errors":[]}'))
        self.assertEqual(request(self.standby.connection(), "GET", "/v1/sys/seal-status")[0], 200)
        # The active node is no standby.
        status, _, body = request(self.vault.connection(), "GET", "/v1/sys/health")
        self.assertEqual(status, 200)
        self.assertIn(b'"standby":false', body)

    def test_hvac_follows_the_redirect_to_the_active_node(self):
        # requests (under hvac) re-sends a 307 with the same method and body, as Vault's
        # own client does (api/client.go rawRequestWithContext).
        via_standby = self.standby.client(url=self.standby.addr, token=self.vault.root_token)
        token = via_standby.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
        self.assertEqual(self.root.auth.token.lookup(token)["data"]["policies"], ["default"])
        before = self.vault.dev("GET", "counters")["requests"].get("POST auth/token/create", 0)
        self.assertGreaterEqual(before, 1)
        self.assertEqual(self.standby.dev("GET", "counters")["requests"].get("POST auth/token/create"), 1)


class AutoAuthForce(VaultDevTestCase):
    """Vault Proxy with use_auto_auth_token = "force" whose auto-auth token is vault-dev's
    root token (command/agentproxyshared/cache/handler.go ProxyHandler: X-Vault-Token is
    deleted and the auto-auth token used instead; sanitizeAutoAuthTokenResponse strips
    the token's id and accessor from a lookup-self answer made with it)."""

    vault_args = ["--auto-auth-force", "{root_token}"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_engine(roles={"crdb-role": dict(creation_statements=OWNER_CREATION, default_ttl="1h",
                                                  max_ttl="24h")})

    def test_made_up_token_looks_up_as_the_auto_auth_token(self):
        for token in (random_token(), "vaultwire-check-0123456789abcdef", None):
            status, _, body = request(self.vault.connection(), "GET", "/v1/auth/token/lookup-self", token=token)
            self.assertEqual(status, 200, (token, body))
            data = json.loads(body)["data"]
            self.assertEqual(data["display_name"], "token")
            self.assertEqual(data["path"], "auth/token/create")
            self.assertNotIn("id", data)
            self.assertNotIn("accessor", data)

    def test_made_up_token_reads_a_credential(self):
        # Why vaultwire refuses such a proxy: any password would get a credential.
        status, _, body = request(self.vault.connection(), "GET", "/v1/database/creds/crdb-role",
                                  token=random_token())
        self.assertEqual(status, 200, body)
        self.assertLeaseId(json.loads(body)["lease_id"], "database/creds/crdb-role")

    def test_other_answers_are_not_sanitized(self):
        token = self.root.auth.token.create(policies=["default"], ttl="1h")["auth"]
        status, _, body = request(self.vault.connection(), "POST", "/v1/auth/token/lookup",
                                  token=random_token(), body=json.dumps({"token": token["client_token"]}))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["data"]["accessor"], token["accessor"])


if __name__ == "__main__":
    unittest.main()
