"""Self-test of crdb-upstream against a real PostgreSQL 15 (pg-harness).

One harness for the module (a private directory); each class starts its own stand-in
on a free port with the flags it tests. Real clients (psycopg2, psql) where they can
show a behaviour; a small raw pgwire client (below, independent of the stand-in's code)
where a driver hides it: SQLSTATEs of refused logins, startup parameters libpq will not
send, BackendKeyData, a CancelRequest from a chosen source address.

Environment: PG_HARNESS (default: tests/support/pg-harness of this tree).
Run with /usr/bin/python3 -m unittest -v test_crdb_upstream
"""

import base64
import hashlib
import hmac
import os
import re
import secrets
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
os.environ.setdefault("PG_HARNESS", os.path.join(TESTS, "support", "pg-harness"))
sys.path.insert(0, os.path.join(TESTS, "vault-dev", "conformance"))
from vaultdev_fixture import PgHarness, wait_for  # noqa: E402

sys.path.insert(0, HERE)
import standin  # noqa: E402

import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402

PSQL = "/usr/lib/postgresql/15/bin/psql"
CLUSTER = "vaultwire-test-10"

HARNESS = None


def setUpModule():
    global HARNESS
    HARNESS = PgHarness()
    HARNESS.start()


def tearDownModule():
    if HARNESS is not None:
        HARNESS.stop()


def admin_direct():
    """psycopg2 to the harness PostgreSQL itself (not through the stand-in)."""
    env = HARNESS.env
    c = psycopg2.connect(host=env["PGH_SOCKET_DIR"], port=env["PGH_PORT"], user=env["PGH_ADMIN_USER"],
                         dbname="defaultdb")
    c.autocommit = True
    return c


def stored_password(role):
    c = admin_direct()
    try:
        cur = c.cursor()
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
        return cur.fetchone()[0]
    finally:
        c.close()


def scram_verifier(password, iterations):
    """PostgreSQL's SCRAM-SHA-256 verifier text for an ASCII password."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(hashlib.sha256(client_key).digest()),
                                         b64(server_key))


def new_role_name(prefix):
    return "%s_%s" % (prefix, secrets.token_hex(4))


class StandIn(standin.StandIn):
    """A crdb-upstream process in a private directory, over the module's harness."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="crdb-upstream-test-")
        super().__init__(os.path.join(HARNESS.dir, "env"), self.dir, *flags, log_name="stderr.log")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def stderr(self):
        return self.output()

    def wait_log(self, pattern, count=1):
        rx = re.compile(pattern, re.M)
        return wait_for(lambda: len(rx.findall(self.stderr())) >= count and rx.findall(self.stderr()),
                        timeout=20, what="stand-in log %r" % pattern)

    def dsn(self, user, password, **extra):
        parts = {"host": "localhost", "port": self.port, "dbname": "defaultdb", "user": user,
                 "password": password, "sslmode": "verify-full", "sslrootcert": HARNESS.env["PGH_CA"],
                 "connect_timeout": 20}
        parts.update(extra)
        return " ".join("%s='%s'" % (k, str(v).replace("\\", "\\\\").replace("'", "\\'")) for k, v in parts.items())

    def connect(self, user, password, **extra):
        c = psycopg2.connect(self.dsn(user, password, **extra))
        c.autocommit = True
        return c


# ---------------------------------------------------------------------------
# A raw pgwire client, written from the protocol documentation, for what drivers hide.

def _msg(kind, body=b""):
    return kind.encode() + struct.pack("!I", len(body) + 4) + body


def _cstr(s):
    return s.encode() + b"\0"


