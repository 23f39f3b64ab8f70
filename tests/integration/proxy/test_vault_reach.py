"""Reaching Vault the way Vault's own client does, and Vault Agent / Vault Proxy in
front of it, end to end: vaultwire + vault-dev + PostgreSQL.

- a unix:///path address (a Vault Agent or Vault Proxy listener), and VAULT_AGENT_ADDR
  preferred over VAULT_ADDR;
- a Vault listener that requires a client certificate (vault.client_cert / client_key
  and VAULT_CLIENT_CERT / VAULT_CLIENT_KEY), VAULT_CAPATH, VAULT_TLS_SERVER_NAME, and
  VAULT_SKIP_VERIFY refused unless vault.allow_insecure;
- a standby that answers 307: followed once with the same request, never https -> http;
- a Vault Proxy with use_auto_auth_token = "force": refused at start (exit non-zero,
  naming the cause) and at a reload (running configuration kept, /readyz 503);
- vaultwire's own token (token_file) revokes in the body form of sys/leases/revoke.
"""
import http.client
import os
import re
import secrets
import shutil
import signal
import subprocess
import unittest

from proxy_fixture import (CREATION, REVOCATION, ProxyTestCase, VaultDev, Vaultwire, child_env, free_port,
                           make_tls_material, wait_for)


def admin_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def made_up_token():
    return "hvs." + secrets.token_hex(12)


class ReachCase(ProxyTestCase):
    """Helpers: a vaultwire of the test's own that must fail to start, and a login."""

    def start_fails(self, config_text, name, env=None, timeout=30):
        """Starts vaultwire, which must exit by itself; returns (exit status, output)."""
        proxy = Vaultwire(self.tmp, config_text, name=name)
        proxy.log = open(proxy.log_path, "w")
        proxy.proc = subprocess.Popen([os.environ["VAULTWIRE_BIN"], "run", "--config", proxy.config_path],
                                      stdout=proxy.log, stderr=subprocess.STDOUT,
                                      env=child_env(env))
        type(self).proxies.append(proxy)
        try:
            rc = proxy.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, proxy.output()
        proxy.expect_nonzero_exit = True
        return rc, proxy.output()

    def assertLogsIn(self, port=None, token=None):
        r = self.psql("SELECT session_user", port=port, token=token)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip().startswith("v-"), r.stdout)
        return r.stdout.strip()


# ---------------------------------------------------------------------------
# unix:///path


class TestUnixSocketAddress(ReachCase):
    """vault-dev also listens on a unix socket (as a Vault Agent or Vault Proxy listener
    "unix" does); vaultwire's address is unix:///that/path."""

    @classmethod
    def make_vault_dev(cls):
        cls.socket_path = os.path.join(cls.tmp, "agent.sock")
        return VaultDev(extra_args=["--unix-socket", cls.socket_path])

    @classmethod
    def proxy_config(cls):
        return cls.single_listener_config(cls.port, vault={"address": "unix://" + cls.socket_path})

    def test_login_over_the_socket(self):
        before = self.creds_reads()
        self.assertLogsIn()
        self.assertEqual(self.creds_reads(), before + 1)
        self.assertIn("unix://" + self.socket_path, self.proxy.output())

    def test_agent_address_preferred_over_vault_addr(self):
        # The file is silent; VAULT_AGENT_ADDR (the socket) wins over VAULT_ADDR (nothing
        # listens there), as in Vault's client.
        port = free_port()
        config = self.single_listener_config(port).replace('address = "%s"\n' % self.vault.addr, "")
        self.assertNotIn("address =", config.split("[[listener]]")[0])
        dead = "http://127.0.0.1:%d" % free_port()
        proxy = self.start_proxy(config, name="agent-env",
                                 env={"VAULT_AGENT_ADDR": "unix://" + self.socket_path, "VAULT_ADDR": dead})
        self.assertLogsIn(port=proxy.port)
        self.assertNotIn(dead, proxy.output())


# ---------------------------------------------------------------------------
# TLS: client certificate, CA directory, server name, VAULT_SKIP_VERIFY


