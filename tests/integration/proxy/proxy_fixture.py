"""Shared fixtures for the end-to-end proxy tests: a vaultwire process, a test case base
that starts PostgreSQL (pg-harness), vault-dev and vaultwire per class, and a raw
pgwire client for the cases real drivers cannot produce.

Every class scans the logs of the vaultwire processes it started at teardown for the
tokens and passwords vault-dev issued (GET /_dev/secrets), and with them each
process's audit file (with rotated siblings) when [audit] file is set and its /metrics
page when the admin listener runs. The scan first proves it can fail: a canary value is
made to appear in the real log and audit file (as a refused role name) and the scan must
find exactly it; a /metrics page must be a real one (200, vaultwire_ families).

Environment: VAULTWIRE_BIN, VAULT_DEV_BIN, PG_HARNESS. Run with /usr/bin/python3.
"""
import glob
import http.client
import os
import re
import secrets
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import tomllib
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "vault-dev", "conformance"))
from vaultdev_fixture import (PgHarness, VaultDev, first_unreachable_dir, make_tls_material,  # noqa: E402,F401
                              shared_tempdir, wait_for)

import psycopg2  # noqa: E402

PSQL = "/usr/lib/postgresql/15/bin/psql"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"

CREATION = ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
            "IN ROLE app_owner; ALTER ROLE \"{{name}}\" SET ROLE app_owner;")
REVOCATION = ("REASSIGN OWNED BY \"{{name}}\" TO app_owner; DROP OWNED BY \"{{name}}\"; "
              "DROP ROLE IF EXISTS \"{{name}}\";")
POLICY = """
path "database/creds/crdb-role" { capabilities = ["read"] }
path "sys/leases/revoke/database/creds/crdb-role/*" { capabilities = ["update"] }
"""

SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |WARNING: ThreadSanitizer")
LISTENING_RE = re.compile(r"listening on (?:127\.0\.0\.1:(\d+)|\[[^\]]+\]:(\d+)|(/\S+))")
SESSION_CLOSED_RE = re.compile(r"(C-\d+): .* session closed: result (\S+).* user (\S+) lease (\S+) duration")
SESSION_OPEN_RE = re.compile(r"(C-\d+): \S+ session open: user (\S+) lease (\S+) upstream (\S+) auth (\S+) "
                             r"connection (new|reused)")
STATS_RE = re.compile(r"stats: ((?:\w+=\d+ ?)+)")
ADMIN_LISTENING_RE = re.compile(r"admin: serving .* on http://(\[[^\]]+\]|[^:/\s]+):(\d+)")

# The [credentials] and [pool] tables every test vaultwire gets unless a class or a call
# overrides a key (issue 5 item 11): short broker timers, so the tests can wait for an
# idle lease's revocation and a token's recheck in seconds; no upstream reuse except
# where a test turns it on (test_reuse.py).
CREDENTIALS_DEFAULTS = {"revoke_idle_after": "2s", "token_recheck": "1s"}
POOL_DEFAULTS = {"reuse": False}
# Auth-failure throttling is off unless a test turns it on (test_throttle.py): tests that
# repeat a token Vault rejects expect Vault's 28P01 each time, not the throttle's 08004.
THROTTLE_DEFAULTS = {"base_delay": "off"}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"')


def toml_table(name, keys):
    """`[name]` with keys (a dict; a None value leaves the key out, i.e. vaultwire's default)."""
    lines = ["[%s]" % name] + ["%s = %s" % (k, toml_value(v)) for k, v in keys.items() if v is not None]
    return "\n".join(lines) + "\n"


def merged(*dicts):
    out = {}
    for d in dicts:
        out.update(d or {})
    return out


