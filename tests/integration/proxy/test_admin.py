"""The admin HTTP listener (issue 6 item 2): /metrics in the Prometheus text format,
/healthz, /readyz (Vault sealed, draining), /leases; no secret in any body.

The metrics are parsed with a strict parser of the text exposition format (version
0.0.4): every sample must belong to a family declared with # TYPE, label values are
unescaped, histograms must be cumulative with +Inf == _count. A known sequence of
connections must move exactly the expected series.

Run with /usr/bin/python3; environment as proxy_fixture.py.
"""
import http.client
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import unittest

from proxy_fixture import (TERMINATE, ClosedError, LoginRefused, ProxyTestCase, Raw, backend_key, cancel_request,
                           free_port, scan_for_secrets, wait_for)

ADMIN_RE = r"admin: serving /metrics, /healthz, /readyz, /leases on http://127\.0\.0\.1:(\d+)"
BYTES_RE = re.compile(r"session closed: .* bytes in (\d+) out (\d+)")
LEASE_KEYS = {"lease_id", "role", "mount", "ttl_left_seconds", "duration_seconds", "renewable", "cached",
              "at_max_ttl", "revoke_denied", "sessions", "token_accessor", "token_sha256_prefix"}


# ---------------------------------------------------------------------------
# Prometheus text format 0.0.4, strictly

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_RE = re.compile(r"^(%s)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$" % METRIC_NAME)
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ExpositionError(AssertionError):
    pass


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        if not m:
            raise ExpositionError("bad label set {%s} at %d" % (text, pos))
        name, raw = m.group(1), m.group(2)
        value = re.sub(r"\\(.)", lambda e: {"n": "\n", "\\": "\\", '"': '"'}[e.group(1)], raw)
        if name in labels:
            raise ExpositionError("label %s twice in {%s}" % (name, text))
        labels[name] = value
        pos = m.end()
        if m.group(3) == "" and pos < len(text):
            raise ExpositionError("trailing text in {%s}" % text)
    return labels


def parse_value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    return float(text)


class Metrics:
    """families: name -> {"type", "help", "samples": {(sample name, sorted label items): value}}"""

    def __init__(self, text):
        self.families = {}
        current = None
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    fam = self.families.setdefault(name, {"type": None, "help": None, "samples": {}})
                    if parts[1] == "TYPE":
                        if fam["type"] is not None or fam["samples"]:
                            raise ExpositionError("line %d: TYPE for %s after its samples or twice" % (n, name))
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise ExpositionError("line %d: bad TYPE line %r" % (n, line))
                        fam["type"] = parts[3]
                    else:
                        fam["help"] = parts[3] if len(parts) == 4 else ""
                    current = name
                continue
            m = SAMPLE_RE.match(line)
            if not m:
                raise ExpositionError("line %d: not a sample: %r" % (n, line))
            sample, labels, value = m.group(1), parse_labels(m.group(2) or ""), parse_value(m.group(3))
            family = self._family_of(sample, current)
            if family is None:
                raise ExpositionError("line %d: sample %s outside its family (after # TYPE %s)" % (n, sample, current))
            key = (sample, tuple(sorted(labels.items())))
            if key in self.families[family]["samples"]:
                raise ExpositionError("line %d: duplicate sample %r" % (n, line))
            self.families[family]["samples"][key] = value
        for name, fam in self.families.items():
            if fam["type"] is None:
                raise ExpositionError("family %s has no TYPE" % name)
            if fam["type"] == "histogram":
                self._check_histogram(name, fam)

    def _family_of(self, sample, current):
        if current is None:
            return None
        fam = self.families[current]
        if sample == current and fam["type"] in ("counter", "gauge", "untyped"):
            return current
        if fam["type"] == "histogram" and sample in (current + "_bucket", current + "_sum", current + "_count"):
            return current
        if fam["type"] == "summary" and sample in (current, current + "_sum", current + "_count"):
            return current
        return None

    @staticmethod
    def _check_histogram(name, fam):
        series = {}
        for (sample, labels), value in fam["samples"].items():
            base = tuple(kv for kv in labels if kv[0] != "le")
            s = series.setdefault(base, {"buckets": [], "count": None})
            if sample == name + "_bucket":
                le = dict(labels).get("le")
                if le is None:
                    raise ExpositionError("%s bucket without le" % name)
                s["buckets"].append((parse_value(le), value))
            elif sample == name + "_count":
                s["count"] = value
        for base, s in series.items():
            buckets = sorted(s["buckets"])
            if not buckets or buckets[-1][0] != math.inf:
                raise ExpositionError("%s%r has no +Inf bucket" % (name, base))
            counts = [c for _, c in buckets]
            if counts != sorted(counts):
                raise ExpositionError("%s%r buckets are not cumulative" % (name, base))
            if counts[-1] != s["count"]:
                raise ExpositionError("%s%r: +Inf bucket %r != _count %r" % (name, base, counts[-1], s["count"]))

    def type_of(self, family):
        return self.families[family]["type"] if family in self.families else None

    def get(self, sample, **labels):
        """The value of one series, or 0.0 when it does not exist (yet)."""
        family = sample
        for suffix in ("_bucket", "_sum", "_count"):
            if sample.endswith(suffix) and sample[: -len(suffix)] in self.families:
                family = sample[: -len(suffix)]
        fam = self.families.get(family)
        if fam is None:
            return 0.0
        return fam["samples"].get((sample, tuple(sorted(labels.items()))), 0.0)

    def series(self, sample):
        """[(labels dict, value)] of every series of `sample`."""
        out = []
        for fam in self.families.values():
            for (name, labels), value in fam["samples"].items():
                if name == sample:
                    out.append((dict(labels), value))
        return out


