"""`vaultwire provision --dialect postgresql` against vault-dev and PostgreSQL (pg-harness).

The tests of ProvisionFlow run in order on one vault-dev and one PostgreSQL:
1. --dry-run sends nothing (vault-dev's request counter does not move) and shows no secret;
2. provision writes the engine, connection, role, client policy and vaultwire's policy, mints
   a client token and vaultwire's token (0600 files); a vaultwire started with the printed
   vaultwire.toml serves the printed URL: client 1 (one dynamic user) creates a table, client 2
   (a second token, so another dynamic user) reads it, and once vaultwire revokes the idle
   leases (with its own token) both SQL users are gone while the table stays, owned by the
   owner role;
3. a second run with the same flags reports "unchanged" for every step, sends only reads and
   leaves every Vault object as it was (the vaultwire token file is kept);
4. errors name the step and carry Vault's text, never the password or a token;
then a non-superuser Vault user on PostgreSQL, and tokens minted as orphans that outlive
the administrator's token.

Environment: VAULTWIRE_BIN, VAULT_DEV_BIN, PG_HARNESS. Run with /usr/bin/python3.
"""
import os
import re
import shutil
import stat
import subprocess
import unittest

import psycopg2

from proxy_fixture import (CREDENTIALS_DEFAULTS, PSQL, PgHarness, VaultDev, Vaultwire, free_port, shared_tempdir,
                           scan_for_secrets, toml_table, wait_for)

STEP_RE = re.compile(r"^(mount|config|role|policy|vaultwire-policy|vaultwire-token|client-token) (\S+): "
                     r"(created|updated|unchanged)\b(.*)$", re.M)
TOML_RE = re.compile(r"^# ---- vaultwire\.toml ----\n(.*?)^# ---- end of vaultwire\.toml ----$", re.M | re.S)
PSQL_URL_RE = re.compile(r'^psql "([^"]+)"$', re.M)

OWNER = "app_owner"


def steps(text):
    """{step: (path, status, rest)} from a report."""
    return {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in STEP_RE.finditer(text)}