def child_env(changes):
    """The test's environment with `changes` applied (a None value removes the variable),
    without any VAULT_* variable of the machine's: each test says what it sets. None when
    there is nothing to change or remove (the child inherits as is)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_") or k == "VAULT_DEV_BIN"}
    if not changes and len(inherited) == len(os.environ):
        return None
    for k, v in (changes or {}).items():
        if v is None:
            inherited.pop(k, None)
        else:
            inherited[k] = v
    return inherited


def http_get(port, path):
    """GET http://127.0.0.1:PORT/PATH (vaultwire's admin endpoint): (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def write_secret(path, value):
    """A file only its owner may read (a role ID, a secret ID, a JWT, a users file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Vaultwire:
    """A vaultwire process with a config file; ready when it has logged `listeners`
    "listening on" lines (one per TCP listener plus one per unix socket)."""

    def __init__(self, workdir, config_text, name="vaultwire"):
        self.workdir = workdir
        self.name = name
        self.config_path = os.path.join(workdir, name + ".toml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.port = None
        self.ports = []
        self.log = None

    def start(self, listeners=1, timeout=30.0, preexec_fn=None, binary=None, env=None):
        """binary: the vaultwire executable (default $VAULTWIRE_BIN); env: variables set (a
        value None: removed) over the test's environment."""
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary or os.environ["VAULTWIRE_BIN"], "run", "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
                                     env=child_env(env))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTENING_RE.findall(self.output())
            if len(found) >= listeners:
                self.ports = [int(a or b) for a, b, _ in found if a or b]
                self.port = self.ports[0] if self.ports else None
                return
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited early:\n%s" % (self.name, self.output()))
            time.sleep(0.02)
        raise RuntimeError("%s did not start:\n%s" % (self.name, self.output()))

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=20.0, what=None):
        """Waits until the log matches `pattern` (a regex); returns the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.output()), timeout=timeout, what=what or "log line /%s/" % pattern)

    def opened_sessions(self):
        """[(session id, user, lease, upstream, auth, new|reused)] from the "session open" lines."""
        return SESSION_OPEN_RE.findall(self.output())

    def stats(self):
        """The key=value counters of the last "stats:" line (logged at shutdown), or None."""
        found = STATS_RE.findall(self.output())
        if not found:
            return None
        return {k: int(v) for k, v in (kv.split("=") for kv in found[-1].split())}

    def closed_sessions(self):
        """[(session id, result, user, lease)] from the "session closed" lines."""
        return SESSION_CLOSED_RE.findall(self.output())

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def audit_text(self):
        """The [audit] file and its rotated siblings (file.*), concatenated; None when no
        audit file is configured."""
        with open(self.config_path, "rb") as f:
            path = tomllib.load(f).get("audit", {}).get("file")
        if not path:
            return None
        text = ""
        for name in sorted(glob.glob(glob.escape(path)) + glob.glob(glob.escape(path) + ".*")):
            if not os.path.isfile(name):  # e.g. /dev/full (test_faults): endless, nothing written
                continue
            with open(name, errors="replace") as f:
                text += f.read()
        return text

    def metrics_page(self):
        """(status, body) of GET /metrics on the admin listener; None when it is off or the
        process is not running."""
        m = self.running() and ADMIN_LISTENING_RE.search(self.output())
        if not m:
            return None
        conn = http.client.HTTPConnection(m.group(1).strip("[]"), int(m.group(2)), timeout=20)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM, wait; returns the exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log and not self.log.closed:
            self.log.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------
# Raw pgwire client

SSL_REQUEST = struct.pack("!II", 8, 80877103)
GSSENC_REQUEST = struct.pack("!II", 8, 80877104)
TERMINATE = b"X\x00\x00\x00\x04"


def startup_packet(params, major=3, minor=0):
    body = struct.pack("!HH", major, minor)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def cancel_request(pid, secret):
    return struct.pack("!IIii", 16, 80877102, pid, secret)


def password_message(password):
    data = password.encode() + b"\0"
    return b"p" + struct.pack("!I", len(data) + 4) + data


def query_message(sql):
    data = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(data) + 4) + data


def error_fields(body):
    """ErrorResponse / NoticeResponse body -> {field code: value}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    return fields


class ClosedError(Exception):
    pass


