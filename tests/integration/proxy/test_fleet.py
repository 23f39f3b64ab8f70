"""A fleet: three vaultwire processes behind HAProxy (conf/haproxy.cfg as it is, with
this test's addresses: TCP, roundrobin, PROXY protocol v2 to each instance, health
checks with the header, option redispatch), each with `proxy_protocol = true` on its
listener and a [fleet] table naming the other two over mutual TLS (one certificate per
instance, IP SAN 127.0.0.1, one CA).

- 100 queries (`select pg_sleep(60)`), half from psycopg2 (conn.cancel(), libpq's
  PQcancel) and half from psql (SIGINT, which makes psql send the cancel), 8 at once:
  each is cancelled once PostgreSQL shows it running, and must fail with 57014 within
  20 s. A CancelRequest comes on a connection of its own, which HAProxy gives to the
  next instance in turn, so most land on an instance that does not hold the session:
  the figures (sent, reached the server, forwarded between peers) are printed, and
  each instance must have kept one connection per peer for them.
- pgbench -S, 16 clients, 10 s through HAProxy: no failure, every instance used.
- SIGTERM to one instance under idle sessions: its clients get 57P01, the other
  instances' sessions go on, and new connections through HAProxy are served by the
  others.
- The same cancels without [fleet]: some are lost (the check that the first part can fail).
- Once every instance has stopped: no lease left in vault-dev, no dynamic user in
  PostgreSQL.

The class' own vaultwire (no PROXY protocol) serves no client: it only hosts the
fixture's secret-scan canary, which a proxy_protocol listener would refuse unread.

Run with /usr/bin/python3; environment as proxy_fixture.py; needs haproxy (scripts/bootstrap.sh).
"""
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (PGBENCH, PSQL, ProxyTestCase, Raw, TERMINATE, backend_key, free_port,  # noqa: E402
                           toml_table, toml_value, wait_for)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
HAPROXY_CFG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "conf", "haproxy.cfg")

INSTANCE_IDS = (1, 2, 3)
CANCEL_RE = re.compile(r'^vaultwire_cancel_requests_total\{result="([^"]+)"\} (\S+)$', re.M)
TPS_RE = re.compile(r"^tps = ([\d.]+)", re.M)
TXNS_RE = re.compile(r"number of transactions actually processed: (\d+)")
FAILED_RE = re.compile(r"number of failed transactions: (\d+)")
SHUTTING_DOWN = "terminating connection: vaultwire is shutting down; reconnect"


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def make_fleet_certs(directory, ids):
    """A CA and, per instance id, a certificate for IP 127.0.0.1 usable as server and
    client certificate. Returns (ca_file, {id: (cert_file, key_file)})."""
    ca_key, ca_crt = os.path.join(directory, "fleet-ca.key"), os.path.join(directory, "fleet-ca.crt")
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256",
            "-days", "2", "-subj", "/CN=vaultwire fleet test CA", "-keyout", ca_key, "-out", ca_crt)
    ext = os.path.join(directory, "fleet.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    out = {}
    for i in ids:
        key, csr, crt = (os.path.join(directory, "fleet-%d.%s" % (i, x)) for x in ("key", "csr", "crt"))
        openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256",
                "-subj", "/CN=vaultwire fleet instance %d" % i, "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-sha256",
                "-days", "2", "-extfile", ext, "-out", crt)
        out[i] = (crt, key)
    return ca_crt, out


def haproxy_config(listen_port, server_ports):
    """conf/haproxy.cfg with its frontend bound to 127.0.0.1:listen_port and its servers
    at 127.0.0.1:<each of server_ports>; fails when the file lost a keyword this test
    relies on."""
    with open(HAPROXY_CFG) as f:
        text = f.read()
    active = "\n".join(line.split("#")[0] for line in text.splitlines())
    for keyword in (r"mode\s+tcp", r"balance\s+roundrobin", r"option\s+redispatch", r"send-proxy-v2",
                    r"check-send-proxy", r"check"):
        if not re.search(r"(^|\s)%s(\s|$)" % keyword, active, re.M):
            raise AssertionError("conf/haproxy.cfg has no /%s/ outside comments" % keyword)
    text, n = re.subn(r"^(\s*bind\s+)\S+", lambda m: m.group(1) + "127.0.0.1:%d" % listen_port, text, flags=re.M)
    if n != 1:
        raise AssertionError("conf/haproxy.cfg: expected one bind line, found %d" % n)
    ports = iter(server_ports)
    text, n = re.subn(r"^(\s*server\s+\S+\s+)\S+", lambda m: m.group(1) + "127.0.0.1:%d" % next(ports), text,
                      flags=re.M)
    if n != len(server_ports):
        raise AssertionError("conf/haproxy.cfg: expected %d server lines, found %d" % (len(server_ports), n))
    return text


