"""Secret hygiene of the process image (issue 8 item 7).

A Release vaultwire (Vault over HTTPS) serves sessions with several tokens (psql in plaintext, psycopg2
over a TLS listener, a query error, a revoked token, a token Vault never issued, a
role the route refuses); once they ended and vault-dev holds no lease, a core image of
the still-running process (`gcore`) contains none of the tokens and passwords
vault-dev issued (GET /_dev/secrets), nor the bogus token. The positive control comes
first: a core taken while a session is live must contain that session's token and
its credential's password, the only one issued by then, or the scan proves nothing.
The scenario runs against a SCRAM upstream and against one that asks for the password
in clear (over TLS).

gcore attaches with ptrace, which a non-dumpable process refuses to everyone but
root: the vaultwire under gcore runs with [runtime] allow_core_dumps = true. With the
default (false) vaultwire sets RLIMIT_CORE to 0 and makes itself non-dumpable, which
is checked from the outside: /proc/<pid>/limits, /proc/<pid>/ owned by root while
the process runs as another user, and gcore from that user refused.

The binary is VAULTWIRE_RELEASE_BIN (scripts/test.sh builds build-release/ and sets
it): a core of an ASan process is tens of GB (shadow memory) and ASan's quarantine
holds freed blocks back on purpose, so only a Release build answers the question.
Without the variable the test fails, not skips: a skip would let the suite pass
without ever looking.
"""
import mmap
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (ProxyTestCase, Vaultwire, first_unreachable_dir, free_port,  # noqa: E402
                           make_listener_cert, wait_for)

import psycopg2  # noqa: E402

GCORE = shutil.which("gcore") or "/usr/bin/gcore"
NOBODY = 65534


def release_binary():
    path = os.environ.get("VAULTWIRE_RELEASE_BIN")
    if not path:
        raise AssertionError("VAULTWIRE_RELEASE_BIN is not set: this test needs a Release vaultwire "
                             "(scripts/test.sh builds build-release/bin/vaultwire and sets it)")
    if not os.access(path, os.X_OK):
        raise AssertionError("VAULTWIRE_RELEASE_BIN=%s is not an executable" % path)
    with open(path, "rb") as f:
        if b"libasan.so" in f.read():
            raise AssertionError("VAULTWIRE_RELEASE_BIN=%s is a sanitizer build" % path)
    return path


def yama_restricts_ptrace():
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return f.read().strip() != "0"
    except FileNotFoundError:
        return False


def version_commit(binary):
    out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"^commit:?\s+(\S+)", out, re.M)
    return m.group(1) if m else out


def gcore(pid, prefix, user=None):
    """Runs gcore on pid (as `user` when given); returns (CompletedProcess, core path)."""
    kw = {}
    if user is not None:
        kw["preexec_fn"] = lambda: (os.setgid(user), os.setuid(user))
    r = subprocess.run([GCORE, "-o", prefix, str(pid)], capture_output=True, text=True, timeout=300, **kw)
    return r, "%s.%d" % (prefix, pid)


def read_core(path):
    """The core image, mapped (hundreds of MB: not read into memory); the file is
    removed at once, the mapping stays valid."""
    try:
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    finally:
        os.unlink(path)


def found_in(core, values):
    """The values (each once, in order) whose bytes occur in the core image."""
    return [v for v in values if core.find(v.encode()) != -1]


def describe_hits(core, values, issued):
    """Where each value sits in the core, with 48 bytes either side; the value itself is
    masked."""
    lines = []
    for v in values:
        kind = "password" if v in issued.get("passwords", []) else "token"
        b = v.encode()
        offsets = [m.start() for m in re.finditer(re.escape(b), core)]
        lines.append("%s %s...: %d occurrence(s)" % (kind, v[:4], len(offsets)))
        for off in offsets[:4]:
            around = core[max(0, off - 48):off + len(b) + 48].replace(b, b"<SECRET>")
            lines.append("  at core offset %#x: %r" % (off, around))
    return "\n".join(lines)


class TlsRelay:
    """HTTPS in front of vault-dev (which the fixture runs over plain HTTP), so vaultwire
    talks to Vault as in production: through libcurl's OpenSSL. Each connection is
    decrypted here and forwarded as is; vault-dev still answers every request."""

    def __init__(self, cert, key, target_port):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            conn.close()
            return
        try:
            while True:
                ready = [tls] if tls.pending() else select.select([tls, upstream], [], [])[0]
                for r in ready:
                    data = r.recv(65536)
                    if not data:
                        return
                    (upstream if r is tls else tls).sendall(data)
        except OSError:
            pass
        finally:
            tls.close()
            upstream.close()


