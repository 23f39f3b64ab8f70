"""Operations, end to end (issue 6 items 3, 4 and 5): SIGHUP reload (upstream CA and
listener certificate rotation, a broken file, a changed listener, the log level, the
reload counter), the audit log (JSON lines, the events of a known sequence, no secret,
reopen after logrotate) and the PROXY protocol v2 on a listener.

Every scenario runs its own vaultwire (own ports, own files under the class' tmp dir);
the class' default vaultwire only hosts the fixture's secret-scan canary. Waits are on
log lines, audit lines and results, never on sleeps.
"""
import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import unittest

import psycopg2

from proxy_fixture import (ADMIN_LISTENING_RE, LoginRefused, ProxyTestCase, Raw, TERMINATE, Vaultwire, error_fields,
                           free_port, http_get, make_listener_cert, password_message, scan_for_secrets, startup_packet,
                           toml_table, toml_value, wait_for)

RELOADED = r"configuration reloaded"
RELOAD_KEPT = r"reload failed: keeping the running configuration"
RELOAD_ANY_FAILURE = r"reload failed: .*keeping the running configuration"
RELOAD_STRUCTURAL = r"reload failed: listeners or routes changed"
SIGHUP_SEEN = r"SIGHUP: reloading the configuration"
RFC3339_MS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


# ---------------------------------------------------------------------------
# helpers


