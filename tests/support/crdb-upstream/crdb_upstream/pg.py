"""Connections to the harness PostgreSQL over its Unix socket.

pg-harness writes `local all all trust` into pg_hba.conf, so a connection over the
socket is logged in as whichever role its startup message names, with no password.
The stand-in authenticates clients itself (auth.py) and then opens the relay
connection as the client's own role: PostgreSQL's session_user is the login user and
the backend never belongs to a superuser unless the login user is one, so no SQL the
client sends can reach the superuser (SET SESSION AUTHORIZATION is checked against
the role that authenticated the backend).

The admin connection (the harness superuser) is used only to read pg_authid.
"""

import os
import socket

from . import wire


class BackendError(Exception):
    """PostgreSQL refused the startup; `response` is its ErrorResponse, to relay as is."""

    def __init__(self, response, fields):
        super().__init__(dict(fields).get("M", "backend refused the connection"))
        self.response = response
        self.fields = fields


class Backend:
    """One PostgreSQL session: after connect(), `sock` is ready for query traffic."""

    def __init__(self, env):
        self.socket_path = os.path.join(env["PGH_SOCKET_DIR"], ".s.PGSQL.%s" % env["PGH_PORT"])
        self.sock = None
        self.params = {}
        self.pid = None
        self.secret = None

    def connect(self, startup_params, timeout=30.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.socket_path)
            s.sendall(wire.startup_message(startup_params))
            while True:
                kind, body = wire.read_message(s)
                if kind == "R":
                    code = int.from_bytes(body[:4], "big")
                    if code != wire.AUTH_OK:
                        raise RuntimeError("PostgreSQL asked for authentication %d on its Unix socket; "
                                           "pg-harness's pg_hba.conf trusts local connections" % code)
                elif kind == "S":
                    name, value = body.split(b"\0")[:2]
                    self.params[name.decode()] = value.decode()
                elif kind == "K":
                    self.pid = int.from_bytes(body[:4], "big")
                    self.secret = int.from_bytes(body[4:8], "big")
                elif kind == "E":
                    raise BackendError(wire.message("E", body), wire.parse_fields(body))
                elif kind == "Z":
                    break
        except BaseException:
            s.close()
            raise
        s.settimeout(None)
        self.sock = s
        return self

    def simple_query(self, sql):
        """Run sql; rows of the last result set (lists of text), or raise BackendError.
        Only for connections that carry no client traffic."""
        self.sock.sendall(wire.query(sql))
        rows, error = [], None
        while True:
            kind, body = wire.read_message(self.sock)
            if kind == "T":
                rows = []
            elif kind == "D":
                rows.append(wire.parse_data_row(body))
            elif kind == "E":
                error = BackendError(wire.message("E", body), wire.parse_fields(body))
            elif kind == "Z":
                if error:
                    raise error
                return rows

    def close(self):
        if self.sock is not None:
            try:
                self.sock.sendall(wire.message("X"))
            except OSError:
                pass
            self.sock.close()
            self.sock = None


def send_cancel(env, pid, secret):
    """Forward a CancelRequest to PostgreSQL (it never answers one)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5.0)
    try:
        s.connect(os.path.join(env["PGH_SOCKET_DIR"], ".s.PGSQL.%s" % env["PGH_PORT"]))
        s.sendall(wire.cancel_request(pid, secret))
        s.recv(1)  # PostgreSQL closes the connection once it has read the request
    finally:
        s.close()


def quote_literal(s):
    return "'" + s.replace("'", "''") + "'"


def quote_ident(s):
    return '"' + s.replace('"', '""') + '"'


class RoleInfo:
    def __init__(self, row):
        self.password = row[0]  # rolpassword: verifier text or None
        self.expired = row[1] == "t"
        self.can_login = row[2] == "t"
        self.superuser = row[3] == "t"


def lookup_role(env, user):
    """pg_authid facts about a role, or None when it does not exist."""
    b = Backend(env).connect([("user", env["PGH_ADMIN_USER"]), ("database", "postgres"),
                              ("application_name", "crdb-upstream-lookup")])
    try:
        rows = b.simple_query(
            "SELECT rolpassword, coalesce(rolvaliduntil < now(), false), rolcanlogin, rolsuper "
            "FROM pg_catalog.pg_authid WHERE rolname = %s" % quote_literal(user))
    finally:
        b.close()
    return RoleInfo(rows[0]) if rows else None
