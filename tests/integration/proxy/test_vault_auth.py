"""vaultwire logs in to Vault itself ([vault.auth]) against vault-dev's auth methods. AppRole
(api-docs/auth/approle "Login with AppRole"): the login at start, renew-self
at about two thirds of the token's TTL, batch tokens replaced by new logins, the token
revoking idle leases the client's token may not, /readyz while no valid token is held
(a refused secret ID) and after the secret ID file is fixed, vaultwire_vault_logins_total,
and no role ID, secret ID or login token in vaultwire's log. TLS certificate
(api-docs/auth/cert): the login with [vault] client_cert, and an unknown certificate role
refused. JWT (api-docs/auth/jwt "JWT login") and Kubernetes (api-docs/auth/kubernetes
"Login"): the login with the JWT of jwt_file as the role's token, renew-self, and (JWT) a
rotated jwt_file read at the next login (vaultwire's token revoked: its renew-self is
refused and it logs in again); no JWT in vaultwire's log.

Needs a vault-dev with auth methods (sys/auth, auth/approle/*, auth/cert/*, auth/jwt/*,
auth/kubernetes/*): VAULT_DEV_BIN must be
one built from a tree that has them. Timers are short (token_ttl 6s and 3s,
revoke_idle_after 2s) and every wait a generous multiple of them.

Run with /usr/bin/python3; environment as proxy_fixture.py.
"""
import os
import re
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (http_get, Raw, ProxyTestCase, VaultDev, free_port, make_tls_material, wait_for,  # noqa: E402
                           write_secret)
# JWTs signed here, as vault-dev's own auth method tests make them.
from test_auth_methods import certificate_pem, make_jwt, public_pem, rsa_key  # noqa: E402

# A client that may read credentials but not revoke them (Vault's default policy adds renew).
NO_REVOKE_POLICY = 'path "database/creds/crdb-role" { capabilities = ["read"] }\n'
# vaultwire's own identity: lease management only. Its token renews itself with the
# default policy (update on auth/token/renew-self).
VAULTWIRE_POLICY = ('path "sys/leases/revoke" { capabilities = ["update"] }\n'
                    'path "sys/leases/renew" { capabilities = ["update"] }\n')
REFUSED = ("vaultwire holds no valid Vault token: Vault refused the login at auth/approle/login: "
           "invalid role or secret ID (HTTP 400)\n")
# A batch token has no accessor: "token (no accessor) (batch, ...".
LOGGED_IN_RE = r"logged in to Vault with method approle at auth/approle/login: token (.+?) \((service|batch), ttl (\d+)s"
ADMIN_RE = r"admin: serving /metrics, /healthz, /readyz, /leases on http://127\.0\.0\.1:%d"
JWT_ISSUER = "https://issuer.vault-dev.test"
LOGINS_RE = r'vaultwire_vault_logins_total\{method="approle",result="%s"\} (\d+)'


