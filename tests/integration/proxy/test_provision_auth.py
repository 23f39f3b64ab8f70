"""`vaultwire provision --vaultwire-auth approle|kubernetes|jwt|cert` against vault-dev (HTTPS,
so the cert method's TLS login works too) and PostgreSQL (pg-harness).

For each method: provision enables the auth method, configures it, writes a role bound to
vaultwire's policy with periodic service tokens (approle: role ID and secret ID in 0600
files), and prints a vaultwire.toml with its [vault.auth] table. A vaultwire started with
exactly that configuration logs in (its log names the login token's accessor, /readyz
answers 200), the login token has vaultwire's policy and the period, vaultwire renews it,
and a client connects through it with a client token. No secret ID, JWT or token reaches
provision's or vaultwire's output. A second approle run changes nothing and keeps the
secret ID; the dry run lists the auth requests without secrets; bad flags exit 2.

JWTs are signed here with python3-cryptography (as tests/vault-dev/conformance does).

Environment: VAULTWIRE_BIN, VAULT_DEV_BIN, PG_HARNESS. Run with /usr/bin/python3.
"""
import base64
import json
import os
import re
import shutil
import stat
import subprocess
import time
import unittest

import hvac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from proxy_fixture import (http_get, CREDENTIALS_DEFAULTS, PSQL, PgHarness, VaultDev, Vaultwire, free_port,
                           make_tls_material, scan_for_secrets, shared_tempdir, toml_table, wait_for)

STEP_RE = re.compile(r"^(mount|config|role|policy|vaultwire-policy|auth-mount|auth-config|auth-role|role-id|"
                     r"secret-id|client-token) (\S+): (created|updated|unchanged|written)\b(.*)$", re.M)
TOML_RE = re.compile(r"^# ---- vaultwire\.toml ----\n(.*?)^# ---- end of vaultwire\.toml ----$", re.M | re.S)
PSQL_URL_RE = re.compile(r'^psql "([^"]+)"$', re.M)
ADMIN_RE = r"admin: serving /metrics, /healthz, /readyz, /leases on http://127\.0\.0\.1:%d"
PERIOD = 9  # seconds: vaultwire renews at about two thirds of it
OWNER = "app_owner"


