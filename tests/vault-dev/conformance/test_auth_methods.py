"""Auth methods as Vault has them: sys/auth (enable, list, read, disable), AppRole,
JWT (static keys), Kubernetes (pem_keys in place of the TokenReview API) and TLS
certificates, and the tokens their logins make (service, periodic, batch), which read
database credentials under their policies and take those leases with them when revoked.

Sources of the expected behaviour: builtin/credential/{approle,cert}, the
vault-plugin-auth-jwt and vault-plugin-auth-kubernetes plugins, vault/auth.go,
vault/request_handling.go LoginCreateToken, vault/token_store.go, vault/expiration.go.
hvac 0.11.2 calls are used where hvac has them (sys.enable_auth_method,
auth.approle.*, auth.jwt.*, auth.kubernetes.*, auth.cert.*)."""

import base64
import datetime
import json
import os
import re
import time
import uuid

import hvac
import hvac.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from vaultdev_fixture import (OWNER_CREATION, OWNER_REVOCATION, UUID_RE, VaultDevTestCase, make_tls_material,
                              shared_tempdir, wait_for)

APP_CREDS_HCL = """
path "database/creds/app" {
  capabilities = ["read"]
}
"""

TOKEN_MAKER_HCL = """
path "auth/token/create" {
  capabilities = ["update"]
}
"""


# ---------------------------------------------------------------------------
# JWTs made here with the cryptography module (RFC 7515 compact form).

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def certificate_pem(key, cn="vault-dev test signer"):
    """A self-signed certificate for key, the form hvac's PEM check takes for pem_keys."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def make_jwt(key, claims, alg=None):
    if alg is None:
        alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    header = {"alg": alg, "typ": "JWT", "kid": "test"}
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    if alg == "RS256":
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raise ValueError(alg)
    return signing_input.decode() + "." + b64url(sig)


class AuthTestCase(VaultDevTestCase):
    """A database engine with the owner-role pattern (its leases can be revoked on PG 15)
    and the app-creds policy; JWTs handed out are checked against vault-dev's output."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.jwts = []
        cls.setup_engine(allowed_roles="app", roles={
            "app": dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                        default_ttl="1h", max_ttl="24h"),
        })
        cls.root.sys.create_or_update_policy("app-creds", APP_CREDS_HCL)
        cls.root.sys.create_or_update_policy("token-maker", TOKEN_MAKER_HCL)

    @classmethod
    def tearDownClass(cls):
        text = cls.vault.output()
        leaked = [j for j in cls.jwts if j in text]
        super().tearDownClass()
        if leaked:
            raise AssertionError("vault-dev output contains %d JWT(s)" % len(leaked))

    def jwt(self, key, claims, alg=None):
        token = make_jwt(key, claims, alg)
        type(self).jwts.append(token)
        return token

    def assertLoginAuth(self, auth, policies, metadata, token_type="service", renewable=True):
        self.assertEqual(auth["policies"], policies)
        self.assertEqual(auth["token_policies"], policies)
        self.assertEqual(auth["metadata"], metadata)
        self.assertEqual(auth["token_type"], token_type)
        self.assertIs(auth["renewable"], renewable)
        self.assertIs(auth["orphan"], True)
        self.assertRegex(auth["entity_id"], UUID_RE)
        if token_type == "batch":
            self.assertTrue(auth["client_token"].startswith("hvb."), auth["client_token"])
            self.assertEqual(auth["accessor"], "")
        else:
            self.assertTrue(auth["client_token"].startswith("hvs."), auth["client_token"])
            self.assertRegex(auth["accessor"], r"^[0-9A-Za-z]{24}$")

    def creds_with(self, token, display):
        """Reads database/creds/app with token; checks the username carries display."""
        t0 = time.time()
        resp = self.client(token=token).secrets.database.generate_credentials("app")
        self.assertUsername(resp["data"]["username"], display, "app", t0, time.time())
        self.assertTrue(self.pg.role_exists(resp["data"]["username"]))
        conn = self.pg.connect(resp["data"]["username"], resp["data"]["password"])
        conn.close()
        return resp

    def assertRevokingTakesLeases(self, token, creds):
        username, lease_id = creds["data"]["username"], creds["lease_id"]
        self.client(token=token).auth.token.revoke_self()
        self.wait_role_gone(username)
        self.wait_lease_gone(lease_id)
        with self.assertRaises(hvac.exceptions.Forbidden):
            self.client(token=token).auth.token.lookup_self()


