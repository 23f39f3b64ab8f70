"""Shared fixtures for the vault-dev conformance suite.

Each test class gets its own PostgreSQL 15 (tests/support/pg-harness, TLS on a free
loopback port) and its own vault-dev process, so the test files run in parallel.

Environment:
  VAULT_DEV_BIN  path to build-*/bin/vault-dev
  PG_HARNESS     path to tests/support/pg-harness

Run with Debian's interpreter (/usr/bin/python3): python3-hvac 0.11 and psycopg2.
"""

import datetime
import http.client
import json
import os
import queue
import re
import secrets
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import hvac
import hvac.exceptions
import psycopg2
import psycopg2.errors

# ---------------------------------------------------------------------------
# Constants from the specification (/work/shared/vault-api.md) and the tutorial.

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
BASE62_RE = "[0-9A-Za-z]"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Go multierror formatting, vault-api.md §1.
ACL_DENIED = "1 error occurred:\n\t* permission denied\n\n"
UNSUPPORTED_PATH = "1 error occurred:\n\t* unsupported path\n\n"
UNSUPPORTED_OPERATION = "1 error occurred:\n\t* unsupported operation\n\n"


def multierror(text):
    return "1 error occurred:\n\t* %s\n\n" % text


# The tutorial's role, verbatim (the CLI's backslash-newline joins the two lines;
# `vault read database/roles/crdb-role` shows them separated by one space).
TUTORIAL_CREATION = (
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; "
    "GRANT ALL ON DATABASE defaultdb TO \"{{name}}\";"
)

# The tutorial's policy.
ROACH_CLIENT_HCL = 'path "database/creds/crdb-role" {\n  capabilities = [ "read" ]\n}\n'

# DESIGN.md "Dynamic users and object ownership", with the harness' owner role.
OWNER_ROLE = "app_owner"
OWNER_CREATION = (
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
    "IN ROLE app_owner; ALTER ROLE \"{{name}}\" SET ROLE app_owner;"
)
OWNER_REVOCATION = (
    'REASSIGN OWNED BY "{{name}}" TO app_owner; DROP OWNED BY "{{name}}"; '
    'DROP ROLE IF EXISTS "{{name}}";'
)

DEV_DEFAULT_MAX_TTL = 768 * 3600  # 2764800 s, vault-api.md §1


def go_duration(seconds):
    """Format whole seconds like Go's time.Duration.String(): 1h0m0s, 59m10s, 5s, 0s."""
    seconds = int(seconds)
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return "%s%dh%dm%ds" % (sign, h, m, s)
    if m:
        return "%s%dm%ds" % (sign, m, s)
    return "%s%ds" % (sign, s)


_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text):
    """Parse RFC3339 / RFC3339Nano (Go's time.Time JSON) into an aware datetime."""
    m = _RFC3339_RE.match(text)
    if not m:
        raise AssertionError("not an RFC3339 timestamp: %r" % (text,))
    year, month, day, hour, minute, sec, frac, zone = m.groups()
    micro = int((frac or "0").ljust(9, "0")[:6])
    if zone == "Z":
        tz = datetime.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(sec), micro, tz)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def random_token():
    return "hvs." + "".join(secrets.choice(BASE62) for _ in range(24))


def wait_for(predicate, timeout=30.0, interval=0.05, what="condition"):
    """Poll predicate until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last value %r)" % (timeout, what, last))
        time.sleep(interval)


def first_unreachable_dir(path):
    """The first directory from / down to path that other users (neither owner nor
    group) cannot search, or None."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(1, len(parts) + 1):
        d = os.sep.join(parts[:i]) or os.sep
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def shared_tempdir(prefix):
    """A new directory (mode 0755) that other users can enter: PostgreSQL runs as user
    postgres when the tests run as root, and some tests run vaultwire as nobody. Made
    under $TMPDIR when every parent of it is searchable by others, else under /tmp."""
    base = tempfile.gettempdir()
    if first_unreachable_dir(base):
        base = "/tmp"
    d = tempfile.mkdtemp(prefix=prefix, dir=base)
    os.chmod(d, 0o755)
    return d


