#!/usr/bin/python3
"""The driver behind bench/run.sh: vaultwire against a direct connection and PgBouncer.

Starts PostgreSQL (tests/support/pg-harness, TLS, scram-sha-256), vault-dev, vaultwire
and PgBouncer (session mode, server_tls_sslmode = verify-full against the same CA),
runs the scenarios of issue 7 on each path interleaved (A B C A B C ...), and writes
RESULTS.md and gnuplot PNGs into --output. Paths:

  direct     libpq -> PostgreSQL, sslmode=verify-full, SCRAM user
  vaultwire  libpq -> vaultwire (plaintext on loopback, password = a Vault token)
             -> PostgreSQL (verify-full, dynamic user from vault-dev)
  pgbouncer  libpq -> PgBouncer (plaintext on loopback, auth_type = plain)
             -> PostgreSQL (verify-full, SCRAM user)
  relay      S1 and S6 only, a reference: libpq -> bench/relay.c -> PostgreSQL, TLS
             (verify-full) end to end through a relay that only moves bytes. Its CPU
             per transaction is the floor any proxy pays on this machine.
  tls-relay  S1 and S6 only, a reference: libpq (plaintext) -> bench/relay.c
             --tls-upstream -> PostgreSQL (verify-full): the relay holds the upstream
             TLS, as any proxy that logs in for its clients must, and does nothing else.

S4 also runs bench/tlsfloor.c: the memory OpenSSL alone holds per idle verified
upstream session, with vaultwire's TLS settings, against the same PostgreSQL.

--smoke runs every scenario once, briefly; any error or a scenario with zero
transactions on any path exits non-zero. No timing is asserted in either mode.

BENCH_VAULTWIRE_EXTRA_TOML, when set, is appended to vaultwire's configuration (for
example "[runtime]\nthreads = 1" to compare thread counts).
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psycopg2

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
PATHS = ["direct", "vaultwire", "pgbouncer"]
# S1 and S6 also run the byte relay and the TLS relay, to show what a proxy that does
# nothing costs.
FLOOR_PATHS = PATHS + ["relay", "tls-relay"]
ALL_PATHS = FLOOR_PATHS
ROLE = "bench"


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_s():
    """CPU seconds all cores spent outside idle and iowait since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # user nice system [idle iowait] irq softirq steal


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # fields from the state (3rd) on


def process_cpu_s(pid):
    """utime + stime of a process, all its threads (/proc/PID/stat)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_cpu_s(pid):
    """CPU seconds of PostgreSQL: the postmaster, its live children (backends, helpers)
    and the children it has reaped (cutime + cstime), so backends that ended between
    two readings still count."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = _stat_fields(d)
        except OSError:
            continue  # ended meanwhile: now in the postmaster's cutime
        if int(d) == pid:
            total += sum(int(x) for x in fields[11:15])
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def postmaster_children(pid):
    """How many processes have the postmaster as parent (backends and helpers)."""
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if int(_stat_fields(d)[1]) == pid:
                n += 1
        except OSError:
            pass  # ended meanwhile
    return n


def clients_cpu_s():
    """CPU seconds of the waited-for children of this script (the pgbench runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


class Bench:
    def __init__(self, args):
        self.a = args
        self.smoke = args.smoke
        self.reps = 1 if args.smoke else args.reps
        self.T = args.duration if args.duration else (2 if args.smoke else 20)
        self.n_idle = args.idle_connections or (50 if args.smoke else 1000)
        self.n_cold = args.cold_connections or (20 if args.smoke else 200)
        self.copy_rows = 20_000 if args.smoke else 1_000_000
        self.copy_width = 1000
        self.scale = 1 if args.smoke else 10
        self.procs = []
        self.work = tempfile.mkdtemp(prefix="vaultwire-bench.")
        os.chmod(self.work, 0o755)
        self.pg = {}
        self.results = {}   # key -> path -> list of values
        self.cpu = {}       # key -> path -> part -> list of CPU µs per transaction
        self.upstream = {}  # key -> list of {new, reused, discards} per vaultwire run
        self.extra = {}     # misc measurements
        self.commands = []  # (scenario, command line template)
        self.errors = []

    # ---------------------------------------------------------------- processes
    def start(self):
        a = self.a
        max_conn = max(self.n_idle + 256 + 64, 2 * self.n_cold + 256) + 100
        log(f"work dir {self.work}; PostgreSQL max_connections={max_conn}")
        out = subprocess.run([a.pg_harness, "start", f"{self.work}/pg", "--auth", "scram-sha-256",
                              "--ssl-only", "--max-connections", str(max_conn)],
                             check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition("=")
            self.pg[k] = v
        pg = self.pg
        self.admin_dsn = (f"host=localhost port={pg['PGH_PORT']} dbname=defaultdb user={pg['PGH_ADMIN_USER']} "
                          f"password={pg['PGH_ADMIN_PASSWORD']} sslmode=verify-full sslrootcert={pg['PGH_CA']}")

        # vault-dev
        vd = subprocess.Popen([a.vault_dev_bin, "--listen", "127.0.0.1:0", "--root-token", "root", "--quiet"],
                              stdout=subprocess.PIPE, stderr=open(f"{self.work}/vault-dev.err", "w"), text=True)
        self.procs.append(vd)
        line = vd.stdout.readline()
        m = re.search(r"listening on (http\S+)", line)
        if not m:
            raise BenchError(f"vault-dev did not start: {line!r}")
        self.vault = m.group(1)
        self.provision_vault()
        self.token = self.mint_token()

        # pgbench tables, owned by app_owner (the ownership pattern: dynamic users
        # are members of app_owner and SET ROLE to it).
        env = dict(os.environ, PGOPTIONS="-c role=app_owner")
        cmd = [f"{PGBIN}/pgbench", "-i", "-q", "-s", str(self.scale), self.admin_dsn]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        self.commands.append(("setup", f"PGOPTIONS='-c role=app_owner' pgbench -i -q -s {self.scale} "
                                        "'host=localhost ... user=<admin> sslmode=verify-full sslrootcert=<CA>'"))

        # vaultwire
        self.vw_port = free_port()
        self.vw_admin_port = free_port()
        cfg = f"""[vault]
address = "{self.vault}"

[[listener]]
bind = "127.0.0.1:{self.vw_port}"
route = "pg"

[route.pg]
host = "localhost"
port = {pg['PGH_PORT']}
ca_file = "{pg['PGH_CA']}"
roles = ["{ROLE}"]
default_database = "defaultdb"
{f'session_role = "{self.a.session_role}"' if self.a.session_role else ""}

[log]
level = "warn"