# ---------------------------------------------------------------------------


class SysAuth(AuthTestCase):
    def test_enable_list_read_disable(self):
        self.root.sys.enable_auth_method("approle", path="ar-list", description="for the list")
        listed = self.root.sys.list_auth_methods()
        # sys/auth is one of http/handler.go injectDataIntoTopRoutes: data copied to the top.
        for view in (listed, listed["data"]):
            self.assertEqual(view["ar-list/"]["type"], "approle")
            self.assertEqual(view["token/"]["type"], "token")
        entry = listed["data"]["ar-list/"]
        self.assertRegex(entry["accessor"], r"^auth_approle_[0-9a-f]{8}$")
        self.assertEqual(entry["description"], "for the list")
        self.assertEqual(entry["config"]["token_type"], "default-service")
        self.assertRegex(entry["uuid"], UUID_RE)
        read = self.vault.raw("GET", "sys/auth/ar-list")
        self.assertEqual(read.status, 200, read)
        self.assertEqual(read.json()["data"]["accessor"], entry["accessor"])
        self.root.sys.disable_auth_method("ar-list")
        self.assertNotIn("ar-list/", self.root.sys.list_auth_methods()["data"])
        self.assertRawError(self.vault.raw("GET", "sys/auth/ar-list"), 400, ["No auth engine at ar-list/"])

    def test_enable_refusals(self):
        self.root.sys.enable_auth_method("approle", path="ar-twice")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["path is already in use at ar-twice/"],
                              self.root.sys.enable_auth_method, "approle", path="ar-twice")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["path is already in use at ar-twice/"],
                              self.root.sys.enable_auth_method, "jwt", path="ar-twice/nested")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["path is already in use at token/"],
                              self.root.sys.enable_auth_method, "approle", path="token")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["token credential backend cannot be instantiated"],
                              self.root.sys.enable_auth_method, "token", path="another-token")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["plugin not found in the catalog: nope"],
                              self.root.sys.enable_auth_method, "nope", path="nope")

    def test_acl_needs_sudo(self):
        self.root.sys.create_or_update_policy("auth-no-sudo", 'path "sys/auth/*" { capabilities = ["update"] }')
        self.root.sys.create_or_update_policy("auth-sudo", 'path "sys/auth/*" { capabilities = ["update", "sudo"] }')
        weak = self.root.auth.token.create(policies=["auth-no-sudo"])["auth"]["client_token"]
        strong = self.root.auth.token.create(policies=["auth-sudo"])["auth"]["client_token"]
        with self.assertRaises(hvac.exceptions.Forbidden):
            self.client(token=weak).sys.enable_auth_method("approle", path="ar-acl")
        self.client(token=strong).sys.enable_auth_method("approle", path="ar-acl")
        self.assertIn("ar-acl/", self.root.sys.list_auth_methods()["data"])

    def test_disable_revokes_login_tokens_and_their_leases(self):
        self.root.sys.enable_auth_method("approle", path="ar-gone")
        self.root.auth.approle.create_or_update_approle("gone", token_policies=["app-creds"], mount_point="ar-gone")
        role_id = self.root.auth.approle.read_role_id("gone", mount_point="ar-gone")["data"]["role_id"]
        secret = self.root.auth.approle.generate_secret_id("gone", mount_point="ar-gone")["data"]["secret_id"]
        auth = self.client(token="").auth.approle.login(role_id, secret, use_token=False,
                                                       mount_point="ar-gone")["auth"]
        creds = self.creds_with(auth["client_token"], "ar-gone")
        self.root.sys.disable_auth_method("ar-gone")
        self.wait_role_gone(creds["data"]["username"])
        with self.assertRaises(hvac.exceptions.Forbidden):
            self.client(token=auth["client_token"]).auth.token.lookup_self()