def copy(src, dst):
    """Copies src over dst in place (same inode is not required: vaultwire reopens by path)."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def cert_fingerprint_file(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def count(pattern, text):
    return len(re.findall(pattern, text))


def reload_counter(admin_port, result):
    status, body = http_get(admin_port, "/metrics")
    if status != 200:
        raise AssertionError("/metrics answered %d" % status)
    m = re.search(r'^vaultwire_config_reloads_total\{result="%s"\} (\S+)$' % result, body, re.M)
    if not m:
        raise AssertionError("no vaultwire_config_reloads_total{result=%r} in /metrics" % result)
    return float(m.group(1))


def proxy_v2_header(src=("203.0.113.7", 40000), dst=("127.0.0.1", 5432)):
    """PROXY v2, PROXY command, TCP over IPv4."""
    addr = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack("!HH", src[1], dst[1])
    return PROXY_V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(addr)) + addr


def proxy_v2_local_header():
    """PROXY v2, LOCAL command (a health check from the balancer itself), no address."""
    return PROXY_V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


def read_audit(path):
    """[(line text, parsed object)]: every line must be a JSON object."""
    with open(path) as f:
        text = f.read()
    if text and not text.endswith("\n"):
        raise AssertionError("audit file %s does not end with a newline: %r" % (path, text[-200:]))
    out = []
    for i, line in enumerate(text.splitlines()):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AssertionError("audit line %d of %s is not JSON (%s): %r" % (i + 1, path, e, line[:300]))
        if not isinstance(obj, dict):
            raise AssertionError("audit line %d of %s is not an object: %r" % (i + 1, path, line[:300]))
        out.append((line, obj))
    return out


def events(path, **match):
    """Parsed audit events of `path` whose fields equal `match` (missing file: [])."""
    if not os.path.exists(path):
        return []
    return [o for _, o in read_audit(path) if all(o.get(k) == v for k, v in match.items())]


def one_event(path, **match):
    found = events(path, **match)
    if len(found) != 1:
        raise AssertionError("expected one audit event %r in %s, found %r" % (match, path, found))
    return found[0]


def wait_event(path, what=None, timeout=20, **match):
    """Waits for an audit event with these fields; returns the newest."""
    return wait_for(lambda: (events(path, **match) or [None])[-1], timeout=timeout,
                    what=what or "audit event %r in %s" % (match, path))


class OpsCase(ProxyTestCase):
    """Builds configs with a route CA file, optional TLS listener, admin listener and
    audit file; the class' own vaultwire is plain and only hosts the secret canary."""

    @classmethod
    def proxy_config(cls):
        return cls.ops_config(cls.port, admin_port=None)

    @classmethod
    def ops_config(cls, port, ca_file=None, tls_port=None, tls_cert=None, tls_key=None, admin_port=None,
                   audit=None, level="trace", proxy_protocol=False, route_extra="", extra=""):
        listeners = "[[listener]]\nbind = \"127.0.0.1:%d\"\nroute = \"main\"\n" % port
        if proxy_protocol:
            listeners += "proxy_protocol = true\n"
        if tls_port:
            listeners += ("\n[[listener]]\nbind = \"127.0.0.1:%d\"\nroute = \"main\"\ntls_cert = %s\ntls_key = %s\n"
                          % (tls_port, toml_value(tls_cert), toml_value(tls_key)))
        admin = toml_table("admin", {"bind": "127.0.0.1:%d" % admin_port if admin_port else ""})
        audit_table = toml_table("audit", {"file": audit}) if audit else ""
        return f"""
{cls.vault_table()}
{listeners}
[route.main]
host = "localhost"
port = {cls.pg.port}
ca_file = {toml_value(ca_file or cls.pg.ca)}
roles = {toml_value(cls.route_roles)}
default_database = "defaultdb"
{route_extra}

{admin}
{audit_table}
{extra}
{cls.broker_tables()}
[log]
level = {toml_value(level)}
"""

    @classmethod
    def other_ca(cls):
        path = cls.pg.env.get("PGH_OTHER_CA") or os.path.join(os.path.dirname(cls.pg.ca), "other-ca.crt")
        if not os.path.exists(path):
            raise AssertionError("pg-harness made no unrelated CA at %s" % path)
        return path

    def workdir(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def rewrite(self, proxy, text):
        with open(proxy.config_path + ".new", "w") as f:
            f.write(text)
        os.replace(proxy.config_path + ".new", proxy.config_path)

    def hup(self, proxy, expect):
        """SIGHUP; waits for one more line matching `expect` (a regex) than before; returns
        the log text from that SIGHUP's "reloading" line on."""
        before = count(expect, proxy.output())
        seen = count(SIGHUP_SEEN, proxy.output())
        proxy.signal(signal.SIGHUP)
        wait_for(lambda: count(expect, proxy.output()) > before, what="/%s/ after SIGHUP" % expect)
        self.assertTrue(proxy.running(), "vaultwire exited on SIGHUP:\n" + proxy.output()[-3000:])
        text = proxy.output()
        starts = [m.start() for m in re.finditer(SIGHUP_SEEN, text)]
        self.assertEqual(len(starts), seen + 1, "one SIGHUP, one reload")
        return text[starts[-1]:]

    def select_user(self, port, token=None):
        """One psql session; (returncode, stdout, stderr)."""
        r = self.psql("SELECT session_user", port=port, token=token)
        return r.returncode, r.stdout.strip(), r.stderr

    def assertServes(self, port):
        rc, out, err = self.select_user(port)
        self.assertEqual(rc, 0, "psql through vaultwire failed: %s" % err)
        self.assertTrue(out.startswith("v-"), "session_user %r is not a dynamic user" % out)
        return out


# ---------------------------------------------------------------------------
# 1. SIGHUP


class TestReload(OpsCase):

    def test_rotate_upstream_ca_and_listener_certificate(self):
        d = self.workdir("rotate")
        upstream_ca = os.path.join(d, "upstream-ca.crt")
        copy(self.other_ca(), upstream_ca)  # the wrong CA: the server's chain does not verify
        ca_a, cert_a, key_a = make_listener_cert(self.workdir("rotate/cert-a"))
        ca_b, cert_b, key_b = make_listener_cert(self.workdir("rotate/cert-b"))
        fp_a, fp_b = cert_fingerprint_file(cert_a), cert_fingerprint_file(cert_b)
        self.assertNotEqual(fp_a, fp_b)
        live_cert, live_key = os.path.join(d, "listener.crt"), os.path.join(d, "listener.key")
        copy(cert_a, live_cert)
        copy(key_a, live_key)
        os.chmod(live_key, 0o600)
        port, tls_port, admin_port = free_port(), free_port(), free_port()
        proxy = self.start_proxy(self.ops_config(port, ca_file=upstream_ca, tls_port=tls_port, tls_cert=live_cert,
                                                 tls_key=live_key, admin_port=admin_port),
                                 listeners=2, name="rotate")
        self.assertEqual(proxy.ports, [port, tls_port])
        proxy.wait_log(ADMIN_LISTENING_RE)  # bound after the proxy listeners are logged
        wait_for(lambda: http_get(admin_port, "/healthz")[0] == 200, what="admin /healthz")
        ok0, failed0 = reload_counter(admin_port, "ok"), reload_counter(admin_port, "failed")

        def tls_login(cafile):
            """TLS to the listener verified against cafile, login; the peer cert's fingerprint."""
            with Raw(tls_port) as r:
                r.start_tls(cafile)
                fp = hashlib.sha256(r.sock.getpeercert(binary_form=True)).hexdigest()
                r.login(self.token)
                self.assertEqual(r.query("SELECT 1")[0], [("1",)])
                r.send(TERMINATE)
            return fp

        def upstream_refused():
            with Raw(port) as r:
                with self.assertRaises(LoginRefused) as cm:
                    r.login(self.token)
            f = cm.exception.fields
            self.assertEqual(f.get("C"), "08001", f)
            self.assertIn("certificate verify failed", f.get("M", ""), f)

        # Wrong CA: every new connection is refused with 08001 certificate verify failed.
        upstream_refused()
        # The listener presents certificate A (which B's CA does not accept).
        with Raw(tls_port) as r:
            with self.assertRaises(ssl.SSLCertVerificationError):
                r.start_tls(ca_b)
        with Raw(tls_port) as r:
            r.start_tls(ca_a)
            self.assertEqual(hashlib.sha256(r.sock.getpeercert(binary_form=True)).hexdigest(), fp_a)

        # The files change; nothing changes until SIGHUP.
        copy(self.pg.ca, upstream_ca)
        copy(cert_b, live_cert)
        copy(key_b, live_key)
        os.chmod(live_key, 0o600)
        upstream_refused()
        with Raw(tls_port) as r:
            r.start_tls(ca_a)
            self.assertEqual(hashlib.sha256(r.sock.getpeercert(binary_form=True)).hexdigest(), fp_a)

        tail = self.hup(proxy, RELOADED)
        self.assertNotRegex(tail, r"reload failed")
        # New connections verify the upstream with the right CA, and see certificate B.
        self.assertServes(port)
        self.assertEqual(tls_login(ca_b), fp_b)
        with Raw(tls_port) as r:
            with self.assertRaises(ssl.SSLCertVerificationError):
                r.start_tls(ca_a)
        self.assertEqual(reload_counter(admin_port, "ok"), ok0 + 1)
        self.assertEqual(reload_counter(admin_port, "failed"), failed0)

    def test_vault_address_change_applies(self):
        port = free_port()
        good = self.ops_config(port)
        proxy = self.start_proxy(good, name="vault-move")
        self.assertServes(port)
        dead = "http://127.0.0.1:%d" % free_port()  # nothing listens there
        moved = good.replace(self.vault.addr, dead)
        self.assertNotEqual(moved, good)
        self.rewrite(proxy, moved)
        tail = self.hup(proxy, RELOADED)
        self.assertNotIn("need a restart", tail)
        # A token vaultwire has not seen needs Vault: it now asks the new address.
        with Raw(port) as r:
            with self.assertRaises(LoginRefused) as cm:
                r.login(self.make_token(["roach-client"]))
        self.assertEqual(cm.exception.fields.get("C"), "08001", cm.exception.fields)
        self.assertIn(dead, cm.exception.fields.get("M", ""))
        # And back: served again.
        self.rewrite(proxy, good)
        self.hup(proxy, RELOADED)
        rc, out, err = self.select_user(port, token=self.make_token(["roach-client"]))
        self.assertEqual(rc, 0, err)

    def test_broken_file_keeps_running_configuration(self):
        d = self.workdir("broken")
        port, admin_port = free_port(), free_port()
        good = self.ops_config(port, admin_port=admin_port)
        proxy = self.start_proxy(good, name="broken")
        proxy.wait_log(ADMIN_LISTENING_RE)  # bound after the proxy listeners are logged
        wait_for(lambda: http_get(admin_port, "/healthz")[0] == 200, what="admin /healthz")
        self.assertServes(port)
        failed0, ok0 = reload_counter(admin_port, "failed"), reload_counter(admin_port, "ok")

        cases = [
            ("syntax error", good + "\n[log\nlevel = = \"info\"\n", RELOAD_KEPT),
            ("missing ca_file", self.ops_config(port, admin_port=admin_port,
                                                ca_file=os.path.join(d, "no-such-ca.crt")), RELOAD_ANY_FAILURE),
            ("unknown log level", self.ops_config(port, admin_port=admin_port, level="loudest"), RELOAD_KEPT),
        ]
        # A CA file that exists but holds no certificate: the new TLS context cannot be built.
        garbage_ca = os.path.join(d, "garbage-ca.crt")
        with open(garbage_ca, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        cases.append(("unreadable CA", self.ops_config(port, admin_port=admin_port, ca_file=garbage_ca),
                      RELOAD_ANY_FAILURE))
        for n, (what, text, expect) in enumerate(cases, 1):
            with self.subTest(what):
                self.rewrite(proxy, text)
                tail = self.hup(proxy, expect)
                self.assertNotRegex(tail, RELOADED, "a broken file was applied")
                self.assertServes(port)
                self.assertEqual(reload_counter(admin_port, "failed"), failed0 + n)
        # The running configuration was kept; the good file reloads again.
        self.rewrite(proxy, good)
        self.hup(proxy, RELOADED)
        self.assertServes(port)
        self.assertEqual(reload_counter(admin_port, "ok"), ok0 + 1)

    def test_changed_listener_bind_is_refused(self):
        port, new_port = free_port(), free_port()
        proxy = self.start_proxy(self.ops_config(port), name="rebind")
        self.assertServes(port)
        self.rewrite(proxy, self.ops_config(new_port))
        tail = self.hup(proxy, RELOAD_STRUCTURAL)
        self.assertRegex(tail, r"reload failed: listeners or routes changed \([^)]*listener\[0\]\.bind")
        self.assertNotRegex(tail, RELOADED)
        self.assertServes(port)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", new_port), timeout=5).close()

    def test_log_level_change_applies(self):
        port = free_port()
        proxy = self.start_proxy(self.ops_config(port, level="trace"), name="loglevel")

        def session_with_fresh_token():
            """A session whose token is new to vaultwire (so it fetches a credential and looks
            the token up, which log at debug); returns the log text it produced."""
            mark = len(proxy.output())
            before = len(proxy.closed_sessions())
            rc, user, err = self.select_user(port, token=self.make_token(["roach-client"]))
            self.assertEqual(rc, 0, err)
            wait_for(lambda: len(proxy.closed_sessions()) > before, what="session closed")
            return proxy.output()[mark:]

        at_trace = session_with_fresh_token()
        self.assertRegex(at_trace, r"\[debug\] vault: GET database/creds/crdb-role")
        self.rewrite(proxy, self.ops_config(port, level="info"))
        self.hup(proxy, RELOADED)
        at_info = session_with_fresh_token()
        self.assertRegex(at_info, r"\[info\] C-\d+: \S+ session open")
        self.assertRegex(at_info, r"\[info\] credentials: new lease")
        self.assertNotRegex(at_info, r"\[(debug|trace)\]")


# ---------------------------------------------------------------------------
# 2. Audit log


class TestAuditLog(OpsCase):

    def test_known_sequence(self):
        d = self.workdir("audit")
        audit = os.path.join(d, "audit.jsonl")
        rotated = audit + ".1"
        port = free_port()
        proxy = self.start_proxy(self.ops_config(port, audit=audit), name="audit")
        wait_for(lambda: os.path.exists(audit), what="audit file created")
        self.assertEqual(os.stat(audit).st_mode & 0o777, 0o600)
        token = self.make_token(["roach-client"])
        accessor = self.root.auth.token.lookup(token)["data"]["accessor"]

        # 1. A session that works (psycopg2).
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="crdb-role", dbname="defaultdb",
                                password=token, connect_timeout=20, sslmode="disable")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT session_user")
                db_user = cur.fetchone()[0]
        finally:
            conn.close()
        sid1, _, user1, lease1 = self.last_closed_session(proxy, "ok")
        self.assertEqual(user1, db_user)
        # 2. A token Vault rejects.
        bad_token = "hvs." + secrets.token_hex(12)
        with Raw(port) as r:
            with self.assertRaises(LoginRefused) as cm:
                r.login(bad_token)
        refusal = cm.exception.fields
        # 3. The idle lease is revoked after revoke_idle_after (2s).
        self.lease_gone(lease1, db_user)
        wait_event(audit, event="credential_revoke", lease_id=lease1)

        # 4. logrotate: rename, SIGHUP; new lines go to a new file at the original path.
        os.rename(audit, rotated)
        self.hup(proxy, RELOADED)
        wait_for(lambda: os.path.exists(audit), what="audit file reopened at %s" % audit)
        with Raw(port) as r:
            r.login(token)
            rows, err = r.query("SELECT session_user")
            self.assertIsNone(err)
            db_user3 = rows[0][0]
            r.send(TERMINATE)
            self.assertTrue(r.closed_without_reply())
        sid3 = wait_for(lambda: [s for s in proxy.closed_sessions() if s[2] == db_user3],
                        what="session 3 closed")[-1]
        sid3, lease3 = sid3[0], sid3[3]
        wait_event(audit, event="session_end", session=sid3)
        # 5. SIGTERM: exit 0, the live lease revoked at shutdown.
        self.assertEqual(proxy.stop(), 0)

        old, new = read_audit(rotated), read_audit(audit)
        old_objs, new_objs = [o for _, o in old], [o for _, o in new]
        for o in old_objs + new_objs:
            self.assertRegex(o.get("time", ""), RFC3339_MS_RE, o)
            self.assertIn(o.get("event"), {"session_start", "session_end", "credential_issue", "credential_renew",
                                           "credential_revoke"}, o)
            for k in ("bytes_in", "bytes_out", "duration_ms"):
                if k in o:
                    self.assertIsInstance(o[k], int, (k, o))
                    self.assertGreaterEqual(o[k], 0, (k, o))
            if "session" in o:
                self.assertRegex(o["session"], r"^C-\d{6,}$", o)

        def one(objs, **match):
            found = [o for o in objs if all(o.get(k) == v for k, v in match.items())]
            self.assertEqual(len(found), 1, "exactly one event %r; got %r\nall: %s" % (match, found, objs))
            return found[0]

        listener = "127.0.0.1:%d" % port
        client_re = r"^127\.0\.0\.1:\d+$"
        # Session 1 in the rotated file: start and end match.
        start1 = one(old_objs, event="session_start", session=sid1)
        end1 = one(old_objs, event="session_end", session=sid1)
        for o in (start1, end1):
            self.assertEqual((o.get("role"), o.get("database"), o.get("listener"), o.get("lease_id"),
                              o.get("db_user")),
                             ("crdb-role", "defaultdb", listener, lease1, db_user), o)
            self.assertRegex(o.get("client", ""), client_re, o)
        # (the token identity on session and credential events: test_events_name_the_token)
        for o in (start1, end1):
            if "token_accessor" in o:
                self.assertEqual(o["token_accessor"], accessor, o)
        self.assertEqual(start1["client"], end1["client"])
        self.assertEqual(end1.get("result"), "ok", end1)
        self.assertGreater(end1.get("bytes_in", 0), 0, end1)
        self.assertGreater(end1.get("bytes_out", 0), 0, end1)
        self.assertIn("duration_ms", end1)
        self.assertLessEqual(old_objs.index(start1), old_objs.index(end1))
        issue1 = one(old_objs, event="credential_issue", lease_id=lease1)
        self.assertEqual((issue1.get("role"), issue1.get("db_user")), ("crdb-role", db_user), issue1)
        self.assertLess(old_objs.index(issue1), old_objs.index(end1))
        revoke1 = one(old_objs, event="credential_revoke", lease_id=lease1)
        self.assertGreater(old_objs.index(revoke1), old_objs.index(end1))
        self.assertEqual(revoke1.get("db_user"), db_user, revoke1)
        self.assertIn("reason", revoke1)
        # The refusal: a session_end with the result and the SQLSTATE the client was told.
        refused = [o for o in old_objs if o.get("event") == "session_end" and o.get("result") != "ok"]
        self.assertEqual(len(refused), 1, refused)
        self.assertEqual(refused[0].get("sqlstate"), refusal.get("C"), (refused[0], refusal))
        self.assertNotIn("lease_id", refused[0])
        self.assertRegex(refused[0].get("client", ""), client_re, refused[0])
        # Nothing of session 3 in the rotated file; nothing of session 1 in the new one.
        self.assertEqual([o for o in old_objs if o.get("session") == sid3 or o.get("lease_id") == lease3], [])
        self.assertEqual([o for o in new_objs if o.get("session") == sid1 or o.get("lease_id") == lease1], [])
        start3 = one(new_objs, event="session_start", session=sid3)
        end3 = one(new_objs, event="session_end", session=sid3)
        self.assertEqual((start3.get("lease_id"), end3.get("lease_id"), end3.get("result")), (lease3, lease3, "ok"))
        one(new_objs, event="credential_issue", lease_id=lease3)
        one(new_objs, event="credential_revoke", lease_id=lease3)
        # Every session_start has its session_end, in both files.
        for objs in (old_objs, new_objs):
            starts = sorted(o["session"] for o in objs if o.get("event") == "session_start")
            ends = sorted(o["session"] for o in objs if o.get("event") == "session_end" and "lease_id" in o)
            self.assertEqual(starts, ends)

        # No token or password vault-dev issued appears in either file (the scan finds a
        # value that is there: the dynamic user's name).
        issued = self.vault.dev("GET", "secrets")
        values = [v for v in issued.get("tokens", []) + issued.get("passwords", []) if len(v) >= 8]
        self.assertIn(token, values)
        self.assertTrue(issued.get("passwords"))
        for path in (rotated, audit):
            with open(path) as f:
                text = f.read()
            self.assertEqual(len(scan_for_secrets(text, values)), 0, "%s contains an issued secret" % path)
            # Positive control: the same scan finds a value that is in the file.
            self.assertEqual(len(scan_for_secrets(text, values + [db_user, db_user3])), 1, path)
            self.assertNotIn(bad_token, text)


    def test_events_name_the_token(self):
        """src/ops/audit.hpp: session start and end and credential issue and
        revocation name the token (accessor and display name), never the token itself."""
        audit = os.path.join(self.workdir("audit-token"), "audit.jsonl")
        port = free_port()
        proxy = self.start_proxy(self.ops_config(port, audit=audit), name="audit-token")
        token = self.make_token(["roach-client"])
        info = self.root.auth.token.lookup(token)["data"]
        accessor, display = info["accessor"], info["display_name"]
        self.assertServes_token(port, token)  # the token's first session
        end = wait_event(audit, event="session_end", result="ok")
        self.assertEqual(proxy.stop(), 0)  # revokes the lease at shutdown
        start = one_event(audit, event="session_start", session=end["session"])
        issue = one_event(audit, event="credential_issue", lease_id=end["lease_id"])
        revoke = one_event(audit, event="credential_revoke", lease_id=end["lease_id"])
        for name, o in (("session_start", start), ("session_end", end), ("credential_issue", issue),
                        ("credential_revoke", revoke)):
            with self.subTest(name):
                self.assertEqual((o.get("token_accessor"), o.get("token_display_name")), (accessor, display), o)
        with open(audit) as f:
            self.assertNotIn(token, f.read())

    def assertServes_token(self, port, token):
        rc, out, err = self.select_user(port, token=token)
        self.assertEqual(rc, 0, err)
        return out


# ---------------------------------------------------------------------------
# 3. PROXY protocol v2


class TestProxyProtocol(OpsCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.pp_port = free_port()
            cls.audit = os.path.join(cls.tmp, "pp-audit.jsonl")
            cls.pp = cls.start_proxy(cls.ops_config(cls.pp_port, audit=cls.audit, proxy_protocol=True),
                                     name="proxy-protocol")
        except BaseException:
            cls._any_failure = True
            raise

    def login_behind(self, header, split=False):
        """Header, then startup and token; a query; Terminate. Returns (session id, db user, local port)."""
        closed_before = len(self.pp.closed_sessions())
        with Raw(self.pp_port) as r:
            local_port = r.sock.getsockname()[1]
            startup = startup_packet([("user", "crdb-role"), ("database", "defaultdb")])
            if split:
                r.send(header[:7])
                r.send(header[7:])
                r.send(startup)
            else:
                # The header and the startup packet in one segment: what follows the header
                # must not be lost.
                r.send(header + startup)
            msgs = r.read_until({"R", "E"})
            if msgs[-1][0] == "E":
                raise LoginRefused(error_fields(msgs[-1][1]))
            r.send(password_message(self.token))
            msgs = r.read_until({"Z", "E"})
            if msgs[-1][0] == "E":
                raise LoginRefused(error_fields(msgs[-1][1]))
            rows, err = r.query("SELECT session_user")
            self.assertIsNone(err)
            r.send(TERMINATE)
            self.assertTrue(r.closed_without_reply())
        user = rows[0][0]
        row = wait_for(lambda: [s for s in self.pp.closed_sessions()[closed_before:] if s[2] == user],
                       what="session closed")[-1]
        return row[0], user, local_port

    def test_v2_header_names_the_client(self):
        for split in (False, True):
            with self.subTest(split=split):
                sid, user, _ = self.login_behind(proxy_v2_header(dst=("127.0.0.1", self.pp_port)), split=split)
                self.pp.wait_log(r"%s: defaultdb/crdb-role@203\.0\.113\.7:40000 session open: user %s "
                                 % (sid, re.escape(user)))
                end = wait_event(self.audit, event="session_end", session=sid)
                start = wait_event(self.audit, event="session_start", session=sid)
                self.assertEqual((start.get("client"), end.get("client")), ("203.0.113.7:40000",) * 2)
                self.assertEqual(end.get("listener"), "127.0.0.1:%d" % self.pp_port)

    def test_local_command_uses_socket_address(self):
        sid, user, local_port = self.login_behind(proxy_v2_local_header())
        self.pp.wait_log(r"%s: defaultdb/crdb-role@127\.0\.0\.1:%d session open: user %s "
                         % (sid, local_port, re.escape(user)))
        end = wait_event(self.audit, event="session_end", session=sid)
        self.assertEqual(end.get("client"), "127.0.0.1:%d" % local_port)

    def test_connection_without_header_is_refused(self):
        opened = len(self.pp.opened_sessions())
        r = self.psql("SELECT 1", port=self.pp_port)
        self.assertNotEqual(r.returncode, 0)
        # (libpq does not print the SQLSTATE of a connection-time error; the raw client checks it.)
        self.assertRegex(r.stderr, r"FATAL:  invalid PROXY protocol header: .*PROXY protocol v2 header")
        # Raw: a startup packet where the header should be, and a PROXY v1 line.
        for first in (startup_packet([("user", "crdb-role"), ("database", "defaultdb")]),
                      b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 5432\r\n"):
            with self.subTest(first=first[:12]):
                with Raw(self.pp_port) as r:
                    r.send(first)
                    f = r.read_error()
                    self.assertEqual((f.get("S"), f.get("C")), ("FATAL", "08P01"), f)
                    self.assertIn("PROXY protocol", f.get("M", ""))
                    self.assertTrue(r.closed_without_reply())
        # None of them got a session.
        self.assertEqual(len(self.pp.opened_sessions()), opened)


# ---------------------------------------------------------------------------
# 4. Listeners: one SO_REUSEPORT socket per session thread, the port still exclusive


class TestListenerGroup(OpsCase):
    def test_second_vaultwire_on_a_served_port_is_refused(self):
        # Each session thread has its own listening socket on the port (SO_REUSEPORT).
        # A second vaultwire must not join that group and take half the connections:
        # it fails to start, as it would against any listener.
        port = free_port()
        first = self.start_proxy(self.ops_config(port, extra="[runtime]\nthreads = 3\n"), name="first")
        second = Vaultwire(self.tmp, self.ops_config(port), name="second")
        with self.assertRaisesRegex(RuntimeError, "exited early"):
            second.start()
        self.assertEqual(second.proc.wait(timeout=10), 1)
        self.assertRegex(second.output(), r"listener 127\.0\.0\.1:%d: cannot listen: Address already in use" % port)
        # Every connection reaches the first, whichever of its three sockets takes it.
        opened = len(first.opened_sessions())
        users = {self.assertServes(port) for _ in range(12)}
        self.assertEqual(len(first.opened_sessions()), opened + 12)
        self.assertEqual(len(users), 1, "one token, one cached credential")


if __name__ == "__main__":
    unittest.main()
