"""Hardening (issue 8 items 3 and 4): auth-failure throttling per (client address,
token), per-role connection caps, the maximum session lifetime, and TCP keepalive on
both sides of a session.

Throttling: after a failed login (Vault rejected the token, or the server refused the
credential) the next attempt from the same address with the same token waits
base_delay, doubling per failure up to max_delay; meanwhile it is refused with 08004
without asking Vault; a success forgets the key. The refusal names the failures in a
row and the current wait, so the tests assert the backoff from what vaultwire says,
not from a clock.
"""
import ctypes
import os
import re
import secrets
import socket
import sys
import time
import unittest

from proxy_fixture import (CREATION, TERMINATE, LoginRefused, ProxyTestCase, Raw, free_port, wait_for)

THROTTLED_RE = re.compile(r"too many failed logins from (\S+) with this token \((\d+) in a row, waiting (\d+)(ms|s)\); "
                          r"retry after (\d+)s")

NOLOGIN_CREATION = "CREATE ROLE \"{{name}}\" WITH NOLOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
MULTI_POLICY = """
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/revoke/database/creds/*" { capabilities = ["update"] }
"""
LATE_POLICY = """
path "database/creds/crdb-role" { capabilities = ["read"] }
"""


def seconds(value, unit):
    return int(value) / 1000.0 if unit == "ms" else float(value)