class AppRole(AuthTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root.sys.enable_auth_method("approle")
        cls.approle = cls.root.auth.approle
        cls.approle.create_or_update_approle("app", token_policies=["app-creds"], token_ttl="1h", token_max_ttl="4h")

    def login(self, role="app", secret_id=None, **kw):
        role_id = self.approle.read_role_id(role)["data"]["role_id"]
        if secret_id is None:
            secret_id = self.approle.generate_secret_id(role)["data"]["secret_id"]
        return self.client(token="").auth.approle.login(role_id, secret_id, use_token=False, **kw)

    def test_login_token_reads_creds(self):
        resp = self.login()
        auth = resp["auth"]
        self.assertLoginAuth(auth, ["app-creds", "default"], {"role_name": "app"})
        self.assertEqual(auth["lease_duration"], 3600)
        self.assertIsNone(resp["data"])
        self.assertEqual(resp["mount_type"], "approle")
        token = auth["client_token"]
        data = self.client(token=token).auth.token.lookup_self()["data"]
        self.assertEqual(data["path"], "auth/approle/login")
        self.assertEqual(data["display_name"], "approle")
        self.assertEqual(data["meta"], {"role_name": "app"})
        self.assertEqual(data["entity_id"], auth["entity_id"])
        self.assertEqual(data["type"], "service")
        self.assertIs(data["orphan"], True)
        self.assertEqual(data["accessor"], auth["accessor"])
        # The token's lease is under the login path (expiration.go RegisterAuth).
        keys = self.root.sys.list_leases("auth/approle/login/")["data"]["keys"]
        self.assertTrue(any(re.match(r"^h[0-9a-f]{64}$", k) for k in keys), keys)
        creds = self.creds_with(token, "approle")
        with self.assertRaises(hvac.exceptions.Forbidden):
            self.client(token=token).sys.list_auth_methods()
        self.assertRevokingTakesLeases(token, creds)

    def test_same_role_id_same_entity(self):
        self.assertEqual(self.login()["auth"]["entity_id"], self.login()["auth"]["entity_id"])

    def test_login_refusals(self):
        role_id = self.approle.read_role_id("app")["data"]["role_id"]
        anon = self.client(token="").auth.approle
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid role or secret ID"],
                              anon.login, role_id, str(uuid.uuid4()), use_token=False)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid role or secret ID"],
                              anon.login, str(uuid.uuid4()), str(uuid.uuid4()), use_token=False)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["missing secret_id"],
                              anon.login, role_id, None, use_token=False)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["missing role_id"],
                              anon.login, "", "x", use_token=False)

    def test_secret_id_num_uses(self):
        self.approle.create_or_update_approle("twice", token_policies=["app-creds"], secret_id_num_uses=2)
        generated = self.approle.generate_secret_id("twice")["data"]
        self.assertEqual(generated["secret_id_num_uses"], 2)
        self.assertEqual(generated["secret_id_ttl"], 0)
        self.assertRegex(generated["secret_id_accessor"], UUID_RE)
        secret = generated["secret_id"]
        self.login("twice", secret)
        self.login("twice", secret)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["invalid role or secret ID"],
                              self.login, "twice", secret)

    def test_secret_id_expires(self):
        self.approle.create_or_update_approle("brief", token_policies=["app-creds"], secret_id_ttl="2s")
        generated = self.approle.generate_secret_id("brief")["data"]
        self.assertEqual(generated["secret_id_ttl"], 2)
        started = time.monotonic()
        self.login("brief", generated["secret_id"])

        def refused():
            try:
                self.login("brief", generated["secret_id"])
                return False
            except hvac.exceptions.InvalidRequest as e:
                self.assertEqual(e.errors, ["invalid role or secret ID"])
                return True

        wait_for(refused, timeout=15, interval=0.2, what="the secret ID to expire")
        self.assertGreaterEqual(time.monotonic() - started, 1.0)

    def test_periodic_token(self):
        self.approle.create_or_update_approle("periodic", token_policies=["app-creds"], token_period="120",
                                              token_ttl="30")
        auth = self.login("periodic")["auth"]
        self.assertEqual(auth["lease_duration"], 120)
        client = self.client(token=auth["client_token"])
        self.assertEqual(client.auth.token.lookup_self()["data"]["period"], 120)
        renewed = client.auth.token.renew_self(increment=10)
        # A period is the TTL of every renewal, whatever the increment (CalculateTTL).
        self.assertEqual(renewed["auth"]["lease_duration"], 120)
        self.assertTrue(118 <= client.auth.token.lookup_self()["data"]["ttl"] <= 120)

    def test_service_token_renewal_capped_by_role_max_ttl(self):
        self.approle.create_or_update_approle("capped", token_policies=["app-creds"], token_ttl="60",
                                              token_max_ttl="100")
        auth = self.login("capped")["auth"]
        self.assertEqual(auth["lease_duration"], 60)
        renewed = self.client(token=auth["client_token"]).auth.token.renew_self(increment=1000)
        self.assertTrue(98 <= renewed["auth"]["lease_duration"] <= 100, renewed["auth"])
        self.assertTrue(renewed["warnings"] and "exceeded the effective max_ttl" in renewed["warnings"][0])

    def test_batch_token(self):
        self.approle.create_or_update_approle("batch", token_policies=["app-creds", "token-maker"],
                                              token_type="batch", token_ttl="300")
        auth = self.login("batch")["auth"]
        self.assertLoginAuth(auth, ["app-creds", "default", "token-maker"], {"role_name": "batch"},
                             token_type="batch", renewable=False)
        self.assertEqual(auth["lease_duration"], 300)
        client = self.client(token=auth["client_token"])
        data = client.auth.token.lookup_self()["data"]
        self.assertEqual(data["type"], "batch")
        self.assertIs(data["renewable"], False)
        self.assertEqual(data["accessor"], "")
        self.assertEqual(data["display_name"], "approle")
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["batch tokens cannot be renewed"],
                              client.auth.token.renew_self)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["batch tokens cannot be revoked"],
                              client.auth.token.revoke_self)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["batch tokens cannot create more tokens"],
                              client.auth.token.create, policies=["app-creds"])
        # A lease read with a batch token ends with the token at the latest
        # (expiration.go Register), not with the database role's hour.
        creds = self.creds_with(auth["client_token"], "approle")
        self.assertTrue(295 <= creds["lease_duration"] <= 300, creds["lease_duration"])

    def test_token_num_uses(self):
        self.approle.create_or_update_approle("limited", token_policies=["app-creds"], token_num_uses=2)
        auth = self.login("limited")["auth"]
        self.assertEqual(auth["num_uses"], 2)
        client = self.client(token=auth["client_token"])
        self.assertEqual(client.auth.token.lookup_self()["data"]["num_uses"], 1)
        client.secrets.database.generate_credentials("app")
        with self.assertRaises(hvac.exceptions.Forbidden):
            client.auth.token.lookup_self()

    def test_role_management(self):
        self.approle.create_or_update_approle("managed", token_policies=["app-creds"], token_ttl="5m",
                                              secret_id_num_uses=3)
        data = self.approle.read_role("managed")["data"]
        self.assertEqual(data["token_policies"], ["app-creds"])
        self.assertEqual(data["policies"], ["app-creds"])
        self.assertEqual(data["token_ttl"], 300)
        self.assertEqual(data["token_type"], "default")
        self.assertEqual(data["secret_id_num_uses"], 3)
        self.assertIs(data["bind_secret_id"], True)
        self.assertNotIn("role_id", data)
        self.assertIn("managed", self.approle.list_roles()["data"]["keys"])
        self.approle.update_role_id("managed", "my-own-role-id")
        self.assertEqual(self.approle.read_role_id("managed")["data"]["role_id"], "my-own-role-id")
        secret = self.approle.generate_secret_id("managed")["data"]["secret_id"]
        self.client(token="").auth.approle.login("my-own-role-id", secret, use_token=False)
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["at least one constraint should be enabled on the role"],
                              self.approle.create_or_update_approle, "loose", bind_secret_id=False)
        self.assertVaultError(hvac.exceptions.InvalidPath, ["role \"absent\" does not exist"],
                              self.approle.generate_secret_id, "absent")
        self.approle.delete_role("managed")
        with self.assertRaises(hvac.exceptions.InvalidPath):
            self.approle.read_role("managed")

    def test_login_with_a_token_header_is_still_a_login(self):
        role_id = self.approle.read_role_id("app")["data"]["role_id"]
        secret = self.approle.generate_secret_id("app")["data"]["secret_id"]
        resp = self.vault.raw("POST", "auth/approle/login", body={"role_id": role_id, "secret_id": secret},
                              token="hvs.notarealtoken000000000000")
        self.assertEqual(resp.status, 200, resp)


