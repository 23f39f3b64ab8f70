"""client_auth = "password": local users of a users file log in to vaultwire with
SCRAM-SHA-256 (SCRAM-SHA-256-PLUS over TLS) instead of a Vault token, and get
credentials read with vaultwire's own Vault token ([vault.auth] approle against
vault-dev, as test_peer_auth.py).

- the users file is made with `vaultwire passwd`, from passwords read on stdin;
- psql (TCP and the unix socket), psycopg2 and pgjdbc log in with SCRAM-SHA-256;
- on TLS the server offers SCRAM-SHA-256-PLUS first, and libpq with
  channel_binding=require logs in;
- a wrong password and an unknown user both get a whole exchange (a salt and an
  iteration count, the unknown user's salt stable) and then the same 28P01;
- failures are throttled per (host, user); a right password waits out the backoff;
- two local users of one role share the lease but never an upstream connection;
- SIGHUP reloads the users file;
- the passwords and the verifiers' keys reach no log (the fixture's secret scan).

Run with /usr/bin/python3; environment as proxy_fixture.py.
"""
import base64
import hashlib
import hmac
import os
import re
import secrets
import signal
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (PSQL, ProxyTestCase, Raw, error_fields, free_port, make_listener_cert,  # noqa: E402
                           startup_packet, wait_for, write_secret)
import psycopg2  # noqa: E402

VAULTWIRE_POLICY = ('path "sys/leases/revoke" { capabilities = ["update"] }\n'
                    'path "sys/leases/renew" { capabilities = ["update"] }\n'
                    'path "database/creds/crdb-role" { capabilities = ["read"] }\n')
LOGGED_IN_RE = r"logged in to Vault with method approle at auth/approle/login: token (\S+) \(service"
DYNAMIC_USER_RE = r"^v-"
JAVA = "/usr/bin/java"
JDBC_JAR = "/usr/share/java/postgresql.jar"
JDBC_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "java", "JdbcSmoke.java")

AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 10, 11, 12


def auth_code(body):
    return struct.unpack("!I", body[:4])[0]


def message(kind, payload):
    return kind + struct.pack("!I", len(payload) + 4) + payload