class Raw:
    """One raw pgwire connection (TCP on loopback, or a unix socket path)."""

    def __init__(self, port=None, path=None, timeout=20.0):
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.status = None  # the transaction status of the last ReadyForQuery (I, T or E)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            chunk = b""
        if not chunk:
            raise ClosedError("connection closed by vaultwire")
        self.buf += chunk

    def recv_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_message(self):
        """(type char, body bytes)."""
        header = self.recv_exact(5)
        (length,) = struct.unpack("!I", header[1:5])
        t, body = chr(header[0]), self.recv_exact(length - 4)
        if t == "Z":
            self.status = body.decode()
        return t, body

    def has_pending(self, timeout=0.0):
        """True when bytes (or EOF) arrive within timeout."""
        if self.buf:
            return True
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def read_until(self, types):
        """Messages up to and including the first whose type is in `types`."""
        out = []
        while True:
            t, body = self.read_message()
            out.append((t, body))
            if t in types:
                return out

    def read_error(self):
        """The next message must be an ErrorResponse: its fields."""
        t, body = self.read_message()
        if t != "E":
            raise AssertionError("expected ErrorResponse, got %r %r" % (t, body[:200]))
        return error_fields(body)

    def closed_without_reply(self, timeout=10.0):
        """True when the peer closes (EOF or reset) without sending a single byte."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, ssl.SSLEOFError):
            return True
        except socket.timeout:
            return False
        return data == b""

    def start_tls(self, cafile, server_hostname="localhost"):
        """SSLRequest, expect 'S', TLS with verification against cafile."""
        self.send(SSL_REQUEST)
        answer = self.recv_exact(1)
        if answer != b"S":
            raise AssertionError("SSLRequest answered %r" % answer)
        ctx = ssl.create_default_context(cafile=cafile)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def login(self, token, user="crdb-role", database="defaultdb", params=(), minor=0):
        """Startup + token; returns the messages up to ReadyForQuery, or raises with the
        ErrorResponse fields."""
        self.send(startup_packet([("user", user), ("database", database)] + list(params), minor=minor))
        msgs = self.read_until({"R", "E"})
        if msgs[-1][0] == "E":
            raise LoginRefused(error_fields(msgs[-1][1]))
        if struct.unpack("!I", msgs[-1][1][:4])[0] != 3:
            raise AssertionError("expected AuthenticationCleartextPassword, got %r" % (msgs[-1],))
        self.send(password_message(token))
        msgs += self.read_until({"Z", "E"})
        if msgs[-1][0] == "E":
            raise LoginRefused(error_fields(msgs[-1][1]))
        return msgs

    def query(self, sql):
        """Simple query; returns (rows of text tuples, error fields or None)."""
        self.send(query_message(sql))
        rows, error = [], None
        for t, body in self.read_until({"Z"}):
            if t == "D":
                (n,) = struct.unpack("!H", body[:2])
                pos, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", body[pos:pos + 4])
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(body[pos:pos + ln].decode())
                        pos += ln
                rows.append(tuple(row))
            elif t == "E":
                error = error_fields(body)
        return rows, error


class LoginRefused(Exception):
    def __init__(self, fields):
        super().__init__("%s %s: %s" % (fields.get("S"), fields.get("C"), fields.get("M")))
        self.fields = fields


def backend_key(msgs):
    """(pid, secret) from the BackendKeyData among msgs."""
    for t, body in msgs:
        if t == "K":
            return struct.unpack("!ii", body)
    raise AssertionError("no BackendKeyData in %r" % [t for t, _ in msgs])


# ---------------------------------------------------------------------------
# TLS material for client-side listeners

def make_listener_cert(directory):
    """A CA and a server certificate for localhost / 127.0.0.1 made with the openssl CLI.
    Returns (ca_file, cert_file, key_file)."""
    ca_key, ca_crt = os.path.join(directory, "listener-ca.key"), os.path.join(directory, "listener-ca.crt")
    key, csr, crt = (os.path.join(directory, "listener." + x) for x in ("key", "csr", "crt"))
    ext = os.path.join(directory, "listener.ext")

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256",
        "-days", "2", "-subj", "/CN=vaultwire listener test CA", "-keyout", ca_key, "-out", ca_crt)
    run("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256",
        "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-sha256", "-days", "2",
        "-extfile", ext, "-out", crt)
    return ca_crt, crt, key


# ---------------------------------------------------------------------------
# Base test case


class ProxyTestCase(unittest.TestCase):
    """PostgreSQL (harness, TLS), vault-dev with the database engine and the role
    crdb-role (ownership pattern), a client token, and one vaultwire per class.

    Subclasses shape vaultwire with proxy_config() and add Vault objects in
    setup_vault(); listeners is how many "listening on" lines mean ready."""

    listeners = 1
    pg_auth = None
    pg_max_connections = None
    # Class-wide overrides of the [credentials], [pool] and [vault] keys (merged over
    # CREDENTIALS_DEFAULTS / POOL_DEFAULTS; a call's own dicts are merged over these).
    credentials_settings = {}
    # The roles route main allows (each needs a Vault role of that name).
    route_roles = ["crdb-role"]
    pool_settings = {}
    vault_settings = {}
    throttle_settings = {}

    @classmethod
    def setUpClass(cls):
        cls._any_failure = False
        cls.proxies = []
        cls.tmp = shared_tempdir("vwtest-%s." % cls.__name__)
        cls.pg = PgHarness(auth=cls.pg_auth, max_connections=cls.pg_max_connections)
        cls.vault = cls.make_vault_dev()
        cls.addClassCleanup(cls._teardown_fixtures)
        try:
            cls.pg.start()
            cls.vault.start()
            cls.root = cls.vault.client()
            cls.root.sys.enable_secrets_engine("database", path="database")
            cls.root.write("database/config/crdb-config", plugin_name="postgresql-database-plugin",
                           allowed_roles="*", connection_url=cls.pg.connection_url(),
                           username=cls.pg.admin_user, password=cls.pg.admin_password)
            cls.root.write("database/roles/crdb-role", db_name="crdb-config", creation_statements=CREATION,
                           revocation_statements=REVOCATION, default_ttl="1h", max_ttl="24h")
            cls.root.sys.create_or_update_policy("roach-client", POLICY)
            cls.token = cls.make_token(["roach-client"])
            cls.setup_vault()
            cls.port = free_port()
            cls.proxy = cls.start_proxy(cls.proxy_config(), listeners=cls.listeners)
        except BaseException:
            cls._any_failure = True
            raise

    @classmethod
    def make_vault_dev(cls):
        """The class' vault-dev, not started (cls.tmp exists): a subclass may give it
        listeners or TLS."""
        return VaultDev()

    @classmethod
    def make_token(cls, policies):
        return cls.root.auth.token.create(policies=policies, ttl="1h")["auth"]["client_token"]

    @classmethod
    def setup_vault(cls):
        pass

    @classmethod
    def local_secrets(cls):
        """Secrets the class gave vaultwire that Vault did not issue (local passwords and
        their verifiers' keys): the teardown scan looks for them too."""
        return []

    @classmethod
    def route_config(cls, name="main", extra=""):
        return f"""
[route.{name}]
host = "localhost"
port = {cls.pg.port}
ca_file = "{cls.pg.ca}"
roles = {toml_value(cls.route_roles)}
default_database = "defaultdb"
{extra}
"""

    @classmethod
    def vault_table(cls, vault=None):
        """The [vault] table: vault-dev's address plus vault_settings and `vault` keys."""
        return toml_table("vault", merged({"address": cls.vault.addr}, cls.vault_settings, vault))

    @classmethod
    def broker_tables(cls, credentials=None, pool=None, throttle=None):
        """The [credentials], [pool] and [throttle] tables: the defaults, then the class'
        settings, then `credentials` / `pool` / `throttle` (dicts; a None value drops the
        key). Every hand-written config includes this, since TOML forbids a second
        [credentials] table."""
        return (toml_table("credentials", merged(CREDENTIALS_DEFAULTS, cls.credentials_settings, credentials)) + "\n"
                + toml_table("pool", merged(POOL_DEFAULTS, cls.pool_settings, pool)) + "\n"
                + toml_table("throttle", merged(THROTTLE_DEFAULTS, cls.throttle_settings, throttle)))

    # vaultwire's admin listener defaults to 127.0.0.1:9187; tests that do not ask for
    # it (an [admin] table in extra) run without it, so parallel vaultwires do not compete.
    NO_ADMIN = '[admin]\nbind = ""\n'

    @classmethod
    def admin_table(cls, extra):
        return "" if re.search(r"^\s*\[admin\]", extra, re.M) else cls.NO_ADMIN

    @classmethod
    def single_listener_config(cls, port, extra="", credentials=None, pool=None, vault=None, throttle=None):
        """vault-dev, one plaintext listener on `port` to route main, the broker tables
        (broker_tables(credentials, pool, throttle)), trace logs, and `extra` TOML sections
        (e.g. a [limits] table; not [vault], [credentials], [pool] or [throttle]: pass those
        keys as dicts)."""
        for table in ("vault", "credentials", "pool", "throttle"):
            if re.search(r"^\s*\[%s\]" % table, extra, re.M):
                raise ValueError("pass [%s] keys as %s=..., not in extra (TOML forbids a second table)" % (table, table))
        return f"""
{cls.vault_table(vault)}
[[listener]]
bind = "127.0.0.1:{port}"
route = "main"
{cls.route_config()}
{extra}
{cls.broker_tables(credentials, pool, throttle)}
{cls.admin_table(extra)}
[log]
level = "trace"
"""

    @classmethod
    def proxy_config(cls):
        return cls.single_listener_config(cls.port)

    @classmethod
    def start_proxy(cls, config_text, listeners=1, name=None, env=None):
        """Starts another vaultwire (stopped and scanned at class teardown)."""
        name = name or "vaultwire-%d" % len(cls.proxies)
        proxy = Vaultwire(cls.tmp, config_text, name=name)
        cls.proxies.append(proxy)
        proxy.start(listeners=listeners, env=env)
        return proxy

    # -- teardown: secret scan with a positive control, sanitizer reports -------

    @classmethod
    def _teardown_fixtures(cls):
        problems = []
        try:
            problems += cls._scan_secrets()
            for p in cls.proxies:
                rc = p.stop()
                if rc not in (0, None) and not getattr(p, "expect_nonzero_exit", False):
                    problems.append("%s exited with status %s" % (p.name, rc))
                report = SANITIZER_RE.search(p.output())
                if report:
                    problems.append("%s printed a sanitizer report:\n%s" % (p.name, p.output()[report.start():][:3000]))
            if cls._any_failure or problems:
                cls._dump_logs()
        finally:
            cls.vault.stop()
            cls.pg.stop()
        if problems:
            raise AssertionError("\n".join(problems))

    @classmethod
    def _scan_secrets(cls):
        if cls.vault.proc is None or not cls.proxies:
            return []
        live = [p for p in cls.proxies if p.running()]
        if not live:
            return ["no vaultwire left running to plant the secret-scan canary in"]
        # Positive control: make the first live vaultwire write a canary into its log (the
        # refused role name) and require the scan of that real log to find it.
        canary = "canary-" + secrets.token_hex(12)
        with Raw(live[0].ports[0]) as r:
            r.send(startup_packet([("user", canary), ("database", "defaultdb")]))
            try:
                r.read_error()
            except ClosedError:
                pass
        live[0].wait_log(re.escape(canary), what="canary in %s's log" % live[0].name)
        if live[0].audit_text() is not None:
            wait_for(lambda: canary in live[0].audit_text(), what="canary in %s's audit file" % live[0].name)
        issued = cls.vault.dev("GET", "secrets")
        values = [v for v in issued.get("tokens", []) + issued.get("passwords", []) + cls.local_secrets()
                  if len(v) >= 8]
        problems = []
        if not issued.get("passwords"):
            problems.append("secret scan: vault-dev issued no passwords; the scan would prove nothing")
        if cls.token not in values:
            problems.append("secret scan: the client token is not among the issued tokens")
        if scan_for_secrets(live[0].output(), values + [canary]) != [canary]:
            problems.append("secret scan: the positive control was not found exactly")
        audit = live[0].audit_text()
        if audit is not None and scan_for_secrets(audit, values + [canary]) != [canary]:
            problems.append("secret scan: the positive control was not found exactly in the audit file")
        for p in cls.proxies:
            texts = [("log", p.output()), ("audit file", p.audit_text())]
            page = p.metrics_page()
            if page is not None:
                if page[0] != 200 or "\nvaultwire_" not in page[1]:
                    problems.append("secret scan: %s's /metrics answered %d without vaultwire_ metrics" % (p.name, page[0]))
                texts.append(("/metrics page", page[1]))
            for what, text in texts:
                hits = scan_for_secrets(text or "", values)
                if hits:
                    problems.append("%s's %s contains %d issued secret(s)" % (p.name, what, len(hits)))
        return problems

    @classmethod
    def _dump_logs(cls):
        out = sys.stderr
        for p in cls.proxies:
            out.write("\n===== %s log (%s) =====\n" % (p.name, cls.__name__))
            out.write("\n".join(p.output().splitlines()[-200:]) + "\n")
        out.write("===== vault-dev output (last 100 lines) =====\n")
        out.write("\n".join(cls.vault.output().splitlines()[-100:]) + "\n")
        out.write("===== PostgreSQL log (last 100 lines) =====\n")
        out.write("\n".join(cls.pg.log_text().splitlines()[-100:]) + "\n")
        out.flush()

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            type(self)._any_failure = True
        return out

    # -- helpers -----------------------------------------------------------

    def psql(self, sql, token=None, user="crdb-role", database="defaultdb", host="127.0.0.1", port=None,
             sslmode="disable", extra_env=None, args=()):
        env = dict(os.environ, PGPASSWORD=token if token is not None else self.token, PGCONNECT_TIMEOUT="20",
                   PGSSLMODE=sslmode)
        env.pop("PGSERVICE", None)
        if extra_env:
            env.update(extra_env)
        return subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                               "-h", host, "-p", str(port or self.proxy.port), "-U", user, "-d", database]
                              + list(args) + ["-c", sql],
                              env=env, capture_output=True, text=True, timeout=120)

    def connect(self, port=None, token=None, **kw):
        kw.setdefault("sslmode", "disable")
        return psycopg2.connect(host="127.0.0.1", port=port or self.proxy.port, user="crdb-role",
                                dbname="defaultdb", password=token if token is not None else self.token,
                                connect_timeout=20, **kw)

    def raw(self, port=None, **kw):
        return Raw(port or self.proxy.port, **kw)

    def refused(self, port=None, token=None, user="crdb-role", **kw):
        """Raw login that must be refused: the ErrorResponse fields."""
        with self.raw(port) as r:
            with self.assertRaises(LoginRefused) as cm:
                r.login(self.token if token is None else token, user=user, **kw)
            self.assertTrue(r.closed_without_reply(), "vaultwire kept the connection open after the refusal")
        return cm.exception.fields

    def assertRefusal(self, fields, sqlstate, message):
        self.assertEqual((fields.get("S"), fields.get("V"), fields.get("C"), fields.get("M")),
                         ("FATAL", "FATAL", sqlstate, message))

    def creds_reads(self, role="crdb-role"):
        """vault-dev's count of requests to database/creds/<role>."""
        return self.vault.dev("GET", "counters")["paths"].get("database/creds/" + role, 0)

    def lease_gone(self, lease, user=None, timeout=20):
        """Waits until vault-dev no longer holds `lease` and (if given) the SQL user is gone."""
        wait_for(lambda: lease not in self.vault.dev_lease_ids(), timeout=timeout, what="lease %s revoked" % lease)
        if user is not None:
            wait_for(lambda: not self.pg.role_exists(user), timeout=timeout, what="SQL user %s dropped" % user)

    def last_closed_session(self, proxy, result, timeout=20):
        """Waits for a "session closed" line with this result; returns (id, result, user, lease)
        of the newest one."""
        def find():
            rows = [row for row in proxy.closed_sessions() if row[1] == result]
            return rows[-1] if rows else None
        return wait_for(find, timeout=timeout, what="a session closed with result %s" % result)


def scan_for_secrets(text, values):
    """The values (in order, each once) that occur in text."""
    return [v for v in values if v in text]