class Jwt(AuthTestCase):
    ISSUER = "https://issuer.vault-dev.test"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rsa, cls.ec, cls.stranger = rsa_key(), ec_key(), rsa_key()
        cls.root.sys.enable_auth_method("jwt")
        cls.root.auth.jwt.configure(jwt_validation_pubkeys=[public_pem(cls.rsa), public_pem(cls.ec)],
                                    bound_issuer=cls.ISSUER)
        # hvac's create_role takes allowed_redirect_uris positionally (None: not sent).
        cls.root.auth.jwt.create_role("ci", "sub", None, role_type="jwt", bound_audiences=["vault"],
                                      bound_claims={"project": "alpha"}, token_policies=["app-creds"],
                                      token_ttl=3600)

    def claims(self, **over):
        now = int(time.time())
        c = {"iss": self.ISSUER, "sub": "alice", "aud": "vault", "project": "alpha", "iat": now,
             "nbf": now, "exp": now + 300}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def login(self, token, role="ci"):
        return self.client(token="").auth.jwt.jwt_login(role, token, use_token=False)

    def test_rs256_login_reads_creds(self):
        auth = self.login(self.jwt(self.rsa, self.claims()))["auth"]
        self.assertLoginAuth(auth, ["app-creds", "default"], {"role": "ci"})
        self.assertEqual(auth["lease_duration"], 3600)
        data = self.client(token=auth["client_token"]).auth.token.lookup_self()["data"]
        self.assertEqual(data["display_name"], "jwt-alice")
        self.assertEqual(data["path"], "auth/jwt/login")
        creds = self.creds_with(auth["client_token"], "jwt-alice")
        self.assertRevokingTakesLeases(auth["client_token"], creds)

    def test_es256_login(self):
        auth = self.login(self.jwt(self.ec, self.claims(sub="bob", aud=["other", "vault"])))["auth"]
        data = self.client(token=auth["client_token"]).auth.token.lookup_self()["data"]
        self.assertEqual(data["display_name"], "jwt-bob")

    def test_refusals(self):
        cases = [
            (self.jwt(self.stranger, self.claims()), "no known key successfully validated the token signature"),
            (self.jwt(self.rsa, self.claims(exp=int(time.time()) - 600)),
             "error validating claims: square/go-jose/jwt: validation failed, token is expired (exp)"),
            (self.jwt(self.rsa, self.claims(nbf=int(time.time()) + 600, iat=None)),
             "error validating claims: square/go-jose/jwt: validation failed, token not valid yet (nbf)"),
            (self.jwt(self.rsa, self.claims(iss="https://elsewhere")),
             "error validating claims: square/go-jose/jwt: validation failed, invalid issuer claim (iss)"),
            (self.jwt(self.rsa, self.claims(aud="not-vault")),
             "error validating claims: aud claim does not match any bound audience"),
            (self.jwt(self.rsa, self.claims(project="beta")),
             'error validating claims: claim "project" does not match any associated bound claim values'),
            (self.jwt(self.rsa, self.claims(project=None)), 'error validating claims: claim "project" is missing'),
            (self.jwt(self.rsa, self.claims(iat=None, nbf=None, exp=None)),
             "no issue time, notbefore, or expiration time encoded in token"),
            (self.jwt(self.rsa, self.claims(sub=None)), 'claim "sub" not found in token'),
            ("not-a-jwt", "error parsing token: square/go-jose: compact JWS format must have three parts"),
        ]
        for token, error in cases:
            with self.subTest(error=error):
                self.assertVaultError(hvac.exceptions.InvalidRequest, [error], self.login, token)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ['role "nope" could not be found'],
                              self.login, self.jwt(self.rsa, self.claims()), "nope")

    def test_bound_subject(self):
        self.root.auth.jwt.create_role("alice-only", "sub", None, role_type="jwt", bound_subject="alice",
                                       token_policies=["app-creds"])
        self.login(self.jwt(self.rsa, self.claims(aud=None)), role="alice-only")
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["error validating claims: square/go-jose/jwt: validation failed, invalid subject claim "
                               "(sub)"], self.login, self.jwt(self.rsa, self.claims(sub="bob", aud=None)), "alice-only")
        # A role without bound audiences refuses a token that has one (claims.go, strict).
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["audience claim found in JWT but no audiences bound to the role"],
                              self.login, self.jwt(self.rsa, self.claims()), "alice-only")

    def test_exp_within_clock_skew_leeway(self):
        # go-jose's default leeway of a minute (clock_skew_leeway 0 or unset).
        auth = self.login(self.jwt(self.rsa, self.claims(exp=int(time.time()) - 30)))["auth"]
        self.assertTrue(auth["client_token"].startswith("hvs."))

    def test_role_validation_and_read(self):
        jwt = self.root.auth.jwt
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["must have at least one bound constraint when creating/updating a role"],
                              jwt.create_role, "loose", "sub", None, role_type="jwt")
        self.assertVaultError(hvac.exceptions.InvalidRequest,
                              ["'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified."],
                              jwt.create_role, "oidc-ish", "sub", None, role_type="oidc", bound_audiences=["vault"])
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["a user claim must be defined on the role"],
                              jwt.create_role, "no-user", None, None, role_type="jwt", bound_audiences=["vault"])
        data = jwt.read_role("ci")["data"]
        self.assertEqual(data["role_type"], "jwt")
        self.assertEqual(data["bound_audiences"], ["vault"])
        self.assertEqual(data["bound_claims"], {"project": "alpha"})
        self.assertEqual(data["clock_skew_leeway"], 60)
        self.assertEqual(data["expiration_leeway"], 150)
        self.assertEqual(data["not_before_leeway"], 150)
        self.assertEqual(data["token_policies"], ["app-creds"])
        config = jwt.read_config()["data"]
        self.assertEqual(config["bound_issuer"], self.ISSUER)
        self.assertEqual(len(config["jwt_validation_pubkeys"]), 2)