class MetricsParserTest(unittest.TestCase):
    """The parser must be able to fail."""

    def test_parses_and_rejects(self):
        m = Metrics('# HELP a_total x\n# TYPE a_total counter\na_total{r="o\\"k",s="1"} 3\n'
                    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n')
        self.assertEqual(m.get("a_total", r='o"k', s="1"), 3.0)
        self.assertEqual(m.get("h_count"), 2.0)
        for bad in ("a_total 1\n",  # no TYPE
                    "# TYPE a counter\na{x=1} 1\n",  # unquoted label value
                    "# TYPE a counter\na 1\na 2\n",  # duplicate
                    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",  # not cumulative
                    "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n",  # +Inf != count
                    "# TYPE a counter\nb 1\n"):  # outside its family
            with self.assertRaises(ExpositionError, msg=bad):
                Metrics(bad)


# ---------------------------------------------------------------------------


def http_get(port, path, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def admin_config(admin_port):
    return '[admin]\nbind = "127.0.0.1:%d"\n' % admin_port


class AdminTest(ProxyTestCase):

    @classmethod
    def proxy_config(cls):
        cls.admin_port = free_port()
        return cls.single_listener_config(cls.port, extra=admin_config(cls.admin_port))

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            m = cls.proxy.wait_log(ADMIN_RE, what="the admin listener's log line")
            if int(m.group(1)) != cls.admin_port:
                raise AssertionError("admin listens on %s, configured %d" % (m.group(1), cls.admin_port))
        except BaseException:
            cls._any_failure = True
            raise

    def get(self, path, method="GET", port=None):
        return http_get(port or self.admin_port, path, method)

    def scrape(self, port=None):
        status, headers, body = self.get("/metrics", port=port)
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"), headers)
        return Metrics(body)

    def leases(self, port=None):
        status, headers, body = self.get("/leases", port=port)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["content-type"], "application/json")
        doc = json.loads(body)
        self.assertEqual(doc["count"], len(doc["leases"]))
        return doc["leases"]

    def open_session(self, token):
        r = Raw(self.proxy.port)
        msgs = r.login(token)
        return r, backend_key(msgs)

    # -- the endpoints ----------------------------------------------------------

    def test_healthz_and_http_errors(self):
        self.assertEqual(self.get("/healthz")[::2], (200, "ok\n"))
        self.assertEqual(self.get("/nope")[0], 404)
        self.assertEqual(self.get("/nope", method="POST")[0], 404)
        status, headers, _ = self.get("/metrics", method="POST")
        self.assertEqual((status, headers.get("allow")), (405, "GET"))
        self.assertEqual(self.get("/leases", method="DELETE")[0], 405)
        self.assertEqual(self.get("/metrics?x=1")[0], 200)
        # An oversized request is refused, and the listener still serves afterwards.
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=20)
        try:
            conn.putrequest("GET", "/metrics")
            conn.putheader("X-Filler", "x" * 20000)
            conn.endheaders()
            self.assertEqual(conn.getresponse().status, 400)
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed before reading it all: refused too
        finally:
            conn.close()
        self.assertEqual(self.get("/healthz")[0], 200)

    def test_metrics_families_and_build_info(self):
        m = self.scrape()
        expected = {
            "vaultwire_client_connections_total": "counter", "vaultwire_client_connections_active": "gauge",
            "vaultwire_session_duration_seconds": "histogram", "vaultwire_bytes_total": "counter",
            "vaultwire_vault_requests_total": "counter", "vaultwire_vault_request_seconds": "histogram",
            "vaultwire_leases_active": "gauge", "vaultwire_lease_renewals_total": "counter",
            "vaultwire_lease_revocations_total": "counter", "vaultwire_credential_requests_total": "counter",
            "vaultwire_upstream_connections_total": "counter", "vaultwire_cancel_requests_total": "counter",
            "vaultwire_config_reloads_total": "counter", "vaultwire_build_info": "gauge",
            "vaultwire_vault_breaker_open": "gauge", "vaultwire_token_rechecks_total": "counter",
        }
        for family, kind in expected.items():
            self.assertEqual(m.type_of(family), kind, family)
        # Families that appear with their first observation.
        version = subprocess.run([os.environ["VAULTWIRE_BIN"], "version"], capture_output=True, text=True,
                                 check=True).stdout.splitlines()[0].split()[1]
        builds = m.series("vaultwire_build_info")
        self.assertEqual(len(builds), 1)
        self.assertEqual(builds[0][1], 1.0)
        self.assertEqual(builds[0][0]["version"], version)
        for label in ("commit", "openssl", "libcurl", "boost"):
            self.assertTrue(builds[0][0].get(label), label)
        # The sys/health checks behind /readyz are Vault requests too.
        self.get("/readyz")
        wait_for(lambda: self.scrape().get("vaultwire_vault_requests_total", endpoint="health", code="200") >= 1,
                 what="a counted sys/health request")

    def test_connection_sequence_moves_counters(self):
        token = self.make_token(["roach-client"])  # fresh: its first credential is a Vault request
        bad_token = "hvs." + secrets.token_hex(12)
        closed_before = len(BYTES_RE.findall(self.proxy.output()))
        before = self.scrape()

        # Two sessions held open on one credential (a miss, then a hit).
        s1, key1 = self.open_session(token)
        s2, _ = self.open_session(token)
        try:
            m = wait_for(lambda: (lambda m: m if m.get("vaultwire_client_connections_active") == 2 else None)(
                self.scrape()), what="2 active connections")
            self.assertGreaterEqual(m.get("vaultwire_leases_active"), 1)
            # A third on the same credential (a hit) runs a query and leaves.
            with Raw(self.proxy.port) as s3:
                s3.login(token)
                self.assertEqual(s3.query("SELECT 1")[0], [("1",)])
                s3.send(TERMINATE)
                self.assertTrue(s3.closed_without_reply())
            # CancelRequests: one for a key vaultwire issued, one for a key it did not.
            with Raw(self.proxy.port) as c:
                c.send(cancel_request(*key1))
                self.assertTrue(c.closed_without_reply())
            with Raw(self.proxy.port) as c:
                c.send(cancel_request(key1[0], key1[1] ^ 0x5a5a5a5a))
                self.assertTrue(c.closed_without_reply())
        finally:
            for s in (s1, s2):
                try:
                    s.send(TERMINATE)
                except OSError:
                    pass
                s.close()
        # Refusals: a role the route does not allow, a token Vault rejects, and the same
        # token again (answered from the negative cache, no Vault request).
        self.assertEqual(self.refused(user="not-a-role")["C"], "28000")
        self.assertEqual(self.refused(token=bad_token)["C"], "28P01")
        self.assertEqual(self.refused(token=bad_token)["C"], "28P01")

        expected = {
            ("vaultwire_client_connections_total", (("result", "ok"),)): 3,
            ("vaultwire_client_connections_total", (("result", "role_not_allowed"),)): 1,
            ("vaultwire_client_connections_total", (("result", "vault_rejected_token"),)): 2,
            ("vaultwire_auth_failures_total", (("reason", "role_not_allowed"),)): 1,
            ("vaultwire_auth_failures_total", (("reason", "vault_rejected_token"),)): 2,
            ("vaultwire_session_duration_seconds_count", ()): 6,
            ("vaultwire_cancel_requests_total", (("result", "forwarded"),)): 1,
            ("vaultwire_cancel_requests_total", (("result", "unknown_key"),)): 1,
            ("vaultwire_vault_requests_total", (("code", "200"), ("endpoint", "creds"))): 1,
            ("vaultwire_vault_requests_total", (("code", "403"), ("endpoint", "creds"))): 1,
            ("vaultwire_vault_request_seconds_count", (("endpoint", "creds"),)): 2,
            ("vaultwire_credential_requests_total", (("result", "miss"),)): 2,
            ("vaultwire_credential_requests_total", (("result", "hit"),)): 2,
            ("vaultwire_credential_requests_total", (("result", "shared"),)): 0,
            ("vaultwire_credential_requests_total", (("result", "negative"),)): 1,
            ("vaultwire_upstream_connections_total", (("kind", "new"),)): 3,
            ("vaultwire_upstream_connections_total", (("kind", "reused"),)): 0,
            ("vaultwire_upstream_connect_seconds_count", (("result", "ok"),)): 3,
            ("vaultwire_config_reloads_total", (("result", "ok"),)): 0,
        }

        def deltas(m):
            return {k: m.get(k[0], **dict(k[1])) - before.get(k[0], **dict(k[1])) for k in expected}

        # Every expected increment has landed (then nothing more may have).
        wait_for(lambda: all(v >= expected[k] for k, v in deltas(self.scrape()).items()) or None,
                 what="the counters of the sequence")
        wait_for(lambda: len(BYTES_RE.findall(self.proxy.output())) >= closed_before + 6,
                 what="six session closed lines")
        after = wait_for(lambda: (lambda m: m if m.get("vaultwire_client_connections_active") == 0 else None)(
            self.scrape()), what="no active connection")
        self.assertEqual(deltas(after), expected)
        # Token rechecks went to lookup-self (the first sight of the token at least).
        self.assertGreaterEqual(after.get("vaultwire_vault_requests_total", endpoint="lookup-self", code="200")
                                - before.get("vaultwire_vault_requests_total", endpoint="lookup-self", code="200"), 1)
        # Bytes: exactly what the six "session closed" lines report.
        new_lines = BYTES_RE.findall(self.proxy.output())[closed_before:]
        self.assertEqual(len(new_lines), 6, new_lines)
        c2s = sum(int(a) for a, _ in new_lines)
        s2c = sum(int(b) for _, b in new_lines)
        self.assertGreater(c2s, 0)
        self.assertGreater(s2c, 0)
        self.assertEqual(after.get("vaultwire_bytes_total", direction="client_to_server")
                         - before.get("vaultwire_bytes_total", direction="client_to_server"), c2s)
        self.assertEqual(after.get("vaultwire_bytes_total", direction="server_to_client")
                         - before.get("vaultwire_bytes_total", direction="server_to_client"), s2c)
        # Histogram buckets are in seconds: the sessions took less than a minute.
        self.assertEqual(after.get("vaultwire_session_duration_seconds_bucket", le="60")
                         - before.get("vaultwire_session_duration_seconds_bucket", le="60"), 6)

        # The idle lease is revoked (revoke_idle_after = 2s): one more revocation, one less lease.
        wait_for(lambda: self.scrape().get("vaultwire_lease_revocations_total", result="ok")
                 - before.get("vaultwire_lease_revocations_total", result="ok") >= 1, what="the idle revocation")
        final = self.scrape()
        self.assertEqual(final.get("vaultwire_lease_revocations_total", result="ok")
                         - before.get("vaultwire_lease_revocations_total", result="ok"), 1)
        revokes = sum(v for labels, v in final.series("vaultwire_vault_requests_total")
                      if labels["endpoint"] == "revoke") - sum(
            v for labels, v in before.series("vaultwire_vault_requests_total") if labels["endpoint"] == "revoke")
        self.assertEqual(revokes, 1)
        # No series carries a path, a lease id or a role in its endpoint label.
        endpoints = {labels["endpoint"] for labels, _ in final.series("vaultwire_vault_requests_total")}
        self.assertLessEqual(endpoints, {"creds", "renew", "revoke", "lookup-self", "renew-self", "health", "other"})

    def test_leases_lists_sessions_without_secrets(self):
        token = self.make_token(["roach-client"])
        accessor = self.root.auth.token.lookup(token)["data"]["accessor"]
        s1, _ = self.open_session(token)
        s2, _ = self.open_session(token)
        try:
            lease_id = self.proxy.opened_sessions()[-1][2]
            self.assertIn(lease_id, self.vault.dev_lease_ids())

            def listed():
                rows = [l for l in self.leases() if l["lease_id"] == lease_id]
                return rows[0] if rows and rows[0]["token_accessor"] == accessor else None
            row = wait_for(listed, what="lease %s with its token's accessor in /leases" % lease_id)
            self.assertEqual(set(row), LEASE_KEYS)
            self.assertEqual((row["role"], row["mount"], row["sessions"], row["cached"]),
                             ("crdb-role", "database", 2, True))
            self.assertTrue(0 < row["ttl_left_seconds"] <= 3600, row)
            self.assertEqual(row["duration_seconds"], 3600)
            self.assertRegex(row["token_sha256_prefix"], r"^[0-9a-f]{8}$")

            # No secret vault-dev issued appears in /leases or /metrics (positive control
            # first: the scan finds the lease id, which is in the body).
            _, _, leases_body = self.get("/leases")
            _, _, metrics_body = self.get("/metrics")
            issued = self.vault.dev("GET", "secrets")
            values = [v for v in issued.get("tokens", []) + issued.get("passwords", []) if len(v) >= 8]
            self.assertIn(token, values)
            self.assertTrue(issued.get("passwords"))
            self.assertEqual(scan_for_secrets(leases_body, values + [lease_id]), [lease_id])
            self.assertEqual(scan_for_secrets(metrics_body, values), [])
        finally:
            for s in (s1, s2):
                s.close()
        wait_for(lambda: all(l["lease_id"] != lease_id for l in self.leases()), what="the idle lease leaves /leases")

    # -- readiness ----------------------------------------------------------------

    def test_readyz_sealed_vault(self):
        wait_for(lambda: self.get("/readyz")[0] == 200, what="/readyz 200")
        self.assertEqual(self.get("/readyz")[2], "ready\n")
        self.vault.dev("POST", "seal")
        try:
            status, _, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(self.get("/readyz")),
                                       what="/readyz 503 while Vault is sealed")
            self.assertEqual(body, "Vault at %s is sealed\n" % self.vault.addr)
            self.assertEqual(self.get("/healthz")[0], 200)  # alive all the same
        finally:
            self.vault.dev("POST", "unseal")
        wait_for(lambda: self.get("/readyz")[0] == 200, what="/readyz 200 after unseal")
        self.assertGreaterEqual(self.scrape().get("vaultwire_vault_requests_total", endpoint="health", code="503"), 1)

    def test_readyz_tells_the_present(self):
        """Each probe asks Vault before answering: the first probe after a seal says so,
        the first after the unseal is ready again, a Vault slower than
        admin.readiness_timeout (1 s) gets 503 naming it, and probes that come while a
        sys/health request is out share it."""
        wait_for(lambda: self.get("/readyz")[0] == 200, what="/readyz 200")
        self.assertEqual(self.get("/readyz")[0], 200)
        sealed_at = time.monotonic()
        self.vault.dev("POST", "seal")
        try:
            status, _, body = self.get("/readyz")
            print("\n/readyz %d %.3f s after the seal" % (status, time.monotonic() - sealed_at), file=sys.stderr)
            self.assertEqual((status, body), (503, "Vault at %s is sealed\n" % self.vault.addr))
        finally:
            self.vault.dev("POST", "unseal")
        unsealed_at = time.monotonic()
        status, _, body = self.get("/readyz")
        print("/readyz %d %.3f s after the unseal" % (status, time.monotonic() - unsealed_at), file=sys.stderr)
        self.assertEqual((status, body), (200, "ready\n"))

        self.vault.dev("POST", "fail", {"path": "sys/health", "count": 1, "mode": "delay", "delay_ms": 3000})
        try:
            status, _, body = self.get("/readyz")
            self.assertEqual((status, body), (503, "Vault at %s did not answer sys/health within 1s "
                                                   "(admin.readiness_timeout)\n" % self.vault.addr))
        finally:
            self.vault.dev("DELETE", "fail")
        # Let the delayed request finish, so the next probes start from no request out.
        wait_for(lambda: self.get("/readyz")[0] == 200, what="/readyz 200 after the slow answer")

        self.vault.dev("POST", "fail", {"path": "sys/health", "count": 1, "mode": "delay", "delay_ms": 500})
        before = self.vault.dev("GET", "counters")["paths"].get("sys/health", 0)
        results = []
        probes = [threading.Thread(target=lambda: results.append(self.get("/readyz")[0])) for _ in range(5)]
        for t in probes:
            t.start()
        for t in probes:
            t.join(30)
        self.vault.dev("DELETE", "fail")
        self.assertEqual(results, [200] * 5)
        asked = self.vault.dev("GET", "counters")["paths"].get("sys/health", 0) - before
        print("5 concurrent probes sent %d sys/health request(s)" % asked, file=sys.stderr)
        self.assertLess(asked, 5)

    def test_readyz_draining(self):
        """A second vaultwire: SIGTERM while a login waits for Vault; /readyz answers 503
        until the last session is gone, then the process exits 0."""
        admin_port = free_port()
        proxy = self.start_proxy(self.single_listener_config(free_port(), extra=admin_config(admin_port)),
                                 name="vaultwire-drain")
        proxy.wait_log(ADMIN_RE)
        wait_for(lambda: http_get(admin_port, "/readyz")[0] == 200, what="/readyz 200")
        token = self.make_token(["roach-client"])
        reads = self.creds_reads()
        self.vault.dev("POST", "fail", {"path": "database/creds/crdb-role", "method": "GET", "mode": "delay",
                                        "delay_ms": 3000, "count": 1})
        outcome = {}

        def login():
            try:
                with Raw(proxy.port) as r:
                    r.login(token)
                    outcome["result"] = "logged in"
            except (LoginRefused, ClosedError, OSError) as e:
                outcome["result"] = e
        t = threading.Thread(target=login)
        t.start()
        try:
            wait_for(lambda: self.creds_reads() > reads, what="the login's (delayed) credential request")
            proxy.signal(signal.SIGTERM)
            status, _, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(http_get(admin_port, "/readyz")),
                                       what="/readyz 503 while draining")
            self.assertEqual(body, "draining: vaultwire is shutting down\n")
            self.assertEqual(proxy.proc.wait(timeout=30), 0)
        finally:
            t.join(timeout=30)
            self.vault.dev("POST", "fail/clear")
        self.assertNotEqual(outcome.get("result"), "logged in")
        with self.assertRaises(OSError):
            http_get(admin_port, "/healthz")  # the admin listener went with the process


class AdminOffTest(ProxyTestCase):
    """[admin] bind = "" turns the listener off."""

    @classmethod
    def proxy_config(cls):
        return cls.single_listener_config(cls.port, extra='[admin]\nbind = ""\n')

    def test_no_admin_listener(self):
        self.assertEqual(self.psql("SELECT 1").stdout.strip(), "1")
        self.assertNotRegex(self.proxy.output(), r"admin: (serving|cannot listen)")


if __name__ == "__main__":
    unittest.main()