class ThrottleTest(ProxyTestCase):
    route_roles = ["crdb-role", "report-role", "nologin-role"]
    # A rejected token is remembered by the broker only briefly, so a policy written
    # mid-test takes effect at the next attempt the throttle allows.
    credentials_settings = {"negative_cache": "100ms"}
    throttle_settings = {"base_delay": "1s", "max_delay": "4s"}

    @classmethod
    def setup_vault(cls):
        for role, creation in (("report-role", CREATION), ("nologin-role", NOLOGIN_CREATION)):
            cls.root.write("database/roles/" + role, db_name="crdb-config", creation_statements=creation,
                           default_ttl="1h", max_ttl="24h")
        cls.root.sys.create_or_update_policy("multi-client", MULTI_POLICY)
        cls.multi_token = cls.make_token(["multi-client"])

    @classmethod
    def long_throttle_proxy(cls, name, extra=""):
        """A vaultwire whose first failure throttles for a minute: nothing in a test can
        outlast it."""
        return cls.start_proxy(cls.single_listener_config(free_port(), extra,
                                                          throttle={"base_delay": "1m", "max_delay": "2m"}),
                               name=name)

    # -- helpers ---------------------------------------------------------------

    def raw_from(self, source, port):
        """A Raw connection from a given loopback source address."""
        r = Raw.__new__(Raw)
        r.sock = socket.create_connection(("127.0.0.1", port), timeout=20.0, source_address=(source, 0))
        r.buf = b""
        r.status = None
        return r

    def attempt(self, token, port=None, user="crdb-role", source=None):
        """One login: None when it succeeded (then Terminate), else the ErrorResponse fields."""
        port = port or self.proxy.port
        with (self.raw_from(source, port) if source else self.raw(port)) as r:
            try:
                r.login(token, user=user)
            except LoginRefused as e:
                return e.fields
            r.send(TERMINATE)
            return None

    def throttled(self, fields):
        """(address, failures in a row, wait in seconds, retry after) of an 08004 refusal."""
        self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "08004"), fields)
        m = THROTTLED_RE.fullmatch(fields.get("M", ""))
        self.assertIsNotNone(m, fields)
        return m.group(1), int(m.group(2)), seconds(m.group(3), m.group(4)), int(m.group(5))

    def vault_requests(self):
        paths = self.vault.dev("GET", "counters")["paths"]
        return sum(n for p, n in paths.items() if p.startswith("database/creds/") or p == "auth/token/lookup-self")

    def bad_token(self):
        return "hvs.NotAToken" + secrets.token_hex(6)

    # -- throttling ------------------------------------------------------------

    def test_backoff_doubles_up_to_max_delay(self):
        bad = self.bad_token()
        failures, seen = 0, set()
        while failures < 5:
            fields = self.attempt(bad)
            self.assertIsNotNone(fields, "vaultwire accepted a token Vault does not know")
            if fields.get("C") == "28P01":
                self.assertIn("Vault rejected the token", fields.get("M", ""))
                failures += 1
                continue
            address, in_a_row, wait, retry_after = self.throttled(fields)
            self.assertEqual(address, "127.0.0.1")
            self.assertEqual(in_a_row, failures)
            self.assertEqual(wait, min(1.0 * 2 ** (failures - 1), 4.0), fields)
            self.assertTrue(1 <= retry_after <= wait, fields)
            seen.add(in_a_row)
            time.sleep(0.1)  # poll until the wait is over (a refusal leaves the wait as it is)
        # Refused after each of the first four failures: waits 1s, 2s, 4s and (capped) 4s.
        self.assertEqual(seen, {1, 2, 3, 4})

    def test_throttled_logins_never_reach_vault(self):
        proxy = self.long_throttle_proxy("throttle-no-vault")
        bad = self.bad_token()
        fields = self.attempt(bad, proxy.port)
        self.assertEqual(fields.get("C"), "28P01", fields)
        before = self.vault_requests()
        closed_before = [row for row in proxy.closed_sessions() if row[1] == "throttled"]
        for _ in range(5):
            address, in_a_row, wait, retry_after = self.throttled(self.attempt(bad, proxy.port))
            self.assertEqual((address, in_a_row, wait), ("127.0.0.1", 1, 60.0))
            self.assertTrue(1 <= retry_after <= 60)
        self.assertEqual(self.vault_requests(), before, "a throttled login reached Vault")
        wait_for(lambda: len([r for r in proxy.closed_sessions() if r[1] == "throttled"]) == len(closed_before) + 5,
                 what="five sessions closed with result throttled")
        proxy.wait_log(r"login throttled: 1 failed logins in a row with this token", what="throttle log line")

    def test_other_tokens_and_addresses_are_not_affected(self):
        proxy = self.long_throttle_proxy("throttle-keys")
        bad = self.bad_token()
        self.assertEqual(self.attempt(bad, proxy.port).get("C"), "28P01")
        self.throttled(self.attempt(bad, proxy.port))
        # Another token from the same address: a good one logs in, a bad one reaches Vault.
        self.assertIsNone(self.attempt(self.token, proxy.port))
        self.assertEqual(self.attempt(self.bad_token(), proxy.port).get("C"), "28P01")
        # The same token from another address is not throttled ...
        self.assertEqual(self.attempt(bad, proxy.port, source="127.0.0.2").get("C"), "28P01")
        # ... until it fails from there too; the key is per address.
        address, in_a_row, _, _ = self.throttled(self.attempt(bad, proxy.port, source="127.0.0.2"))
        self.assertEqual((address, in_a_row), ("127.0.0.2", 1))
        address, _, _, _ = self.throttled(self.attempt(bad, proxy.port))
        self.assertEqual(address, "127.0.0.1")

    def test_a_success_resets_the_backoff(self):
        # nologin-role's users cannot log in: each attempt is a failed login (the
        # server's 28000), for a token Vault knows.
        token = self.make_token(["multi-client"])
        failures = 0
        while failures < 2:
            fields = self.attempt(token, user="nologin-role")
            if fields.get("C") == "28000":
                failures += 1
            else:
                self.assertEqual(self.throttled(fields)[1], failures)
                time.sleep(0.1)
        self.assertEqual(self.throttled(self.attempt(token, user="nologin-role"))[1:3], (2, 2.0))

        # The same token for a role it can log in as: the next attempt the throttle
        # allows succeeds.
        def logged_in():
            fields = self.attempt(token)
            if fields is None:
                return True
            self.assertEqual(fields.get("C"), "08004", fields)
            return False
        wait_for(logged_in, timeout=20, interval=0.2, what="a login once the wait is over")
        # The token is revoked: its next failure starts again at base_delay (1 in a row),
        # not at 3 in a row.
        self.root.auth.token.revoke(token)

        def refused():
            fields = self.attempt(token)
            return fields if fields is not None and fields.get("C") == "28P01" else None
        wait_for(refused, timeout=20, interval=0.2, what="the revoked token refused")
        self.assertEqual(self.throttled(self.attempt(token))[1:3], (1, 1.0))

    def test_a_role_the_tokens_policy_denies_is_not_a_failed_login(self):
        """Vault's ACL denial (the multierror "permission denied") says only that the
        token's policy lacks that role: 28000 naming the role, and the same token opens
        the role its policy allows at once (default throttle and negative_cache). A bad
        token is still a failed login, in Vault's text before 1.17 and from 1.17 on."""
        proxy = self.start_proxy(self.single_listener_config(
            free_port(), credentials={"negative_cache": None}, throttle={"base_delay": None, "max_delay": None}),
            name="default-throttle")
        self.root.sys.create_or_update_policy("crdb-only", LATE_POLICY)
        token = self.make_token(["crdb-only"])
        denied = ('Vault\'s policy for this token does not allow role "report-role" (GET database/creds/report-role: '
                  'permission denied); the token may still open other roles')
        fields = self.attempt(token, proxy.port, user="report-role")
        self.assertEqual((fields.get("S"), fields.get("C"), fields.get("M")), ("FATAL", "28000", denied), fields)
        self.assertIsNone(self.attempt(token, proxy.port), "the token was refused for the role its policy allows")
        # Role A again: the same refusal, never the throttle's 08004.
        for _ in range(3):
            fields = self.attempt(token, proxy.port, user="report-role")
            self.assertEqual((fields.get("C"), fields.get("M")), ("28000", denied), fields)
        self.assertIsNone(self.attempt(token, proxy.port))
        self.last_closed_session(proxy, "vault_denied_role")
        try:
            for style, text in (("legacy", "permission denied"), ("1.17", "permission denied; invalid token")):
                self.assertEqual(self.vault.dev("POST", "invalid-token", {"style": style}), {"style": style})
                bad = self.bad_token()
                fields = self.attempt(bad, proxy.port, user="report-role")
                self.assertEqual((fields.get("C"), fields.get("M")), ("28P01", "Vault rejected the token: " + text))
                _, in_a_row, wait, _ = self.throttled(self.attempt(bad, proxy.port))
                self.assertEqual((in_a_row, wait), (1, 1.0))
                print("\n%s: a bad token is 28P01 then throttled (%d in a row, %gs)" % (style, in_a_row, wait),
                      file=sys.stderr)
        finally:
            self.vault.dev("POST", "invalid-token", {"style": "legacy"})

    def test_a_credential_the_server_refuses_counts_as_a_failure(self):
        proxy = self.long_throttle_proxy("throttle-upstream")
        # nologin-role's users cannot log in: PostgreSQL refuses them (28000).
        fields = self.attempt(self.multi_token, proxy.port, user="nologin-role")
        self.assertEqual((fields.get("S"), fields.get("C")), ("FATAL", "28000"), fields)
        self.assertIn("not permitted to log in", fields.get("M", ""))
        before = self.vault_requests()
        self.assertEqual(self.throttled(self.attempt(self.multi_token, proxy.port, user="nologin-role"))[1], 1)
        self.assertEqual(self.vault_requests(), before)

    def test_throttling_off(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), throttle={"base_delay": "off"}),
                                 name="throttle-off")
        bad = self.bad_token()
        for _ in range(3):
            self.assertEqual(self.attempt(bad, proxy.port).get("C"), "28P01")

    # -- per-role caps ---------------------------------------------------------

    def test_per_role_cap_53300_without_vault(self):
        proxy = self.start_proxy(self.single_listener_config(
            free_port(), '[limits]\nmax_connections_per_role = { "crdb-role" = 2 }\n'), name="role-cap")
        held = [self.connect(port=proxy.port) for _ in range(2)]
        try:
            before = self.vault_requests()
            fields = self.refused(port=proxy.port)
            self.assertRefusal(fields, "53300",
                               'too many connections for role "crdb-role" (limit 2, [limits] max_connections_per_role)')
            self.assertEqual(self.vault_requests(), before, "a login over the role's cap reached Vault")
            # Another role has no cap.
            self.assertIsNone(self.attempt(self.multi_token, proxy.port, user="report-role"))
            # A session that ends frees its slot.
            held.pop().close()
            wait_for(lambda: self.attempt(self.token, proxy.port) is None, timeout=20, interval=0.1,
                     what="a crdb-role login once a slot is free")
        finally:
            for c in held:
                c.close()

    # -- maximum session lifetime -----------------------------------------------

    def test_max_session_lifetime_ends_sessions_at_idle_with_57P01(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), '[limits]\nmax_session_lifetime = "2s"\n'),
                                 name="lifetime")
        message = ("terminating connection: the session reached its maximum lifetime of 2s "
                   "([limits] max_session_lifetime); reconnect")
        idle, txn = Raw(proxy.port), Raw(proxy.port)
        try:
            idle.login(self.token)
            txn.login(self.token)
            self.assertEqual(txn.query("begin"), ([], None))
            self.assertEqual(txn.query("select 1"), ([("1",)], None))
            # The idle session ends at its lifetime.
            self.assertRefusal(idle.read_error(), "57P01", message)
            wait_for(lambda: proxy.output().count("maximum session lifetime reached") >= 2,
                     what="both sessions past their lifetime")
            # The one inside a transaction is not cut ...
            self.assertFalse(txn.has_pending(timeout=1.0), "vaultwire cut a transaction at the session's lifetime")
            self.assertEqual(txn.query("commit"), ([], None))
            # ... and ends right after its COMMIT.
            self.assertRefusal(txn.read_error(), "57P01", message)
            self.last_closed_session(proxy, "max_session_lifetime")
        finally:
            idle.close()
            txn.close()

    # -- TCP keepalive -----------------------------------------------------------

    def test_tcp_keepalive_on_client_and_upstream_sockets(self):
        proxy = self.start_proxy(self.single_listener_config(free_port(), '[limits]\ntcp_keepalive = "8s"\n'),
                                 name="keepalive")
        conn = self.connect(port=proxy.port)
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
            sockets = tcp_sockets_of(proxy.proc.pid)
            upstream = [s for s in sockets if s["remote_port"] == self.pg.port]
            client = [s for s in sockets if s["local_port"] == proxy.port and s["remote_port"] != 0]
            self.assertEqual(len(upstream), 1, sockets)
            self.assertEqual(len(client), 1, sockets)
            for kind, s in (("upstream", upstream[0]), ("client", client[0])):
                opts = socket_options(proxy.proc.pid, s["fd"])
                # Probes after 8s of silence, every 2s, 4 of them: a dead peer is dropped
                # about 16s after its last sign of life (system defaults: 7200s, 75s, 9).
                self.assertEqual(opts, {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 8, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 4},
                                 kind)
                # The kernel has the keepalive timer armed on it (/proc/net/tcp "tr" 2).
                wait_for(lambda: timer_of(s["inode"]) == 2, timeout=10, interval=0.1,
                         what="keepalive timer on the %s socket" % kind)
        finally:
            conn.close()