class Kubernetes(AuthTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.signer, cls.stranger = rsa_key(), rsa_key()
        cls.root.sys.enable_auth_method("kubernetes")
        cls.root.auth.kubernetes.configure("https://kubernetes.vault-dev.test:6443",
                                           pem_keys=[certificate_pem(cls.signer)])
        cls.root.auth.kubernetes.create_role("app", bound_service_account_names=["vaultwire"],
                                             bound_service_account_namespaces=["apps"], policies=["app-creds"],
                                             ttl="1h")

    def legacy_claims(self, name="vaultwire", namespace="apps"):
        """A secret-based service account token's claims (Kubernetes before bound tokens)."""
        return {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": namespace,
                "kubernetes.io/serviceaccount/secret.name": name + "-token-x2b4q",
                "kubernetes.io/serviceaccount/service-account.name": name,
                "kubernetes.io/serviceaccount/service-account.uid": str(uuid.uuid4()),
                "sub": "system:serviceaccount:%s:%s" % (namespace, name)}

    def projected_claims(self, name="vaultwire", namespace="apps", exp_in=600):
        """A projected (bound) service account token's claims."""
        now = int(time.time())
        return {"aud": ["https://kubernetes.default.svc"], "exp": now + exp_in, "iat": now, "nbf": now,
                "iss": "https://kubernetes.default.svc.cluster.local",
                "kubernetes.io": {"namespace": namespace,
                                  "pod": {"name": name + "-7d9f", "uid": str(uuid.uuid4())},
                                  "serviceaccount": {"name": name, "uid": str(uuid.uuid4())}},
                "sub": "system:serviceaccount:%s:%s" % (namespace, name)}

    def login(self, token, role="app"):
        return self.client(token="").auth.kubernetes.login(role, token, use_token=False)

    def test_legacy_token_login_reads_creds(self):
        claims = self.legacy_claims()
        auth = self.login(self.jwt(self.signer, claims))["auth"]
        self.assertLoginAuth(auth, ["app-creds", "default"], {
            "role": "app", "service_account_name": "vaultwire", "service_account_namespace": "apps",
            "service_account_secret_name": "vaultwire-token-x2b4q",
            "service_account_uid": claims["kubernetes.io/serviceaccount/service-account.uid"]})
        self.assertEqual(auth["lease_duration"], 3600)
        data = self.client(token=auth["client_token"]).auth.token.lookup_self()["data"]
        self.assertEqual(data["display_name"], "kubernetes-apps-vaultwire")
        self.assertEqual(data["path"], "auth/kubernetes/login")
        creds = self.creds_with(auth["client_token"], "kubernetes-apps-vaultwire")
        self.assertRevokingTakesLeases(auth["client_token"], creds)

    def test_projected_token_login(self):
        claims = self.projected_claims()
        auth = self.login(self.jwt(self.signer, claims))["auth"]
        self.assertEqual(auth["metadata"]["service_account_uid"], claims["kubernetes.io"]["serviceaccount"]["uid"])
        self.assertEqual(auth["metadata"]["service_account_namespace"], "apps")
        self.assertEqual(auth["metadata"]["service_account_secret_name"], "")

    def test_refusals(self):
        cases = [
            (self.jwt(self.signer, self.legacy_claims(name="intruder")), "service account name not authorized"),
            (self.jwt(self.signer, self.legacy_claims(namespace="other")), "namespace not authorized"),
            (self.jwt(self.signer, self.projected_claims(namespace="other")), "namespace not authorized"),
            # path_login.go: a signature no pem_key verifies is logical.ErrPermissionDenied.
            (self.jwt(self.stranger, self.legacy_claims()), "permission denied"),
            ("not-a-jwt", "permission denied"),
            # hashicorp/cap jwt.go validateAll's texts, as logical.CodedError(403).
            (self.jwt(self.signer, self.projected_claims(exp_in=-600)),
             "invalid expiration time (exp) claim: token is expired"),
        ]
        for token, error in cases:
            with self.subTest(error=error):
                self.assertVaultError(hvac.exceptions.Forbidden, [error], self.login, token)
        self.assertVaultError(hvac.exceptions.InvalidRequest, ['invalid role name "nope"'],
                              self.login, self.jwt(self.signer, self.legacy_claims()), "nope")

    def test_role_audience(self):
        self.root.write("auth/kubernetes/role/aud", bound_service_account_names="vaultwire",
                        bound_service_account_namespaces="apps", audience="vault", token_policies="app-creds")
        self.assertVaultError(hvac.exceptions.Forbidden,
                              ["invalid audience (aud) claim: audience claim does not match any expected audience"],
                              self.login, self.jwt(self.signer, self.projected_claims()), "aud")
        claims = self.projected_claims()
        claims["aud"] = ["vault"]
        auth = self.login(self.jwt(self.signer, claims), role="aud")["auth"]
        self.assertEqual(auth["metadata"]["role"], "aud")

    def test_role_and_config(self):
        kube = self.root.auth.kubernetes
        # hvac's kubernetes read_role and read_config return the answer's data.
        data = kube.read_role("app")
        self.assertEqual(data["bound_service_account_names"], ["vaultwire"])
        self.assertEqual(data["bound_service_account_namespaces"], ["apps"])
        self.assertEqual(data["token_policies"], ["app-creds"])
        self.assertEqual(data["token_ttl"], 3600)
        config = kube.read_config()
        self.assertEqual(config["kubernetes_host"], "https://kubernetes.vault-dev.test:6443")
        self.assertEqual(len(config["pem_keys"]), 1)
        # A glob in the bound names (path_login.go: strutil.StrListContainsGlob).
        kube.create_role("globbed", bound_service_account_names=["vault*"], bound_service_account_namespaces=["*"],
                         policies=["app-creds"])
        auth = self.login(self.jwt(self.signer, self.legacy_claims(namespace="anywhere")), role="globbed")["auth"]
        self.assertEqual(auth["metadata"]["service_account_namespace"], "anywhere")


class Cert(AuthTestCase):
    """vault-dev over TLS without --tls-client-ca: it asks for a client certificate and
    accepts connections without one, as Vault's listener does by default."""

    @classmethod
    def vault_kwargs(cls):
        cls.dir = shared_tempdir("vdcert.")
        cls.tls = make_tls_material(cls.dir)
        cls.vault_args = ["--tls-cert", cls.tls["server_cert"], "--tls-key", cls.tls["server_key"]]
        return {"ca": cls.tls["server_ca"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root.sys.enable_auth_method("cert")
        cls.root.auth.cert.create_ca_certificate_role("web", cls.tls["client_ca"], token_policies=["app-creds"],
                                                      token_ttl=1800)
        cls.root.auth.cert.create_ca_certificate_role("only-bob", cls.tls["client_ca"],
                                                      allowed_common_names="bob", token_policies=["app-creds"])

    def raw_login(self, cert=None, body=None):
        conn = self.vault.connection(cert=cert)
        try:
            conn.request("POST", "/v1/auth/cert/login", body=json.dumps(body or {}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read().decode() or "null")
        finally:
            conn.close()

    def test_login_with_client_certificate(self):
        client = self.vault.client(token="", cert=(self.tls["client_cert"], self.tls["client_key"]))
        resp = client.auth.cert.login(name="web", cert_pem=self.tls["client_cert"], key_pem=self.tls["client_key"],
                                      use_token=False)
        auth = resp["auth"]
        self.assertEqual(auth["lease_duration"], 1800)
        self.assertEqual(auth["metadata"]["cert_name"], "web")
        self.assertEqual(auth["metadata"]["common_name"], "vaultwire")
        self.assertRegex(auth["metadata"]["serial_number"], r"^[0-9]+$")
        # certutil.GetHexFormatted of the key IDs ("" when the certificate has none).
        for key_id in ("subject_key_id", "authority_key_id"):
            self.assertRegex(auth["metadata"][key_id], r"^(([0-9a-f]{2}:)*[0-9a-f]{2})?$")
        self.assertLoginAuth(auth, ["app-creds", "default"], auth["metadata"])
        data = self.client(token=auth["client_token"]).auth.token.lookup_self()["data"]
        self.assertEqual(data["display_name"], "cert-web")
        self.assertEqual(data["path"], "auth/cert/login")
        creds = self.creds_with(auth["client_token"], "cert-web")
        self.assertRevokingTakesLeases(auth["client_token"], creds)

    def test_login_without_name_finds_the_entry(self):
        status, body = self.raw_login(cert=(self.tls["client_cert"], self.tls["client_key"]))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["auth"]["metadata"]["cert_name"], "web")

    def test_refusals(self):
        self.assertEqual(self.raw_login(), (400, {"errors": ["client certificate must be supplied"]}))
        self.assertEqual(self.raw_login(cert=(self.tls["stranger_cert"], self.tls["stranger_key"])),
                         (400, {"errors": ["invalid certificate or no client certificate supplied"]}))
        self.assertEqual(self.raw_login(cert=(self.tls["client_cert"], self.tls["client_key"]),
                                        body={"name": "only-bob"}),
                         (400, {"errors": ["no chain matching all constraints could be found for this login "
                                           "certificate"]}))
        # Other requests on the listener still need no client certificate.
        self.assertEqual(self.vault.raw("GET", "sys/health", no_token=True).status, 200)

    def test_certificate_entry_read(self):
        data = self.root.auth.cert.read_ca_certificate_role("web")["data"]
        self.assertEqual(data["display_name"], "web")
        self.assertEqual(data["token_policies"], ["app-creds"])
        with open(self.tls["client_ca"]) as f:
            self.assertEqual(data["certificate"], f.read())
        self.assertVaultError(hvac.exceptions.InvalidRequest, ["failed to parse certificate"],
                              self.root.auth.cert.create_ca_certificate_role, "broken", "not a certificate")