class TestClientCertificateListener(ReachCase):
    """vault-dev over TLS requiring a client certificate (tls_require_and_verify_client_cert).
    Its certificate names localhost and vault.internal, not 127.0.0.1."""

    @classmethod
    def make_vault_dev(cls):
        cls.tls = make_tls_material(cls.tmp, server_names=("localhost", "vault.internal"))
        t = cls.tls
        return VaultDev(extra_args=["--tls-cert", t["server_cert"], "--tls-key", t["server_key"],
                                    "--tls-client-ca", t["client_ca"]],
                        ca=t["server_ca"], client_cert=(t["client_cert"], t["client_key"]))

    @classmethod
    def https_addr(cls, host="localhost"):
        return "https://%s:%d" % (host, cls.vault.port)

    @classmethod
    def proxy_config(cls):
        t = cls.tls
        return cls.single_listener_config(cls.port, vault={
            "address": cls.https_addr(), "ca_file": t["server_ca"], "client_cert": t["client_cert"],
            "client_key": t["client_key"]})

    def test_login_with_the_client_certificate(self):
        before = self.creds_reads()
        self.assertLogsIn()
        self.assertEqual(self.creds_reads(), before + 1)

    def test_client_certificate_from_the_environment(self):
        t = self.tls
        port = free_port()
        proxy = self.start_proxy(self.single_listener_config(port, vault={"address": self.https_addr()}),
                                 name="cert-env",
                                 env={"VAULT_CACERT": t["server_ca"], "VAULT_CLIENT_CERT": t["client_cert"],
                                      "VAULT_CLIENT_KEY": t["client_key"]})
        self.assertLogsIn(port=proxy.port)

    def test_without_a_client_certificate_vault_refuses(self):
        port = free_port()
        proxy = self.start_proxy(self.single_listener_config(
            port, vault={"address": self.https_addr(), "ca_file": self.tls["server_ca"]}), name="no-cert")
        fields = self.refused(port=proxy.port)
        self.assertEqual((fields["S"], fields["C"]), ("FATAL", "08001"), fields)
        self.assertTrue(fields["M"].startswith("cannot reach Vault at %s: " % self.https_addr()), fields)

    def test_ca_directory_of_unhashed_pem_files(self):
        # VAULT_CAPATH: every file of the directory is read (go-rootcerts LoadCAPath); the
        # files need no `openssl rehash` names.
        ca_dir = os.path.join(self.tmp, "ca.d")
        os.makedirs(os.path.join(ca_dir, "nested"), exist_ok=True)
        shutil.copy(self.tls["server_ca"], os.path.join(ca_dir, "nested", "vault-ca.pem"))
        shutil.copy(self.tls["client_ca"], os.path.join(ca_dir, "unrelated.pem"))
        t = self.tls
        port = free_port()
        proxy = self.start_proxy(self.single_listener_config(port, vault={
            "address": self.https_addr(), "client_cert": t["client_cert"], "client_key": t["client_key"]}),
            name="capath", env={"VAULT_CAPATH": ca_dir})
        self.assertLogsIn(port=proxy.port)
        # As in Vault's client, a file that is not PEM is an error when the directory is read.
        junk = os.path.join(ca_dir, "README")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        rc, out = self.start_fails(self.single_listener_config(free_port(), vault={
            "address": self.https_addr(), "client_cert": t["client_cert"], "client_key": t["client_key"]}),
            "capath-junk", env={"VAULT_CAPATH": ca_dir})
        self.assertNotIn(rc, (0, None), out)
        self.assertIn("[vault]: vault.ca_path: no PEM certificate in " + junk, out)

    def test_tls_server_name(self):
        # By IP the certificate does not match; VAULT_TLS_SERVER_NAME names what it does.
        t = self.tls
        keys = {"address": self.https_addr("127.0.0.1"), "ca_file": t["server_ca"], "client_cert": t["client_cert"],
                "client_key": t["client_key"]}
        port = free_port()
        mismatch = self.start_proxy(self.single_listener_config(port, vault=keys), name="by-ip")
        fields = self.refused(port=mismatch.port)
        self.assertEqual(fields["C"], "08001", fields)
        self.assertRegex(fields["M"], r"cannot reach Vault at https://127\.0\.0\.1:\d+: .*(certificate|127\.0\.0\.1)")
        port = free_port()
        named = self.start_proxy(self.single_listener_config(port, vault=keys), name="by-name",
                                 env={"VAULT_TLS_SERVER_NAME": "vault.internal"})
        self.assertLogsIn(port=named.port)

    def test_skip_verify_refused_unless_allowed(self):
        t = self.tls
        keys = {"address": self.https_addr(), "client_cert": t["client_cert"], "client_key": t["client_key"]}
        rc, out = self.start_fails(self.single_listener_config(free_port(), vault=keys), "skip-verify",
                                   env={"VAULT_SKIP_VERIFY": "1"})
        self.assertNotIn(rc, (0, None), out)
        self.assertIn("VAULT_SKIP_VERIFY: set to \"1\": vaultwire does not turn off the verification of Vault's "
                      "certificate unless [vault] allow_insecure = true", out)
        self.assertNotIn("listening on", out)
        # Allowed: no CA given, and still served (the certificate is not verified), with a warning.
        port = free_port()
        allowed = self.start_proxy(self.single_listener_config(port, vault=dict(keys, allow_insecure=True)),
                                   name="skip-allowed", env={"VAULT_SKIP_VERIFY": "true"})
        self.assertLogsIn(port=allowed.port)
        self.assertIn("VAULT_SKIP_VERIFY: Vault's certificate is not verified", allowed.output())