class ProvisionFlow(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = shared_tempdir("vwtest-provision.")
        cls.pg = PgHarness()
        cls.vault = VaultDev()
        cls.proxy = None
        cls.outputs = []  # every stdout / stderr provision printed, for the secret scan
        cls.addClassCleanup(cls._teardown)
        cls.pg.start()
        cls.vault.start()
        cls.port = free_port()
        cls.password_file = os.path.join(cls.tmp, "admin.pw")
        fd = os.open(cls.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cls.pg.admin_password + "\n")
        cls.token1_file = os.path.join(cls.tmp, "client1.token")
        cls.vaultwire_token_file = os.path.join(cls.tmp, "vaultwire.token")

    @classmethod
    def _teardown(cls):
        try:
            if cls.proxy is not None:
                cls.proxy.stop()
        finally:
            cls.vault.stop()
            cls.pg.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers -----------------------------------------------------------

    def base_args(self):
        return ["--db-host", "localhost", "--db-port", str(self.pg.port), "--database", "defaultdb",
                "--sslrootcert", self.pg.ca, "--admin-user", self.pg.admin_user,
                "--admin-password-file", self.password_file, "--owner-role", OWNER,
                "--dialect", "postgresql", "--db-config", "crdb-config", "--role", "crdb-role", "--policy", "roach-client",
                "--default-ttl", "1h", "--max-ttl", "24h",
                "--vaultwire-token-file", self.vaultwire_token_file,
                "--listen", "127.0.0.1:%d" % self.port]

    def provision(self, *args, token=None, env=None, stdin=None, expect_rc=0):
        full_env = dict(os.environ, VAULT_ADDR=self.vault.addr,
                        VAULT_TOKEN=self.vault.root_token if token is None else token)
        full_env.pop("VAULT_NAMESPACE", None)
        full_env.pop("VAULT_CACERT", None)
        full_env.update(env or {})
        proc = subprocess.run([os.environ["VAULTWIRE_BIN"], "provision"] + list(args), env=full_env,
                              input=stdin, capture_output=True, text=True, timeout=120)
        type(self).outputs += [proc.stdout, proc.stderr]
        if expect_rc is not None:
            self.assertEqual(proc.returncode, expect_rc,
                             "provision exited %d\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout,
                                                                                proc.stderr))
        for name, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            self.assertNotRegex(text, r"AddressSanitizer|LeakSanitizer|runtime error:", name)
        return proc

    def counters(self):
        return self.vault.dev("GET", "counters")

    def vault_state(self):
        """Every object provision writes, as Vault answers them (request ids dropped)."""
        root = self.vault.client()
        out = {}
        for path in ("sys/mounts/database", "database/config/crdb-config", "database/roles/crdb-role",
                     "sys/policies/acl/roach-client", "sys/policies/acl/crdb-role-vaultwire"):
            answer = root.read(path)
            self.assertIsNotNone(answer, path)
            out[path] = answer["data"]
        out["tokens"] = sorted((t["accessor"], tuple(t["policies"])) for t in self.vault.dev("GET", "tokens"))
        return out

    def psql_url(self, url, sql):
        env = dict(os.environ, PGCONNECT_TIMEOUT="20")
        for k in ("PGPASSWORD", "PGSERVICE", "PGSSLMODE", "PGUSER", "PGDATABASE", "PGHOST", "PGPORT"):
            env.pop(k, None)
        proc = subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, "psql failed: %s" % proc.stderr)
        return proc.stdout.strip()

    def assertMode600(self, path):
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)

    # -- the flow ----------------------------------------------------------

    def test_1_dry_run_sends_nothing(self):
        before = self.counters()["total"]
        proc = self.provision(*self.base_args(), "--create-token", "--client-token-file", self.token1_file,
                              "--dry-run")
        self.assertEqual(self.counters()["total"], before, "--dry-run sent requests to Vault")
        for line in ("POST %s/v1/sys/mounts/database " % self.vault.addr,
                     "POST %s/v1/database/config/crdb-config " % self.vault.addr,
                     "POST %s/v1/database/roles/crdb-role " % self.vault.addr,
                     "PUT %s/v1/sys/policies/acl/roach-client " % self.vault.addr,
                     "POST %s/v1/auth/token/create-orphan " % self.vault.addr):
            self.assertIn(line, proc.stdout)
        self.assertIn("<redacted: read from %s" % self.password_file, proc.stdout)
        self.assertNotIn(self.pg.admin_password, proc.stdout + proc.stderr)
        self.assertNotIn(self.vault.root_token, proc.stdout + proc.stderr)
        self.assertFalse(os.path.exists(self.token1_file))
        self.assertFalse(os.path.exists(self.vaultwire_token_file))
        self.assertEqual(len(self.vault.dev("GET", "tokens")), 1, "only the root token exists")

    def test_2_provision_then_two_clients_and_revocation(self):
        proc = self.provision(*self.base_args(), "--create-token", "--client-token-file", self.token1_file)
        report = steps(proc.stdout)
        self.assertEqual({k: v[1] for k, v in report.items()},
                         {"mount": "created", "config": "created", "role": "created", "policy": "created",
                          "vaultwire-policy": "created", "vaultwire-token": "created", "client-token": "created"},
                         proc.stdout)
        self.assertMode600(self.token1_file)
        self.assertMode600(self.vaultwire_token_file)
        with open(self.token1_file) as f:
            token1 = f.read().strip()
        with open(self.vaultwire_token_file) as f:
            vw_token = f.read().strip()
        self.assertRegex(token1, r"^hvs\.")
        for secret in (token1, vw_token, self.pg.admin_password, self.vault.root_token):
            self.assertNotIn(secret, proc.stdout + proc.stderr)

        # What Vault now holds: DESIGN.md's ownership pattern and the least-privilege policies.
        root = self.vault.client()
        role = root.read("database/roles/crdb-role")["data"]
        self.assertEqual(role["creation_statements"], [
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
            "IN ROLE app_owner;",
            "ALTER ROLE \"{{name}}\" SET ROLE app_owner;", "GRANT \"{{name}}\" TO CURRENT_USER;"])
        self.assertEqual(role["revocation_statements"], [
            "REASSIGN OWNED BY \"{{name}}\" TO app_owner;", "DROP OWNED BY \"{{name}}\";",
            "DROP ROLE IF EXISTS \"{{name}}\";"])
        self.assertEqual((role["db_name"], role["default_ttl"], role["max_ttl"]), ("crdb-config", 3600, 86400))
        config = root.read("database/config/crdb-config")["data"]
        self.assertEqual(config["plugin_name"], "postgresql-database-plugin")
        self.assertEqual(config["allowed_roles"], ["crdb-role"])
        self.assertEqual(config["connection_details"]["connection_url"],
                         "postgresql://{{username}}:{{password}}@localhost:%d/defaultdb?sslmode=verify-full"
                         "&sslrootcert=%s" % (self.pg.port, self.pg.ca))
        self.assertEqual(config["connection_details"]["username"], self.pg.admin_user)
        client = self.vault.client(token=token1)
        caps = client.adapter.post("/v1/sys/capabilities-self", json={"paths": [
            "database/creds/crdb-role", "sys/leases/revoke/database/creds/crdb-role/x", "database/creds/other",
            "sys/leases/revoke/database/creds/other/x", "sys/policies/acl/roach-client"]})["data"]
        self.assertEqual(caps["database/creds/crdb-role"], ["read"])
        self.assertEqual(caps["sys/leases/revoke/database/creds/crdb-role/x"], ["update"])
        self.assertEqual(caps["database/creds/other"], ["deny"])
        self.assertEqual(caps["sys/leases/revoke/database/creds/other/x"], ["deny"])
        self.assertEqual(caps["sys/policies/acl/roach-client"], ["deny"])
        vw = self.vault.client(token=vw_token)
        self.assertEqual(vw.auth.token.lookup_self()["data"]["policies"], ["crdb-role-vaultwire", "default"])
        caps = vw.adapter.post("/v1/sys/capabilities-self", json={"paths": [
            "sys/leases/revoke", "database/creds/crdb-role", "auth/token/renew-self"]})["data"]
        # vaultwire's own token revokes with the lease id in the body (Vault Proxy's lease
        # cache acts on that form only): update on sys/leases/revoke itself.
        self.assertEqual(caps["sys/leases/revoke"], ["update"])
        self.assertEqual(caps["database/creds/crdb-role"], ["deny"])
        self.assertEqual(caps["auth/token/renew-self"], ["update"])

        # vaultwire with the printed vaultwire.toml (plus short broker timers and logs).
        m = TOML_RE.search(proc.stdout)
        self.assertIsNotNone(m, proc.stdout)
        config_text = (m.group(1) + "\n" + toml_table("credentials", CREDENTIALS_DEFAULTS) + "\n"
                       + toml_table("pool", {"reuse": False}) + "\n[log]\nlevel = \"debug\"\n")
        type(self).proxy = Vaultwire(self.tmp, config_text, name="vaultwire-provisioned")
        self.proxy.start()
        self.assertEqual(self.proxy.port, self.port)

        urls = PSQL_URL_RE.findall(proc.stdout)
        self.assertEqual(len(urls), 1, proc.stdout)
        self.assertIn("$VAULT_CLIENT_TOKEN", urls[0])
        url1 = urls[0].replace("$VAULT_CLIENT_TOKEN", token1)
        out = self.psql_url(url1, "CREATE TABLE provisioned (id int PRIMARY KEY, note text); "
                                  "INSERT INTO provisioned VALUES (1, 'from client 1'); "
                                  "SELECT session_user || ' ' || current_user;")
        user1, current1 = out.splitlines()[-1].split()
        self.assertEqual(current1, OWNER)
        self.assertTrue(user1.startswith("v-"), user1)

        # A second token (provision run again with --create-token; the token alone on stdout).
        proc2 = self.provision(*self.base_args(), "--create-token", "--client-token-file", "-")
        token2 = proc2.stdout.strip()
        self.assertRegex(token2, r"^hvs\.[0-9A-Za-z]+$", "stdout must hold the token only")
        self.assertNotEqual(token2, token1)
        report2 = steps(proc2.stderr)
        self.assertEqual({k: v[1] for k, v in report2.items()},
                         {"mount": "unchanged", "config": "unchanged", "role": "unchanged",
                          "policy": "unchanged", "vaultwire-policy": "unchanged", "vaultwire-token": "unchanged",
                          "client-token": "created"}, proc2.stderr)
        self.assertNotIn(token2, proc2.stderr)
        with open(self.vaultwire_token_file) as f:
            self.assertEqual(f.read().strip(), vw_token, "a valid vaultwire token must be kept")

        out = self.psql_url(urls[0].replace("$VAULT_CLIENT_TOKEN", token2),
                            "SELECT session_user || ' ' || current_user || ' ' || note FROM provisioned;")
        user2, current2, note = out.split(" ", 2)
        self.assertEqual((current2, note), (OWNER, "from client 1"))
        self.assertTrue(user2.startswith("v-"), user2)
        self.assertNotEqual(user2, user1)
        self.assertEqual(self.pg.admin_query(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'provisioned'")[0][0], OWNER)

        # Revocation: vaultwire revokes both idle leases with its own token (the provisioned
        # vaultwire policy); Vault's revocation statements drop both users.
        wait_for(lambda: not self.pg.role_exists(user1) and not self.pg.role_exists(user2), timeout=30,
                 what="both dynamic SQL users dropped")
        wait_for(lambda: not self.vault.dev_leases(), timeout=30, what="no lease left in vault-dev")
        requests = self.counters()["requests"]
        self.assertEqual(requests.get("PUT sys/leases/revoke", 0), 2, requests)
        self.assertEqual([k for k in requests if k.startswith("PUT sys/leases/revoke/")], [], requests)
        self.assertNotIn("permission denied", self.proxy.output())
        self.assertEqual(self.pg.admin_query("SELECT count(*) FROM provisioned")[0][0], 1, "the table must stay")

        # No secret in vaultwire's log or provision's output (other than the client token
        # printed on stdout when asked for); the scan is shown to work on the planted token.
        issued = self.vault.dev("GET", "secrets")
        values = [v for v in issued["tokens"] + issued["passwords"] + [self.pg.admin_password] if len(v) >= 8]
        self.assertIn(token1, values)
        self.assertEqual(scan_for_secrets(proc2.stdout, values), [token2], "positive control")
        self.assertEqual(scan_for_secrets(self.proxy.output(), values), [])
        for text in self.outputs:
            if text is not proc2.stdout:
                self.assertEqual(scan_for_secrets(text, values), [])

        # vaultwire stops cleanly (its own lookups would otherwise move the counters below).
        self.assertEqual(self.proxy.stop(), 0)
        self.assertNotRegex(self.proxy.output(), r"AddressSanitizer|LeakSanitizer|runtime error:")

    def test_3_second_run_changes_nothing(self):
        before = self.vault_state()
        with open(self.vaultwire_token_file) as f:
            vw_token = f.read()
        self.vault.dev("POST", "counters/reset")
        proc = self.provision(*self.base_args())
        report = steps(proc.stdout)
        self.assertEqual({k: v[1] for k, v in report.items()},
                         {"mount": "unchanged", "config": "unchanged", "role": "unchanged", "policy": "unchanged",
                          "vaultwire-policy": "unchanged", "vaultwire-token": "unchanged"}, proc.stdout)
        requests = self.counters()["requests"]
        self.assertTrue(requests)
        self.assertEqual([k for k in requests if not k.startswith("GET ")], [],
                         "a second run may only read: %r" % requests)
        self.assertEqual(self.vault_state(), before)
        with open(self.vaultwire_token_file) as f:
            self.assertEqual(f.read(), vw_token)
        self.assertMode600(self.vaultwire_token_file)
        # The password is not even needed when nothing changes.
        proc = self.provision(*[a for a in self.base_args() if a not in ("--admin-password-file",
                                                                         self.password_file)])
        self.assertEqual({v[1] for v in steps(proc.stdout).values()}, {"unchanged"}, proc.stdout)

    def test_4_changed_flag_updates_only_that_object(self):
        self.vault.dev("POST", "counters/reset")
        args = self.base_args()
        args[args.index("--default-ttl") + 1] = "30m"
        proc = self.provision(*args)
        report = steps(proc.stdout)
        self.assertEqual(report["role"][1:], ("updated", " (default_ttl)"), proc.stdout)
        self.assertEqual({k: v[1] for k, v in report.items() if k != "role"},
                         {"mount": "unchanged", "config": "unchanged", "policy": "unchanged",
                          "vaultwire-policy": "unchanged", "vaultwire-token": "unchanged"})
        writes = [k for k in self.counters()["requests"] if not k.startswith("GET ")]
        self.assertEqual(writes, ["POST database/roles/crdb-role"])
        self.assertEqual(self.vault.client().read("database/roles/crdb-role")["data"]["default_ttl"], 1800)
        proc = self.provision(*self.base_args())
        self.assertEqual(steps(proc.stdout)["role"][1], "updated")

    def test_5_errors_name_the_step_and_vaults_text(self):
        # A token Vault rejects: the first step fails with Vault's text.
        proc = self.provision(*self.base_args(), token="hvs.notarealtoken00000000000", expect_rc=1)
        self.assertIn("error: step mount: GET sys/mounts: Vault answered HTTP 403: permission denied", proc.stderr)
        self.assertNotIn("hvs.notarealtoken", proc.stdout + proc.stderr)

        # A new connection with a wrong admin password: Vault's verification error, without it.
        wrong = os.path.join(self.tmp, "wrong.pw")
        with open(wrong, "w") as f:
            f.write("wrong-password-4711\n")
        args = self.base_args()
        args[args.index("--db-config") + 1] = "other-config"
        args[args.index("--role") + 1] = "other-role"
        args[args.index("--policy") + 1] = "other-client"
        args[args.index("--vaultwire-token-file") + 1] = os.path.join(self.tmp, "other-vaultwire.token")
        args[args.index("--admin-password-file") + 1] = wrong
        proc = self.provision(*args, expect_rc=1)
        self.assertRegex(proc.stderr, r"error: step config: POST database/config/other-config: Vault answered "
                                      r"HTTP 400: error creating database object: error verifying connection")
        self.assertNotIn("wrong-password-4711", proc.stdout + proc.stderr)

        # No password for a new connection: named before anything is written.
        args = [a for a in args if a not in ("--admin-password-file", wrong)]
        proc = self.provision(*args, expect_rc=1)
        self.assertIn("error: step config: the connection is new: the admin password is needed", proc.stderr)

        # The password from stdin works.
        args += ["--admin-password-file", "-"]
        proc = self.provision(*args, stdin=self.pg.admin_password + "\n")
        self.assertEqual(steps(proc.stdout)["config"][1], "created")
        self.assertEqual(steps(proc.stdout)["role"][1], "created")

        # A mount of another type.
        proc = self.provision(*self.base_args(), "--mount", "cubbyhole", expect_rc=1)
        self.assertIn('error: step mount: sys/mounts/cubbyhole is already a mount of type "cubbyhole"', proc.stderr)

        # Bad options: exit 2, nothing sent.
        before = self.counters()["total"]
        proc = self.provision("--db-host", "h", "--admin-user", "a", "--owner-role", "o;drop", "--dialect", "postgresql",
                              "--max-ttl", "1m",
                              "--create-token", expect_rc=2)
        self.assertIn("--owner-role may not contain ';'", proc.stderr)
        self.assertIn("--default-ttl is longer than --max-ttl", proc.stderr)
        self.assertIn("--create-token needs --client-token-file", proc.stderr)
        self.assertEqual(self.counters()["total"], before)

    def test_6_namespace(self):
        """VAULT_NAMESPACE: every object is written in that namespace (X-Vault-Namespace) and the
        printed vaultwire.toml names it."""
        token_file = os.path.join(self.tmp, "ns-client.token")
        args = self.base_args()
        args = args[:args.index("--vaultwire-token-file")] + args[args.index("--vaultwire-token-file") + 2:]
        proc = self.provision(*args, "--create-token", "--client-token-file", token_file,
                              env={"VAULT_NAMESPACE": "team-a"})
        self.assertEqual({k: v[1] for k, v in steps(proc.stdout).items()},
                         {"mount": "created", "config": "created", "role": "created", "policy": "created",
                          "client-token": "created"}, proc.stdout)
        self.assertIn('namespace = "team-a"', TOML_RE.search(proc.stdout).group(1))
        ns = self.vault.client(namespace="team-a")
        self.assertEqual(ns.read("database/roles/crdb-role")["data"]["db_name"], "crdb-config")
        with open(token_file) as f:
            token = f.read().strip()
        creds = self.vault.client(token=token, namespace="team-a").read("database/creds/crdb-role")
        self.assertTrue(self.pg.role_exists(creds["data"]["username"]))
        self.vault.client(namespace="team-a").sys.revoke_lease(creds["lease_id"])
        self.assertFalse(self.pg.role_exists(creds["data"]["username"]), "revocation drops the user")
        # The root namespace kept its own objects (a second run there is still unchanged).
        proc = self.provision(*self.base_args())
        self.assertEqual({v[1] for v in steps(proc.stdout).values()}, {"unchanged"}, proc.stdout)

    def test_7_non_superuser_vault_user_revokes(self):
        """The postgresql dialect with a Vault connection user that is no superuser, only
        what the printed one-time SQL gives it (CREATEROLE, membership in the owner role):
        credentials are created, and revocation drops the user even when it owns an object
        (REASSIGN OWNED needs the privileges of both roles; GRANT "{{name}}" TO CURRENT_USER
        gives those of the dynamic user)."""
        limited, password = "vault_limited", "limited-%s" % os.urandom(8).hex()
        self.pg.admin_query("CREATE ROLE %s LOGIN PASSWORD %%s" % limited, (password,))
        proc = self.provision("--dry-run", *self.base_args())
        for line in ("#   ALTER ROLE %s CREATEROLE;" % limited, "#   GRANT app_owner TO %s;" % limited):
            # The one-time SQL names the admin user of the run; run it for ours.
            self.assertIn(line.replace(limited, self.pg.admin_user), proc.stdout)
            self.pg.admin_query(line[4:].rstrip(";"))
        self.assertFalse(self.pg.admin_query("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (limited,))[0][0])
        pw_file = os.path.join(self.tmp, "limited.pw")
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        token_file = os.path.join(self.tmp, "limited-client.token")
        args = self.base_args()
        args = args[:args.index("--vaultwire-token-file")] + args[args.index("--vaultwire-token-file") + 2:]
        for flag, value in (("--admin-user", limited), ("--admin-password-file", pw_file),
                            ("--db-config", "limited-config"), ("--role", "limited-role"),
                            ("--policy", "limited-client")):
            args[args.index(flag) + 1] = value
        proc = self.provision(*args, "--mount", "limited", "--create-token", "--client-token-file", token_file)
        self.assertEqual(steps(proc.stdout)["config"][1], "created", proc.stdout)
        with open(token_file) as f:
            token = f.read().strip()
        creds = self.vault.client(token=token).read("limited/creds/limited-role")["data"]
        user = creds["username"]
        self.assertTrue(self.pg.role_exists(user))
        # The dynamic user creates a table of its own (SET ROLE NONE: its RESET ROLE goes back
        # to the owner role, the ALTER ROLE default), so revocation has something to reassign.
        conn = self.pg.connect(user, creds["password"])
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET ROLE NONE")
                cur.execute("CREATE TABLE owned_by_dynamic_user (x int)")
        finally:
            conn.close()
        self.assertEqual(self.pg.admin_query("SELECT tableowner FROM pg_tables WHERE tablename = "
                                             "'owned_by_dynamic_user'")[0][0], user)
        lease = [lid for lid in self.vault.dev_lease_ids() if lid.startswith("limited/creds/limited-role/")]
        self.assertEqual(len(lease), 1)
        self.vault.client().sys.revoke_lease(lease[0])
        wait_for(lambda: not self.pg.role_exists(user), timeout=30, what="the dynamic user dropped")
        self.assertEqual(self.pg.admin_query("SELECT tableowner FROM pg_tables WHERE tablename = "
                                             "'owned_by_dynamic_user'")[0][0], OWNER)
        self.assertNotIn(password, proc.stdout + proc.stderr)

    def test_8_tokens_outlive_the_administrators_token(self):
        """Tokens are minted as orphans: revoking the administrator's token (a child of
        root here) leaves the client token, vaultwire's token and a live session working. A
        token file holding a token that is not an orphan is replaced."""
        admin = self.vault.client().auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
        token_file = os.path.join(self.tmp, "orphan-client.token")
        vw_file = os.path.join(self.tmp, "orphan-vaultwire.token")
        child = self.vault.client(token=admin).auth.token.create(policies=["orphans-vaultwire"],
                                                                ttl="1h")["auth"]["client_token"]
        fd = os.open(vw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(child + "\n")
        args = self.base_args()
        port = free_port()
        for flag, value in (("--vaultwire-token-file", vw_file), ("--listen", "127.0.0.1:%d" % port),
                            ("--db-config", "orphans-config"), ("--role", "orphans-role"),
                            ("--policy", "orphans-client")):
            args[args.index(flag) + 1] = value
        proc = self.provision(*args, "--mount", "orphans", "--vaultwire-policy", "orphans-vaultwire",
                              "--create-token", "--client-token-file", token_file, token=admin)
        report = steps(proc.stdout)
        self.assertEqual(report["vaultwire-token"][1], "created", proc.stdout)
        self.assertIn("which was not an orphan", report["vaultwire-token"][2])
        with open(token_file) as f:
            client_token = f.read().strip()
        with open(vw_file) as f:
            vw_token = f.read().strip()
        self.assertNotEqual(vw_token, child)
        for t in (client_token, vw_token):
            self.assertIs(self.vault.client(token=t).auth.token.lookup_self()["data"]["orphan"], True)

        config_text = (TOML_RE.search(proc.stdout).group(1) + "\n" + toml_table("credentials", CREDENTIALS_DEFAULTS)
                       + "\n" + toml_table("pool", {"reuse": False}) + "\n[log]\nlevel = \"debug\"\n")
        proxy = Vaultwire(self.tmp, config_text, name="vaultwire-orphans")
        proxy.start()
        try:
            url = PSQL_URL_RE.findall(proc.stdout)[0].replace("$VAULT_CLIENT_TOKEN", client_token)
            conn = psycopg2.connect(url, connect_timeout=20)
            conn.autocommit = True
            self.vault.client().auth.token.revoke(admin)
            with self.assertRaises(Exception):
                self.vault.client(token=admin).auth.token.lookup_self()
            lookups = self.counters()["paths"].get("auth/token/lookup-self", 0)
            wait_for(lambda: self.counters()["paths"].get("auth/token/lookup-self", 0) >= lookups + 2, timeout=30,
                     what="the session's token rechecked after the revocation")
            with conn.cursor() as cur:
                cur.execute("select current_user")
                self.assertEqual(cur.fetchone()[0], OWNER)
            conn.close()
            self.assertEqual(self.psql_url(url, "select 1"), "1")
            for t in (client_token, vw_token):
                self.assertIs(self.vault.client(token=t).auth.token.lookup_self()["data"]["orphan"], True)
        finally:
            self.assertEqual(proxy.stop(), 0)


if __name__ == "__main__":
    unittest.main()