# -- sockets of another process: /proc and pidfd_getfd(2) ------------------------

def tcp_table():
    """inode -> (local port, remote port, timer kind) for every TCP socket."""
    out = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for line in f.read().splitlines()[1:]:
                parts = line.split()
                local, remote, timer, inode = parts[1], parts[2], parts[5], int(parts[9])
                out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                              int(timer.split(":")[0], 16))
    return out


def timer_of(inode):
    entry = tcp_table().get(inode)
    return entry[2] if entry else None


def tcp_sockets_of(pid):
    """[{fd, inode, local_port, remote_port}] of the process' TCP sockets."""
    table = tcp_table()
    found = []
    fd_dir = "/proc/%d/fd" % pid
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m and int(m.group(1)) in table:
            inode = int(m.group(1))
            local, remote, _ = table[inode]
            found.append({"fd": int(name), "inode": inode, "local_port": local, "remote_port": remote})
    return found


SYS_pidfd_getfd = 438


def socket_options(pid, fd):
    """The keepalive options of file descriptor `fd` of process `pid`, read from a
    duplicate taken with pidfd_getfd(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        if dup < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
    finally:
        os.close(pidfd)
    s = socket.socket(fileno=dup)
    try:
        return {
            "SO_KEEPALIVE": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "TCP_KEEPIDLE": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "TCP_KEEPINTVL": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "TCP_KEEPCNT": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        }
    finally:
        s.detach()
        os.close(dup)


if __name__ == "__main__":
    unittest.main()