# ---------------------------------------------------------------------------
# A standby's 307


class TestStandbyRedirect(ReachCase):
    """vaultwire's address is a standby vault-dev that redirects every request (307) to
    the active one; https -> http is refused."""

    @classmethod
    def setup_vault(cls):
        cls.standby = VaultDev(extra_args=["--standby-of", cls.vault.addr])
        cls.standby.start()
        cls.addClassCleanup(cls.standby.stop)
        cls.tls = make_tls_material(cls.tmp)
        cls.tls_standby = VaultDev(extra_args=["--standby-of", cls.vault.addr, "--tls-cert", cls.tls["server_cert"],
                                               "--tls-key", cls.tls["server_key"]], ca=cls.tls["server_ca"])
        cls.tls_standby.start()
        cls.addClassCleanup(cls.tls_standby.stop)

    @classmethod
    def proxy_config(cls):
        return cls.single_listener_config(cls.port, vault={"address": cls.standby.addr},
                                          credentials={"revoke_idle_after": "1s"})

    def test_followed_once_with_the_same_request(self):
        before = self.creds_reads()
        standby_before = self.standby.dev("GET", "counters")["requests"]
        user = self.assertLogsIn()
        # The standby saw the GET and redirected it; the active node issued the credential.
        self.assertEqual(self.creds_reads(), before + 1)
        self.assertEqual(self.standby.dev("GET", "counters")["requests"].get("GET database/creds/crdb-role", 0),
                         standby_before.get("GET database/creds/crdb-role", 0) + 1)
        # Revocation is a PUT: redirected and re-sent as a PUT (the lease goes, the user is dropped).
        lease = [l for l in self.vault.dev_leases() if l["username"] == user][0]["lease_id"]
        self.lease_gone(lease, user=user)
        self.assertGreaterEqual(self.standby.dev("GET", "counters")["requests"].get("PUT sys/leases/revoke/" + lease, 0),
                                1)

    def test_https_to_http_refused(self):
        port = free_port()
        proxy = self.start_proxy(self.single_listener_config(port, vault={
            "address": "https://localhost:%d" % self.tls_standby.port, "ca_file": self.tls["server_ca"]}),
            name="downgrade")
        before = self.creds_reads()
        fields = self.refused(port=proxy.port)
        self.assertEqual(fields["C"], "08001", fields)
        self.assertIn("a redirect from https to http would send the token in clear", fields["M"])
        self.assertIn("to %s/v1/" % self.vault.addr, fields["M"])
        self.assertEqual(self.creds_reads(), before, "the request reached the active node over http")