class Raw:
    def __init__(self, port, source=None, tls=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                             source_address=(source, 0) if source else None)
        if tls:
            self.sock.sendall(struct.pack("!II", 8, 80877103))
            answer = self._exact(1)
            assert answer == b"S", answer
            ctx = ssl.create_default_context(cafile=HARNESS.env["PGH_CA"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.params = {}
        self.key = None

    def _exact(self, n):
        out = b""
        while len(out) < n:
            b = self.sock.recv(n - len(out))
            if not b:
                raise EOFError("server closed the connection")
            out += b
        return out

    def read(self):
        head = self._exact(5)
        (ln,) = struct.unpack("!I", head[1:])
        return chr(head[0]), self._exact(ln - 4)

    def send(self, data):
        self.sock.sendall(data)

    def startup(self, params):
        body = struct.pack("!I", 196608) + b"".join(_cstr(k) + _cstr(v) for k, v in params.items()) + b"\0"
        self.send(struct.pack("!I", len(body) + 4) + body)

    @staticmethod
    def fields(body):
        out, i = {}, 0
        while body[i] != 0:
            end = body.index(b"\0", i + 1)
            out[chr(body[i])] = body[i + 1:end].decode()
            i = end + 1
        return out

    def auth_code(self, kind, body):
        assert kind == "R", (kind, body)
        return struct.unpack("!I", body[:4])[0]

    def login(self, user, password, **params):
        """SCRAM-SHA-256 (or cleartext if asked) login; returns the ErrorResponse fields
        if refused, else None with params and key filled in."""
        self.startup(dict({"user": user, "database": "defaultdb"}, **params))
        while True:
            kind, body = self.read()
            if kind == "E":
                return self.fields(body)
            if kind == "R":
                code = self.auth_code(kind, body)
                if code == 3:
                    self.send(_msg("p", _cstr(password)))
                elif code == 10:
                    assert body[4:] == b"SCRAM-SHA-256\0\0", body
                    self._scram(password)
                elif code == 12:
                    assert body[4:].decode() == "v=" + self._server_signature, "server signature mismatch"
                elif code == 0:
                    pass
                else:
                    raise AssertionError("unexpected auth request %d" % code)
            elif kind == "S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif kind == "K":
                self.key = struct.unpack("!II", body[:8])
            elif kind == "Z":
                return None

    def _scram(self, password):
        cnonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = "n=,r=" + cnonce
        first = "n,," + first_bare
        self.send(_msg("p", _cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first.encode()))
        kind, body = self.read()
        if kind == "E":
            self._pending_error = body
            raise _Refused(self.fields(body))
        assert self.auth_code(kind, body) == 11
        server_first = body[4:].decode()
        attrs = dict(p.split("=", 1) for p in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth_message = ",".join([first_bare, server_first, without_proof]).encode()
        sig = hmac.new(stored, auth_message, hashlib.sha256).digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self._server_signature = base64.b64encode(
            hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
        self.send(_msg("p", (without_proof + ",p=" + proof).encode()))
        self.scram_iterations = int(attrs["i"])

    def query(self, sql):
        """Simple query; returns (rows, error fields or None, ReadyForQuery status)."""
        self.send(_msg("Q", _cstr(sql)))
        return self.collect()

    def collect(self):
        rows, err = [], None
        while True:
            kind, body = self.read()
            if kind == "D":
                (n,) = struct.unpack("!H", body[:2])
                pos, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", body[pos:pos + 4])
                    pos += 4
                    row.append(None if ln < 0 else body[pos:pos + ln].decode())
                    pos += max(ln, 0)
                rows.append(row)
            elif kind == "E":
                err = self.fields(body)
            elif kind == "Z":
                return rows, err, body.decode()

    def close(self):
        try:
            self.send(_msg("X"))
        except OSError:
            pass
        self.sock.close()


class _Refused(Exception):
    def __init__(self, fields):
        super().__init__(fields.get("M"))
        self.fields = fields


def raw_login(port, user, password, source=None, **params):
    """A logged-in Raw, or the refusal's fields."""
    r = Raw(port, source=source)
    try:
        err = r.login(user, password, **params)
    except _Refused as e:
        r.close()
        return e.fields
    if err is not None:
        r.close()
        return err
    return r


def cancel_request(port, key, source=None, tls=False):
    s = Raw(port, source=source, tls=tls)
    s.send(struct.pack("!IIII", 16, 80877102, key[0], key[1]))
    # The server answers nothing and closes the connection.
    s.sock.settimeout(10)
    try:
        assert s.sock.recv(1) == b""
    except ssl.SSLError:
        pass
    s.sock.close()


# ---------------------------------------------------------------------------

class Base:
    """Per class: a stand-in with FLAGS. Mixed into unittest.TestCase by each class."""
    FLAGS = ()

    @classmethod
    def setUpClass(cls):
        cls.standin = StandIn(*cls.FLAGS).start()
        cls.admin_user = HARNESS.env["PGH_ADMIN_USER"]
        cls.admin_password = HARNESS.env["PGH_ADMIN_PASSWORD"]
        cls.secrets = [cls.admin_password]
        cls.roles = []

    @classmethod
    def tearDownClass(cls):
        cls.standin.stop()
        cls.standin.cleanup()

    def admin(self):
        return self.standin.connect(self.admin_user, self.admin_password)

    def test_zz_log_has_no_secrets_and_no_failures(self):
        # Runs last in each class (unittest sorts by name). The roles' names are logged
        # (login lines), which shows the scan reads the real log; their passwords and the
        # admin password must not be.
        log = self.standin.stderr()
        self.assertNotIn("session failed", log)
        self.assertNotIn("Traceback", log)
        if self.roles:
            self.assertTrue(any(name in log for name in self.roles), "no role name in the log: scan is blind")
        for secret in self.secrets:
            self.assertNotIn(secret, log)

    def make_role(self, prefix, password, extra=""):
        """A login role created through the stand-in, as Vault's creation statement does."""
        name = new_role_name(prefix)
        self.secrets.append(password)
        self.roles.append(name)
        c = self.admin()
        try:
            c.cursor().execute("CREATE ROLE \"%s\" WITH LOGIN PASSWORD '%s' %s" % (name, password, extra))
        finally:
            c.close()
        self.addCleanup(self._drop_role, name)
        return name

    def _drop_role(self, name):
        c = admin_direct()
        try:
            cur = c.cursor()
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            cur.execute('DROP ROLE IF EXISTS "%s"' % name)
        finally:
            c.close()


class ScramTest(Base, unittest.TestCase):
    FLAGS = ("--scram-iterations", "200000")

    def test_password_set_through_the_stand_in_is_hashed_at_the_configured_cost(self):
        role = self.make_role("cost", "pw-" + secrets.token_hex(8))
        stored = stored_password(role)
        m = re.match(r"^SCRAM-SHA-256\$200000:([^$]+)\$[^:]+:.+$", stored)
        self.assertIsNotNone(m, stored)
        self.assertEqual(len(base64.b64decode(m.group(1))), 16)

        # ALTER ROLE ... WITH PASSWORD is hashed too, with a new salt.
        c = self.admin()
        c.cursor().execute("ALTER ROLE \"%s\" WITH PASSWORD 'other-%s'" % (role, secrets.token_hex(4)))
        c.close()
        again = stored_password(role)
        self.assertTrue(again.startswith("SCRAM-SHA-256$200000:"), again)
        self.assertNotEqual(again.split("$")[1], stored.split("$")[1])

    def test_a_verifier_literal_is_stored_as_given(self):
        verifier = scram_verifier("given", 4096)
        role = self.make_role("prehashed", verifier)
        self.assertEqual(stored_password(role), verifier)
        c = self.standin.connect(role, "given")
        c.close()

    def test_vault_creation_and_revocation_statements(self):
        # DESIGN.md "Dynamic users and object ownership", CockroachDB's creation and
        # revocation, run in one transaction each as Vault's plugin does.
        name, password = new_role_name("vault"), "A1a-" + secrets.token_hex(10)
        self.secrets.append(password)
        self.roles.append(name)
        self.addCleanup(self._drop_role, name)
        owner = HARNESS.env["PGH_OWNER_ROLE"]
        c = self.admin()
        c.autocommit = False
        cur = c.cursor()
        cur.execute("CREATE ROLE \"%s\" WITH LOGIN PASSWORD '%s' VALID UNTIL '2100-01-01 00:00:00+0000'; "
                    "GRANT %s TO \"%s\";" % (name, password, owner, name))
        c.commit()
        self.assertTrue(stored_password(name).startswith("SCRAM-SHA-256$200000:"))

        u = self.standin.connect(name, password)
        ucur = u.cursor()
        ucur.execute("SET ROLE %s" % owner)
        ucur.execute("CREATE TABLE \"t_%s\" (i int)" % name)
        ucur.execute("DISCARD ALL")
        ucur.execute("SELECT current_user, session_user")
        self.assertEqual(ucur.fetchone(), (owner, name))
        u.close()

        cur.execute("REASSIGN OWNED BY \"%s\" TO %s; DROP OWNED BY \"%s\"; DROP ROLE IF EXISTS \"%s\";"
                    % (name, owner, name, name))
        c.commit()
        c.close()
        self.assertEqual(raw_login(self.standin.port, name, password)["C"], "28P01")  # the role is gone
        d = admin_direct()
        dcur = d.cursor()
        dcur.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", ("t_" + name,))
        self.assertEqual(dcur.fetchone(), (owner,))
        dcur.execute('DROP TABLE "t_%s"' % name)
        d.close()

    def test_password_in_an_extended_protocol_parse_is_hashed(self):
        role = self.make_role("parse", "first-" + secrets.token_hex(4))
        password = "second-" + secrets.token_hex(4)
        self.secrets.append(password)
        r = raw_login(self.standin.port, self.admin_user, self.admin_password)
        self.assertIsInstance(r, Raw, r)
        sql = "ALTER ROLE \"%s\" WITH PASSWORD '%s'" % (role, password)
        r.send(_msg("P", _cstr("") + _cstr(sql) + struct.pack("!H", 0))
               + _msg("B", _cstr("") + _cstr("") + struct.pack("!HHH", 0, 0, 0))
               + _msg("E", _cstr("") + struct.pack("!I", 0)) + _msg("S"))
        _, err, status = r.collect()
        self.assertEqual((err, status), (None, "I"))
        r.close()
        self.assertTrue(stored_password(role).startswith("SCRAM-SHA-256$200000:"))
        self.standin.connect(role, password).close()

    def test_an_md5_literal_is_refused(self):
        name = new_role_name("md5")
        c = self.admin()
        try:
            with self.assertRaises(psycopg2.errors.FeatureNotSupported) as cm:
                c.cursor().execute("CREATE ROLE \"%s\" LOGIN PASSWORD 'md5%s'" % (name, "0" * 32))
            self.assertEqual(cm.exception.diag.message_primary,
                             'unimplemented: the password hash scheme "md5" is not supported')
        finally:
            c.close()

    def test_scram_login_and_crdb_session(self):
        password = "pw-" + secrets.token_hex(8)
        role = self.make_role("login", password)
        c = self.standin.connect(role, password)
        try:
            self.assertTrue(c.get_parameter_status("crdb_version").startswith("CockroachDB CCL v"))
            self.assertEqual(c.get_parameter_status("server_version"), "13.0.0")
            self.assertEqual(c.get_parameter_status("session_authorization"), role)
            self.assertEqual(c.get_parameter_status("is_superuser"), "off")
            cur = c.cursor()
            cur.execute("SELECT session_user, current_user, current_database()")
            self.assertEqual(cur.fetchone(), (role, role, "defaultdb"))
        finally:
            c.close()

        # The raw client sees the exchange itself: SCRAM-SHA-256 only, at the stored cost.
        r = raw_login(self.standin.port, role, password)
        self.assertIsInstance(r, Raw, r)
        self.assertEqual(r.scram_iterations, 200000)
        self.assertIsNotNone(r.key)
        r.close()

    def test_wrong_password_is_refused_28P01(self):
        role = self.make_role("wrong", "right-" + secrets.token_hex(4))
        err = raw_login(self.standin.port, role, "wrong")
        self.assertEqual((err["S"], err["C"], err["M"]),
                         ("FATAL", "28P01", "password authentication failed for user %s" % role))
        with self.assertRaisesRegex(psycopg2.OperationalError, "password authentication failed for user %s" % role):
            self.standin.connect(role, "wrong")
        # An unknown user gets the same answer.
        err = raw_login(self.standin.port, "no_such_role", "x")
        self.assertEqual((err["C"], err["M"]), ("28P01", "password authentication failed for user no_such_role"))

    def test_expired_role_is_refused(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("expired", password, "VALID UNTIL '2000-01-01'")
        err = raw_login(self.standin.port, role, password)
        self.assertEqual((err["C"], err["M"]), ("28P01", "password authentication failed for user %s" % role))

    def test_discard_all_keeps_the_role(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("discard", password)
        owner = HARNESS.env["PGH_OWNER_ROLE"]
        a = self.admin()
        a.cursor().execute('GRANT %s TO "%s"' % (owner, role))
        a.close()
        c = self.standin.connect(role, password)
        try:
            cur = c.cursor()
            cur.execute("SET ROLE %s" % owner)
            cur.execute("DISCARD ALL")
            self.assertEqual(cur.statusmessage, "DISCARD ALL")
            cur.execute("SELECT current_user, session_user")
            self.assertEqual(cur.fetchone(), (owner, role))
        finally:
            c.close()

        # The same through the extended protocol: Parse/Bind/Execute/Sync.
        r = raw_login(self.standin.port, role, password)
        self.assertIsInstance(r, Raw, r)
        self.assertEqual(r.query("SET ROLE %s" % owner)[1], None)
        r.send(_msg("P", _cstr("") + _cstr("DISCARD ALL") + struct.pack("!H", 0))
               + _msg("B", _cstr("") + _cstr("") + struct.pack("!HHH", 0, 0, 0))
               + _msg("E", _cstr("") + struct.pack("!I", 0)) + _msg("S"))
        kinds = []
        while True:
            kind, body = r.read()
            kinds.append(kind)
            if kind == "C":
                self.assertEqual(body, b"DISCARD ALL\0")
            if kind == "Z":
                break
        self.assertEqual(kinds, ["1", "2", "C", "Z"])
        rows, err, _ = r.query("SELECT current_user, session_user")
        self.assertEqual((rows, err), ([[owner, role]], None))
        r.close()

    def test_session_authorization_cannot_reach_the_superuser(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("ssa", password)
        c = self.standin.connect(role, password)
        try:
            cur = c.cursor()
            with self.assertRaises(psycopg2.errors.FeatureNotSupported) as cm:
                cur.execute("SET SESSION AUTHORIZATION %s" % self.admin_user)
            self.assertEqual(cm.exception.diag.message_primary,
                             'at or near "%s": syntax error: unimplemented: this syntax' % self.admin_user)
            self.assertIsNone(cm.exception.diag.context)
            with self.assertRaises(psycopg2.errors.SyntaxError) as cm:
                cur.execute("RESET SESSION AUTHORIZATION")
            self.assertEqual(cm.exception.diag.message_primary, 'at or near "authorization": syntax error')
            # Neither these nor PostgreSQL's own paths lead anywhere: the backend
            # belongs to the login role, not to the superuser.
            with self.assertRaises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT set_config('session_authorization', %s, false)", (self.admin_user,))
            cur.execute("SET SESSION AUTHORIZATION DEFAULT")  # accepted, as on CockroachDB
            cur.execute("SELECT session_user, current_user, current_setting('is_superuser')")
            self.assertEqual(cur.fetchone(), (role, role, "off"))
        finally:
            c.close()

    def test_non_tls_startup_is_refused(self):
        r = Raw(self.standin.port, tls=False)
        r.startup({"user": "x", "database": "defaultdb"})
        kind, body = r.read()
        self.assertEqual(kind, "E")
        f = Raw.fields(body)
        self.assertEqual((f["S"], f["C"], f["M"]),
                         ("FATAL", "08P01", "node is running secure mode, SSL connection required"))
        r.close()

    def test_gssenc_request_is_refused(self):
        r = Raw(self.standin.port, tls=False)
        r.send(struct.pack("!II", 8, 80877104))
        kind, body = r.read()
        self.assertEqual(kind, "E")
        f = Raw.fields(body)
        self.assertEqual((f["C"], f["M"]), ("08P01", "GSS encryption is not yet supported"))
        r.close()

    def test_bytes_after_ssl_request_close_the_connection(self):
        s = socket.create_connection(("127.0.0.1", self.standin.port), timeout=30)
        s.sendall(struct.pack("!II", 8, 80877103) + b"\x16\x03\x01 not a handshake yet")
        try:
            answer = s.recv(1)
        except ConnectionResetError:  # closed with our bytes unread
            answer = b""
        self.assertEqual(answer, b"")  # no 'S': the server hangs up
        s.close()
        self.standin.wait_log(r"^crdb-upstream: unexpected data after SSLRequest from 127\.0\.0\.1$")

    def test_crdb_startup_parameter_is_refused(self):
        r = Raw(self.standin.port)
        r.startup({"user": "x", "database": "defaultdb", "crdb:remote_addr": "192.0.2.1:26257"})
        kind, body = r.read()
        self.assertEqual(kind, "E")
        f = Raw.fields(body)
        self.assertEqual((f["C"], f["M"]), (
            "08P01", 'server not configured to accept remote address override (requested: "192.0.2.1:26257")'))
        r.close()

    def test_psql_login(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("psql", password)
        env = dict(os.environ, PGPASSWORD=password, PGSSLMODE="verify-full", PGSSLROOTCERT=HARNESS.env["PGH_CA"])
        out = subprocess.run([PSQL, "-X", "-At", "-h", "localhost", "-p", str(self.standin.port), "-U", role,
                              "-d", "defaultdb", "-c", "SELECT session_user"],
                             env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual((out.returncode, out.stdout.strip()), (0, role), out.stderr)

    def test_cancel_from_psycopg2(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("cancel", password)
        c = self.standin.connect(role, password)
        try:
            cur = c.cursor()
            threading.Thread(target=self._cancel_when_sleeping, args=(c, role), daemon=True).start()
            started = time.monotonic()
            with self.assertRaises(psycopg2.errors.QueryCanceled):
                cur.execute("SELECT pg_sleep(30)")
            self.assertLess(time.monotonic() - started, 20)
            cur.execute("SELECT 1")
            self.assertEqual(cur.fetchone(), (1,))
        finally:
            c.close()

    def _cancel_when_sleeping(self, conn, role):
        wait_for(lambda: sleeping(role), what="pg_sleep running")
        conn.cancel()

    def test_cancel_after_tls(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("canceltls", password)
        r = raw_login(self.standin.port, role, password)
        self.assertIsInstance(r, Raw, r)
        r.send(_msg("Q", _cstr("SELECT pg_sleep(30)")))
        wait_for(lambda: sleeping(role), what="pg_sleep running")
        cancel_request(self.standin.port, r.key, tls=True)
        _, err, _ = r.collect()
        self.assertEqual(err["C"], "57014")
        r.close()


def sleeping(role):
    c = admin_direct()
    try:
        cur = c.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep(30)%%'", (role,))
        return cur.fetchone()[0] == 1
    finally:
        c.close()


class CertPasswordTest(Base, unittest.TestCase):
    FLAGS = ("--auth", "cert-password")

    def test_cleartext_login(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("clear", password)
        r = Raw(self.standin.port)
        r.startup({"user": role, "database": "defaultdb"})
        self.assertEqual(r.auth_code(*r.read()), 3)  # AuthenticationCleartextPassword
        r.close()

        c = self.standin.connect(role, password)
        cur = c.cursor()
        cur.execute("SELECT session_user")
        self.assertEqual(cur.fetchone(), (role,))
        c.close()

        err = raw_login(self.standin.port, role, "wrong")
        self.assertEqual((err["C"], err["M"]), ("28P01", "password authentication failed for user %s" % role))

    def test_expired_password(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("clearexp", password, "VALID UNTIL '2000-01-01'")
        err = raw_login(self.standin.port, role, password)
        self.assertEqual((err["C"], err["M"]), ("28000", "password is expired"))


class ClusterTest(Base, unittest.TestCase):
    FLAGS = ("--cluster", CLUSTER)

    def refusal(self, **params):
        r = Raw(self.standin.port)
        r.startup(dict({"user": self.admin_user}, **params))
        kind, body = r.read()
        r.close()
        self.assertEqual(kind, "E")
        f = Raw.fields(body)
        self.assertEqual((f["S"], f["C"]), ("FATAL", "08C00"), f)
        return f

    def logins(self):
        return re.findall(r"^crdb-upstream: login user=(\S+) database=(\S+) options=(.*) cluster=(\S+)$",
                          self.standin.stderr(), re.M)

    def logins_after(self, count):
        # The stand-in's log reaches us through a pipe: the line may arrive after the client has
        # already seen ReadyForQuery, so wait for it rather than read once.
        return wait_for(lambda: self.logins()[count:], timeout=20, what="a login line in the stand-in's log")

    def test_duplicate_cluster_flags_are_refused_even_when_equal(self):
        f = self.refusal(database="defaultdb", options="--cluster=%s --cluster=%s" % (CLUSTER, CLUSTER))
        self.assertEqual(f["M"], "codeParamsRoutingFailed: multiple cluster flags provided")
        with self.assertRaisesRegex(psycopg2.OperationalError, "codeParamsRoutingFailed: multiple cluster flags"):
            self.standin.connect(self.admin_user, self.admin_password,
                                 options="-c cluster=%s --cluster=%s" % (CLUSTER, CLUSTER))

    def test_another_cluster_is_refused(self):
        f = self.refusal(database="other-cluster-11.defaultdb")
        self.assertEqual(f["M"], "codeParamsRoutingFailed: cluster other-cluster-11 not found")
        f = self.refusal(database="defaultdb", options="--cluster=vaultwire-test-11")
        self.assertEqual(f["M"], "codeParamsRoutingFailed: cluster vaultwire-test-11 not found")

    def test_database_prefix_naming_another_cluster_than_the_options(self):
        f = self.refusal(database="other-cluster-11.defaultdb", options="--cluster=%s" % CLUSTER)
        self.assertEqual(f["M"], "codeParamsRoutingFailed: multiple different cluster identifiers provided")
        self.assertTrue(f["H"].startswith("Is 'other-cluster-11' or '%s' the identifier" % CLUSTER), f["H"])

    def test_missing_cluster_is_refused(self):
        f = self.refusal(database="defaultdb")
        self.assertEqual(f["M"], "codeParamsRoutingFailed: missing cluster identifier")

    def test_proxy_requires_tls(self):
        r = Raw(self.standin.port, tls=False)
        r.startup({"user": self.admin_user, "database": "%s.defaultdb" % CLUSTER})
        kind, body = r.read()
        r.close()
        f = Raw.fields(body)
        self.assertEqual((kind, f["C"], f["M"]), ("E", "08C00", "server requires encryption"))

    def test_client_revival_token_is_refused_by_the_proxy(self):
        f = self.refusal(database="%s.defaultdb" % CLUSTER, **{"crdb:session_revival_token_base64": "AAAA"})
        self.assertEqual(f["M"], "")

    def test_prefixed_database_reaches_postgresql_without_the_cluster(self):
        before = len(self.logins())
        c = self.standin.connect(self.admin_user, self.admin_password, dbname="%s.defaultdb" % CLUSTER)
        try:
            cur = c.cursor()
            cur.execute("SELECT current_database()")
            self.assertEqual(cur.fetchone(), ("defaultdb",))
        finally:
            c.close()
        self.assertEqual(self.logins_after(before), [(self.admin_user, "defaultdb", "", CLUSTER)])

        c = self.standin.connect(self.admin_user, self.admin_password, options="--cluster=%s" % CLUSTER)
        c.close()
        self.assertEqual(self.logins_after(before + 1), [(self.admin_user, "defaultdb", "", CLUSTER)])


class CancelSourceTest(Base, unittest.TestCase):
    FLAGS = ("--check-cancel-source",)

    def test_cancel_from_another_address_is_dropped(self):
        password = "pw-" + secrets.token_hex(4)
        role = self.make_role("source", password)
        r = raw_login(self.standin.port, role, password, source="127.0.0.1")
        self.assertIsInstance(r, Raw, r)
        r.send(_msg("Q", _cstr("SELECT pg_sleep(30)")))
        wait_for(lambda: sleeping(role), what="pg_sleep running")

        cancel_request(self.standin.port, r.key, source="127.0.0.2")
        self.standin.wait_log(r"^crdb-upstream: cancel dropped: source 127\.0\.0\.2 is not the session's 127\.0\.0\.1$")
        self.assertTrue(sleeping(role))

        cancel_request(self.standin.port, r.key, source="127.0.0.1")
        self.standin.wait_log(r"^crdb-upstream: cancel forwarded$")
        _, err, _ = r.collect()
        self.assertEqual(err["C"], "57014")
        r.close()


if __name__ == "__main__":
    unittest.main()
