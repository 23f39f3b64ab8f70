"""client_auth = "peer": clients on the listener's unix socket log in with no password,
identified by the kernel (SO_PEERCRED) against [[listener.peer]] rules, and get
credentials read with vaultwire's own Vault token ([vault.auth] approle against
vault-dev, as test_vault_auth.py).

- psql over the socket as the test's uid (root in CI), no PGPASSWORD, no .pgpass;
- another uid (runuser -u nobody) refused 28000, naming the rule;
- TCP to the same listener refused 28000, naming the socket;
- 50 logins share one lease (one creds request);
- revoking vaultwire's own token ends a live peer session by the kill-switch (57P01 at
  idle), and a new peer login works once vaultwire has logged in again;
- two uids allowed the same role share its lease, never an upstream connection: each
  uid's second session reuses its own kept upstream (same backend pid), and the other
  uid's sessions never get it (another vaultwire, [pool] reuse = true);
- vaultwire's token at its max TTL (an AppRole role with token_ttl = token_max_ttl =
  20s): renew-self grants less than asked, so the lease read with the token ends with it;
  a peer session on it ends at idle with 57P01 before the token expires, and the next
  session gets a lease read with the next login's token (another vaultwire).

Run as root with /usr/bin/python3; environment as proxy_fixture.py.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (PSQL, ClosedError, ProxyTestCase, Raw, error_fields, free_port,  # noqa: E402
                           startup_packet, wait_for, write_secret)
from vaultdev_fixture import now_utc, parse_rfc3339  # noqa: E402
import psycopg2  # noqa: E402

VAULTWIRE_POLICY = ('path "sys/leases/revoke" { capabilities = ["update"] }\n'
                    'path "sys/leases/renew" { capabilities = ["update"] }\n'
                    'path "database/creds/crdb-role" { capabilities = ["read"] }\n')
LOGGED_IN_RE = r"logged in to Vault with method approle at auth/approle/login: token (\S+) \(service"
DYNAMIC_USER_RE = r"^v-"
TOKEN_REVOKED = ("terminating connection: the Vault token that opened this session was revoked or has expired; "
                 "reconnect with a valid token")
# The at-idle end of a session whose lease cannot outlast the end of vaultwire's own
# token that read it.
CREDENTIAL_EXPIRES = ("terminating connection: the database credential of this session expires (vaultwire's Vault "
                      "token that read it reaches its max TTL); reconnect")


def peer_login(path, user="crdb-role", database="defaultdb"):
    """A raw login on the unix socket with no password: (Raw, None) once ReadyForQuery
    came, or (None, ErrorResponse fields)."""
    r = Raw(path=path)
    r.send(startup_packet([("user", user), ("database", database)]))
    msgs = r.read_until({"Z", "E"})
    if msgs[-1][0] == "E":
        r.close()
        return None, error_fields(msgs[-1][1])
    auth = [body for t, body in msgs if t == "R"]
    assert auth and struct.unpack("!I", auth[0][:4])[0] == 0, "expected AuthenticationOk first, got %r" % (auth,)
    return r, None


@unittest.skipUnless(os.geteuid() == 0, "runs as root: another uid is needed (runuser)")
class PeerAuthTest(ProxyTestCase):
    listeners = 2  # the TCP listener and its unix socket

    @classmethod
    def setup_vault(cls):
        cls.root.sys.create_or_update_policy("vaultwire-self", VAULTWIRE_POLICY)
        cls.root.sys.enable_auth_method("approle")
        approle = cls.root.auth.approle
        approle.create_or_update_approle("vaultwire", token_policies=["vaultwire-self"], token_ttl="1h",
                                         token_max_ttl="2h")
        cls.role_file, cls.secret_file = cls.role_files("vaultwire")
        # Its token cannot be renewed past 20s: the renewal at about two thirds grants
        # what is left, and a new login replaces it.
        approle.create_or_update_approle("vaultwire-short", token_policies=["vaultwire-self"], token_ttl="20s",
                                         token_max_ttl="20s")

    @classmethod
    def role_files(cls, role, name=None):
        """Files `name`.role-id and `name`.secret-id (name: the role's) with `role`'s role ID
        and a fresh secret ID: (role_id_file, secret_id_file)."""
        approle = cls.root.auth.approle
        role_id = approle.read_role_id(role)["data"]["role_id"]
        secret_id = approle.generate_secret_id(role)["data"]["secret_id"]
        role_file = os.path.join(cls.tmp, (name or role) + ".role-id")
        secret_file = os.path.join(cls.tmp, (name or role) + ".secret-id")
        write_secret(role_file, role_id)
        write_secret(secret_file, secret_id)
        return role_file, secret_file

    @classmethod
    def proxy_config(cls):
        # The socket's directory must be reachable by another uid (nobody).
        cls.sockdir = os.path.join(cls.tmp, "peer-sock")
        os.makedirs(cls.sockdir)
        os.chmod(cls.tmp, 0o755)
        os.chmod(cls.sockdir, 0o777)
        cls.socket_path = os.path.join(cls.sockdir, ".s.PGSQL.%d" % cls.port)
        extra = f"""
[vault.auth]
method = "approle"
role_id_file = "{cls.role_file}"
secret_id_file = "{cls.secret_file}"
"""
        return f"""
{cls.vault_table()}
{extra}
[[listener]]
bind = "127.0.0.1:{cls.port}"
unix_socket = "{cls.sockdir}"
route = "main"
client_auth = "peer"
[[listener.peer]]
uid = {os.geteuid()}
roles = ["crdb-role"]
{cls.route_config()}
{cls.broker_tables()}
{cls.NO_ADMIN}
[log]
level = "trace"
"""

    def setUp(self):
        # Until vaultwire has logged in it holds no token to read credentials with
        # (peers are refused with 08001 then).
        self.proxy.wait_log(LOGGED_IN_RE, timeout=30, what="vaultwire's login")

    def peer_psql(self, sql, runas=None, sockdir=None, port=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGCONNECT_TIMEOUT="20", PGPASSFILE="/nonexistent/pgpass", PGSSLMODE="disable")
        cmd = [PSQL, "-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-h", sockdir or self.sockdir,
               "-p", str(port or self.port), "-U", "crdb-role", "-d", "defaultdb", "-c", sql]
        if runas:
            cmd = ["runuser", "-u", runas, "--"] + cmd
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    def test_1_psql_on_the_socket_logs_in_without_a_password(self):
        r = self.peer_psql("select current_user, session_user")
        self.assertEqual(r.returncode, 0, r.stderr)
        current, session = r.stdout.strip().split("|")
        # The fixture's role sets the owner role (DESIGN.md "Dynamic users"): the
        # dynamic user is the session user.
        self.assertRegex(session, DYNAMIC_USER_RE)
        self.assertEqual(current, "app_owner")
        # The log names the local identity, and the lease was read with vaultwire's token.
        self.proxy.wait_log(r"C-\d+: defaultdb/crdb-role@unix\(uid:%d\) session open: user %s"
                            % (os.geteuid(), re.escape(session)), what="the session's open line with its uid")

    @unittest.skipUnless(shutil.which("runuser"), "needs runuser")
    def test_2_another_uid_is_refused(self):
        nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True, check=True).stdout)
        nogroup = int(subprocess.run(["id", "-g", "nobody"], capture_output=True, text=True, check=True).stdout)
        r = self.peer_psql("select 1", runas="nobody")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn('FATAL:  peer authentication failed for user "crdb-role": uid %d (gid %d) matches no '
                      '[[listener.peer]] rule that allows this role' % (nobody, nogroup), r.stderr)

    def test_2b_a_role_no_rule_lists_is_refused(self):
        with Raw(path=self.socket_path) as r:
            r.send(startup_packet([("user", "other-role"), ("database", "defaultdb")]))
            fields = r.read_error()
        # other-role is not on the route at all: the route's refusal comes first.
        self.assertEqual(fields["C"], "28000", fields)

    def test_3_tcp_is_refused(self):
        with Raw(self.port) as r:
            r.send(startup_packet([("user", "crdb-role"), ("database", "defaultdb")]))
            fields = r.read_error()
            self.assertTrue(r.closed_without_reply())
        self.assertRefusal(fields, "28000", "this listener admits clients by peer authentication on its unix "
                                            "socket only (client_auth = \"peer\"): connect through "
                                            + self.socket_path)

    def test_4_fifty_logins_share_one_lease(self):
        before = self.creds_reads()
        users = set()
        for _ in range(50):
            conn = psycopg2.connect(host=self.sockdir, port=self.port, user="crdb-role", dbname="defaultdb",
                                    connect_timeout=20, passfile="/nonexistent/pgpass")
            try:
                with conn.cursor() as cur:
                    cur.execute("select session_user")
                    users.add(cur.fetchone()[0])
            finally:
                conn.close()
        self.assertEqual(len(users), 1, users)
        # At most one creds request: none when an earlier test left the lease cached.
        self.assertLessEqual(self.creds_reads() - before, 1)
        self.assertEqual(len({row[2] for row in self.proxy.opened_sessions() if row[1] in users}), 1)

    def test_5_revoked_own_token_ends_sessions_then_a_new_login_works(self):
        accessor = self.proxy.wait_log(LOGGED_IN_RE, what="vaultwire's login").group(1)
        logins_before = len(re.findall(LOGGED_IN_RE, self.proxy.output()))
        idle, err = peer_login(self.socket_path)
        self.assertIsNone(err)
        try:
            rows, err = idle.query("select session_user")
            self.assertIsNone(err)
            self.root.auth.token.revoke_accessor(accessor)
            # The recheck (token_recheck 1s) finds vaultwire's token revoked: 57P01 at idle.
            idle.sock.settimeout(30)
            self.assertRefusal(idle.read_error(), "57P01", TOKEN_REVOKED)
            self.assertTrue(idle.closed_without_reply())
        finally:
            idle.close()
        # vaultwire drops the revoked token and logs in again; then peers log in again.
        wait_for(lambda: len(re.findall(LOGGED_IN_RE, self.proxy.output())) > logins_before, timeout=30,
                 what="a new login after the revocation")

        def login_works():
            r, err = peer_login(self.socket_path)
            if r is None:
                return None
            try:
                rows, err = r.query("select session_user")
                return rows[0][0] if err is None else None
            finally:
                r.close()
        self.assertRegex(wait_for(login_works, timeout=30, interval=0.3, what="a peer login after the re-login"),
                         DYNAMIC_USER_RE)


    # -- vaultwires of their own ---------------------------------------------

    def peer_proxy(self, name, role, uids, credentials=None, pool=None):
        """Another vaultwire logging in with AppRole role `role`, its peer listener on a
        socket directory of its own admitting `uids` to crdb-role, logged in:
        (proxy, socket directory, port)."""
        role_file, secret_file = self.role_files(role, name)
        sockdir = os.path.join(self.tmp, name + "-sock")
        os.makedirs(sockdir)
        os.chmod(sockdir, 0o777)
        port = free_port()
        rules = "".join('[[listener.peer]]\nuid = %d\nroles = ["crdb-role"]\n' % uid for uid in uids)
        config = f"""
{self.vault_table()}
[vault.auth]
method = "approle"
role_id_file = "{role_file}"
secret_id_file = "{secret_file}"
[[listener]]
bind = "127.0.0.1:{port}"
unix_socket = "{sockdir}"
route = "main"
client_auth = "peer"
{rules}
{self.route_config()}
{self.broker_tables(credentials, pool)}
{self.NO_ADMIN}
[log]
level = "trace"
"""
        proxy = self.start_proxy(config, listeners=2, name=name)
        proxy.wait_log(LOGGED_IN_RE, timeout=30, what="%s's login" % name)
        return proxy, sockdir, port

    def backend_state(self, pid):
        rows = self.pg.admin_query("select state, query from pg_stat_activity where pid = %s", (pid,))
        return tuple(rows[0]) if rows else None

    @unittest.skipUnless(shutil.which("runuser"), "needs runuser")
    def test_6_two_uids_share_a_lease_never_an_upstream(self):
        nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True, check=True).stdout)
        proxy, sockdir, port = self.peer_proxy("pool-by-uid", "vaultwire", [os.geteuid(), nobody],
                                               credentials={"revoke_idle_after": "60s"}, pool={"reuse": True})
        sessions = []  # (uid name, backend pid, SQL user, new|reused), one per session

        def session(runas):
            r = self.peer_psql("select pg_backend_pid(), session_user", runas=runas, sockdir=sockdir, port=port)
            self.assertEqual(r.returncode, 0, r.stderr)
            pid, user = r.stdout.strip().split("|")
            sid, _, _, _, _, kind = proxy.opened_sessions()[-1]
            self.assertEqual(len(proxy.opened_sessions()), len(sessions) + 1)
            # Ready for the next client: kept, the session closed, the backend reset.
            proxy.wait_log(r"%s: .* upstream connection kept for reuse" % sid, timeout=30,
                           what="session %s's upstream kept" % sid)
            wait_for(lambda: self.backend_state(int(pid)) == ("idle", "DISCARD ALL"), timeout=30,
                     what="backend %s idle after DISCARD ALL" % pid)
            sessions.append((runas or "root", int(pid), user, kind))
            return int(pid)

        a = session(None)
        b = session("nobody")
        self.assertNotEqual(b, a, "uid %d got the upstream kept for uid %d" % (nobody, os.geteuid()))
        self.assertEqual(session(None), a)  # each uid reuses its own
        self.assertEqual(session("nobody"), b)
        self.assertEqual([kind for *_, kind in sessions], ["new", "new", "reused", "reused"], sessions)
        # One lease (one SQL user) for both uids: only the pool keeps them apart.
        self.assertEqual(len({user for _, _, user, _ in sessions}), 1, sessions)

    def test_7_own_token_at_its_max_ttl_ends_sessions_at_idle_before_it_expires(self):
        proxy, sockdir, port = self.peer_proxy("short-token", "vaultwire-short", [os.geteuid()])
        path = os.path.join(sockdir, ".s.PGSQL.%d" % port)
        idle, err = peer_login(path)
        self.assertIsNone(err)
        try:
            rows, err = idle.query("select session_user")
            self.assertIsNone(err)
            user = rows[0][0]
            lease = [row[2] for row in proxy.opened_sessions() if row[1] == user][0]
            accessor = [entry["token_accessor"] for entry in self.vault.dev_leases() if entry["lease_id"] == lease][0]
            expires = parse_rfc3339([t["expire_time"] for t in self.vault.dev("GET", "tokens")
                                     if t["accessor"] == accessor][0])
            # The lease's own TTL is an hour; the token that read it ends within 20s.
            # Its sessions hear the end at idle, as at a lease's max TTL (expiry_notice
            # 60s: as soon as vaultwire knows the token's end is final).
            idle.sock.settimeout(30)
            msgs = idle.read_until({"E"})
            ended = now_utc()
            self.assertRefusal(error_fields(msgs[-1][1]), "57P01", CREDENTIAL_EXPIRES)
            self.assertLess(ended, expires, "the session ended after the token that read its lease")
            self.assertTrue(idle.closed_without_reply())
        finally:
            idle.close()
        proxy.wait_log(r"lease %s ends with vaultwire's Vault token that read it" % re.escape(lease),
                       what="the lease ending with the token")

        # The next login (planned before the lease stops being served): a new session
        # gets a lease read with its token.
        def next_login():
            accessors = re.findall(LOGGED_IN_RE, proxy.output())
            return accessors[-1] if accessors.index(accessor) < len(accessors) - 1 else None
        wait_for(next_login, timeout=30, what="the login after token %s" % accessor)
        again, err = peer_login(path)
        self.assertIsNone(err)
        try:
            rows, err = again.query("select session_user")
            self.assertIsNone(err)
            self.assertNotEqual(rows[0][0], user)
            new_lease = [row[2] for row in proxy.opened_sessions() if row[1] == rows[0][0]][0]
            new_accessor = [entry["token_accessor"] for entry in self.vault.dev_leases()
                            if entry["lease_id"] == new_lease][0]
            accessors = re.findall(LOGGED_IN_RE, proxy.output())
            self.assertIn(new_accessor, accessors[accessors.index(accessor) + 1:])
        finally:
            again.close()


if __name__ == "__main__":
    unittest.main()