class VaultAuthTest(ProxyTestCase):
    credentials_settings = {"revoke_idle_after": "2s"}

    @classmethod
    def setup_vault(cls):
        cls.root.sys.create_or_update_policy("no-revoke", NO_REVOKE_POLICY)
        cls.root.sys.create_or_update_policy("vaultwire-self", VAULTWIRE_POLICY)
        cls.root.sys.enable_auth_method("approle")
        approle = cls.root.auth.approle
        # A renewable service token: renew-self at ~4s, up to an hour.
        approle.create_or_update_approle("vaultwire", token_policies=["vaultwire-self"], token_ttl="6s",
                                         token_max_ttl="1h")
        # A batch token: never renewed, replaced by a new login at ~2s.
        approle.create_or_update_approle("vaultwire-batch", token_policies=["vaultwire-self"], token_ttl="3s",
                                         token_type="batch")
        cls.ids = []  # role and secret IDs written for vaultwire: none may reach its log
        # JWT and Kubernetes logins: vault-dev's JWT method checks the JWT against
        # jwt_validation_pubkeys, its Kubernetes method against pem_keys (in place of the
        # TokenReview API, tests/vault-dev/README.md). The token's display name is
        # jwt-<user claim> (sub here) and kubernetes-<namespace>-<service account>.
        cls.signer = rsa_key()
        cls.jwts = []  # none may reach vaultwire's log
        cls.root.sys.enable_auth_method("jwt")
        cls.root.auth.jwt.configure(jwt_validation_pubkeys=[public_pem(cls.signer)], bound_issuer=JWT_ISSUER)
        # hvac's create_role takes allowed_redirect_uris positionally (None: not sent).
        cls.root.auth.jwt.create_role("vaultwire", "sub", None, role_type="jwt", bound_audiences=["vault"],
                                      token_policies=["vaultwire-self"], token_ttl=6)
        cls.root.sys.enable_auth_method("kubernetes")
        cls.root.auth.kubernetes.configure("https://kubernetes.vault-dev.test:6443",
                                           pem_keys=[certificate_pem(cls.signer)])
        cls.root.auth.kubernetes.create_role("vaultwire", bound_service_account_names=["vaultwire"],
                                             bound_service_account_namespaces=["proxies"],
                                             policies=["vaultwire-self"], ttl="6s")

    def role_files(self, role, name):
        """Files with `role`'s role ID and a fresh secret ID: (role_id_file, secret_id_file)."""
        role_id = self.root.auth.approle.read_role_id(role)["data"]["role_id"]
        secret_id = self.root.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        self.ids += [role_id, secret_id]
        role_file = os.path.join(self.tmp, name + ".role-id")
        secret_file = os.path.join(self.tmp, name + ".secret-id")
        write_secret(role_file, role_id)
        write_secret(secret_file, secret_id)
        return role_file, secret_file

    def auth_proxy(self, name, role_file, secret_file):
        """A vaultwire that logs in with these files, its admin listener on: (proxy, admin port)."""
        admin_port = free_port()
        extra = ('[vault.auth]\nmethod = "approle"\nrole_id_file = "%s"\nsecret_id_file = "%s"\n'
                 '[admin]\nbind = "127.0.0.1:%d"\n' % (role_file, secret_file, admin_port))
        proxy = self.start_proxy(self.single_listener_config(free_port(), extra=extra), name=name)
        proxy.wait_log(ADMIN_RE % admin_port, what="%s's admin listener" % name)
        return proxy, admin_port

    def logins(self, admin_port, result):
        status, body = http_get(admin_port, "/metrics")
        self.assertEqual(status, 200, body)
        m = re.search(LOGINS_RE % result, body)
        return int(m.group(1)) if m else None

    def assertNoIds(self, proxy):
        log = proxy.output()
        for value in self.ids:
            self.assertNotIn(value, log, "a role or secret ID reached %s's log" % proxy.name)

    def test_logs_in_renews_and_revokes_with_its_token(self):
        role_file, secret_file = self.role_files("vaultwire", "service")
        proxy, admin = self.auth_proxy("approle-service", role_file, secret_file)
        m = proxy.wait_log(LOGGED_IN_RE, what="the login")
        self.assertEqual((m.group(2), m.group(3)), ("service", "6"))
        accessor = m.group(1)
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, what="/readyz 200 once logged in")
        # renew-self at about two thirds of 6s, asking for the login's TTL; no second login.
        proxy.wait_log(r"renewed vaultwire's Vault token %s for \d+s" % re.escape(accessor), timeout=20,
                       what="renew-self of the login's token")
        self.assertEqual(self.logins(admin, "ok"), 1)
        self.assertEqual(self.logins(admin, "denied"), 0)

        # The client's token may not revoke its lease; vaultwire's login token does.
        client = self.make_token(["no-revoke"])
        r = Raw(proxy.port)
        try:
            r.login(client, user="crdb-role")
            rows, err = r.query("select session_user")
            self.assertIsNone(err)
            user = rows[0][0]
        finally:
            r.close()
        lease = wait_for(lambda: [row[2] for row in proxy.opened_sessions() if row[1] == user],
                         what="the session's lease")[0]
        wait_for(lambda: lease not in self.vault.dev_lease_ids(), timeout=30, what="lease %s revoked" % lease)
        wait_for(lambda: not self.pg.role_exists(user), timeout=30, what="SQL user %s dropped" % user)
        self.assertNoIds(proxy)

    def test_batch_tokens_are_replaced_by_new_logins(self):
        role_file, secret_file = self.role_files("vaultwire-batch", "batch")
        proxy, admin = self.auth_proxy("approle-batch", role_file, secret_file)
        wait_for(lambda: len(re.findall(LOGGED_IN_RE, proxy.output())) >= 3, timeout=30,
                 what="three logins with 3s batch tokens")
        for _, kind, ttl in re.findall(LOGGED_IN_RE, proxy.output()):
            self.assertEqual((kind, ttl), ("batch", "3"))
        self.assertNotIn("renewed vaultwire's Vault token", proxy.output())
        self.assertGreaterEqual(self.logins(admin, "ok"), 3)
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, what="/readyz 200 with a batch token")
        self.assertNoIds(proxy)

    def test_refused_secret_id_readyz_and_recovery(self):
        role_file, secret_file = self.role_files("vaultwire", "refused")
        wrong = "not-" + self.root.auth.approle.generate_secret_id("vaultwire")["data"]["secret_id"]
        self.ids.append(wrong)
        write_secret(secret_file, wrong)
        proxy, admin = self.auth_proxy("approle-refused", role_file, secret_file)
        status, body = wait_for(lambda: (lambda r: r if r[1] == REFUSED else None)(http_get(admin, "/readyz")),
                                what="/readyz naming the refused login")
        self.assertEqual(status, 503)
        self.assertGreaterEqual(self.logins(admin, "denied"), 1)
        self.assertEqual(self.logins(admin, "ok"), 0)
        proxy.wait_log(r"Vault refused the login at auth/approle/login: invalid role or secret ID \(HTTP 400\); "
                       r"retrying in", what="the refusal logged")

        # A good secret ID in the file: the next login (backoff 1s, 2s, 4s, ...) reads it.
        fixed = self.root.auth.approle.generate_secret_id("vaultwire")["data"]["secret_id"]
        self.ids.append(fixed)
        write_secret(secret_file, fixed)
        started = time.monotonic()
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, timeout=40, what="/readyz 200 after the fix")
        self.assertLess(time.monotonic() - started, 40)
        self.assertEqual(self.logins(admin, "ok"), 1)
        self.assertNoIds(proxy)

    # -- JWT and Kubernetes ----------------------------------------------------

    def signed(self, claims):
        token = make_jwt(self.signer, claims)
        self.jwts.append(token)
        return token

    def jwt_claims(self, sub):
        now = int(time.time())
        return {"iss": JWT_ISSUER, "sub": sub, "aud": "vault", "iat": now, "nbf": now, "exp": now + 600}

    def kubernetes_claims(self):
        """A projected service account token's claims (vaultwire in namespace proxies)."""
        now = int(time.time())
        return {"aud": ["https://kubernetes.default.svc"], "exp": now + 600, "iat": now, "nbf": now,
                "iss": "https://kubernetes.default.svc.cluster.local",
                "kubernetes.io": {"namespace": "proxies", "pod": {"name": "vaultwire-0", "uid": str(uuid.uuid4())},
                                  "serviceaccount": {"name": "vaultwire", "uid": str(uuid.uuid4())}},
                "sub": "system:serviceaccount:proxies:vaultwire"}

    def jwt_proxy(self, name, method, jwt_file):
        admin_port = free_port()
        extra = ('[vault.auth]\nmethod = "%s"\nrole = "vaultwire"\njwt_file = "%s"\n[admin]\nbind = "127.0.0.1:%d"\n'
                 % (method, jwt_file, admin_port))
        proxy = self.start_proxy(self.single_listener_config(free_port(), extra=extra), name=name)
        proxy.wait_log(ADMIN_RE % admin_port, what="%s's admin listener" % name)
        return proxy, admin_port

    def method_logins(self, proxy, method):
        """The accessors of vaultwire's logins, in order."""
        return re.findall(r"logged in to Vault with method %s at auth/%s/login: token (\S+) \(service, ttl 6s"
                          % (method, method), proxy.output())

    def token_of(self, accessor):
        return self.root.auth.token.lookup_accessor(accessor)["data"]

    def assertNoJwts(self, proxy):
        self.assertTrue(self.jwts)
        for token in self.jwts:
            self.assertNotIn(token, proxy.output(), "a JWT reached %s's log" % proxy.name)

    def test_jwt_login_and_a_rotated_jwt_file(self):
        jwt_file = os.path.join(self.tmp, "vaultwire.jwt")
        write_secret(jwt_file, self.signed(self.jwt_claims("alice")))
        proxy, admin = self.jwt_proxy("jwt-login", "jwt", jwt_file)
        first = wait_for(lambda: self.method_logins(proxy, "jwt"), what="the JWT login")[0]
        token = self.token_of(first)
        self.assertEqual((token["display_name"], token["path"]), ("jwt-alice", "auth/jwt/login"))
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, what="/readyz 200 once logged in")

        # A new JWT in the file, then vaultwire's token revoked: its renew-self (at about
        # two thirds of 6s) is refused, and the next login reads the file again.
        write_secret(jwt_file, self.signed(self.jwt_claims("bob")))
        self.root.auth.token.revoke_accessor(first)
        proxy.wait_log(r"vaultwire's Vault token %s was refused by Vault as invalid or revoked \(renew-self"
                       % re.escape(first), timeout=20, what="renew-self of the revoked token refused")
        second = wait_for(lambda: self.method_logins(proxy, "jwt")[1:], timeout=20,
                          what="the login after the refusal")[0]
        token = self.token_of(second)
        self.assertEqual((token["display_name"], token["path"]), ("jwt-bob", "auth/jwt/login"))
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, what="/readyz 200 after the new login")
        r = self.psql("SELECT session_user", port=proxy.port)  # the secret scan has a password to look for
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNoJwts(proxy)

    def test_kubernetes_login(self):
        jwt_file = os.path.join(self.tmp, "serviceaccount.token")
        write_secret(jwt_file, self.signed(self.kubernetes_claims()))
        proxy, admin = self.jwt_proxy("kubernetes-login", "kubernetes", jwt_file)
        accessor = wait_for(lambda: self.method_logins(proxy, "kubernetes"), what="the Kubernetes login")[0]
        token = self.token_of(accessor)
        self.assertEqual((token["display_name"], token["path"]),
                         ("kubernetes-proxies-vaultwire", "auth/kubernetes/login"))
        self.assertEqual((token["meta"]["role"], token["meta"]["service_account_name"],
                          token["meta"]["service_account_namespace"]), ("vaultwire", "vaultwire", "proxies"))
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, what="/readyz 200 once logged in")
        proxy.wait_log(r"renewed vaultwire's Vault token %s for \d+s" % re.escape(accessor), timeout=20,
                       what="renew-self of the Kubernetes login's token")
        self.assertEqual(len(self.method_logins(proxy, "kubernetes")), 1)
        # Clients still log in with their own tokens (and the secret scan has a password to look for).
        r = self.psql("SELECT session_user", port=proxy.port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNoJwts(proxy)

class VaultCertAuthTest(ProxyTestCase):
    """[vault.auth] method = "cert" (api-docs/auth/cert "Login with TLS certificate
    method"): the login's credential is [vault] client_cert, presented in the TLS
    handshake with vault-dev (which requires one, tls_require_and_verify_client_cert)."""

    @classmethod
    def make_vault_dev(cls):
        cls.tls = make_tls_material(cls.tmp, server_names=("localhost",))
        t = cls.tls
        return VaultDev(extra_args=["--tls-cert", t["server_cert"], "--tls-key", t["server_key"],
                                    "--tls-client-ca", t["client_ca"]],
                        ca=t["server_ca"], client_cert=(t["client_cert"], t["client_key"]))

    @classmethod
    def vault_keys(cls):
        t = cls.tls
        return {"address": "https://localhost:%d" % cls.vault.port, "ca_file": t["server_ca"],
                "client_cert": t["client_cert"], "client_key": t["client_key"]}

    @classmethod
    def proxy_config(cls):
        return cls.single_listener_config(cls.port, vault=cls.vault_keys())

    @classmethod
    def setup_vault(cls):
        cls.root.sys.create_or_update_policy("vaultwire-self", VAULTWIRE_POLICY)
        cls.root.sys.enable_auth_method("cert")
        cls.root.auth.cert.create_ca_certificate_role("vaultwire", cls.tls["client_ca"],
                                                      token_policies=["vaultwire-self"], token_ttl=6)

    def cert_proxy(self, name, cert_role):
        admin_port = free_port()
        extra = ('[vault.auth]\nmethod = "cert"\nname = "%s"\n[admin]\nbind = "127.0.0.1:%d"\n'
                 % (cert_role, admin_port))
        proxy = self.start_proxy(self.single_listener_config(free_port(), extra=extra, vault=self.vault_keys()),
                                 name=name)
        proxy.wait_log(ADMIN_RE % admin_port, what="%s's admin listener" % name)
        return proxy, admin_port

    def test_logs_in_with_the_client_certificate(self):
        proxy, admin = self.cert_proxy("cert-login", "vaultwire")
        m = proxy.wait_log(r"logged in to Vault with method cert at auth/cert/login: token (.+?) \(service, ttl 6s",
                           what="the certificate login")
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, what="/readyz 200 once logged in")
        proxy.wait_log(r"renewed vaultwire's Vault token %s for \d+s" % re.escape(m.group(1)), timeout=20,
                       what="renew-self of the certificate login's token")
        # Clients still log in with their own tokens (and the secret scan has a password to look for).
        r = self.psql("SELECT session_user", port=proxy.port)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_unknown_certificate_role_is_refused(self):
        proxy, admin = self.cert_proxy("cert-refused", "nobody")
        prefix = "vaultwire holds no valid Vault token: Vault refused the login at auth/cert/login: "
        status, body = wait_for(lambda: (lambda r: r if r[1].startswith(prefix) else None)(http_get(admin, "/readyz")),
                                what="/readyz naming the refused certificate login")
        self.assertEqual(status, 503)


if __name__ == "__main__":
    unittest.main()