def scram_exchange(r, user, password, plus=False, cert_der=None):
    """A SCRAM-SHA-256 client (RFC 5802, RFC 7677), written from the RFCs rather than
    taken from libpq, on a Raw connection: startup packet, then the exchange. Returns
    a dict: mechanisms offered, the server-first-message's salt and iterations (None
    when the server stopped before it), and either `fields` (the ErrorResponse) or
    `ready` (ReadyForQuery came after AuthenticationSASLFinal and AuthenticationOk)."""
    out = {"mechanisms": None, "salt": None, "iterations": None, "fields": None, "ready": False}
    r.send(startup_packet([("user", user), ("database", "defaultdb")]))
    msgs = r.read_until({"R", "E"})
    if msgs[-1][0] == "E":
        out["fields"] = error_fields(msgs[-1][1])
        return out
    body = msgs[-1][1]
    assert auth_code(body) == AUTH_SASL, "expected AuthenticationSASL, got code %d" % auth_code(body)
    out["mechanisms"] = [m.decode() for m in body[4:].split(b"\0") if m]
    mechanism = "SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256"
    gs2 = "p=tls-server-end-point,," if plus else ("y,," if r.sock.__class__.__name__ == "SSLSocket" else "n,,")
    client_nonce = base64.b64encode(os.urandom(18)).decode()
    client_first_bare = "n=,r=" + client_nonce
    first = (gs2 + client_first_bare).encode()
    r.send(message(b"p", mechanism.encode() + b"\0" + struct.pack("!i", len(first)) + first))
    kind, body = r.read_message()
    if kind == "E":
        out["fields"] = error_fields(body)
        return out
    assert kind == "R" and auth_code(body) == AUTH_SASL_CONTINUE, (kind, body[:4])
    server_first = body[4:].decode()
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    out["salt"], out["iterations"] = attrs["s"], int(attrs["i"])
    assert attrs["r"].startswith(client_nonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), out["iterations"])
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    cbind = gs2.encode() + (hashlib.sha256(cert_der).digest() if plus else b"")
    without_proof = "c=" + base64.b64encode(cbind).decode() + ",r=" + attrs["r"]
    auth_message = ",".join([client_first_bare, server_first, without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    r.send(message(b"p", (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()))
    msgs = r.read_until({"Z", "E"})
    if msgs[-1][0] == "E":
        out["fields"] = error_fields(msgs[-1][1])
        return out
    codes = [auth_code(b) for t, b in msgs if t == "R"]
    assert codes[:2] == [AUTH_SASL_FINAL, AUTH_OK], codes
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expected = "v=" + base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
    assert [b for t, b in msgs if t == "R"][0][4:].decode() == expected, "the server's signature does not verify"
    out["ready"] = True
    return out


class PasswordAuthTest(ProxyTestCase):
    listeners = 3  # a token listener (the secret scan's canary), the password listener and its socket
    pool_settings = {"reuse": True}
    throttle_settings = {"base_delay": "1s", "max_delay": "4s"}

    @classmethod
    def setup_vault(cls):
        cls.root.sys.create_or_update_policy("vaultwire-self", VAULTWIRE_POLICY)
        cls.root.sys.enable_auth_method("approle")
        approle = cls.root.auth.approle
        approle.create_or_update_approle("vaultwire", token_policies=["vaultwire-self"], token_ttl="1h",
                                         token_max_ttl="2h")
        role_id = approle.read_role_id("vaultwire")["data"]["role_id"]
        secret_id = approle.generate_secret_id("vaultwire")["data"]["secret_id"]
        cls.role_file = os.path.join(cls.tmp, "role-id")
        cls.secret_file = os.path.join(cls.tmp, "secret-id")
        write_secret(cls.role_file, role_id)
        write_secret(cls.secret_file, secret_id)

    @classmethod
    def passwd_line(cls, user, password):
        """`vaultwire passwd USER --role crdb-role`, the password on stdin."""
        r = subprocess.run([os.environ["VAULTWIRE_BIN"], "passwd", user, "--role", "crdb-role"], input=password + "\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert password not in r.stdout + r.stderr
        line = r.stdout
        # The verifier's StoredKey and ServerKey are secrets too (they let a thief log in
        # to this listener, or pose as it).
        cls.secrets += re.match(r"\S+ SCRAM-SHA-256\$\d+:\S+\$(\S+):(\S+) ", line).groups()
        return line

    @classmethod
    def write_users(cls, users):
        text = "# made by vaultwire passwd\n" + "".join(cls.passwd_line(u, p) for u, p in users.items())
        tmp = cls.users_file + ".new"
        write_secret(tmp, text.rstrip("\n"))
        os.replace(tmp, cls.users_file)

    @classmethod
    def local_secrets(cls):
        return list(cls.passwords.values()) + cls.secrets

    @classmethod
    def proxy_config(cls):
        cls.secrets = []
        cls.passwords = {u: "pw-" + secrets.token_hex(10) for u in ("app", "app2", "victim", "late")}
        cls.users_file = os.path.join(cls.tmp, "users")
        cls.write_users({u: cls.passwords[u] for u in ("app", "app2", "victim")})
        cls.sockdir = os.path.join(cls.tmp, "password-sock")
        os.makedirs(cls.sockdir)
        cls.ca, cert, key = make_listener_cert(cls.tmp)
        cls.password_port = free_port()
        return f"""
{cls.vault_table()}
[vault.auth]
method = "approle"
role_id_file = "{cls.role_file}"
secret_id_file = "{cls.secret_file}"

[[listener]]
bind = "127.0.0.1:{cls.port}"
route = "main"

[[listener]]
bind = "127.0.0.1:{cls.password_port}"
unix_socket = "{cls.sockdir}"
tls_cert = "{cert}"
tls_key = "{key}"
route = "main"
client_auth = "password"
users_file = "{cls.users_file}"
{cls.route_config()}
{cls.broker_tables()}
# The secret scan reads the audit file and /metrics too.
[admin]
bind = "127.0.0.1:{free_port()}"
[audit]
file = "{os.path.join(cls.tmp, "audit.jsonl")}"
[log]
level = "trace"
"""

    def setUp(self):
        # Until vaultwire has logged in it holds no token to read credentials with.
        self.proxy.wait_log(LOGGED_IN_RE, timeout=30, what="vaultwire's login")

    def password_psql(self, sql, user="app", password=None, host="127.0.0.1", **conninfo):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGCONNECT_TIMEOUT="20", PGPASSWORD=password or self.passwords[user],
                   PGSSLMODE=conninfo.pop("sslmode", "disable"))
        for k, v in conninfo.items():
            env["PG" + k.upper()] = v
        cmd = [PSQL, "-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(self.password_port),
               "-U", user, "-d", "defaultdb", "-c", sql]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    def exchange(self, user, password, tls=False, plus=False):
        with Raw(self.password_port) as r:
            der = None
            if tls:
                r.start_tls(self.ca)
                der = r.sock.getpeercert(binary_form=True)
            return scram_exchange(r, user, password, plus=plus, cert_der=der)

    def wait_unthrottled(self, user, password):
        """Retries until the throttle lets `user` try again; returns that attempt's result."""
        def attempt():
            out = self.exchange(user, password)
            if out["fields"] is not None and out["fields"]["C"] == "08004":
                return None
            return out
        return wait_for(attempt, timeout=30, interval=0.3, what="the throttle to let %s try again" % user)

    def test_1_psql_logs_in_with_scram_on_tcp_and_the_socket(self):
        for host in ("127.0.0.1", self.sockdir):
            r = self.password_psql("select current_user, session_user", host=host)
            self.assertEqual(r.returncode, 0, r.stderr)
            current, session = r.stdout.strip().split("|")
            self.assertEqual(current, "app_owner")
            self.assertRegex(session, DYNAMIC_USER_RE)
            # The log and the audit file name the local user beside the role it maps to.
            self.proxy.wait_log(r"C-\d+: defaultdb/crdb-role@\S+\(user:app\) session open: user %s"
                                % re.escape(session), what="the session's open line with its local user")
        wait_for(lambda: '"local_identity":"user:app"' in (self.proxy.audit_text() or ""),
                 what="the local user in the audit file")

    def test_2_psycopg2_logs_in(self):
        conn = psycopg2.connect(host="127.0.0.1", port=self.password_port, user="app2", dbname="defaultdb",
                                password=self.passwords["app2"], sslmode="disable", connect_timeout=20)
        try:
            with conn.cursor() as cur:
                cur.execute("select current_user")
                self.assertEqual(cur.fetchone()[0], "app_owner")
        finally:
            conn.close()

    @unittest.skipUnless(os.path.exists(JAVA) and os.path.exists(JDBC_JAR), "needs java and pgjdbc")
    def test_3_jdbc_logs_in_with_scram(self):
        env = dict(os.environ, VW_TOKEN=self.passwords["app"])
        r = subprocess.run([JAVA, "-cp", JDBC_JAR, JDBC_SOURCE, str(self.password_port), "app"], env=env,
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        self.assertNotIn("error", out, out)
        self.assertRegex(out["session_user"], DYNAMIC_USER_RE)
        self.assertEqual(out["extended"], "ok")
        self.assertEqual(out["cancel"], "57014")

    def test_4_plus_is_offered_on_tls_only_and_binds_the_certificate(self):
        plain = self.exchange("app", self.passwords["app"])
        self.assertEqual(plain["mechanisms"], ["SCRAM-SHA-256"])
        self.assertTrue(plain["ready"], plain)
        bound = self.exchange("app", self.passwords["app"], tls=True, plus=True)
        self.assertEqual(bound["mechanisms"], ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        self.assertTrue(bound["ready"], bound)
        # A client that could bind but says it thinks the server cannot ("y") is a downgrade.
        downgraded = self.exchange("app", self.passwords["app"], tls=True)
        self.assertEqual(downgraded["fields"]["C"], "28000", downgraded)

    def test_5_libpq_channel_binding_require_over_tls(self):
        r = self.password_psql("select current_user", host="localhost", sslmode="verify-full", sslrootcert=self.ca,
                               channel_binding="require")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "app_owner")

    def test_6_wrong_password_and_unknown_user_fail_alike_after_a_whole_exchange(self):
        wrong = self.exchange("victim", "not-" + self.passwords["victim"])
        ghost = self.exchange("ghost", "anything-at-all")
        for out, user in ((wrong, "victim"), (ghost, "ghost")):
            self.assertIsNotNone(out["salt"], "no server-first-message for %s" % user)
            self.assertEqual(len(base64.b64decode(out["salt"])), 16)
            self.assertEqual(out["iterations"], 4096)
            self.assertEqual((out["fields"]["C"], out["fields"]["M"]),
                             ("28P01", 'password authentication failed for user "%s"' % user))
        self.proxy.wait_log(r'refused: password authentication failed for local user "ghost": no such user',
                            what="the operator's note that ghost does not exist")
        # The next attempt waits out the backoff (08004), even with the right password.
        throttled = self.exchange("victim", self.passwords["victim"])
        self.assertEqual(throttled["fields"]["C"], "08004", throttled)
        self.assertRegex(throttled["fields"]["M"],
                         r'^too many failed logins from 127\.0\.0\.1 for user "victim" \(1 in a row, waiting 1s\); '
                         r'retry after \ds$')
        self.assertIsNone(throttled["salt"], "a throttled attempt must not reach the exchange")
        # Another user from the same host is not held back.
        self.assertTrue(self.exchange("app", self.passwords["app"])["ready"])
        self.assertTrue(self.wait_unthrottled("victim", self.passwords["victim"])["ready"])
        # The unknown user's salt is the same on every attempt, as a real user's is.
        again = self.wait_unthrottled("ghost", "something-else")
        self.assertEqual(again["salt"], ghost["salt"])
        self.assertEqual(again["fields"]["C"], "28P01")

    def test_7_local_users_share_the_lease_but_never_an_upstream_connection(self):
        def backend(user):
            conn = psycopg2.connect(host="127.0.0.1", port=self.password_port, user=user, dbname="defaultdb",
                                    password=self.passwords[user], sslmode="disable", connect_timeout=20)
            conn.autocommit = True  # idle at Terminate, so the connection may go back to the pool
            try:
                with conn.cursor() as cur:
                    cur.execute("select pg_backend_pid(), session_user")
                    return cur.fetchone()
            finally:
                conn.close()
        pid_a, user_a = backend("app")
        # The closed session's connection goes back to the pool, keyed by its local user.
        wait_for(lambda: backend("app")[0] == pid_a, timeout=20, interval=0.2,
                 what="app's second session to reuse its pooled connection")
        pid_b, user_b = backend("app2")
        self.assertNotEqual(pid_b, pid_a, "app2 was handed app's upstream connection")
        self.assertEqual(user_a, user_b, "one role, one lease: the same dynamic user")

    def test_8_sighup_reloads_the_users_file(self):
        self.write_users({u: self.passwords[u] for u in ("app", "late")})
        self.proxy.signal(signal.SIGHUP)
        self.proxy.wait_log(r"configuration reloaded", what="the reload")
        r = self.password_psql("select current_user", user="late")
        self.assertEqual(r.returncode, 0, r.stderr)
        gone = self.exchange("app2", self.passwords["app2"])
        self.assertEqual(gone["fields"]["C"], "28P01", gone)
        # A users file that stops loading keeps the running one.
        os.chmod(self.users_file, 0o644)
        try:
            self.proxy.signal(signal.SIGHUP)
            self.proxy.wait_log(r"reload: listener\[1\]\.users_file: .*gives group or others access",
                                what="the refused reload")
            self.assertTrue(self.exchange("late", self.passwords["late"])["ready"])
        finally:
            os.chmod(self.users_file, 0o600)


if __name__ == "__main__":
    unittest.main()