class HAProxy:
    """`haproxy -f <cfg> -db` (foreground) with its log in a file; ready when its
    frontend port accepts a connection."""

    def __init__(self, workdir, name, config_text, port):
        self.name = name
        self.port = port
        self.cfg_path = os.path.join(workdir, name + ".cfg")
        with open(self.cfg_path, "w") as f:
            f.write(config_text)
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.log = None

    def start(self, timeout=30.0):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([HAPROXY, "-f", self.cfg_path, "-db"], stdout=self.log,
                                     stderr=subprocess.STDOUT)

        def accepting():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s:\n%s" % (self.name, self.proc.returncode, self.output()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(accepting, timeout=timeout, what="%s accepting on %d" % (self.name, self.port))

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log and not self.log.closed:
            self.log.close()


class Fleet:
    """Three vaultwire instances (ids 1-3), each with a proxy_protocol listener, an
    admin listener and (when `peered`) a [fleet] table naming the other two; HAProxy in
    front of them."""

    def __init__(self, case, name, peered):
        self.case, self.name, self.peered = case, name, peered
        self.port = {i: free_port() for i in INSTANCE_IDS}
        self.fleet_port = {i: free_port() for i in INSTANCE_IDS}
        self.admin_port = {i: free_port() for i in INSTANCE_IDS}
        self.instances = {}
        self.haproxy = None

    def config(self, i):
        case = self.case
        fleet = ""
        if self.peered:
            cert, key = case.fleet_certs[i]
            fleet = toml_table("fleet", {"instance_id": i, "bind": "127.0.0.1:%d" % self.fleet_port[i],
                                         "ca_file": case.fleet_ca, "cert_file": cert, "key_file": key})
            for peer in INSTANCE_IDS:
                if peer != i:
                    fleet += "\n[[fleet.peer]]\nid = %d\naddress = %s\n" % (
                        peer, toml_value("127.0.0.1:%d" % self.fleet_port[peer]))
        return f"""
{case.vault_table()}
[[listener]]
bind = "127.0.0.1:{self.port[i]}"
route = "main"
proxy_protocol = true
{case.route_config()}
{toml_table("admin", {"bind": "127.0.0.1:%d" % self.admin_port[i]})}
{fleet}
{case.broker_tables()}
[log]
level = "debug"
"""

    def start(self):
        for i in INSTANCE_IDS:
            self.instances[i] = self.case.start_proxy(self.config(i), name="%s-%d" % (self.name, i))
        for i, vw in self.instances.items():
            if self.peered:
                vw.wait_log(r"fleet: instance %d accepting forwarded cancels on 127\.0\.0\.1:%d \(mutual TLS\), 2 peer"
                            % (i, self.fleet_port[i]), what="%s's fleet listener" % vw.name)
            vw.wait_log(r"admin: serving .* on http://127\.0\.0\.1:%d" % self.admin_port[i],
                        what="%s's admin listener" % vw.name)
        port = free_port()
        self.haproxy = HAProxy(self.case.tmp, "haproxy-" + self.name,
                               haproxy_config(port, [self.port[i] for i in INSTANCE_IDS]), port)
        self.case.haproxies.append(self.haproxy)
        self.haproxy.start()

    def cancel_counts(self):
        """{instance id: {result: count}} from each running instance's /metrics."""
        out = {}
        for i, vw in self.instances.items():
            page = vw.metrics_page()
            if page is None or page[0] != 200:
                raise AssertionError("%s: no /metrics page (%r)" % (vw.name, page and page[0]))
            out[i] = {k: int(float(v)) for k, v in CANCEL_RE.findall(page[1])}
        return out

    def sessions_opened(self):
        return {i: len(vw.opened_sessions()) for i, vw in self.instances.items()}

    def stop(self):
        """HAProxy, then every instance (SIGTERM); {id: exit status}."""
        if self.haproxy:
            self.haproxy.stop()
        return {i: vw.stop() for i, vw in self.instances.items()}