[admin]
bind = "127.0.0.1:{self.vw_admin_port}"
""" + os.environ.get("BENCH_VAULTWIRE_EXTRA_TOML", "")
        with open(f"{self.work}/vaultwire.toml", "w") as f:
            f.write(cfg)
        self.vaultwire_cfg = cfg
        self.start_vaultwire()

        # PgBouncer, as an unprivileged user when root (it refuses to run as root).
        self.pb_port = free_port()
        pbdir = f"{self.work}/pgbouncer"
        os.makedirs(pbdir)
        with open(f"{pbdir}/userlist.txt", "w") as f:
            f.write(f'"{pg["PGH_SCRAM_USER"]}" "{pg["PGH_SCRAM_PASSWORD"]}"\n')
        pbcfg = f"""[databases]
defaultdb = host=localhost port={pg['PGH_PORT']} dbname=defaultdb

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.pb_port}
unix_socket_dir =
auth_type = plain
auth_file = {pbdir}/userlist.txt
pool_mode = session
max_client_conn = {self.n_idle + 500}
default_pool_size = {self.n_idle + 100}
max_db_connections = 0
server_tls_sslmode = verify-full
server_tls_ca_file = {pg['PGH_CA']}
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = {pbdir}/pgbouncer.log
pidfile = {pbdir}/pgbouncer.pid
"""
        with open(f"{pbdir}/pgbouncer.ini", "w") as f:
            f.write(pbcfg)
        self.pgbouncer_cfg = re.sub(r"auth_file = .*", "auth_file = userlist.txt", pbcfg)
        kw = {}
        if os.getuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            for root_, dirs, files in os.walk(pbdir):
                os.chown(root_, pw.pw_uid, pw.pw_gid)
                for fn in files:
                    os.chown(os.path.join(root_, fn), pw.pw_uid, pw.pw_gid)
            os.chmod(f"{pbdir}/userlist.txt", 0o600)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        self.pb_popen_kw = kw
        self.start_pgbouncer()

        # The byte relay (bench/relay.c), built here: one C file, a second to compile.
        # Twice: end-to-end TLS through it ("relay"), and holding the upstream TLS
        # itself, with a plaintext client like vaultwire's ("tls-relay").
        relay_bin = f"{self.work}/relay"
        subprocess.run(["cc", "-O2", "-Wall", "-o", relay_bin,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "relay.c"), "-lssl", "-lcrypto"],
                       check=True, capture_output=True)
        self.relay_port = free_port()
        self.relay = subprocess.Popen([relay_bin, str(self.relay_port), "127.0.0.1", pg["PGH_PORT"]],
                                      stdout=subprocess.DEVNULL, stderr=open(f"{self.work}/relay.log", "w"))
        self.procs.append(self.relay)
        self.wait_port(self.relay_port, "relay", self.relay, f"{self.work}/relay.log")
        self.tls_relay_port = free_port()
        self.tls_relay = subprocess.Popen([relay_bin, str(self.tls_relay_port), "127.0.0.1", pg["PGH_PORT"],
                                           "--tls-upstream", pg["PGH_CA"], "localhost"],
                                          stdout=subprocess.DEVNULL, stderr=open(f"{self.work}/tls-relay.log", "w"))
        self.procs.append(self.tls_relay)
        self.wait_port(self.tls_relay_port, "tls-relay", self.tls_relay, f"{self.work}/tls-relay.log")
        self.allow_cleartext_login(pg["PGH_PLAIN_USER"])

        self.dsn = {
            "direct": (f"host=localhost port={pg['PGH_PORT']} dbname=defaultdb user={pg['PGH_SCRAM_USER']} "
                       f"sslmode=verify-full sslrootcert={pg['PGH_CA']}", pg["PGH_SCRAM_PASSWORD"]),
            "vaultwire": (f"host=127.0.0.1 port={self.vw_port} dbname=defaultdb user={ROLE} sslmode=disable",
                          self.token),
            "pgbouncer": (f"host=127.0.0.1 port={self.pb_port} dbname=defaultdb user={pg['PGH_SCRAM_USER']} "
                          "sslmode=disable", pg["PGH_SCRAM_PASSWORD"]),
            # hostaddr: connect to the relay, verify the certificate against "localhost".
            "relay": (f"host=localhost hostaddr=127.0.0.1 port={self.relay_port} dbname=defaultdb "
                      f"user={pg['PGH_SCRAM_USER']} sslmode=verify-full sslrootcert={pg['PGH_CA']}",
                      pg["PGH_SCRAM_PASSWORD"]),
            "tls-relay": (f"host=127.0.0.1 port={self.tls_relay_port} dbname=defaultdb user={pg['PGH_PLAIN_USER']} "
                          "sslmode=disable", pg["PGH_PLAIN_PASSWORD"]),
        }
        self.dsn_shown = {
            "direct": "host=localhost port=$PGPORT dbname=defaultdb user=scram_user sslmode=verify-full sslrootcert=$CA",
            "vaultwire": f"host=127.0.0.1 port=$VAULTWIRE_PORT dbname=defaultdb user={ROLE} sslmode=disable  (PGPASSWORD=<Vault token>)",
            "pgbouncer": "host=127.0.0.1 port=$PGBOUNCER_PORT dbname=defaultdb user=scram_user sslmode=disable",
            "relay": "host=localhost hostaddr=127.0.0.1 port=$RELAY_PORT dbname=defaultdb user=scram_user "
                     "sslmode=verify-full sslrootcert=$CA",
            "tls-relay": "host=127.0.0.1 port=$TLS_RELAY_PORT dbname=defaultdb user=plain_user sslmode=disable",
        }
        for p in ALL_PATHS:
            self.query(p, "SELECT count(*) FROM pgbench_branches")
        log("all paths answer")

    def wait_port(self, port, what, proc, logfile):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = open(logfile).read()[-4000:] if os.path.exists(logfile) else ""
                raise BenchError(f"{what} exited with {proc.returncode}: {tail}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{what} did not listen on {port}")

    def allow_cleartext_login(self, user):
        """The tls-relay path logs in with a cleartext password inside the relay's TLS:
        libpq refuses SCRAM when the server offers channel binding (SCRAM-SHA-256-PLUS,
        as PostgreSQL does over TLS) and its own connection is plaintext, as a guard
        against stripped TLS. So PostgreSQL gets a `password` line for this one user,
        and a SIGHUP; the login happens once per connection, outside what S1 and S6 time."""
        hba = os.path.join(self.pg["PGH_DIR"], "data", "pg_hba.conf")
        with open(hba) as f:
            lines = f.read().splitlines(keepends=True)
        i = next(k for k, line in enumerate(lines) if line.startswith("hostssl"))
        lines.insert(i, f"hostssl all  {user}  127.0.0.1/32  password\n")
        with open(hba, "w") as f:
            f.writelines(lines)
        log_path = self.pg["PGH_LOG"]
        start = os.path.getsize(log_path)
        os.kill(int(self.pg["PGH_PID"]), signal.SIGHUP)
        deadline = time.monotonic() + 30
        while True:
            with open(log_path, errors="replace") as f:
                f.seek(start)
                if "reloading configuration files" in f.read():
                    return
            if time.monotonic() > deadline:
                raise BenchError("PostgreSQL did not log a configuration reload within 30 s of SIGHUP")
            time.sleep(0.05)

    def start_vaultwire(self):
        vlog = open(f"{self.work}/vaultwire.log", "a")
        self.vw = subprocess.Popen([self.a.vaultwire_bin, "run", "--config", f"{self.work}/vaultwire.toml"],
                                   stdout=vlog, stderr=subprocess.STDOUT)
        self.procs.append(self.vw)
        self.wait_port(self.vw_port, "vaultwire", self.vw, f"{self.work}/vaultwire.log")

    def start_pgbouncer(self):
        pbdir = f"{self.work}/pgbouncer"
        self.pb = subprocess.Popen(["pgbouncer", f"{pbdir}/pgbouncer.ini"],
                                   stdout=open(f"{self.work}/pgbouncer.out", "a"), stderr=subprocess.STDOUT,
                                   **self.pb_popen_kw)
        self.procs.append(self.pb)
        self.wait_port(self.pb_port, "pgbouncer", self.pb, f"{pbdir}/pgbouncer.log")

    def restart(self, path):
        """A fresh vaultwire or PgBouncer process on the same port and configuration."""
        old = self.vw if path == "vaultwire" else self.pb
        old.terminate()
        try:
            old.wait(30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{path} did not stop within 30 s of SIGTERM")
        self.procs.remove(old)
        # PgBouncer answers SIGTERM with "fast exit" and status 1.
        if old.returncode not in ((0, -signal.SIGTERM) if path == "vaultwire" else (0, 1, -signal.SIGTERM)):
            raise BenchError(f"{path} exited with status {old.returncode} on SIGTERM")
        if path == "vaultwire":
            self.start_vaultwire()
        else:
            self.start_pgbouncer()

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run([self.a.pg_harness, "stop", f"{self.work}/pg"], capture_output=True)
        if not self.a.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---------------------------------------------------------------- Vault
    def vault_call(self, method, path, body=None, token="root"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.vault}{path}", data=data, method=method,
                                     headers={"X-Vault-Token": token, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
        return json.loads(text) if text else {}

    def provision_vault(self):
        pg = self.pg
        self.vault_call("POST", "/v1/sys/mounts/database", {"type": "database"})
        self.vault_call("POST", "/v1/database/config/pg", {
            "plugin_name": "postgresql-database-plugin", "allowed_roles": ROLE,
            "connection_url": (f"postgresql://{{{{username}}}}:{{{{password}}}}@localhost:{pg['PGH_PORT']}/defaultdb"
                               f"?sslmode=verify-full&sslrootcert={pg['PGH_CA']}"),
            "username": pg["PGH_ADMIN_USER"], "password": pg["PGH_ADMIN_PASSWORD"]})
        self.vault_call("POST", f"/v1/database/roles/{ROLE}", {
            "db_name": "pg",
            "creation_statements": ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
                                    "'{{expiration}}' IN ROLE app_owner; ALTER ROLE \"{{name}}\" SET ROLE app_owner;"),
            "revocation_statements": ("REASSIGN OWNED BY \"{{name}}\" TO app_owner; DROP OWNED BY \"{{name}}\"; "
                                      "DROP ROLE IF EXISTS \"{{name}}\";"),
            "default_ttl": "1h", "max_ttl": "24h"})
        self.vault_call("POST", "/v1/sys/policies/acl/bench", {
            "policy": (f'path "database/creds/{ROLE}" {{ capabilities = ["read"] }}\n'
                       f'path "sys/leases/revoke/database/creds/{ROLE}/*" {{ capabilities = ["update"] }}\n')})

    def mint_token(self):
        r = self.vault_call("POST", "/v1/auth/token/create", {"policies": ["bench"], "ttl": "2h"})
        return r["auth"]["client_token"]

    def creds_requests(self):
        c = self.vault_call("GET", "/_dev/counters")
        return c.get("requests", {}).get(f"GET database/creds/{ROLE}", 0)

    # ---------------------------------------------------------------- clients
    def connect(self, path, token=None):
        dsn, pw = self.dsn[path]
        return psycopg2.connect(dsn, password=token or pw, connect_timeout=60)

    def query(self, path, sql):
        c = self.connect(path)
        try:
            cur = c.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            c.close()

    def upstream_counts(self):
        """vaultwire's upstream connections so far: new logins, reuses from its pool, and
        the pool's discards (its /metrics), to tell a reuse miss from proxy work."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.vw_admin_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        counts = {"new": 0.0, "reused": 0.0, "discards": 0.0}
        for line in text.splitlines():
            if line.startswith('vaultwire_upstream_connections_total{kind="new"}'):
                counts["new"] = float(line.split()[-1])
            elif line.startswith('vaultwire_upstream_connections_total{kind="reused"}'):
                counts["reused"] = float(line.split()[-1])
            elif line.startswith("vaultwire_upstream_pool_discards_total"):
                counts["discards"] = float(line.split()[-1])
        return counts

    def record(self, key, path, value):
        self.results.setdefault(key, {}).setdefault(path, []).append(value)

    def pgbench(self, key, path, args, log_prefix=None):
        dsn, pw = self.dsn[path]
        cmd = [f"{PGBIN}/pgbench", "-n", *args, "-T", str(self.T)]
        if log_prefix:
            cmd += ["--log", f"--log-prefix={log_prefix}"]
        cmd.append(dsn)
        proxy = {"vaultwire": self.vw.pid, "pgbouncer": self.pb.pid, "relay": self.relay.pid,
                 "tls-relay": self.tls_relay.pid}.get(path)
        pm = int(self.pg["PGH_PID"])

        def cpu():
            return {"machine": machine_busy_s(), "pgbench": clients_cpu_s(), "PostgreSQL": server_cpu_s(pm),
                    "proxy": process_cpu_s(proxy) if proxy else float("nan")}
        cpu0 = cpu()
        up0 = self.upstream_counts() if path == "vaultwire" else None
        r = subprocess.run(cmd, env=dict(os.environ, PGPASSWORD=pw), capture_output=True, text=True,
                           cwd=self.work)
        cpu1 = cpu()
        if up0 is not None:
            up1 = self.upstream_counts()
            self.upstream.setdefault(key, []).append({k: up1[k] - up0[k] for k in up0})
        out = r.stdout + r.stderr
        m_n = re.search(r"number of transactions actually processed: (\d+)", out)
        m_f = re.search(r"number of failed transactions: (\d+)", out)
        m_t = re.search(r"tps = ([\d.]+)", out)
        n = int(m_n.group(1)) if m_n else 0
        failed = int(m_f.group(1)) if m_f else 0
        if r.returncode != 0 or n == 0 or failed or not m_t:
            raise BenchError(f"{key} on {path}: pgbench rc={r.returncode} transactions={n} failed={failed}\n{out[-3000:]}")
        tps = float(m_t.group(1))
        log(f"{key:14s} {path:10s} {tps:12.1f} tps ({n} transactions)")
        self.record(key, path, tps)
        # CPU time per transaction: the whole machine's, and each party's. With the
        # cores saturated, throughput is the cores divided by the machine's.
        for part in cpu0:
            self.cpu.setdefault(key, {}).setdefault(path, {}).setdefault(part, []).append(
                (cpu1[part] - cpu0[part]) * 1e6 / n)
        return tps

    # ---------------------------------------------------------------- scenarios
    def s1(self):
        for mode in ("simple", "prepared"):
            key = f"S1 {mode}"
            self.commands.append((key, f"pgbench -n -S -M {mode} -c 16 -j 2 -T {self.T} \"$DSN\""))
            for _ in range(self.reps):
                for p in FLOOR_PATHS:
                    self.pgbench(key, p, ["-S", "-M", mode, "-c", "16", "-j", "2"])

    def s2(self):
        key = "S2 churn"
        self.commands.append((key, f"pgbench -n -S -C -c 8 -T {self.T} \"$DSN\""))
        for _ in range(self.reps):
            for p in PATHS:
                self.pgbench(key, p, ["-S", "-C", "-c", "8"])

    def s3(self):
        key = "S3 COPY MB/s"
        sql = (f"COPY (SELECT i, repeat('abcdefghij', {self.copy_width // 10}) "
               f"FROM generate_series(1, {self.copy_rows}) i) TO STDOUT")
        nbytes = sum(len(str(i)) + 1 + self.copy_width + 1 for i in range(1, self.copy_rows + 1))
        self.extra["copy_bytes"] = nbytes
        self.commands.append((key, f"psql -X -q -c \"{sql}\" \"$DSN\" > /dev/null   ({nbytes} bytes)"))
        for _ in range(self.reps):
            for p in PATHS:
                dsn, pw = self.dsn[p]
                t0 = time.monotonic()
                r = subprocess.run([f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, dsn],
                                   env=dict(os.environ, PGPASSWORD=pw), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
                dt = time.monotonic() - t0
                if r.returncode != 0:
                    raise BenchError(f"{key} on {p}: psql rc={r.returncode}: {r.stderr[-2000:]}")
                mbps = nbytes / dt / 1e6
                log(f"{key:14s} {p:10s} {mbps:12.1f} MB/s ({dt:.2f} s)")
                self.record(key, p, mbps)

    def s4(self):
        n = self.n_idle
        key = "S4 KiB/conn"
        self.commands.append((key, f"a fresh vaultwire / pgbouncer process (restarted on its port), one warm-up "
                                   f"connection, then {n} psycopg2 connections, each runs SELECT 1 and stays idle; "
                                   "(VmRSS after - VmRSS before) / N of the process"))
        self.s4_floor(n)
        for p in ("vaultwire", "pgbouncer"):
            # A fresh process: one that served the other scenarios has freed heap
            # that new connections reuse without growing its RSS.
            self.restart(p)
            pid = self.vw.pid if p == "vaultwire" else self.pb.pid
            warm = self.connect(p)  # one-time state (a credential, the upstream TLS context) first
            warm.cursor().execute("SELECT 1")
            before = vmrss_kib(pid)
            conns = []
            errors = []
            lock = threading.Lock()

            def opener(count):
                for _ in range(count):
                    try:
                        c = self.connect(p)
                        cur = c.cursor()
                        cur.execute("SELECT 1")
                        cur.fetchall()
                        with lock:
                            conns.append(c)
                    except Exception as e:  # noqa: BLE001
                        with lock:
                            errors.append(str(e))
            threads = [threading.Thread(target=opener, args=(n // 4 + (1 if i < n % 4 else 0),)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(1.0)
            after = vmrss_kib(pid)
            for c in conns:
                c.close()
            warm.close()
            if errors:
                raise BenchError(f"{key} on {p}: {len(errors)} errors, first: {errors[0]}")
            per = (after - before) / n
            log(f"{key:14s} {p:10s} {per:12.1f} KiB/conn (VmRSS {before} -> {after} KiB, {n} connections)")
            self.record(key, p, per)

    def s4_floor(self, n):
        """OpenSSL's own memory per idle upstream session (bench/tlsfloor.c): n verified
        TLS sessions to PostgreSQL with vaultwire's TLS settings and nothing else."""
        pg = self.pg
        key = "S4 TLS floor KiB/conn"
        floor_bin = f"{self.work}/tlsfloor"
        subprocess.run(["cc", "-O2", "-Wall", "-o", floor_bin,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "tlsfloor.c"), "-lssl", "-lcrypto"],
                       check=True, capture_output=True, text=True)
        self.commands.append((key, f"bench/tlsfloor 127.0.0.1 $PGPORT $CA localhost scram_user defaultdb {n}   "
                                   "(a warm-up session, then N TLS sessions to PostgreSQL: SSLRequest, verify-full "
                                   "handshake, StartupMessage, first reply read; VmRSS and heap in use per session)"))
        pm = int(pg["PGH_PID"])
        backends_before = postmaster_children(pm)
        r = subprocess.run([floor_bin, "127.0.0.1", pg["PGH_PORT"], pg["PGH_CA"], "localhost", pg["PGH_SCRAM_USER"],
                            "defaultdb", str(n)], capture_output=True, text=True, timeout=600)
        m = re.search(r"kib_per_session=([\d.]+) heap_kib_per_session=([\d.]+)", r.stdout)
        if r.returncode != 0 or not m:
            raise BenchError(f"{key}: tlsfloor rc={r.returncode}: {(r.stdout + r.stderr)[-2000:]}")
        log(f"{key:14s} {'openssl':10s} {float(m.group(1)):12.1f} KiB/conn, heap in use "
            f"{float(m.group(2)):.1f} KiB ({r.stdout.strip()})")
        self.record(key, "openssl", float(m.group(1)))
        self.record("S4 TLS floor heap KiB/conn", "openssl", float(m.group(2)))
        # Its backends (each stopped in authentication) end on the client's EOF; wait
        # for them, so the n connections through the proxies below find free slots.
        deadline = time.monotonic() + 60
        while postmaster_children(pm) > backends_before:
            if time.monotonic() > deadline:
                raise BenchError(f"{key}: PostgreSQL still has {postmaster_children(pm)} children "
                                 f"60 s after tlsfloor ended (had {backends_before} before)")
            time.sleep(0.1)

    def burst(self, path, tokens):
        """len(tokens) threads connect at once (one token each, None = the path's
        password) and run SELECT 1; returns seconds from release to first result."""
        n = len(tokens)
        barrier = threading.Barrier(n + 1)
        times = [None] * n
        errors = []
        conns = [None] * n

        def worker(i):
            barrier.wait()
            t0 = time.monotonic()
            try:
                c = self.connect(path, tokens[i])
                cur = c.cursor()
                cur.execute("SELECT 1")
                cur.fetchall()
                times[i] = time.monotonic() - t0
                conns[i] = c
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        for t in threads:
            t.join()
        for c in conns:
            if c is not None:
                c.close()
        if errors:
            raise BenchError(f"burst on {path}: {len(errors)} of {n} failed, first: {errors[0]}")
        return times

    def s5(self):
        n = self.n_cold
        self.commands.append(("S5a", f"{n} psycopg2 connections at once through vaultwire on one new token; "
                                     f"count of GET database/creds/{ROLE} from vault-dev's /_dev/counters"))
        self.commands.append(("S5b", f"{n} new tokens (minted beforehand) connect at once through vaultwire, "
                                     f"each runs SELECT 1; against {n} simultaneous direct verify-full SCRAM logins"))
        for _ in range(self.reps):
            tok = self.mint_token()
            before = self.creds_requests()
            self.burst("vaultwire", [tok] * n)
            creds = self.creds_requests() - before
            log(f"S5a           vaultwire  {creds} creds request(s) for {n} connections on one token")
            self.record("S5a creds requests", "vaultwire", creds)

            tokens = [self.mint_token() for _ in range(n)]
            for p, toks in (("direct", [None] * n), ("vaultwire", tokens)):
                times = self.burst(p, toks)
                p50, p99 = pct(times, 50) * 1e3, pct(times, 99) * 1e3
                log(f"S5b           {p:10s} first query p50 {p50:.1f} ms p99 {p99:.1f} ms")
                self.record("S5b p50 ms", p, p50)
                self.record("S5b p99 ms", p, p99)
                self.extra.setdefault(f"S5b samples {p}", []).extend(t * 1e3 for t in times)

    def s6(self):
        script = f"{self.work}/select1.sql"
        with open(script, "w") as f:
            f.write("SELECT 1;\n")
        self.commands.append(("S6", f"pgbench -n -c 1 -f select1.sql -T {self.T} --log \"$DSN\"  "
                                    "(select1.sql: SELECT 1; per-transaction latencies from the log)"))
        for rep in range(self.reps):
            for p in FLOOR_PATHS:
                prefix = f"s6_{p}_{rep}"
                self.pgbench("S6 tps", p, ["-c", "1", "-f", script], log_prefix=prefix)
                lat = []
                for fn in os.listdir(self.work):
                    if fn.startswith(prefix + "."):
                        with open(os.path.join(self.work, fn)) as f:
                            for line in f:
                                parts = line.split()
                                if len(parts) >= 3:
                                    lat.append(int(parts[2]))
                        os.unlink(os.path.join(self.work, fn))
                if not lat:
                    raise BenchError(f"S6 on {p}: no latencies logged")
                self.record("S6 p50 us", p, pct(lat, 50))
                self.record("S6 p99 us", p, pct(lat, 99))
                self.extra.setdefault(f"S6 samples {p}", []).extend(lat)
                log(f"S6            {p:10s} p50 {pct(lat, 50)} us p99 {pct(lat, 99)} us")

    # ---------------------------------------------------------------- report
    def med(self, key, path):
        v = self.results.get(key, {}).get(path)
        return statistics.median(v) if v else float("nan")

    def report(self, elapsed):
        out = self.a.output
        os.makedirs(out, exist_ok=True)
        m = self.med
        # (target, measured, met, the floor in this run, whether the floor misses it too)
        rows = []

        def ratio(a, b):
            return a / b if b else float("nan")

        def cpu_med(key, path, part):
            xs = self.cpu.get(key, {}).get(path, {}).get(part)
            return statistics.median(xs) if xs else float("nan")

        # The floor of S1 and S6 is the TLS relay: a proxy that holds the upstream TLS
        # session (as vaultwire must, to log in for the client) and does nothing else.
        # The byte relay, which holds no TLS at all, is shown beside it.
        for mode in ("simple", "prepared"):
            k = f"S1 {mode}"
            vp = ratio(m(k, "vaultwire"), m(k, "pgbouncer"))
            tp, rp = ratio(m(k, "tls-relay"), m(k, "pgbouncer")), ratio(m(k, "relay"), m(k, "pgbouncer"))
            rows.append((f"S1 {mode}: vaultwire ≥ 1.10 × PgBouncer", f"{vp:.2f}", vp >= 1.10,
                         f"TLS relay {tp:.2f} × PgBouncer (byte relay {rp:.2f})", not tp >= 1.10))
        k = "S2 churn"
        vp = ratio(m(k, "vaultwire"), m(k, "pgbouncer"))
        # Work every proxy path has, per connection (the lower of vaultwire's and
        # PgBouncer's): pgbench's, in its one thread (-C without -j opens each connection
        # there), and PostgreSQL's (the query, and the session reset a pooling proxy
        # sends: DISCARD ALL, PgBouncer's server_reset_query). No proxy takes connections
        # faster than pgbench's thread spends CPU on them, nor faster than the cores run
        # pgbench and PostgreSQL together.
        client_us = min(cpu_med(k, "vaultwire", "pgbench"), cpu_med(k, "pgbouncer", "pgbench"))
        server_us = min(cpu_med(k, "vaultwire", "PostgreSQL"), cpu_med(k, "pgbouncer", "PostgreSQL"))
        ncpu = os.cpu_count() or 1
        cap = min(ratio(1e6, client_us), ratio(ncpu * 1e6, client_us + server_us))
        cap_pb = ratio(cap, m(k, "pgbouncer"))
        rows.append(("S2: vaultwire ≥ 1.6 × PgBouncer", f"{vp:.2f}", vp >= 1.6,
                     f"with no proxy CPU at all: pgbench {client_us:.0f} µs per connection in one thread, "
                     f"PostgreSQL {server_us:.0f} µs, {ncpu} cores: at most {cap:.0f}/s = {cap_pb:.2f} × PgBouncer",
                     not cap_pb >= 1.6))
        pg_vw, pg_pb = cpu_med(k, "vaultwire", "PostgreSQL"), cpu_med(k, "pgbouncer", "PostgreSQL")
        rows.append(("S2: PostgreSQL CPU per connection ≤ 1.0 × PgBouncer's",
                     f"{pg_vw:.0f} vs {pg_pb:.0f} µs = {ratio(pg_vw, pg_pb):.2f}", ratio(pg_vw, pg_pb) <= 1.0,
                     "", False))
        k = "S3 COPY MB/s"
        vd = ratio(m(k, "vaultwire"), m(k, "direct"))
        rows.append(("S3: vaultwire ≥ 0.9 × direct", f"{vd:.2f}", vd >= 0.9, "", False))
        v = m("S4 KiB/conn", "vaultwire")
        fl, fh = m("S4 TLS floor KiB/conn", "openssl"), m("S4 TLS floor heap KiB/conn", "openssl")
        own = v - fl
        rows.append(("S4: vaultwire's own memory per idle connection (above the TLS floor) ≤ 2 KiB",
                     f"{own:.1f} KiB ({v:.1f} in all)", own <= 2,
                     "a proxy's own state can be near zero; see bench/ANALYSIS.md S4 for what vaultwire's is", False))
        rows.append(("S4: OpenSSL per idle verified upstream session (bench/tlsfloor.c) ≤ 16 KiB",
                     f"{fl:.1f} KiB (heap in use {fh:.1f} KiB)", fl <= 16,
                     "OpenSSL 3.0 keeps the SSL object, the peer certificates and the key-exchange keys until "
                     "SSL_free: bench/ANALYSIS.md S4 accounts for each", not fl <= 16))
        v = m("S5a creds requests", "vaultwire")
        rows.append(("S5a: exactly one creds request", f"{v:g}", v == 1, "", False))
        vd = ratio(m("S5b p99 ms", "vaultwire"), m("S5b p99 ms", "direct"))
        rows.append(("S5b: p99 first query ≤ 1.15 × direct cold p99", f"{vd:.2f}", vd <= 1.15, "", False))
        add_vw = m("S6 p50 us", "vaultwire") - m("S6 p50 us", "direct")
        add_pb = m("S6 p50 us", "pgbouncer") - m("S6 p50 us", "direct")
        add_relay = m("S6 p50 us", "relay") - m("S6 p50 us", "direct")
        add_tls = m("S6 p50 us", "tls-relay") - m("S6 p50 us", "direct")
        over = add_vw - add_tls
        rows.append(("S6: added p50 round trip ≤ TLS relay's + 2 µs, and below PgBouncer's",
                     f"{add_vw:.0f} µs: TLS relay + {over:.0f} µs; PgBouncer adds {add_pb:.0f} µs",
                     over <= 2 and add_vw < add_pb,
                     f"TLS relay adds {add_tls:.0f} µs (byte relay {add_relay:.0f} µs)", False))

        def run_text(cmd):
            try:
                return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
            except Exception:  # noqa: BLE001
                return "?"
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        L = []
        title = "SMOKE RUN — not a measurement" if self.smoke else "full run"
        L.append(f"# vaultwire benchmark results ({title})\n")
        if self.smoke:
            L.append("**This file was written by `bench/run.sh --smoke`: every scenario ran once for "
                     f"{self.T} s with small sizes. The numbers only show the harness works; they are not "
                     "results. Run `bench/run.sh` for the real thing.**\n")
        L.append(f"Written by `bench/run.sh{' --smoke' if self.smoke else ''}` on "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} in {elapsed:.0f} s. "
                 f"Repetitions per scenario and path: {self.reps} (interleaved direct, vaultwire, pgbouncer, and "
                 "relay and tls-relay in S1 and S6); "
                 "values are medians.\n")
        L.append("## Machine and versions\n")
        L.append(f"- cores (nproc): {os.cpu_count()}; CPU: {cpu}; kernel: {platform.release()}")
        L.append(f"- PostgreSQL: {run_text([f'{PGBIN}/postgres', '--version'])}; "
                 f"pgbench: {run_text([f'{PGBIN}/pgbench', '--version'])}")
        L.append(f"- PgBouncer: {run_text(['pgbouncer', '--version'])}")
        L.append(f"- vaultwire: {run_text([self.a.vaultwire_bin, 'version'])} ({self.a.build_kind})")
        threads = re.search(r"^\s*threads\s*=\s*(\d+)", os.environ.get("BENCH_VAULTWIRE_EXTRA_TOML", ""), re.M)
        L.append("- vaultwire `[runtime] threads`: " + (threads.group(1) if threads else
                 f"the default, one per core ({os.cpu_count()}); bench/ANALYSIS.md compares one and two threads"))
        L.append(f"- psycopg2 {psycopg2.__version__}, Python {platform.python_version()}\n")
        if not self.smoke and self.T != 20:
            L.append(f"**pgbench runs lasted {self.T} s, not the issue's 20 s (`--duration {self.T}`).**\n")
        if not self.smoke and (self.n_idle != 1000 or self.n_cold != 200):
            L.append(f"**S4 used {self.n_idle} idle connections and S5 {self.n_cold} at once "
                     "(the issue asks for 1,000 and 200).**\n")
        L.append("Everything runs on this one machine: PostgreSQL 15 (pg-harness: TLS, scram-sha-256, "
                 "fsync off), vault-dev, vaultwire, PgBouncer and the clients share the cores.\n")
        L.append("## Targets (issue 21)\n")
        L.append("| target | vaultwire | | the floor, measured in this run |")
        L.append("|---|---|---|---|")
        for t, v, ok, floor, floor_misses in rows:
            if "nan" in floor:
                floor, floor_misses = "", False
            if "nan" in v:
                verdict, floor = "not run", ""
            elif ok:
                verdict = "met"
            else:
                verdict = "**missed**; the floor misses it too" if floor_misses else "**missed**"
            L.append(f"| {t} | {v} | {verdict} | {floor or '–'} |")
        L.append("")
        L.append("The floor is what no proxy of vaultwire's kind (one that logs in to the server for its clients, "
                 "so holds the upstream TLS session) can beat on this machine, measured beside vaultwire: the TLS "
                 "relay (`bench/relay.c --tls-upstream`) holds the upstream TLS session and only moves bytes; the "
                 "byte relay, beside it, passes the client's TLS through untouched; `bench/tlsfloor.c` holds "
                 "OpenSSL sessions and nothing else; S2's bound takes pgbench's and PostgreSQL's CPU per "
                 "connection from the CPU table below. "
                 "Where the floor misses a target, no proxy of this kind meets it on this machine; what separates "
                 "vaultwire from the floor is the part it could still win. Profiles (perf, callgrind, heaptrack) and the commands that made them: "
                 "`bench/ANALYSIS.md` (written by hand, not by this script).\n")
        L.append("## Medians\n")
        L.append("| scenario | direct | vaultwire | pgbouncer | relay | tls-relay | vaultwire / direct "
                 "| vaultwire / pgbouncer | pgbouncer / direct | relay / direct | tls-relay / direct |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in self.results:
            if not any(p in self.results[key] for p in ALL_PATHS):
                continue  # the TLS floor: in the targets table
            vals = [m(key, p) for p in ALL_PATHS]

            def f(x):
                return "–" if x != x else (f"{x:.1f}" if abs(x) < 1e5 else f"{x:.0f}")

            def r(a, b):
                return "–" if (a != a or b != b or not b) else f"{a / b:.2f}"
            L.append(f"| {key} | {f(vals[0])} | {f(vals[1])} | {f(vals[2])} | {f(vals[3])} | {f(vals[4])} | "
                     f"{r(vals[1], vals[0])} | {r(vals[1], vals[2])} | {r(vals[2], vals[0])} | {r(vals[3], vals[0])} | "
                     f"{r(vals[4], vals[0])} |")
        L.append("")
        L.append("relay: the reference path of S1 and S6, `bench/relay.c`, a proxy that only moves bytes "
                 "(pgbench's TLS goes through it to PostgreSQL). What it costs is the floor any proxy pays "
                 "on this machine: loopback TCP and wake-ups, one read, one write and one `epoll_wait` each way. "
                 "tls-relay: the same relay holding the upstream TLS session itself (`relay --tls-upstream`), "
                 "with a plaintext client, as vaultwire and PgBouncer are: the floor of any proxy that logs in "
                 "for its clients. It parses nothing, so its client logs in with a cleartext password inside "
                 "the relay's TLS (`plain_user`, a `password` line in pg_hba.conf), once per connection.\n")
        if self.cpu:
            L.append("### CPU time per transaction\n")
            L.append("CPU µs per transaction (medians), read from /proc around each pgbench run: the whole "
                     "machine (all cores, idle excluded), pgbench, PostgreSQL (postmaster and backends) and the "
                     "proxy process. The rest of the machine's time is mostly the kernel's loopback network "
                     "work in softirq, and vault-dev. With both cores busy, throughput ≈ 2 cores ÷ the "
                     "machine's CPU per transaction.\n")
            L.append("| scenario | path | machine | pgbench | PostgreSQL | proxy | rest |")
            L.append("|---|---|---:|---:|---:|---:|---:|")
            for key, by in self.cpu.items():
                for p in ALL_PATHS:
                    if p not in by:
                        continue
                    v = {part: statistics.median(xs) for part, xs in by[p].items()}
                    rest = v["machine"] - v["pgbench"] - v["PostgreSQL"] - (0 if v["proxy"] != v["proxy"] else v["proxy"])
                    px = "–" if v["proxy"] != v["proxy"] else f"{v['proxy']:.1f}"
                    L.append(f"| {key} | {p} | {v['machine']:.1f} | {v['pgbench']:.1f} | {v['PostgreSQL']:.1f} | "
                             f"{px} | {rest:.1f} |")
            L.append("")
        if self.upstream:
            L.append("### vaultwire's upstream connections\n")
            L.append("Per pgbench run through vaultwire, from its `/metrics` before and after: upstream "
                     "connections it opened and logged in (new), took from its pool (reused), and the pool's "
                     "discards. A new one costs PostgreSQL a backend, a TLS handshake and a login.\n")
            L.append("| scenario | run | new | reused | discards | reuse rate |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for key, runs in self.upstream.items():
                for i, u in enumerate(runs, 1):
                    total = u["new"] + u["reused"]
                    rate = f"{u['reused'] / total:.3f}" if total else "–"
                    L.append(f"| {key} | {i} | {u['new']:.0f} | {u['reused']:.0f} | {u['discards']:.0f} | {rate} |")
            L.append("")
        L.append("All repetitions:\n")
        L.append("```")
        for key, by in self.results.items():
            for p, v in by.items():
                L.append(f"{key:20s} {p:10s} " + " ".join(f"{x:.1f}" for x in v))
        L.append("```\n")
        L.append("## Commands\n")
        L.append("`$DSN` is one of (PGPASSWORD in the environment):\n")
        for p in ALL_PATHS:
            L.append(f"- {p}: `{self.dsn_shown[p]}`")
        L.append("")
        for k, c in self.commands:
            L.append(f"- {k}: `{c}`")
        L.append("\nvaultwire configuration (`[pool]`, `[credentials]` and `[limits]` at their defaults):\n")
        L.append("```toml\n" + self.vaultwire_cfg.strip() + "\n```\n")
        L.append("PgBouncer configuration:\n")
        L.append("```ini\n" + self.pgbouncer_cfg.strip() + "\n```\n")
        L.append("## Notes on the method\n")
        L.append("- PgBouncer's client side uses `auth_type = plain` (cleartext password on loopback), the same "
                 "exchange vaultwire's client side has (the token as a cleartext password); its server side "
                 "logs in with SCRAM over verify-full TLS, like vaultwire's.")
        L.append("- S2 runs pgbench as the issue states (`-c 8`, no `-j`): one pgbench thread opens the "
                 "connections one after the other, so S2 measures connection setup latency more than "
                 "server capacity.")
        L.append("- S4 measures the proxy process only. PgBouncer's delta includes the server connection it "
                 "holds for each client; vaultwire's includes its upstream TLS connection. The PostgreSQL "
                 "backends are the same on both paths and not counted.")
        L.append("- S4 runs once per path (not repeated), each on a fresh process (restarted on its port "
                 "before S4): a process that served the other scenarios keeps freed memory in its allocator, "
                 "and new connections reuse it without growing the RSS, which understates what a connection "
                 "costs. One warm-up connection first keeps one-time state (a credential, a pool, TLS "
                 "contexts) out of the figure.")
        L.append("- S4's TLS floor (`bench/tlsfloor.c`) opens the same number of sessions to the same "
                 "PostgreSQL with vaultwire's upstream TLS settings (TLS ≥ 1.2, buffers released when empty, "
                 "read-ahead, verify-full), sends a StartupMessage and reads the first reply, then holds them. "
                 "It prints the RSS growth and the heap in use (glibc `mallinfo2`) per session.")
        L.append("- S5b clocks each client from the moment all threads are released to the answer of its "
                 "first `SELECT 1` (psycopg2, one thread per connection). On the vaultwire path each "
                 "connection has a new token: lookup-self, a creds request (CREATE ROLE through vault-dev's "
                 "connection pool of 4) and the upstream login.")
        L.append("- S6's added round trip is the path's median minus the direct median.\n")
        L.append("## Plots\n")
        L.append("![throughput relative to direct](throughput.png)\n")
        L.append("![S6 round-trip latency](latency.png)\n")
        L.append("![S5b time to first query](coldstart.png)\n")
        with open(os.path.join(out, "RESULTS.md"), "w") as f:
            f.write("\n".join(L))
        self.plots(out)
        log(f"wrote {out}/RESULTS.md")
        return rows

    def plots(self, out):
        if not shutil.which("gnuplot"):
            log("gnuplot missing: no plots")
            return
        d = self.work
        m = self.med
        # Only what ran (--scenarios may pick a few): gnuplot refuses empty data.
        ran = [k for k in ("S1 simple", "S1 prepared", "S2 churn", "S3 COPY MB/s") if self.results.get(k)]
        with open(f"{d}/tp.dat", "w") as f:
            for key in ran:
                base = m(key, "direct")
                label = key.replace(" MB/s", "").replace(" ", "-")
                f.write(f"{label} " + " ".join(f"{m(key, p) / base:.3f}" for p in ALL_PATHS) + "\n")
        for name in ("S6", "S5b"):
            for p in ALL_PATHS:
                s = sorted(self.extra.get(f"{name} samples {p}", []))
                with open(f"{d}/{name}_{p}.dat", "w") as f:
                    for i, v in enumerate(s):
                        f.write(f"{v} {(i + 1) / len(s)}\n")
        tag = " (smoke)" if self.smoke else ""
        have = {"S6": all(self.extra.get(f"S6 samples {p}") for p in FLOOR_PATHS),
                "S5b": all(self.extra.get(f"S5b samples {p}") for p in ("direct", "vaultwire"))}
        gp_tp = f"""
set terminal pngcairo size 900,520 font ",10"
set output "{out}/throughput.png"
set title "Throughput relative to direct (median){tag}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top left
set yrange [0:*]
set grid ytics
set ylabel "× direct"
set datafile missing "nan"
plot "{d}/tp.dat" using 2:xtic(1) title "direct", "" using 3 title "vaultwire", "" using 4 title "pgbouncer", "" using 5 title "byte relay", "" using 6 title "TLS relay (floor)"
"""
        gp_s6 = f"""
set output "{out}/latency.png"
set title "S6: SELECT 1 round trip, one client (CDF, all repetitions){tag}"
set style data lines
set key bottom right
unset yrange
set yrange [0:1]
set logscale x
set xlabel "latency (µs)"
set ylabel "fraction of transactions"
plot "{d}/S6_direct.dat" using 1:2 title "direct" lw 2, "{d}/S6_vaultwire.dat" using 1:2 title "vaultwire" lw 2, "{d}/S6_pgbouncer.dat" using 1:2 title "pgbouncer" lw 2, "{d}/S6_relay.dat" using 1:2 title "byte relay" lw 2 dt 3, "{d}/S6_tls-relay.dat" using 1:2 title "TLS relay (floor)" lw 2 dt 2
"""
        gp_s5 = f"""
set style data lines
set key bottom right
set yrange [0:1]
set logscale x
set output "{out}/coldstart.png"
set title "S5b: time to first query, {self.n_cold} new clients at once (CDF){tag}"
set xlabel "time to first query (ms)"
set ylabel "fraction of connections"
plot "{d}/S5b_direct.dat" using 1:2 title "direct (cold SCRAM + TLS login)" lw 2, "{d}/S5b_vaultwire.dat" using 1:2 title "vaultwire (new token each)" lw 2
"""
        gp = "set terminal pngcairo size 900,520 font \",10\"\n"
        gp += gp_tp if ran else ""
        gp += gp_s6 if have["S6"] else ""
        gp += gp_s5 if have["S5b"] else ""
        with open(f"{d}/plots.gp", "w") as f:
            f.write(gp)
        r = subprocess.run(["gnuplot", f"{d}/plots.gp"], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError("gnuplot failed: " + r.stderr[-2000:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=0, help="seconds per pgbench run (default 20, smoke 2)")
    ap.add_argument("--idle-connections", type=int, default=0)
    ap.add_argument("--cold-connections", type=int, default=0)
    ap.add_argument("--scenarios", default="S1,S2,S3,S5,S4,S6")
    ap.add_argument("--output", required=True)
    ap.add_argument("--vaultwire-bin", required=True)
    ap.add_argument("--vault-dev-bin", required=True)
    ap.add_argument("--pg-harness", required=True)
    ap.add_argument("--build-kind", default="Release")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--session-role", default="",
                    help="route.session_role of the vaultwire under test (SET ROLE after each login and reuse)")
    a = ap.parse_args()
    if not shutil.which("pgbouncer"):
        print("bench: pgbouncer is not installed (scripts/bootstrap.sh installs it)", file=sys.stderr)
        return 2
    b = Bench(a)
    t0 = time.monotonic()
    rc = 0
    try:
        b.start()
        for s in a.scenarios.split(","):
            getattr(b, s.strip().lower())()
        rows = b.report(time.monotonic() - t0)
        for t, v, ok, floor, floor_misses in rows:
            log(f"{'met   ' if ok else 'MISSED'} {t}: {v}" + (f"  [floor: {floor}]" if floor else ""))
    except (BenchError, subprocess.CalledProcessError, psycopg2.Error, OSError) as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        if isinstance(e, subprocess.CalledProcessError):
            print((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr,
                  file=sys.stderr)
        for fn in ("vaultwire.log", "pgbouncer/pgbouncer.log"):
            pth = os.path.join(b.work, fn)
            if os.path.exists(pth):
                print(f"--- {fn} (tail)", file=sys.stderr)
                print(open(pth).read()[-3000:], file=sys.stderr)
        rc = 1
    finally:
        b.stop()
    log(f"done in {time.monotonic() - t0:.0f} s, {'ok' if rc == 0 else 'FAILED'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
