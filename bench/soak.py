#!/usr/bin/python3
"""The driver behind bench/soak.sh (issue 8 item 8): churn and steady load through
vaultwire for MINUTES with faults injected, then the checks.

Starts PostgreSQL (tests/support/pg-harness), vault-dev and vaultwire ([pool] reuse on,
an audit log, revoke_idle_after = 20s), then runs at once:

  steady   vaultwire-load -c 6 on 3 long-lived tokens, a query after another
  churn    rounds of 20 s: 12 new tokens, vaultwire-load --reconnect -c 4 -r 40 on them;
           after each round half of the round's tokens are revoked in Vault (their
           leases go with them; vaultwire's recheck ends their cache entries)
  faults   one every 8 s for 4 s (then unused /_dev/fail rules are dropped), in turn:
           vault-dev /_dev/fail on database/creds (503; a delay
           within request_timeout; a reset mid-response; a 503 answered after
           request_timeout), sealed for 3 s, 503 on sys/leases/revoke (revocations must
           be retried), on auth/token/lookup-self (rechecks), two PostgreSQL backends of
           vaultwire's sessions killed (pg_terminate_backend)
  sampler  vaultwire's RSS and open descriptors every 2 s

After the load: waits (up to 2 x revoke_idle_after + 60 s) for vault-dev to hold no
lease, then checks
  - 0 live leases in vault-dev (GET /_dev/leases) and no dynamic SQL user left;
  - RSS flat: the median of the last 30 s of load within 10 % of the median of the 30 s
    after warm-up (the first 20 % of the run, at least 60 s); the same for descriptors
    other than client and PostgreSQL sockets (those follow the load: churn phase, kept
    upstreams, faults; they are checked once idle);
    once idle, no client or PostgreSQL socket left and the other descriptors (Vault
    keep-alives aside) within 10 % of the count before the load;
  - clients saw only the faults' SQLSTATEs (08001 Vault failing, 57P01 / 08006 a
    backend killed or a revoked token's session ended), no timeouts (hangs);
  - vaultwire still runs, and exits 0 on SIGTERM.
Prints a summary (and --json FILE writes it); exits 1 when a check fails.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BenchError, free_port, log, vmrss_kib  # noqa: E402

import psycopg2  # noqa: E402

ROLE = "soak"
REVOKE_IDLE_AFTER = 20
REQUEST_TIMEOUT = 5  # vaultwire's default
ALLOWED_STATES = {"08001", "57P01", "08006"}
CREATION = ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
            "IN ROLE app_owner; ALTER ROLE \"{{name}}\" SET ROLE app_owner;")
REVOCATION = ("REASSIGN OWNED BY \"{{name}}\" TO app_owner; DROP OWNED BY \"{{name}}\"; "
              "DROP ROLE IF EXISTS \"{{name}}\";")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid, vault_port, pg_port):
    """vaultwire's open descriptors by kind: {"vault": n, "postgres": n, "client": n, ...}.
    Sockets are named by the far end (from /proc/PID/net/tcp{,6}); the rest by what
    /proc/PID/fd links to (a file, a pipe, an eventfd, epoll, ...)."""
    remote = {}
    unix = set()
    try:
        with open(f"/proc/{pid}/net/unix") as f:
            next(f)
            unix = {line.split()[6] for line in f if len(line.split()) >= 7}
    except OSError:
        pass
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    remote[cols[9]] = (int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            local, far = remote.get(m.group(1), (None, None))
            kind = "unix" if m.group(1) in unix else ("vault" if far == vault_port else "postgres" if far == pg_port
                    else "listener" if far == 0 else "client" if far else "other socket")
        elif target.startswith("anon_inode:"):
            kind = target[len("anon_inode:"):].strip("[]")
        elif target.startswith("pipe:"):
            kind = "pipe"
        else:
            kind = "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def median(values):
    return statistics.median(values) if values else float("nan")


class Soak:
    def __init__(self, a):
        self.a = a
        self.duration = a.minutes * 60.0
        self.work = tempfile.mkdtemp(prefix="vaultwire-soak.")
        os.chmod(self.work, 0o755)
        self.procs = []
        self.pg = {}
        self.samples = []      # (seconds since load start, rss KiB, fds, fds other than client/PostgreSQL sockets)
        self.faults = []       # (seconds since load start, what)
        self.errors = {}       # SQLSTATE -> count (clients)
        self.examples = {}
        self.rounds = []       # churn round reports
        self.steady = None
        self.stop_load = threading.Event()
        self.lock = threading.Lock()
        self.problems = []
        self.t0 = None

    # ------------------------------------------------------------- processes
    def start(self):
        a = self.a
        out = subprocess.run([a.pg_harness, "start", f"{self.work}/pg", "--max-connections", "200"],
                             check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition("=")
            self.pg[k] = v
        pg = self.pg
        self.admin_dsn = (f"host=localhost port={pg['PGH_PORT']} dbname=defaultdb user={pg['PGH_ADMIN_USER']} "
                          f"password={pg['PGH_ADMIN_PASSWORD']} sslmode=verify-full sslrootcert={pg['PGH_CA']}")

        vd = subprocess.Popen([a.vault_dev_bin, "--listen", "127.0.0.1:0", "--root-token", "root", "--quiet",
                               "--retry-base-ms", "1000"],
                              stdout=subprocess.PIPE, stderr=open(f"{self.work}/vault-dev.err", "w"), text=True)
        self.procs.append(vd)
        m = re.search(r"listening on (http\S+)", vd.stdout.readline())
        if not m:
            raise BenchError("vault-dev did not start")
        self.vault = m.group(1)
        self.vault_port = int(self.vault.rsplit(":", 1)[1])
        self.vault_call("POST", "/v1/sys/mounts/database", {"type": "database"})
        self.vault_call("POST", "/v1/database/config/pg", {
            "plugin_name": "postgresql-database-plugin", "allowed_roles": ROLE,
            "connection_url": (f"postgresql://{{{{username}}}}:{{{{password}}}}@localhost:{pg['PGH_PORT']}/defaultdb"
                               f"?sslmode=verify-full&sslrootcert={pg['PGH_CA']}"),
            "username": pg["PGH_ADMIN_USER"], "password": pg["PGH_ADMIN_PASSWORD"]})
        self.vault_call("POST", f"/v1/database/roles/{ROLE}", {
            "db_name": "pg", "creation_statements": CREATION, "revocation_statements": REVOCATION,
            "default_ttl": "1h", "max_ttl": "24h"})
        self.vault_call("POST", "/v1/sys/policies/acl/soak", {
            "policy": (f'path "database/creds/{ROLE}" {{ capabilities = ["read"] }}\n'
                       f'path "sys/leases/revoke/database/creds/{ROLE}/*" {{ capabilities = ["update"] }}\n')})

        self.port = free_port()
        cfg = f"""[vault]