def delta(before, after, result):
    """Sum over the instances of the change of one cancel result."""
    return sum(after[i].get(result, 0) - before.get(i, {}).get(result, 0) for i in after)


class FleetTest(ProxyTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.haproxies = []
        cls.addClassCleanup(cls._stop_haproxies)
        try:
            cls.fleet_ca, cls.fleet_certs = make_fleet_certs(cls.tmp, INSTANCE_IDS)
            cls.fleet = Fleet(cls, "fleet", peered=True)
            cls.fleet.start()
        except BaseException:
            cls._any_failure = True
            raise

    @classmethod
    def _stop_haproxies(cls):
        for h in cls.haproxies:
            h.stop()

    @classmethod
    def _dump_logs(cls):
        super()._dump_logs()
        for h in cls.haproxies:
            sys.stderr.write("\n===== %s log (last 100 lines) =====\n" % h.name)
            sys.stderr.write("\n".join(h.output().splitlines()[-100:]) + "\n")
        sys.stderr.flush()

    # -- cancels -------------------------------------------------------------

    def running_pid(self, sql, client_gone):
        """The pid of the backend running `sql`, once pg_stat_activity shows it active."""
        def find():
            problem = client_gone()
            if problem:
                raise AssertionError("the client ended before its query ran: %s" % problem)
            return self.pg.admin_query("select pid from pg_stat_activity where state = 'active' and query = %s",
                                       (sql,))
        return wait_for(find, timeout=30, what="%r running" % sql)[0][0]

    def terminate(self, sql):
        self.pg.admin_query("select pg_terminate_backend(pid) from pg_stat_activity where query = %s", (sql,))

    def cancel_with_psycopg2(self, port, sql, bound):
        conn = self.connect(port=port)
        outcome = {}

        def run():
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                outcome["code"] = "completed"
            except psycopg2.Error as e:
                outcome["code"] = e.pgcode or "%s: %s" % (type(e).__name__, str(e).strip())
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            self.running_pid(sql, lambda: None if worker.is_alive() else outcome.get("code"))
            conn.cancel()  # PQcancel: a CancelRequest on a new connection to HAProxy
            worker.join(bound)
            if worker.is_alive():
                return "lost"
            return outcome["code"]
        finally:
            if worker.is_alive():
                self.terminate(sql)
                worker.join(30)
            conn.close()

    def cancel_with_psql(self, port, sql, bound):
        env = dict(os.environ, PGPASSWORD=self.token, PGSSLMODE="disable", PGCONNECT_TIMEOUT="20")
        env.pop("PGSERVICE", None)
        proc = subprocess.Popen([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                                 "-h", "127.0.0.1", "-p", str(port), "-U", "crdb-role", "-d", "defaultdb", "-c", sql],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.running_pid(sql, lambda: None if proc.poll() is None else "psql exited %s: %s"
                             % (proc.returncode, proc.stderr.read()))
            proc.send_signal(signal.SIGINT)  # psql sends a CancelRequest (PQcancel) for the running query
            try:
                _, err = proc.communicate(timeout=bound)
            except subprocess.TimeoutExpired:
                return "lost"
            m = re.search(r"ERROR:  (\w{5}): ", err)
            return m.group(1) if m else "psql exited %s: %s" % (proc.returncode, err.strip())
        finally:
            if proc.poll() is None:
                self.terminate(sql)
                try:
                    proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()

    def cancel_run(self, port, tag, count, concurrency, bound):
        """`count` queries through `port`, cancelled once running (even ones by psycopg2,
        odd ones by psql), `concurrency` at once; each client's outcome: a SQLSTATE,
        or "lost" when the query still ran `bound` seconds after its cancel."""
        def one(i):
            sql = "select pg_sleep(60) as %s_%03d" % (tag, i)
            if i % 2 == 0:
                return self.cancel_with_psycopg2(port, sql, bound)
            return self.cancel_with_psql(port, sql, bound)
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, range(count)))

    def test_1_every_cancel_reaches_the_server_whichever_instance_takes_it(self):
        fleet = self.fleet
        before, opened = fleet.cancel_counts(), fleet.sessions_opened()
        started = time.monotonic()
        outcomes = self.cancel_run(fleet.haproxy.port, "fleet", count=100, concurrency=8, bound=20)
        seconds = time.monotonic() - started
        reached = outcomes.count("57014")
        # The owner counts "forwarded" after it sent the cancel to PostgreSQL; the peer
        # that received a forwarded one counts it before: wait for both sides' counters.
        def settled():
            c = fleet.cancel_counts()
            if delta(before, c, "forwarded") >= reached and \
                    delta(before, c, "peer_received") >= delta(before, c, "peer_sent"):
                return c
            return None
        after = wait_for(settled, timeout=20, what="the cancel counters")
        figures = {r: delta(before, after, r) for r in ("forwarded", "peer_sent", "peer_received", "peer_unreachable",
                                                        "unknown_key", "rate_limited")}
        per_instance = {i: after[i].get("peer_sent", 0) - before[i].get("peer_sent", 0) for i in INSTANCE_IDS}
        sys.stderr.write("\nfleet cancels: sent %d, reached the server (57014) %d, forwarded between peers %d "
                         "(peer_sent per instance %s, peer_received %d), sent to PostgreSQL %d, peer_unreachable %d, "
                         "unknown_key %d, rate_limited %d; %.1f s\n"
                         % (len(outcomes), reached, figures["peer_sent"], per_instance, figures["peer_received"],
                            figures["forwarded"], figures["peer_unreachable"], figures["unknown_key"],
                            figures["rate_limited"], seconds))
        self.assertEqual(len(outcomes), 100)
        self.assertEqual(reached, 100, "outcomes other than 57014: %r" % [o for o in outcomes if o != "57014"])
        # Each cancel reached PostgreSQL once, from the instance that holds the session.
        self.assertEqual(figures["forwarded"], 100, figures)
        self.assertEqual(figures["peer_received"], figures["peer_sent"], figures)
        self.assertEqual((figures["peer_unreachable"], figures["unknown_key"], figures["rate_limited"]), (0, 0, 0))
        # HAProxy spread both the sessions and the cancels: some cancels crossed.
        self.assertGreater(figures["peer_sent"], 0, figures)
        self.assertTrue(all(n > opened[i] for i, n in fleet.sessions_opened().items()), fleet.sessions_opened())
        # Every connection (clients, cancels, health checks) came with a PROXY header.
        for vw in fleet.instances.values():
            self.assertNotRegex(vw.output(), r"invalid PROXY protocol header", vw.name)
        # Forwarded cancels travel over one kept connection per peer: no peer restarted
        # during the run, so each instance connected to each of its two peers once.
        connects = {i: len(re.findall(r"fleet: connected to peer \d+", vw.output()))
                    for i, vw in fleet.instances.items()}
        self.assertTrue(all(n <= len(INSTANCE_IDS) - 1 for n in connects.values()),
                        "connections opened to peers per instance %s for peer_sent %s: the links were not kept"
                        % (connects, per_instance))

    # -- load ----------------------------------------------------------------

    def test_2_pgbench_through_haproxy(self):
        pg = self.pg
        env = dict(os.environ, PGPASSWORD=pg.admin_password, PGSSLMODE="verify-full", PGSSLROOTCERT=pg.ca)
        r = subprocess.run([PGBENCH, "-i", "-s", "1", "-h", "localhost", "-p", str(pg.port), "-U", pg.admin_user,
                            "defaultdb"], env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        pg.admin_query("grant all on all tables in schema public to app_owner")
        opened = self.fleet.sessions_opened()
        env = dict(os.environ, PGPASSWORD=self.token, PGSSLMODE="disable")
        env.pop("PGSERVICE", None)
        r = subprocess.run([PGBENCH, "-n", "-S", "-c", "16", "-j", "2", "-T", "10", "-h", "127.0.0.1",
                            "-p", str(self.fleet.haproxy.port), "-U", "crdb-role", "defaultdb"],
                           env=env, capture_output=True, text=True, timeout=120)
        tps, txns, failed = TPS_RE.search(r.stdout), TXNS_RE.search(r.stdout), FAILED_RE.search(r.stdout)
        sys.stderr.write("\nfleet pgbench -S -c16 -j2 -T10: %s transactions, tps %s, failed %s\n"
                         % (txns and txns.group(1), tps and tps.group(1), failed and failed.group(1)))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIsNotNone(failed, r.stdout)
        self.assertEqual(int(failed.group(1)), 0, r.stdout)
        self.assertGreater(int(txns.group(1)), 0, r.stdout)
        self.assertNotRegex(r.stderr, r"(?i)error|aborted", r.stderr[-3000:])
        # 16 clients in turn over three instances: each served some.
        now = self.fleet.sessions_opened()
        self.assertTrue(all(now[i] > opened[i] for i in INSTANCE_IDS), (opened, now))

    # -- one instance stops ---------------------------------------------------

    def test_3_sigterm_ends_one_instances_sessions_only(self):
        fleet = self.fleet
        victim = 3
        sessions = []  # (Raw, instance id)
        try:
            for _ in range(9):
                r = Raw(fleet.haproxy.port)
                _, secret = backend_key(r.login(self.token))
                sessions.append((r, (secret & 0xffffffff) >> 28))
            self.assertEqual(sorted({i for _, i in sessions}), list(INSTANCE_IDS), "roundrobin left an instance out")
            for r, _ in sessions:
                rows, err = r.query("select 1")
                self.assertEqual((rows, err), ([("1",)], None))
            fleet.instances[victim].signal(signal.SIGTERM)
            fleet.instances[victim].wait_log(r"signal 15: no new connections")
            for r, i in sessions:
                if i == victim:
                    f = r.read_error()
                    self.assertEqual((f.get("S"), f.get("C"), f.get("M")), ("FATAL", "57P01", SHUTTING_DOWN), f)
                    self.assertTrue(r.closed_without_reply(timeout=20))
            self.assertEqual(fleet.instances[victim].proc.wait(timeout=60), 0)
            # The other instances' sessions go on.
            for r, i in sessions:
                if i != victim:
                    rows, err = r.query("select 2")
                    self.assertEqual((rows, err), ([("2",)], None), "instance %d" % i)
            # New clients are served by the other two: HAProxy's retries and redispatch
            # take a connection refused by the stopped instance elsewhere before the
            # health checks mark it down.
            for _ in range(4):
                with Raw(fleet.haproxy.port) as r:
                    _, secret = backend_key(r.login(self.token))
                    self.assertNotEqual((secret & 0xffffffff) >> 28, victim)
                    rows, err = r.query("select 3")
                    self.assertEqual((rows, err), ([("3",)], None))
                    r.send(TERMINATE)
        finally:
            for r, _ in sessions:
                try:
                    r.send(TERMINATE)
                except OSError:
                    pass
                r.close()

    # -- the same without [fleet] --------------------------------------------

    def test_4_without_fleet_cancels_are_lost(self):
        plain = Fleet(type(self), "plain", peered=False)
        try:
            plain.start()
            before = plain.cancel_counts()
            outcomes = self.cancel_run(plain.haproxy.port, "plain", count=12, concurrency=12, bound=8)
            after = plain.cancel_counts()
            reached = outcomes.count("57014")
            sys.stderr.write("\nwithout [fleet]: sent %d, reached the server (57014) %d, lost %d; sent to PostgreSQL "
                             "%d, unknown_key %d, rate_limited %d\n"
                             % (len(outcomes), reached, outcomes.count("lost"), delta(before, after, "forwarded"),
                                delta(before, after, "unknown_key"), delta(before, after, "rate_limited")))
            self.assertEqual(set(outcomes) - {"57014", "lost"}, set(), outcomes)
            self.assertGreaterEqual(outcomes.count("lost"), 1, outcomes)
        finally:
            statuses = plain.stop()
        self.assertEqual(statuses, {i: 0 for i in INSTANCE_IDS})

    # -- after every instance stopped -----------------------------------------

    def test_5_nothing_left_once_every_instance_stopped(self):
        users = set()
        for vw in self.fleet.instances.values():
            users |= {user for _, user, _, _, _, _ in vw.opened_sessions()}
        statuses = self.fleet.stop()
        self.assertEqual(statuses, {i: 0 for i in INSTANCE_IDS})
        self.assertTrue(users, "no session was opened")
        wait_for(lambda: not self.vault.dev_lease_ids(), timeout=30, what="every lease revoked (left: %s)"
                 % sorted(self.vault.dev_lease_ids()))
        wait_for(lambda: not self.pg.count_existing(users), timeout=30, what="every dynamic user dropped")
        self.assertEqual(self.pg.roles_with_prefix("v-"), [])


if __name__ == "__main__":
    unittest.main()