# ---------------------------------------------------------------------------
# Vault Proxy with use_auto_auth_token = "force"


class TestAutoAuthForce(ReachCase):
    """A vault-dev that behaves like Vault Proxy with use_auto_auth_token = "force" (its
    auto-auth token is its root token): every client token is replaced."""

    @classmethod
    def setup_vault(cls):
        cls.forcing = VaultDev(extra_args=["--auto-auth-force", "{root_token}"])
        cls.forcing.start()
        cls.addClassCleanup(cls.forcing.stop)
        root = cls.forcing.client()
        root.sys.enable_secrets_engine("database", path="database")
        root.write("database/config/crdb-config", plugin_name="postgresql-database-plugin", allowed_roles="*",
                   connection_url=cls.pg.connection_url(), username=cls.pg.admin_user,
                   password=cls.pg.admin_password)
        root.write("database/roles/crdb-role", db_name="crdb-config", creation_statements=CREATION,
                   revocation_statements=REVOCATION, default_ttl="1h", max_ttl="24h")

    def test_refused_at_start(self):
        port = free_port()
        config = self.single_listener_config(port, vault={"address": self.forcing.addr})
        rc, out = self.start_fails(config, "forcing-start")
        if rc is None:
            # What happens without the check: a made-up password gets a credential.
            proxy = type(self).proxies[-1]
            if "listening on" in out:
                r = self.psql("SELECT session_user", port=port, token=made_up_token())
                proxy.proc.kill()
                self.fail("vaultwire started behind a forcing proxy; a made-up password: %s"
                          % ("got a session as %s" % r.stdout.strip() if r.returncode == 0 else r.stderr))
            proxy.proc.kill()
            self.fail("vaultwire neither started nor exited:\n" + out)
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"vault: Vault at %s answered auth/token/lookup-self with HTTP 200 for a made-up "
                              r"token: .*use_auto_auth_token = \"force\".*; not starting" % re.escape(self.forcing.addr))
        self.assertNotIn("listening on", out)
        self.assertEqual(self.forcing.dev("GET", "counters")["paths"].get("database/creds/crdb-role", 0), 0)

    def test_unanswered_at_start_then_each_session_checks(self):
        # Sealed, the proxy cannot answer the check at start (503): vaultwire starts, and
        # the first session after the unseal makes the check and is refused.
        port, admin_port = free_port(), free_port()
        self.forcing.dev("POST", "seal")
        try:
            proxy = self.start_proxy(self.single_listener_config(
                port, vault={"address": self.forcing.addr},
                extra="[admin]\nbind = \"127.0.0.1:%d\"\n" % admin_port), name="forcing-sealed")
            proxy.wait_log(r"cannot check Vault at %s yet \(Vault at \S+ is unavailable: Vault is sealed \(HTTP "
                           r"503\)\); each new session checks it first" % re.escape(self.forcing.addr))
        finally:
            self.forcing.dev("POST", "unseal")
        fields = self.refused(port=port, token=made_up_token())
        self.assertEqual(fields["C"], "08001", fields)
        self.assertRegex(fields["M"], r"^Vault at %s answered auth/token/lookup-self with HTTP 200 for a made-up "
                                      r"token: " % re.escape(self.forcing.addr))
        self.assertEqual(self.forcing.dev("GET", "counters")["paths"].get("database/creds/crdb-role", 0), 0)
        # /readyz: once its sys/health answer is no longer the sealed one, the cause.
        status, body = wait_for(lambda: (lambda r: r if "made-up token" in r[1] else None)(
            admin_get(admin_port, "/readyz")), what="/readyz naming the cause")
        self.assertEqual(status, 503, body)
        self.assertIn("answered auth/token/lookup-self with HTTP 200 for a made-up token", body)
        proxy.wait_log(r"vault: Vault at \S+ answered auth/token/lookup-self with HTTP 200 for a made-up token: .*; "
                       r"new sessions are refused")

    def test_reload_to_a_forcing_proxy_keeps_the_running_configuration(self):
        port, admin_port = free_port(), free_port()
        admin = "[admin]\nbind = \"127.0.0.1:%d\"\n" % admin_port
        good = self.single_listener_config(port, extra=admin)
        proxy = self.start_proxy(good, name="forcing-reload")
        wait_for(lambda: admin_get(admin_port, "/readyz")[0] == 200, what="/readyz 200 before the reload")
        self.assertLogsIn(port=port)

        bad = good.replace(self.vault.addr, self.forcing.addr)
        self.assertNotEqual(bad, good)
        with open(proxy.config_path + ".new", "w") as f:
            f.write(bad)
        os.replace(proxy.config_path + ".new", proxy.config_path)
        proxy.signal(signal.SIGHUP)
        m = proxy.wait_log(r"reload failed: (Vault at \S+ answered auth/token/lookup-self with HTTP 200 for a "
                           r"made-up token: [^\n]*); keeping the running configuration")
        self.assertIn(self.forcing.addr, m.group(1))
        self.assertTrue(proxy.running())
        status, body = admin_get(admin_port, "/readyz")
        self.assertEqual(status, 503, body)
        self.assertEqual(body.strip(), "reload refused, running the previous configuration: " + m.group(1))
        # Still served by the running configuration's Vault; the proxy saw no credential read.
        before = self.creds_reads()
        self.assertLogsIn(port=port, token=self.make_token(["roach-client"]))
        self.assertEqual(self.creds_reads(), before + 1)
        self.assertEqual(self.forcing.dev("GET", "counters")["paths"].get("database/creds/crdb-role", 0), 0)
        # A made-up password is still refused by the real Vault.
        fields = self.refused(port=port, token=made_up_token())
        self.assertEqual(fields["C"], "28P01", fields)

        # Back to the good file: applied, ready again.
        with open(proxy.config_path + ".new", "w") as f:
            f.write(good)
        os.replace(proxy.config_path + ".new", proxy.config_path)
        proxy.signal(signal.SIGHUP)
        proxy.wait_log(r"configuration reloaded")
        wait_for(lambda: admin_get(admin_port, "/readyz")[0] == 200, what="/readyz 200 after a good reload")