address = "{self.vault}"
request_timeout = "{REQUEST_TIMEOUT}s"

[[listener]]
bind = "127.0.0.1:{self.port}"
route = "pg"

[route.pg]
host = "localhost"
port = {pg['PGH_PORT']}
ca_file = "{pg['PGH_CA']}"
roles = ["{ROLE}"]
default_database = "defaultdb"

[credentials]
revoke_idle_after = "{REVOKE_IDLE_AFTER}s"
token_recheck = "5s"

[pool]
reuse = true

[audit]
file = "{self.work}/audit.log"

[admin]
bind = ""

[log]
level = "info"
"""
        with open(f"{self.work}/vaultwire.toml", "w") as f:
            f.write(cfg)
        self.vw_log = f"{self.work}/vaultwire.log"
        self.vw = subprocess.Popen([a.vaultwire_bin, "run", "--config", f"{self.work}/vaultwire.toml"],
                                   stdout=open(self.vw_log, "w"), stderr=subprocess.STDOUT)
        self.procs.append(self.vw)
        deadline = time.monotonic() + 30
        while not re.search(r"listening on 127\.0\.0\.1:%d" % self.port, self.vw_output()):
            if self.vw.poll() is not None or time.monotonic() > deadline:
                raise BenchError("vaultwire did not start:\n" + self.vw_output()[-3000:])
            time.sleep(0.05)
        self.conninfo = f"host=127.0.0.1 port={self.port} user={ROLE} dbname=defaultdb sslmode=disable"
        log(f"work dir {self.work}; vaultwire pid {self.vw.pid} on port {self.port}")

    def vw_output(self):
        with open(self.vw_log, errors="replace") as f:
            return f.read()

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run([self.a.pg_harness, "stop", f"{self.work}/pg"], capture_output=True)
        if not self.a.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------- Vault
    def vault_call(self, method, path, body=None, token="root"):
        """One call; the soak's own calls wait out its injected faults (a 5xx: sealed or
        a /_dev/fail rule) for up to 60 s."""
        data = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + 60
        while True:
            req = urllib.request.Request(f"{self.vault}{path}", data=data, method=method,
                                         headers={"X-Vault-Token": token, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    text = r.read()
                return json.loads(text) if text else {}
            except urllib.error.HTTPError as e:
                if e.code < 500 or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def mint(self, n):
        return [self.vault_call("POST", "/v1/auth/token/create", {"policies": ["soak"], "ttl": "2h"})
                ["auth"]["client_token"] for _ in range(n)]

    def leases(self):
        return self.vault_call("GET", "/_dev/leases")

    # ------------------------------------------------------------- load
    def kinds(self):
        return fd_kinds(self.vw.pid, self.vault_port, int(self.pg["PGH_PORT"]))

    def now(self):
        return time.monotonic() - self.t0

    def run_load_tool(self, tokens, name, args, seconds):
        path = f"{self.work}/{name}.tokens"
        with open(path, "w") as f:
            f.write("\n".join(tokens) + "\n")
        os.chmod(path, 0o600)
        r = subprocess.run([self.a.load_bin, "--tokens-file", path, "--json", "--quiet", "--timeout", "30",
                            "-T", str(max(1, int(seconds))), *args, self.conninfo],
                           capture_output=True, text=True)
        os.unlink(path)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            raise BenchError(f"{name}: vaultwire-load rc={r.returncode}: {r.stderr[-2000:]}")
        with self.lock:
            for state, n in report.get("errors_by_sqlstate", {}).items():
                self.errors[state] = self.errors.get(state, 0) + n
            for state, text in report.get("error_examples", {}).items():
                self.examples.setdefault(state, text)
        return report

    def steady_load(self):
        tokens = self.mint(3)
        self.steady = self.run_load_tool(tokens, "steady", ["-c", "6"], self.duration)

    def churn(self):
        i = 0
        while not self.stop_load.is_set():
            left = self.duration - self.now()
            if left < 5:
                break
            tokens = self.mint(12)
            rep = self.run_load_tool(tokens, f"churn-{i}", ["-C", "-c", "4", "-r", "40"], min(20, left))
            self.rounds.append(rep)
            for t in tokens[::2]:
                self.vault_call("POST", "/v1/auth/token/revoke", {"token": t})
            i += 1

    def faults_loop(self):
        admin = psycopg2.connect(self.admin_dsn)
        admin.autocommit = True
        creds = f"database/creds/{ROLE}"
        steps = [
            ("creds 503 x3", lambda: self.fail({"path": creds, "count": 3, "status": 503})),
            ("creds delay 1s (within request_timeout) x3",
             lambda: self.fail({"path": creds, "count": 3, "mode": "delay", "delay_ms": 1000})),
            ("creds reset mid-response x2", lambda: self.fail({"path": creds, "count": 2, "mode": "reset"})),
            ("pg_terminate_backend x2", lambda: self.kill_backends(admin, 2)),
            ("creds 503 after request_timeout x1",
             lambda: self.fail({"path": creds, "count": 1, "status": 503, "delay_ms": (REQUEST_TIMEOUT + 1) * 1000})),
            ("sealed 3s", self.seal_briefly),
            ("revoke 503 x3", lambda: self.fail({"path": "sys/leases/revoke", "count": 3, "status": 503})),
            ("lookup-self 503 x2", lambda: self.fail({"path": "auth/token/lookup-self", "count": 2, "status": 503})),
            ("pg_terminate_backend x2", lambda: self.kill_backends(admin, 2)),
        ]
        k = 0
        while not self.stop_load.wait(4.0):
            if self.now() > self.duration - 10:
                break
            what, act = steps[k % len(steps)]
            self.faults.append((round(self.now(), 1), what))
            act()
            # A fault lasts a few seconds: rules the traffic has not used up by then are
            # dropped (otherwise the circuit breaker's sparse probes would meet them long
            # after, and the soak would measure fast-failing clients instead of load).
            self.stop_load.wait(4.0)
            self.vault_call("DELETE", "/_dev/fail")
            k += 1
        self.vault_call("DELETE", "/_dev/fail")
        admin.close()

    def fail(self, rule):
        self.vault_call("POST", "/_dev/fail", rule)

    def seal_briefly(self):
        self.vault_call("POST", "/_dev/seal")
        try:
            self.stop_load.wait(3.0)
        finally:
            self.vault_call("POST", "/_dev/unseal")

    def kill_backends(self, admin, n):
        with admin.cursor() as cur:
            cur.execute("select pid from pg_stat_activity where usename like 'v-token-%%' and backend_type = "
                        "'client backend'")
            pids = [r[0] for r in cur.fetchall()]
            for pid in random.sample(pids, min(n, len(pids))):
                cur.execute("select pg_terminate_backend(%s)", (pid,))

    def sampler(self):
        while True:
            try:
                kinds = self.kinds()
                total = sum(kinds.values())
                self.samples.append((round(self.now(), 1), vmrss_kib(self.vw.pid), total,
                                     total - kinds.get("client", 0) - kinds.get("postgres", 0)))
            except (OSError, BenchError):
                return
            if self.stop_sampling.wait(2.0):
                return

    # ------------------------------------------------------------- run
    def run(self):
        self.stop_sampling = threading.Event()
        # The idle baseline: one session through, then quiet.
        self.run_load_tool(self.mint(1), "baseline", ["-c", "1"], 1)
        time.sleep(1)  # let the baseline session's close settle
        idle_fds_before = fd_count(self.vw.pid)
        idle_kinds_before = self.kinds()
        idle_rss_before = vmrss_kib(self.vw.pid)

        self.t0 = time.monotonic()
        def guarded(f):
            def run():
                try:
                    f()
                except Exception as e:  # a dead load thread must fail the soak, not shrink it
                    self.problems.append(f"{f.__name__} stopped at {self.now():.0f} s: {e!r}")
            return run
        threads = [threading.Thread(target=guarded(f), name=f.__name__, daemon=True)
                   for f in (self.sampler, self.steady_load, self.churn, self.faults_loop)]
        for t in threads:
            t.start()
        log(f"load for {self.duration:.0f} s: steady (6 connections), churn (rounds of 20 s), a fault every 8 s")
        next_note = 60
        while threads[1].is_alive() or threads[2].is_alive():
            time.sleep(1)
            if self.now() >= next_note and self.samples:
                _, rss, fds, _ = self.samples[-1]
                log(f"{self.now():6.0f} s: RSS {rss} KiB, {fds} fds, {len(self.faults)} faults, "
                    f"client errors {dict(sorted(self.errors.items()))}")
                next_note += 60
            if self.vw.poll() is not None:
                self.problems.append(f"vaultwire exited with {self.vw.returncode} during the load")
                break
        self.stop_load.set()
        for t in threads[1:]:
            t.join(timeout=120)
        load_end = self.now()
        log(f"load stopped at {load_end:.0f} s; waiting for vault-dev to hold no lease")

        # Idle: leases go within 2 x revoke_idle_after (a pooled connection holds its lease
        # up to revoke_idle_after, then the lease waits one more).
        deadline = time.monotonic() + 2 * REVOKE_IDLE_AFTER + 60
        leases = self.leases()
        while leases and time.monotonic() < deadline and self.vw.poll() is None:
            time.sleep(1)
            leases = self.leases()
        idle_wait = self.now() - load_end
        time.sleep(3)  # past the sweep that follows the last revocation
        self.stop_sampling.set()
        threads[0].join()
        idle_fds_after = fd_count(self.vw.pid) if self.vw.poll() is None else None
        idle_kinds_after = self.kinds() if self.vw.poll() is None else {}
        idle_rss_after = vmrss_kib(self.vw.pid) if self.vw.poll() is None else None
        leases = self.leases()
        with psycopg2.connect(self.admin_dsn) as c, c.cursor() as cur:
            cur.execute("select count(*) from pg_roles where rolname like 'v-token-%'")
            sql_users = cur.fetchone()[0]

        # ---- checks
        warm = max(60.0, 0.2 * self.duration)
        load_samples = [s for s in self.samples if s[0] <= load_end]
        win_warm = [s for s in load_samples if warm <= s[0] < warm + 30]
        win_end = [s for s in load_samples if s[0] >= load_end - 30]
        rss_warm, rss_end = median([s[1] for s in win_warm]), median([s[1] for s in win_end])
        fds_warm, fds_end = median([s[2] for s in win_warm]), median([s[2] for s in win_end])
        other_warm, other_end = median([s[3] for s in win_warm]), median([s[3] for s in win_end])
        summary = {
            "minutes": self.a.minutes,
            "load_seconds": round(load_end, 1),
            "faults_injected": len(self.faults),
            "fault_kinds": sorted({w for _, w in self.faults}),
            "steady": {k: self.steady.get(k) for k in ("queries", "connections_ok", "errors")} if self.steady else None,
            "churn_rounds": len(self.rounds),
            "churn_connections_ok": sum(r.get("connections_ok", 0) for r in self.rounds),
            "churn_errors": sum(r.get("errors", 0) for r in self.rounds),
            "client_errors_by_sqlstate": dict(sorted(self.errors.items())),
            "client_error_examples": self.examples,
            "rss_kib": {"idle_before": idle_rss_before, "after_warmup": rss_warm, "end_of_load": rss_end,
                        "idle_after": idle_rss_after, "max": max((s[1] for s in self.samples), default=None)},
            "fds": {"idle_before": idle_fds_before, "after_warmup": fds_warm, "end_of_load": fds_end,
                    "idle_after": idle_fds_after, "max": max((s[2] for s in self.samples), default=None),
                    "other_than_connections_after_warmup": other_warm, "other_than_connections_end_of_load": other_end,
                    "idle_before_by_kind": idle_kinds_before, "idle_after_by_kind": idle_kinds_after},
            "leases_left": len(leases),
            "lease_wait_seconds": round(idle_wait, 1),
            "sql_users_left": sql_users,
            "samples": len(self.samples),
            "samples_t_rss_fds_other": self.samples,
        }
        if not win_warm or not win_end:
            self.problems.append("too few samples for the RSS / descriptor windows (run at least 2 minutes)")
        else:
            # Under load the client and upstream sockets follow the load (churn phase,
            # kept upstreams, faults), so they are compared once idle (below); the rest
            # (timers, epoll, eventfds, pipes, files, Vault connections) must stay flat.
            for what, a_, b_ in (("RSS", rss_warm, rss_end),
                                 ("descriptors other than client and PostgreSQL sockets", other_warm, other_end)):
                if abs(b_ - a_) > 0.10 * a_:
                    self.problems.append(f"{what} not flat: {a_:.0f} after warm-up, {b_:.0f} at the end of the load")
        # Once idle: no client or upstream socket is left, and every other descriptor but
        # the Vault client's keep-alive connections (one per libcurl handle, a bounded
        # pool the load grew) is back where it was before the load (timers, epoll,
        # files, listeners). The baseline session's upstream may still sit in the pool
        # before the load, so sockets to PostgreSQL and clients are not compared.
        if idle_fds_after is not None:
            def rest(total, kinds):
                return total - sum(kinds.get(k, 0) for k in ("vault", "unix", "postgres", "client"))
            before, after = rest(idle_fds_before, idle_kinds_before), rest(idle_fds_after, idle_kinds_after)
            if abs(after - before) > max(1, 0.10 * before):
                self.problems.append(f"descriptors once idle (sockets aside): {after}, before the load {before} "
                                     f"({idle_kinds_after} vs {idle_kinds_before})")
            # libcurl keeps a socketpair (2 unix sockets) per easy handle, next to its
            # keep-alive connection: more than that is a leak.
            extra_unix = idle_kinds_after.get("unix", 0) - idle_kinds_before.get("unix", 0)
            extra_handles = max(0, idle_kinds_after.get("vault", 0) - idle_kinds_before.get("vault", 0))
            if extra_unix > 2 * extra_handles:
                self.problems.append(f"unix sockets once idle: {extra_unix} more than before the load, for "
                                     f"{extra_handles} more Vault connection(s)")
            if idle_kinds_after.get("postgres", 0) or idle_kinds_after.get("client", 0):
                self.problems.append(f"sockets left once idle: {idle_kinds_after}")
        if leases:
            self.problems.append(f"{len(leases)} lease(s) left in vault-dev: "
                                 + ", ".join(l["lease_id"] for l in leases[:5]))
        if sql_users:
            self.problems.append(f"{sql_users} dynamic SQL user(s) left in PostgreSQL")
        unexpected = {k: v for k, v in self.errors.items() if k not in ALLOWED_STATES}
        if unexpected:
            self.problems.append(f"client errors outside the faults' SQLSTATEs: {unexpected}")
        if not self.steady or not self.steady.get("queries"):
            self.problems.append("the steady load ran no query")
        if not summary["churn_connections_ok"]:
            self.problems.append("the churn made no connection")
        if self.vw.poll() is not None:
            self.problems.append(f"vaultwire exited with {self.vw.returncode}")
        else:
            self.vw.terminate()
            try:
                rc = self.vw.wait(60)
            except subprocess.TimeoutExpired:
                self.vw.kill()
                rc = "hung on SIGTERM"
            if rc != 0:
                self.problems.append(f"vaultwire exited with {rc} on SIGTERM")
        m = re.findall(r"stats: (.*)", self.vw_output())
        summary["vaultwire_stats"] = m[-1] if m else None
        crashes = re.findall(r"ERROR: AddressSanitizer|runtime error:|terminate called", self.vw_output())
        if crashes:
            self.problems.append(f"vaultwire's log shows {crashes[0]}")
        summary["problems"] = self.problems
        summary["faults"] = self.faults
        return summary


def main():
    ap = argparse.ArgumentParser(description="vaultwire soak: churn + steady load with faults, then leak checks")
    ap.add_argument("minutes", nargs="?", type=float, default=10.0)
    ap.add_argument("--vaultwire-bin", required=True)
    ap.add_argument("--vault-dev-bin", required=True)
    ap.add_argument("--load-bin", required=True)
    ap.add_argument("--pg-harness", required=True)
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    a = ap.parse_args()
    s = Soak(a)
    summary = None
    try:
        s.start()
        summary = s.run()
    except BaseException as e:
        log(f"soak failed: {e!r}")
        if summary is None:
            summary = {"problems": [repr(e)]}
        raise
    finally:
        if summary is not None and summary.get("problems") and not a.keep:
            a.keep = True
            log(f"keeping {s.work} for its logs")
        s.stop()
        if summary is not None:
            short = {k: v for k, v in summary.items() if k not in ("faults", "samples_t_rss_fds_other")}
            print(json.dumps(short, indent=2))
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(summary, f, indent=2)
    if summary["problems"]:
        log("FAILED: " + "; ".join(summary["problems"]))
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