def _require_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("%s is not set (see tests/vault-dev/CMakeLists.txt)" % name)
    return value


# ---------------------------------------------------------------------------
# PostgreSQL


class PgHarness:
    def __init__(self, auth=None, max_connections=None):
        self.script = _require_env("PG_HARNESS")
        self.auth = auth
        self.max_connections = max_connections
        self.dir = None
        self.env = {}
        self._admin = None
        self._admin_lock = threading.Lock()

    def start(self):
        self.dir = shared_tempdir("vaultdev-conf-pg-")
        cmd = [self.script, "start", self.dir]
        if self.auth:
            cmd += ["--auth", self.auth]
        if self.max_connections:
            cmd += ["--max-connections", str(self.max_connections)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError("pg-harness start failed (%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
        for line in proc.stdout.splitlines():
            if "=" in line:
                key, _, value = line.partition("=")
                self.env[key.strip()] = value.strip()
        for key in ("PGH_HOST", "PGH_PORT", "PGH_CA", "PGH_ADMIN_USER", "PGH_ADMIN_PASSWORD", "PGH_DATABASE"):
            if key not in self.env:
                raise RuntimeError("pg-harness did not print %s:\n%s" % (key, proc.stdout))

    def stop(self):
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:
                pass
            self._admin = None
        if self.dir:
            subprocess.run([self.script, "stop", self.dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.dir = None

    def restart(self):
        """Fast shutdown (sessions end with 57P01) and start again on the same port;
        returns once a connection succeeds. The admin connection is reopened on next use."""
        with self._admin_lock:
            if self._admin is not None:
                try:
                    self._admin.close()
                except Exception:
                    pass
                self._admin = None
        proc = subprocess.run([self.script, "restart", self.dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError("pg-harness restart failed (%d):\n%s" % (proc.returncode, proc.stderr))

    @property
    def host(self):
        return self.env["PGH_HOST"]

    @property
    def port(self):
        return int(self.env["PGH_PORT"])

    @property
    def ca(self):
        return self.env["PGH_CA"]

    @property
    def admin_user(self):
        return self.env["PGH_ADMIN_USER"]

    @property
    def admin_password(self):
        return self.env["PGH_ADMIN_PASSWORD"]

    @property
    def database(self):
        return self.env.get("PGH_DATABASE", "defaultdb")

    def connection_url(self, templated=True, user=None, password=None):
        """The tutorial's templated URL, TLS verify-full against the harness CA."""
        if templated:
            cred = "{{username}}:{{password}}"
        else:
            cred = "%s:%s" % (urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""))
        return "postgresql://%s@%s:%d/%s?sslmode=verify-full&sslrootcert=%s" % (
            cred, self.host, self.port, self.database, self.ca)

    def log_text(self):
        path = self.env.get("PGH_LOG")
        if not path:
            return ""
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError as e:
            return "(cannot read %s: %s)" % (path, e)

    def connect(self, user, password, dbname=None, **kw):
        """A TLS verify-full connection, as the tutorial's clients make."""
        return psycopg2.connect(host=self.host, port=self.port, user=user, password=password,
                                dbname=dbname or self.database, sslmode="verify-full",
                                sslrootcert=self.ca, connect_timeout=10, **kw)

    def admin_query(self, sql, params=None):
        """Run one statement as the superuser (autocommit) and return all rows (or None)."""
        with self._admin_lock:
            if self._admin is None or self._admin.closed:
                self._admin = self.connect(self.admin_user, self.admin_password)
                self._admin.autocommit = True
            with self._admin.cursor() as cur:
                cur.execute(sql, params)
                if cur.description is None:
                    return None
                return cur.fetchall()

    def role(self, name):
        """pg_roles row for name as a dict, or None."""
        rows = self.admin_query(
            "SELECT rolname, rolcanlogin, rolvaliduntil, rolconfig FROM pg_roles WHERE rolname = %s", (name,))
        if not rows:
            return None
        r = rows[0]
        return {"rolname": r[0], "rolcanlogin": r[1], "rolvaliduntil": r[2], "rolconfig": r[3]}

    def role_exists(self, name):
        return self.role(name) is not None

    def roles_with_prefix(self, prefix):
        rows = self.admin_query("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1", (prefix,))
        return [r[0] for r in rows]

    def member_of(self, name):
        rows = self.admin_query(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s ORDER BY 1", (name,))
        return [r[0] for r in rows]

    def count_existing(self, names):
        rows = self.admin_query("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))
        return rows[0][0]


# ---------------------------------------------------------------------------
# vault-dev


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "RawResponse(%d, %r)" % (self.status, self.body[:500])


def make_tls_material(directory, server_names=("localhost", "127.0.0.1")):
    """TLS material made with the openssl CLI (P-256): a server CA and a server
    certificate for `server_names` (DNS names or IPv4 literals), a client CA with a
    client certificate, and a second client certificate from another CA. Returns a dict
    of paths: server_ca, server_cert, server_key, client_ca, client_cert, client_key,
    stranger_cert, stranger_key."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)

    def path(name):
        return os.path.join(directory, name)

    def ca(name):
        run("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256",
            "-days", "2", "-subj", "/CN=vault-dev test %s" % name, "-keyout", path(name + ".key"),
            "-out", path(name + ".crt"))

    def leaf(name, ca_name, cn, ext):
        run("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256",
            "-subj", "/CN=" + cn, "-keyout", path(name + ".key"), "-out", path(name + ".csr"))
        with open(path(name + ".ext"), "w") as f:
            f.write(ext + "basicConstraints=CA:FALSE\n")
        run("x509", "-req", "-in", path(name + ".csr"), "-CA", path(ca_name + ".crt"), "-CAkey",
            path(ca_name + ".key"), "-CAcreateserial", "-sha256", "-days", "2", "-extfile", path(name + ".ext"),
            "-out", path(name + ".crt"))

    for name in ("server-ca", "client-ca", "stranger-ca"):
        ca(name)
    sans = ",".join(("IP:" if re.match(r"^[0-9.]+$", n) else "DNS:") + n for n in server_names)
    leaf("server", "server-ca", server_names[0], "subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % sans)
    leaf("client", "client-ca", "vaultwire", "extendedKeyUsage=clientAuth\n")
    leaf("stranger", "stranger-ca", "stranger", "extendedKeyUsage=clientAuth\n")
    return {"server_ca": path("server-ca.crt"), "server_cert": path("server.crt"), "server_key": path("server.key"),
            "client_ca": path("client-ca.crt"), "client_cert": path("client.crt"), "client_key": path("client.key"),
            "stranger_cert": path("stranger.crt"), "stranger_key": path("stranger.key")}


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket (vault-dev --unix-socket)."""

    def __init__(self, socket_path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class VaultDev:
    LISTEN_RE = re.compile(r"vault-dev listening on ((https?)://127\.0\.0\.1:(\d+)) root_token=(\S+)")

    def __init__(self, extra_args=None, ca=None, client_cert=None):
        """ca: the CA file to verify an https vault-dev with; client_cert: (cert, key)
        this fixture presents (vault-dev --tls-client-ca)."""
        self.binary = _require_env("VAULT_DEV_BIN")
        self.extra_args = list(extra_args or [])
        self.ca = ca
        self.client_cert = client_cert
        self.scheme = None
        self.root_token = random_token()
        self.proc = None
        self.exit_problem = None
        self.addr = None
        self.port = None
        self.lines = []
        self._lines_lock = threading.Lock()
        self._reader = None
        self._clients = []

    def start(self, timeout=30.0):
        # "{root_token}" in an argument stands for the root token (e.g. --auto-auth-force).
        extra = [a.replace("{root_token}", self.root_token) for a in self.extra_args]
        cmd = [self.binary, "--listen", "127.0.0.1:0", "--root-token", self.root_token] + extra
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
        ready = queue.Queue()

        def reader():
            # Keep draining the pipe for the process' whole life so it never blocks.
            for line in self.proc.stdout:
                with self._lines_lock:
                    self.lines.append(line.rstrip("\n"))
                m = self.LISTEN_RE.search(line)
                if m:
                    ready.put(m)
            ready.put(None)

        self._reader = threading.Thread(target=reader, name="vault-dev-output", daemon=True)
        self._reader.start()
        try:
            m = ready.get(timeout=timeout)
        except queue.Empty:
            m = None
        if m is None:
            self.stop()
            raise RuntimeError("vault-dev did not report readiness within %.0fs:\n%s" % (timeout, self.output()))
        self.addr = m.group(1)
        self.scheme = m.group(2)
        self.port = int(m.group(3))
        if m.group(4) != self.root_token:
            raise RuntimeError("vault-dev reported root_token=%s, expected the one given" % m.group(4))

    def stop(self):
        for c in self._clients:
            try:
                c.adapter.close()
            except Exception:
                pass
        self._clients = []
        if self.proc is None:
            return
        self.exit_problem = None
        if self.proc.poll() is not None:
            self.exit_problem = "vault-dev had exited by itself with status %s" % self.proc.returncode
        else:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
                if self.proc.returncode != 0:
                    self.exit_problem = "vault-dev exited with status %s after SIGTERM" % self.proc.returncode
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.exit_problem = "vault-dev did not exit within 10s of SIGTERM"
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.proc.stdout.close()
        self.proc = None

    SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |WARNING: ThreadSanitizer")

    def sanitizer_report(self):
        """The output from the first sanitizer report on, or None."""
        text = self.output()
        m = self.SANITIZER_RE.search(text)
        return text[max(0, text.rfind("\n", 0, m.start()) + 1):] if m else None

    def leaked_secrets(self, issued):
        """Lines of the output (other than the readiness line, which names the root token by
        design) that contain an issued token or password; the secret itself is masked."""
        values = [v for v in issued.get("tokens", []) + issued.get("passwords", []) + issued.get("secret_ids", [])
                  if len(v) >= 8]
        found = []
        with self._lines_lock:
            lines = list(self.lines)
        for line in lines:
            if self.LISTEN_RE.search(line):
                continue
            for v in values:
                if v in line:
                    found.append(line.replace(v, "<secret>")[:300])
                    break
        return found

    def output(self):
        with self._lines_lock:
            return "\n".join(self.lines)

    # -- clients ----------------------------------------------------------

    def client(self, token=None, namespace=None, **kw):
        """An hvac client with its own requests session. token=None means root."""
        if self.scheme == "https":
            kw.setdefault("url", "https://localhost:%d" % self.port)
            kw.setdefault("verify", self.ca)
            if self.client_cert:
                kw.setdefault("cert", tuple(self.client_cert))
        kw.setdefault("url", self.addr)
        c = hvac.Client(token=self.root_token if token is None else token, namespace=namespace, **kw)
        self._clients.append(c)  # sessions are closed at stop()
        return c

    def raw(self, method, path, body=None, token=None, namespace=None, headers=None, no_token=False):
        """One HTTP request with http.client (any verb, exact bytes). path is after /v1/ unless it
        starts with '/'. token=None means root; no_token=True sends no token header."""
        if not path.startswith("/"):
            path = "/v1/" + path
        hdrs = {}
        if not no_token:
            hdrs["X-Vault-Token"] = self.root_token if token is None else token
        if namespace:
            hdrs["X-Vault-Namespace"] = namespace
        if headers:
            hdrs.update(headers)
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if isinstance(data, str):
                data = data.encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        conn = self.connection()
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            return RawResponse(resp.status, resp.getheaders(), payload)
        finally:
            conn.close()

    def connection(self, unix_socket=None, cert=None):
        """An http.client connection to this vault-dev: over `unix_socket` when given, with
        TLS (the fixture's CA, and `cert` or the fixture's client certificate) for https."""
        if unix_socket:
            return UnixHTTPConnection(unix_socket)
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca)
            chain = cert or self.client_cert
            if chain:
                ctx.load_cert_chain(*chain)
            return http.client.HTTPSConnection("localhost", self.port, context=ctx, timeout=30)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def dev(self, method, path, body=None):
        """The /_dev/ test controls (JSON, no auth). Returns parsed JSON or None."""
        resp = self.raw(method, "/_dev/" + path.lstrip("/"), body=body, no_token=True)
        if resp.status >= 300:
            raise AssertionError("/_dev/%s -> %d %r" % (path, resp.status, resp.body))
        if not resp.body.strip():
            return None
        return resp.json()

    def dev_leases(self):
        return self.dev("GET", "leases")

    def dev_lease_ids(self):
        return {entry["lease_id"] for entry in self.dev_leases()}


# ---------------------------------------------------------------------------
# Base test case


class VaultDevTestCase(unittest.TestCase):
    """Starts a PostgreSQL harness and a vault-dev per test class; prints both logs when a
    test of the class failed."""

    pg_auth = None
    pg_max_connections = None
    vault_args = None

    @classmethod
    def vault_kwargs(cls):
        """Extra VaultDev(...) arguments for the class' vault-dev (ca=, client_cert=)."""
        return {}

    @classmethod
    def setUpClass(cls):
        cls._any_failure = False
        cls.pg = PgHarness(auth=cls.pg_auth, max_connections=cls.pg_max_connections)
        kwargs = cls.vault_kwargs()  # may set cls.vault_args too
        cls.vault = VaultDev(extra_args=cls.vault_args, **kwargs)
        cls.addClassCleanup(cls._stop_fixtures)
        try:
            cls.pg.start()
            cls.vault.start()
        except BaseException:
            cls._any_failure = True
            raise
        cls.root = cls.vault.client()

    @classmethod
    def _stop_fixtures(cls):
        problems = []
        try:
            secrets_issued = None
            if cls.vault.proc is not None and cls.vault.proc.poll() is None:
                try:
                    secrets_issued = cls.vault.dev("GET", "secrets")
                except Exception as e:
                    problems.append("GET /_dev/secrets failed: %r" % e)
            cls.vault.stop()
            problems += [p for p in (cls.vault.exit_problem, cls.vault.sanitizer_report()) if p]
            if secrets_issued:
                leaked = cls.vault.leaked_secrets(secrets_issued)
                if leaked:
                    problems.append("vault-dev output contains %d issued token(s)/password(s), e.g. in: %s"
                                    % (len(leaked), leaked[0]))
            if cls._any_failure or problems:
                cls.dump_logs()
        finally:
            cls.pg.stop()
        if problems:
            # Reported by unittest as an error of the class: a crash, a hang on SIGTERM or a
            # sanitizer report (ASan/UBSan builds) fails the file even if every test passed.
            raise AssertionError("vault-dev: " + "\n".join(problems)[:4000])

    @classmethod
    def dump_logs(cls):
        out = sys.stderr
        out.write("\n===== vault-dev output (%s) =====\n" % cls.__name__)
        text = cls.vault.output() if cls.vault else ""
        out.write("\n".join(text.splitlines()[-300:]) + "\n")
        out.write("===== PostgreSQL server log (%s) =====\n" % cls.__name__)
        text = cls.pg.log_text() if cls.pg else ""
        out.write("\n".join(text.splitlines()[-300:]) + "\n")
        out.write("===== end of logs =====\n")
        out.flush()

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
        out = super().run(result)
        after = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
        if after > before:
            type(self)._any_failure = True
        return out

    # -- helpers ----------------------------------------------------------

    def new_token_lease(self, path, create, client=None):
        """Runs create() and returns (its result, the lease ID that appeared under path),
        listed through sys/leases/lookup with client (root by default)."""
        client = client or self.root

        def keys():
            try:
                return set(client.sys.list_leases(path)["data"]["keys"])
            except hvac.exceptions.InvalidPath:
                return set()

        before = keys()
        result = create()
        new = keys() - before
        self.assertEqual(len(new), 1, new)
        return result, path + new.pop()

    def client(self, token=None, namespace=None):
        return self.vault.client(token=token, namespace=namespace)

    @classmethod
    def setup_engine(cls, client=None, mount="database", config="crdb-config", allowed_roles="crdb-role",
                     roles=None):
        """Enable the database engine, write a templated config and roles.
        roles: {name: dict(creation_statements=..., default_ttl=..., ...)}."""
        client = client or cls.root
        client.sys.enable_secrets_engine("database", path=mount)
        client.secrets.database.configure(
            name=config, plugin_name="postgresql-database-plugin", allowed_roles=allowed_roles,
            connection_url=cls.pg.connection_url(), username=cls.pg.admin_user,
            password=cls.pg.admin_password, mount_point=mount)
        for name, spec in (roles or {}).items():
            spec = dict(spec)
            spec.setdefault("db_name", config)
            client.secrets.database.create_role(name=name, mount_point=mount, **spec)

    def assertVaultError(self, exc_class, errors, func, *args, **kwargs):
        """Call func and check it raises exc_class with exactly these errors."""
        with self.assertRaises(exc_class) as cm:
            func(*args, **kwargs)
        self.assertEqual(cm.exception.errors, errors, "error list of %s" % exc_class.__name__)
        return cm.exception

    def assertRawError(self, resp, status, errors):
        self.assertEqual(resp.status, status, resp)
        self.assertEqual(resp.header("Content-Type"), "application/json", resp.headers)
        self.assertEqual(resp.json(), {"errors": errors})

    def assertUsername(self, username, display, role, t_before, t_after):
        """vault-api.md §5: v-<display|8>-<role|8>-<20 base62>-<unix>, truncated to 63."""
        prefix = "v-%s-%s-" % (display[:8], role[:8])
        m = re.match(r"^%s(%s{20})-(\d+)$" % (re.escape(prefix), BASE62_RE), username)
        self.assertIsNotNone(m, "username %r does not match %s<20 base62>-<unix>" % (username, prefix))
        ts = int(m.group(2))
        self.assertTrue(int(t_before) - 1 <= ts <= int(t_after) + 1,
                        "unix time %d in username outside [%d, %d]" % (ts, t_before, t_after))
        self.assertLessEqual(len(username), 63)

    def assertPassword(self, password):
        """vault-api.md §5: 20 chars of -0-9A-Za-z with at least one lower, upper, digit and '-'."""
        self.assertRegex(password, r"^[-0-9A-Za-z]{20}$")
        self.assertRegex(password, "[a-z]")
        self.assertRegex(password, "[A-Z]")
        self.assertRegex(password, "[0-9]")
        self.assertIn("-", password)

    def assertLeaseId(self, lease_id, path, ns_suffix=None):
        if ns_suffix is None:
            pattern = r"^%s/%s{24}$" % (re.escape(path), BASE62_RE)
        else:
            pattern = r"^%s/%s{24}\.%s$" % (re.escape(path), BASE62_RE, re.escape(ns_suffix))
        self.assertRegex(lease_id, pattern)

    def assertValidUntil(self, username, expected_epoch, slack=3):
        row = self.pg.role(username)
        self.assertIsNotNone(row, "SQL role %s missing" % username)
        self.assertIsNotNone(row["rolvaliduntil"], "SQL role %s has no VALID UNTIL" % username)
        got = row["rolvaliduntil"].timestamp()
        self.assertTrue(abs(got - expected_epoch) <= slack,
                        "VALID UNTIL of %s is %s (%.0f), expected %.0f +- %ds" % (
                            username, row["rolvaliduntil"], got, expected_epoch, slack))
        return got

    def wait_role_gone(self, username, timeout=30):
        wait_for(lambda: not self.pg.role_exists(username), timeout=timeout,
                 what="SQL role %s to be dropped" % username)

    def wait_lease_gone(self, lease_id, timeout=30):
        wait_for(lambda: lease_id not in self.vault.dev_lease_ids(), timeout=timeout,
                 what="lease %s to disappear from /_dev/leases" % lease_id)