# ---------------------------------------------------------------------------
# Revocation with vaultwire's own token: the body form


class TestOwnTokenRevokesInTheBody(ReachCase):
    """With token_file, vaultwire revokes with PUT sys/leases/revoke {"lease_id": ...}
    (the form Vault Proxy's lease cache acts on); its policy has update on
    sys/leases/revoke only, so the path form would be denied."""

    @classmethod
    def setup_vault(cls):
        cls.root.sys.create_or_update_policy("vaultwire-own", """
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
""")
        cls.root.sys.create_or_update_policy("client-no-revoke", 'path "database/creds/crdb-role" '
                                                                 '{ capabilities = ["read"] }')
        cls.own_token = cls.make_token(["vaultwire-own"])
        cls.token_file = os.path.join(cls.tmp, "vaultwire.token")
        with open(cls.token_file, "w") as f:
            f.write(cls.own_token + "\n")

    @classmethod
    def proxy_config(cls):
        return cls.single_listener_config(cls.port, vault={"token_file": cls.token_file},
                                          credentials={"revoke_idle_after": "1s"})

    def test_idle_lease_revoked_in_the_body(self):
        # A client whose policy cannot revoke: only vaultwire's token can.
        token = self.make_token(["client-no-revoke"])
        user = self.assertLogsIn(token=token)
        lease = [l for l in self.vault.dev_leases() if l["username"] == user][0]["lease_id"]
        self.lease_gone(lease, user=user)
        requests = self.vault.dev("GET", "counters")["requests"]
        self.assertGreaterEqual(requests.get("PUT sys/leases/revoke", 0), 1, requests)
        self.assertEqual(requests.get("PUT sys/leases/revoke/" + lease, 0), 0, requests)
        self.assertNotIn("permission denied", self.proxy.output())
        self.assertIn("revoked lease %s (lease_id in the body)" % lease, self.proxy.output())


if __name__ == "__main__":
    unittest.main()