def steps(text):
    return {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in STEP_RE.finditer(text)}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(key, claims):
    header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    return signing_input.decode() + "." + b64url(key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def write_file(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class ProvisionAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = shared_tempdir("vwtest-provision-auth.")
        cls.pg = PgHarness()
        cls.tls = make_tls_material(cls.tmp)
        t = cls.tls
        # vault-dev asks for a client certificate and verifies none in the handshake (Vault's
        # default listener): the cert method checks it at login.
        cls.vault = VaultDev(extra_args=["--tls-cert", t["server_cert"], "--tls-key", t["server_key"]],
                             ca=t["server_ca"])
        cls.proxies = []
        cls.outputs = []  # every stdout / stderr of provision, for the secret scan
        cls.jwts = []
        cls.addClassCleanup(cls._teardown)
        cls.pg.start()
        cls.vault.start()
        cls.password_file = os.path.join(cls.tmp, "admin.pw")
        write_file(cls.password_file, cls.pg.admin_password + "\n")

    @classmethod
    def _teardown(cls):
        try:
            for p in cls.proxies:
                if p.running():
                    p.stop()
        finally:
            cls.vault.stop()
            cls.pg.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers -----------------------------------------------------------

    def base_args(self, port):
        return ["--db-host", "localhost", "--db-port", str(self.pg.port), "--database", "defaultdb",
                "--sslrootcert", self.pg.ca, "--admin-user", self.pg.admin_user,
                "--admin-password-file", self.password_file, "--owner-role", OWNER, "--dialect", "postgresql",
                "--vaultwire-token-period", "%ds" % PERIOD, "--listen", "127.0.0.1:%d" % port]

    def provision(self, *args, expect_rc=0):
        env = dict(os.environ, VAULT_ADDR=self.vault.addr, VAULT_TOKEN=self.vault.root_token,
                   VAULT_CACERT=self.tls["server_ca"])
        env.pop("VAULT_NAMESPACE", None)
        proc = subprocess.run([os.environ["VAULTWIRE_BIN"], "provision"] + list(args), env=env,
                              capture_output=True, text=True, timeout=120)
        type(self).outputs += [proc.stdout, proc.stderr]
        self.assertEqual(proc.returncode, expect_rc, "provision exited %d\nstdout:\n%s\nstderr:\n%s"
                         % (proc.returncode, proc.stdout, proc.stderr))
        self.assertNotRegex(proc.stdout + proc.stderr, r"AddressSanitizer|LeakSanitizer|runtime error:")
        return proc

    def start_vaultwire(self, proc, name):
        """vaultwire with the printed vaultwire.toml (plus an admin listener): (proxy, admin port)."""
        m = TOML_RE.search(proc.stdout)
        self.assertIsNotNone(m, proc.stdout)
        admin = free_port()
        config = (m.group(1) + "\n" + toml_table("credentials", CREDENTIALS_DEFAULTS) + "\n"
                  + toml_table("pool", {"reuse": False}) + '\n[admin]\nbind = "127.0.0.1:%d"\n' % admin
                  + '\n[log]\nlevel = "debug"\n')
        proxy = Vaultwire(self.tmp, config, name=name)
        type(self).proxies.append(proxy)
        proxy.start()
        proxy.wait_log(ADMIN_RE % admin, what="%s's admin listener" % name)
        return proxy, admin

    def client_token(self, policy="crdb-role-client"):
        return self.vault.client().auth.token.create(policies=[policy], ttl="1h")["auth"]["client_token"]

    def psql_url(self, url, sql):
        env = dict(os.environ, PGCONNECT_TIMEOUT="20")
        for k in ("PGPASSWORD", "PGSERVICE", "PGSSLMODE", "PGUSER", "PGDATABASE", "PGHOST", "PGPORT"):
            env.pop(k, None)
        proc = subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, "psql failed: %s" % proc.stderr)
        return proc.stdout.strip()

    def check_login_and_client(self, proc, method, mount, name):
        """vaultwire logs in with the printed config, holds a periodic token with vaultwire's
        policy, renews it, and serves a client."""
        toml = TOML_RE.search(proc.stdout).group(1)
        self.assertIn('[vault.auth]\nmethod = "%s"\n' % method, toml)
        self.assertNotIn("token_file", toml)
        proxy, admin = self.start_vaultwire(proc, name)
        m = proxy.wait_log(r"logged in to Vault with method %s at auth/%s/login: token (\S+) \(service, ttl (\d+)s"
                           % (method, re.escape(mount)), what="%s's login" % name)
        accessor = m.group(1)
        self.assertEqual(int(m.group(2)), PERIOD)
        wait_for(lambda: http_get(admin, "/readyz")[0] == 200, what="/readyz 200 once logged in")
        info = self.vault.client().auth.token.lookup_accessor(accessor)["data"]
        self.assertEqual(sorted(info["policies"]), ["crdb-role-vaultwire", "default"])
        self.assertEqual(info["period"], PERIOD)
        self.assertEqual(info["type"], "service")
        self.assertEqual(info["path"], "auth/%s/login" % mount)
        proxy.wait_log(r"renewed vaultwire's Vault token %s for \d+s" % re.escape(accessor), timeout=30,
                       what="renew-self of the periodic token")

        token = self.client_token()
        url = PSQL_URL_RE.findall(proc.stdout)[0].replace("$VAULT_CLIENT_TOKEN", token)
        out = self.psql_url(url, "SELECT current_user")
        self.assertEqual(out.splitlines()[-1], OWNER)
        self.assertNotIn("permission denied", proxy.output())
        return proxy

    def assertNoSecrets(self, extra=()):
        issued = self.vault.dev("GET", "secrets")
        values = [v for v in issued["secret_ids"] + issued["tokens"] + issued["passwords"] + list(self.jwts)
                  + list(extra) + [self.pg.admin_password] if len(v) >= 8]
        for text in self.outputs:
            self.assertEqual(scan_for_secrets(text, values), [])
        for p in self.proxies:
            self.assertEqual(scan_for_secrets(p.output(), values), [], p.name)

    # -- the methods ------------------------------------------------------

    def test_approle(self):
        port = free_port()
        role_id_file = os.path.join(self.tmp, "vaultwire.role-id")
        secret_id_file = os.path.join(self.tmp, "vaultwire.secret-id")
        args = self.base_args(port) + ["--vaultwire-auth", "approle", "--role-id-file", role_id_file,
                                       "--secret-id-file", secret_id_file]
        before = self.vault.dev("GET", "counters")["total"]
        dry = self.provision(*args, "--dry-run")
        self.assertEqual(self.vault.dev("GET", "counters")["total"], before, "--dry-run sent requests")
        for line in ("GET %s/v1/sys/auth\n" % self.vault.addr,
                     'POST %s/v1/sys/auth/approle {"description":"vaultwire: its own login","type":"approle"}\n'
                     % self.vault.addr,
                     'POST %s/v1/auth/approle/role/vaultwire {"bind_secret_id":true,"secret_id_ttl":0,'
                     '"token_period":%d,"token_policies":["crdb-role-vaultwire"],"token_type":"service"}\n'
                     % (self.vault.addr, PERIOD),
                     "POST %s/v1/auth/approle/role/vaultwire/secret-id {} -> written to %s (0600)"
                     % (self.vault.addr, secret_id_file)):
            self.assertIn(line, dry.stdout)
        self.assertFalse(os.path.exists(secret_id_file))

        proc = self.provision(*args)
        report = steps(proc.stdout)
        self.assertEqual({k: v[1] for k, v in report.items()},
                         {"mount": "created", "config": "created", "role": "created", "policy": "created",
                          "vaultwire-policy": "created", "auth-mount": "created", "auth-role": "created",
                          "role-id": "written", "secret-id": "created"}, proc.stdout)
        for f in (role_id_file, secret_id_file):
            self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o600, f)
        with open(secret_id_file) as f:
            secret_id = f.read().strip()
        self.assertIn(secret_id, self.vault.dev("GET", "secrets")["secret_ids"])
        role = self.vault.client().read("auth/approle/role/vaultwire")["data"]
        self.assertEqual((role["token_policies"], role["token_period"], role["token_type"], role["secret_id_ttl"],
                          role["bind_secret_id"]), (["crdb-role-vaultwire"], PERIOD, "service", 0, True))
        self.assertIn('role_id_file = "%s"\nsecret_id_file = "%s"\n' % (role_id_file, secret_id_file),
                      TOML_RE.search(proc.stdout).group(1))
        proxy = self.check_login_and_client(proc, "approle", "approle", "vaultwire-approle")
        self.assertEqual(proxy.stop(), 0)  # its own requests would move the counters below

        # A second run: every step unchanged, the secret ID kept, nothing written.
        self.vault.dev("POST", "counters/reset")
        proc2 = self.provision(*args)
        self.assertEqual({v[1] for v in steps(proc2.stdout).values()}, {"unchanged"}, proc2.stdout)
        writes = [k for k in self.vault.dev("GET", "counters")["requests"] if not k.startswith("GET ")]
        self.assertEqual(writes, ["POST auth/approle/role/vaultwire/secret-id/lookup"])
        with open(secret_id_file) as f:
            self.assertEqual(f.read().strip(), secret_id)
        # A secret ID Vault no longer knows is replaced.
        self.vault.client().write("auth/approle/role/vaultwire/secret-id/destroy", secret_id=secret_id)
        proc3 = self.provision(*args)
        self.assertEqual(steps(proc3.stdout)["secret-id"][1], "created", proc3.stdout)
        with open(secret_id_file) as f:
            self.assertNotEqual(f.read().strip(), secret_id)
        self.assertNoSecrets()

    def test_kubernetes(self):
        port = free_port()
        signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keys = os.path.join(self.tmp, "sa-signer.pub")
        write_file(keys, public_pem(signer), 0o644)
        claims = {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "apps",
                  "kubernetes.io/serviceaccount/secret.name": "vw-token-x2b4q",
                  "kubernetes.io/serviceaccount/service-account.name": "vw",
                  "kubernetes.io/serviceaccount/service-account.uid": "5d2c4d9e-1111-2222-3333-444455556666",
                  "sub": "system:serviceaccount:apps:vw"}
        jwt = make_jwt(signer, claims)
        self.jwts.append(jwt)
        jwt_file = os.path.join(self.tmp, "sa.token")
        write_file(jwt_file, jwt)
        proc = self.provision(*self.base_args(port), "--vaultwire-auth", "kubernetes", "--vaultwire-auth-mount",
                              "k8s", "--kubernetes-host", "https://kubernetes.example:6443",
                              "--kubernetes-ca-file", self.tls["server_ca"], "--kubernetes-pem-keys-file", keys,
                              "--service-account", "vw", "--namespace", "apps", "--vaultwire-jwt-file", jwt_file)
        report = steps(proc.stdout)
        self.assertEqual({k: report[k][1] for k in ("auth-mount", "auth-config", "auth-role")},
                         {"auth-mount": "created", "auth-config": "created", "auth-role": "created"}, proc.stdout)
        config = self.vault.client().read("auth/k8s/config")["data"]
        self.assertEqual(config["kubernetes_host"], "https://kubernetes.example:6443")
        self.assertEqual(len(config["pem_keys"]), 1)
        role = self.vault.client().read("auth/k8s/role/vaultwire")["data"]
        self.assertEqual((role["bound_service_account_names"], role["bound_service_account_namespaces"]),
                         (["vw"], ["apps"]))
        self.assertIn('mount = "k8s"\nrole = "vaultwire"\njwt_file = "%s"\n' % jwt_file,
                      TOML_RE.search(proc.stdout).group(1))
        proxy = self.check_login_and_client(proc, "kubernetes", "k8s", "vaultwire-kubernetes")
        again = self.provision(*self.base_args(port), "--vaultwire-auth", "kubernetes", "--vaultwire-auth-mount",
                               "k8s", "--kubernetes-host", "https://kubernetes.example:6443",
                               "--kubernetes-ca-file", self.tls["server_ca"], "--kubernetes-pem-keys-file", keys,
                               "--service-account", "vw", "--namespace", "apps", "--vaultwire-jwt-file", jwt_file)
        self.assertEqual({v[1] for v in steps(again.stdout).values()}, {"unchanged"}, again.stdout)
        self.assertEqual(proxy.stop(), 0)
        self.assertNoSecrets()

    def test_cert_by_ca(self):
        """--vaultwire-client-ca: the entry trusts the issuing CA, bound to the certificate's CN."""
        t = self.tls
        proc = self.provision(*self.base_args(free_port()), "--vaultwire-auth", "cert", "--vaultwire-auth-mount",
                              "cert-ca", "--vaultwire-client-cert", t["client_cert"], "--vaultwire-client-key",
                              t["client_key"], "--vaultwire-client-ca", t["client_ca"])
        self.assertEqual(steps(proc.stdout)["auth-role"][1], "created", proc.stdout)
        entry = self.vault.client().read("auth/cert-ca/certs/vaultwire")["data"]
        with open(t["client_ca"]) as f:
            self.assertEqual(entry["certificate"].strip(), f.read().strip())
        self.assertEqual(entry["allowed_common_names"], ["vaultwire"])
        proxy = self.check_login_and_client(proc, "cert", "cert-ca", "vaultwire-cert-ca")
        self.assertEqual(proxy.stop(), 0)
        # A file without a certificate: the step names it, nothing is written.
        bad = self.provision(*self.base_args(free_port()), "--vaultwire-auth", "cert", "--vaultwire-auth-mount",
                             "cert-ca", "--vaultwire-auth-role", "other", "--vaultwire-client-cert", t["client_key"],
                             "--vaultwire-client-key", t["client_key"], "--vaultwire-client-ca", t["client_ca"],
                             expect_rc=1)
        self.assertIn("error: step auth-role: %s: no certificate with a common name" % t["client_key"], bad.stderr)
        self.assertIsNone(self.vault.client().read("auth/cert-ca/certs/other"))

    def test_jwt(self):
        port = free_port()
        signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keys = os.path.join(self.tmp, "jwt-signer.pub")
        write_file(keys, public_pem(signer), 0o644)
        now = int(time.time())
        jwt = make_jwt(signer, {"sub": "vaultwire-svc", "aud": "vaultwire", "team": "db", "iat": now,
                                "nbf": now, "exp": now + 3600})
        self.jwts.append(jwt)
        jwt_file = os.path.join(self.tmp, "vaultwire.jwt")
        write_file(jwt_file, jwt)
        proc = self.provision(*self.base_args(port), "--vaultwire-auth", "jwt", "--jwt-validation-pubkey-file", keys,
                              "--bound-audience", "vaultwire", "--bound-claim", "team=db",
                              "--vaultwire-jwt-file", jwt_file)
        self.assertEqual(steps(proc.stdout)["auth-role"][1], "created", proc.stdout)
        role = self.vault.client().read("auth/jwt/role/vaultwire")["data"]
        self.assertEqual((role["role_type"], role["user_claim"], role["bound_audiences"], role["bound_claims"]),
                         ("jwt", "sub", ["vaultwire"], {"team": "db"}))
        self.assertIn('[vault.auth]\nmethod = "jwt"\nrole = "vaultwire"\njwt_file = "%s"\n' % jwt_file,
                      TOML_RE.search(proc.stdout).group(1))
        proxy = self.check_login_and_client(proc, "jwt", "jwt", "vaultwire-jwt")
        self.assertEqual(proxy.stop(), 0)
        # A JWT without the bound claim is refused: the role's binding is in force.
        other = make_jwt(signer, {"sub": "x", "aud": "vaultwire", "team": "web", "iat": now, "exp": now + 3600})
        self.jwts.append(other)
        with self.assertRaises(hvac.exceptions.VaultError) as refused:
            self.vault.client(token="").adapter.post("/v1/auth/jwt/login", json={"role": "vaultwire", "jwt": other})
        self.assertIn("claim", str(refused.exception))
        self.assertNoSecrets()

    def test_cert(self):
        port = free_port()
        t = self.tls
        proc = self.provision(*self.base_args(port), "--vaultwire-auth", "cert", "--vaultwire-client-cert",
                              t["client_cert"], "--vaultwire-client-key", t["client_key"])
        self.assertEqual(steps(proc.stdout)["auth-role"][1], "created", proc.stdout)
        entry = self.vault.client().read("auth/cert/certs/vaultwire")["data"]
        with open(t["client_cert"]) as f:
            self.assertEqual(entry["certificate"].strip(), f.read().strip())
        self.assertEqual(entry["token_policies"], ["crdb-role-vaultwire"])
        toml = TOML_RE.search(proc.stdout).group(1)
        self.assertIn('client_cert = "%s"\nclient_key = "%s"\n' % (t["client_cert"], t["client_key"]), toml)
        self.assertIn('[vault.auth]\nmethod = "cert"\nname = "vaultwire"\n', toml)
        proxy = self.check_login_and_client(proc, "cert", "cert", "vaultwire-cert")
        self.assertEqual(proxy.stop(), 0)
        self.assertNoSecrets()

    def test_bad_flags(self):
        before = self.vault.dev("GET", "counters")["total"]
        port = free_port()
        cases = [
            (["--vaultwire-auth", "approle"], "--vaultwire-auth approle needs --role-id-file PATH"),
            (["--vaultwire-auth", "kubernetes"], "--vaultwire-auth kubernetes needs --kubernetes-host"),
            (["--vaultwire-auth", "jwt", "--jwt-validation-pubkey-file", "k", "--vaultwire-jwt-file", "j"],
             "needs --bound-audience or --bound-claim"),
            (["--vaultwire-auth", "cert", "--vaultwire-client-cert", "c"], "needs --vaultwire-client-cert FILE and"),
            (["--vaultwire-auth", "approle", "--role-id-file", "r", "--secret-id-file", "s",
              "--vaultwire-token-file", "t"], "exclude each other"),
            (["--role-id-file", "r"], "--role-id-file is used only with --vaultwire-auth approle"),
        ]
        for extra, message in cases:
            proc = self.provision(*self.base_args(port), *extra, expect_rc=2)
            self.assertIn(message, proc.stderr)
        self.assertEqual(self.vault.dev("GET", "counters")["total"], before)

    def test_mount_of_another_type(self):
        """A mount path already taken by another auth method is named, and nothing is written there."""
        self.vault.client().sys.enable_auth_method("approle", path="taken")
        keys = os.path.join(self.tmp, "unused.pub")
        write_file(keys, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 0o644)
        proc = self.provision(*self.base_args(free_port()), "--vaultwire-auth", "jwt", "--vaultwire-auth-mount",
                              "taken", "--jwt-validation-pubkey-file", keys, "--bound-audience", "vaultwire",
                              "--vaultwire-jwt-file", keys, expect_rc=1)
        self.assertIn('error: step auth-mount: sys/auth/taken is already an auth method of type "approle", not '
                      '"jwt"', proc.stderr)
        self.assertIsNone(self.vault.client().read("auth/taken/role/vaultwire"))


if __name__ == "__main__":
    unittest.main()