class CoreImageScenario:
    """Mixed into a ProxyTestCase: the Release vaultwire under test, a TLS listener, and
    the sessions-then-gcore scenario."""

    listeners = 2

    @classmethod
    def setUpClass(cls):
        # Every vaultwire this class starts is the Release binary.
        cls.release_bin = release_binary()
        cls.test_tree_bin = os.environ.get("VAULTWIRE_BIN")
        os.environ["VAULTWIRE_BIN"] = cls.release_bin
        super().setUpClass()

    @classmethod
    def proxy_config(cls):
        cls.client_ca, cert, key = make_listener_cert(cls.tmp)
        cls.tls_port = free_port()
        cls.vault_relay = TlsRelay(cert, key, cls.vault.port)
        cls.vault_settings = {"address": "https://localhost:%d" % cls.vault_relay.port, "ca_file": cls.client_ca}
        return super().proxy_config() + f"""
[[listener]]
bind = "127.0.0.1:{cls.tls_port}"
tls_cert = "{cert}"
tls_key = "{key}"
route = "main"

[runtime]
threads = 2
# gcore needs a dumpable process (see the module docstring).
allow_core_dumps = true
"""

    def tls_connect(self, token):
        return psycopg2.connect(host="127.0.0.1", port=self.tls_port, user="crdb-role", dbname="defaultdb",
                                password=token, sslmode="verify-full", sslrootcert=self.client_ca,
                                connect_timeout=20)

    def core_of_proxy(self, name):
        r, path = gcore(self.proxy.proc.pid, os.path.join(self.tmp, name))
        self.assertEqual(r.returncode, 0, "gcore failed:\n%s%s" % (r.stdout, r.stderr))
        return read_core(path)

    def test_core_image_holds_no_secret_once_sessions_ended(self):
        self.assertTrue(self.proxy.running())
        issued = self.vault.dev("GET", "secrets")
        self.assertEqual(issued["passwords"], [], "a credential was issued before the control")

        # Positive control: a live session's token and its password (the only password
        # issued so far) are in the image.
        live_token = self.make_token(["roach-client"])
        live = self.tls_connect(live_token)
        with live.cursor() as cur:
            cur.execute("SELECT session_user")
            live_user = cur.fetchone()[0]
        issued = self.vault.dev("GET", "secrets")
        self.assertEqual(len(issued["passwords"]), 1)
        core = self.core_of_proxy("core-live")
        self.assertEqual(found_in(core, [live_token] + issued["passwords"]), [live_token] + issued["passwords"],
                         "the control failed: a live session's token and password are not in the core image")
        core.close()
        live.close()

        # Sessions with several tokens; some end in errors.
        tokens = [self.make_token(["roach-client"]) for _ in range(3)]
        r = self.psql("SELECT 1", token=tokens[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.tls_connect(tokens[1]) as c, c.cursor() as cur:
            cur.execute("SELECT 1")
            with self.assertRaises(psycopg2.errors.UndefinedTable):
                cur.execute("SELECT * FROM no_such_table")
        c.close()
        conn = self.connect(token=tokens[2])
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        revoked = self.make_token(["roach-client"])
        doomed = self.tls_connect(revoked)
        with doomed.cursor() as cur:
            cur.execute("SELECT 1")
        self.root.auth.token.revoke(revoked)
        self.proxy.wait_log(r"token revoked or expired", timeout=30)
        doomed.close()
        conn.close()
        bogus = "hvs." + "Bogus" * 5  # shaped like a token, never issued
        r = self.psql("SELECT 1", token=bogus)
        self.assertIn("Vault rejected the token", r.stderr)  # 28P01 (psql prints no SQLSTATE here)
        r = self.psql("SELECT 1", token=tokens[0], user="not-a-role")
        self.assertIn("is not allowed on this listener", r.stderr)  # 28000

        # Everything ends: no lease left in Vault, every token forgotten by vaultwire.
        wait_for(lambda: not self.vault.dev_leases(), timeout=60, what="every lease revoked")
        issued = self.vault.dev("GET", "secrets")
        client_tokens = [live_token, revoked] + tokens
        self.assertTrue(set(client_tokens) <= set(issued["tokens"]))
        self.assertEqual(len(issued["passwords"]), 5, "one credential per token that logged in")
        wait_for(lambda: len(re.findall(r"credentials: \S+ \S+ forgotten", self.proxy.output())) >= len(client_tokens),
                 timeout=30, what="vaultwire forgetting every token")

        core = self.core_of_proxy("core-after")
        secrets_ = [v for v in issued["tokens"] + issued["passwords"] + [bogus] if len(v) >= 8]
        hits = found_in(core, secrets_)
        self.assertEqual(hits, [], "the core image still holds secrets:\n" + describe_hits(core, hits, issued))


class CoreImageScram(CoreImageScenario, ProxyTestCase):
    """Upstream SCRAM-SHA-256 (the harness' default): the password feeds PBKDF2."""

    def test_release_binary_is_from_the_same_commit_as_the_test_tree(self):
        self.assertIsNotNone(self.test_tree_bin)
        self.assertEqual(version_commit(self.release_bin), version_commit(self.test_tree_bin))

    # -- the default: no core, not dumpable ----------------------------------

    def start_as_user(self, name, runtime):
        """A vaultwire started with RLIMIT_CORE raised to its hard limit (so the default
        has something to lower), as user nobody when the test runs as root; the binary,
        its config and the route's CA copied where that user can read them (the clone
        may sit in a directory only root can enter, such as /root)."""
        user = NOBODY if os.geteuid() == 0 else None
        where = os.path.join(self.tmp, "as-user-%s" % name)
        os.makedirs(where)
        os.chmod(where, 0o755)
        if user is not None:
            blocked = first_unreachable_dir(where)
            if blocked:
                self.skipTest("user nobody cannot enter %s (mode %o), so no copy of vaultwire there can run "
                              "as that user" % (blocked, os.stat(blocked).st_mode & 0o7777))
        binary = os.path.join(where, "vaultwire")
        shutil.copyfile(self.release_bin, binary)
        os.chmod(binary, 0o755)
        ca = os.path.join(where, "route-ca.crt")
        shutil.copyfile(self.pg.ca, ca)
        os.chmod(ca, 0o644)
        text = self.single_listener_config(free_port()).replace(self.pg.ca, ca) + runtime
        proxy = Vaultwire(where, text, name=name)
        type(self).proxies.append(proxy)

        def prepare():
            import resource
            _, hard = resource.getrlimit(resource.RLIMIT_CORE)
            resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
            if user is not None:
                os.setgid(user)
                os.setuid(user)

        proxy.start(preexec_fn=prepare, binary=binary)
        return proxy, user

    def writable_dir(self):
        d = os.path.join(self.tmp, "cores")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)
        return d

    def core_limit(self, pid):
        with open("/proc/%d/limits" % pid) as f:
            m = re.search(r"^Max core file size\s+(\S+)\s+(\S+)", f.read(), re.M)
        return m.group(1), m.group(2)

    def proc_owner_and_uid(self, pid):
        owner = os.stat("/proc/%d/status" % pid).st_uid
        with open("/proc/%d/status" % pid) as f:
            uid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
        return owner, uid

    def test_default_no_core_file_and_not_dumpable(self):
        proxy, user = self.start_as_user("default-dumps", "")
        pid = proxy.proc.pid
        self.assertEqual(self.core_limit(pid), ("0", "0"))
        owner, uid = self.proc_owner_and_uid(pid)
        self.assertNotEqual(uid, 0, "needs to run as root (vaultwire as nobody) or as a non-root user")
        self.assertEqual(owner, 0, "/proc/<pid>/ of a non-dumpable process belongs to root")
        r, path = gcore(pid, os.path.join(self.writable_dir(), "core-refused"), user=user)
        self.assertFalse(os.path.exists(path), "gcore from the same user wrote a core of a non-dumpable process")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(proxy.stop(), 0)

    def test_allow_core_dumps_leaves_both_as_inherited(self):
        # The control for the test above: the same observables change with the key.
        proxy, user = self.start_as_user("allowed-dumps", "\n[runtime]\nallow_core_dumps = true\n")
        pid = proxy.proc.pid
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        self.assertEqual(self.core_limit(pid), (expected, expected))
        owner, uid = self.proc_owner_and_uid(pid)
        self.assertEqual(owner, uid)
        if not yama_restricts_ptrace():
            r, path = gcore(pid, os.path.join(self.writable_dir(), "core-allowed"), user=user)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertTrue(os.path.getsize(path) > 0)
            os.unlink(path)
        self.assertEqual(proxy.stop(), 0)


class CoreImageCleartext(CoreImageScenario, ProxyTestCase):
    """Upstream asks for the password in clear (pg_hba `password`, over TLS): the
    password itself goes into a PasswordMessage."""

    pg_auth = "password"


if __name__ == "__main__":
    unittest.main()
