"""The relay: pgwire messages between the client (TLS) and its PostgreSQL session.

One thread per session drives both sockets with select(); both are non-blocking, so a
TLS record that carries no application data never blocks the loop, and the TLS object
is only ever touched by this thread. Messages are framed in both directions so the
relay can change the few that CockroachDB treats differently from PostgreSQL:

  client -> server
    Query / Parse    CREATE/ALTER ROLE|USER ... PASSWORD '<cleartext>': the literal is
                     replaced by a SCRAM-SHA-256 verifier of the configured cost, as
                     CockroachDB hashes passwords itself at the cost of
                     server.user_login.password_hashes.default_cost.scram_sha_256
                     (pkg/security/password/password.go; pkg/sql/create_role.go
                     checkPasswordAndGetHash). A literal that already is a SCRAM
                     verifier is stored as given; an MD5 one is refused, as
                     password.CheckPasswordHashValidity reports md5 unsupported.
                     SET SESSION AUTHORIZATION <name> / RESET SESSION AUTHORIZATION:
                     refused with CockroachDB's parse error (sqltext.py,
                     crdb_errors.session_authorization_refusal). The refusal is raised
                     by PostgreSQL itself (a DO block) so that transaction state and the
                     extended protocol's skip-until-Sync behave as for any other error.
                     DISCARD ALL: run so that the role survives (below).
  server -> client
    ErrorResponse    the PL/pgSQL CONTEXT of a refusal raised by the relay is dropped.

DISCARD ALL keeps the role: CockroachDB's DISCARD ALL resets session variables, and
`role` is not among those it resets (pkg/sql/discard.go resetSessionVar only calls Set,
and `role` has only SetWithPlanner in pkg/sql/vars.go; newer vars.go marks such
variables NoResetAll). PostgreSQL's DISCARD ALL runs SET SESSION AUTHORIZATION DEFAULT,
which also resets the role. So when the client sends DISCARD ALL (a Query, or an
extended-protocol batch that starts with its Parse or Bind and ends with Sync) and
the server is idle, the relay reads current_user, runs the client's DISCARD ALL,
then SET ROLE back, swallowing its own statements' replies; the client sees only
the replies to its DISCARD ALL.
"""

import select
import ssl
import secrets

from . import crdb_errors, scram, sqltext, wire


class _Reader:
    """Whole pgwire messages out of a byte stream."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def next(self):
        if len(self.buf) < 5:
            return None
        length = int.from_bytes(self.buf[1:5], "big")
        if length < 4 or length > wire.MAX_MESSAGE_LEN:
            raise wire.ProtocolError("message length %d" % length)
        if len(self.buf) < 1 + length:
            return None
        kind = chr(self.buf[0])
        body = bytes(self.buf[5:1 + length])
        del self.buf[:1 + length]
        return kind, body


def _recv_some(sock):
    try:
        data = sock.recv(65536)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return b""
    if not data:
        raise wire.PeerClosed()
    return data


def _send_all(sock, data):
    view = memoryview(data)
    while view:
        try:
            n = sock.send(view)
            view = view[n:]
        except (ssl.SSLWantWriteError, BlockingIOError):
            select.select([], [sock], [], 30)
        except ssl.SSLWantReadError:
            select.select([sock], [], [], 30)


def _raise_block(code, msg, detail, hint):
    """A DO block that makes PostgreSQL raise exactly this error."""
    tag = "$crdb_upstream_%s$" % secrets.token_hex(4)
    lit = lambda s: "'" + s.replace("'", "''") + "'"
    parts = ["ERRCODE = %s" % lit(code), "MESSAGE = %s" % lit(msg)]
    if detail:
        parts.append("DETAIL = %s" % lit(detail))
    if hint:
        parts.append("HINT = %s" % lit(hint))
    return "DO %s BEGIN RAISE EXCEPTION USING %s; END %s" % (tag, ", ".join(parts), tag)


class _UnsupportedHash(Exception):
    def __init__(self, scheme):
        super().__init__(scheme)
        self.scheme = scheme


class Session:
    """Relays one authenticated client. `client` is the TLS socket, `backend` the
    connected pg.Backend; log(str) writes a line to stderr."""

    def __init__(self, client, backend, login_user, scram_iterations, log):
        self.client = client
        self.backend = backend.sock
        self.login_user = login_user
        self.iterations = scram_iterations
        self.log = log
        self.creader = _Reader()
        self.breader = _Reader()
        self.pending = 0  # Query/Sync/FunctionCall sent whose ReadyForQuery has not come back
        self.batch_open = False  # extended-protocol messages sent since the last Sync
        self.discard_statements = set()  # prepared statement names whose text is DISCARD ALL
        self.held = None  # a DISCARD ALL waiting for the server to become idle: list of raw messages
        self.buffering = None  # an extended batch being collected for DISCARD ALL
        self.refusals = set()  # messages of errors the relay made PostgreSQL raise

    # -- client -> server --------------------------------------------------

    def _hash(self, cleartext):
        if scram.VERIFIER_RE.match(cleartext):
            return None
        if scram.MD5_RE.match(cleartext):
            raise _UnsupportedHash("md5")
        return scram.make_verifier(cleartext, self.iterations)

    def _rewrite(self, sql):
        refused = sqltext.refused_session_authorization(sql)
        if refused:
            code, msg, detail, hint = crdb_errors.session_authorization_refusal(sql, *refused)
            self.refusals.add(msg)
            self.log("refused %s" % ("SET SESSION AUTHORIZATION" if refused[0] == "set_name"
                                     else "RESET SESSION AUTHORIZATION"))
            return _raise_block(code, msg, detail, hint)
        try:
            new, n = sqltext.rewrite_passwords(sql, self._hash)
        except _UnsupportedHash as e:
            code, msg, hint = crdb_errors.unsupported_password_hash(e.scheme)
            self.refusals.add(msg)
            self.log("refused a pre-hashed %s password" % e.scheme)
            return _raise_block(code, msg, None, hint)
        if n:
            self.log("hashed %d password literal(s) with %d SCRAM iterations" % (n, self.iterations))
        return new

    def _to_backend(self, raw):
        _send_all(self.backend, raw)

    def _client_message(self, kind, body):
        """Handle one client message. Returns False when the session ends."""
        if self.buffering is not None:
            if kind in "BDEPC":
                if kind == "P":
                    name, sql, _ = wire.parse_parse(body)
                    (self.discard_statements.add if sqltext.is_discard_all(sql) else self.discard_statements.discard)(name)
                    self.buffering.append(self._rewritten(kind, body))
                else:
                    self.buffering.append(wire.message(kind, body))
                return True
            if kind == "S":
                batch, self.buffering = self.buffering + [wire.message(kind, body)], None
                self.pending += 1
                self._start_discard(batch)
                return True
            # A Flush (or anything else) inside the batch: the client wants replies
            # before its Sync, so the batch goes out as it is and this message is
            # handled as usual.
            self.log("DISCARD ALL batch flushed before Sync: role not restored")
            batch, self.buffering = self.buffering, None
            self.batch_open = True
            self._to_backend(b"".join(batch))
        if kind == "X":
            self._to_backend(wire.message("X"))
            return False
        if kind == "Q":
            sql = body[:-1].decode("utf-8", "replace")
            if sqltext.is_discard_all(sql) and not self.batch_open:
                self.pending += 1
                self._start_discard([wire.message(kind, body)])
                return True
            self._to_backend(self._rewritten(kind, body))
            self.pending += 1
            return True
        if kind == "P":
            name, sql, _ = wire.parse_parse(body)
            discard = sqltext.is_discard_all(sql)
            if discard:
                self.discard_statements.add(name)
            else:
                self.discard_statements.discard(name)
            if discard and not self.batch_open:
                self.buffering = [wire.message(kind, body)]
                return True
            self._to_backend(self._rewritten(kind, body))
            self.batch_open = True
            return True
        if kind == "B" and not self.batch_open and wire.parse_bind_statement(body) in self.discard_statements:
            self.buffering = [wire.message(kind, body)]
            return True
        if kind == "C" and body[:1] == b"S":
            self.discard_statements.discard(body[1:-1].decode())
        if kind == "S":
            self.pending += 1
            self.batch_open = False
        elif kind == "F":
            self.pending += 1
        elif kind in "BDEPCH":
            self.batch_open = True
        self._to_backend(wire.message(kind, body))
        return True

    def _rewritten(self, kind, body):
        if kind == "Q":
            return wire.query(self._rewrite(body[:-1].decode("utf-8", "replace")))
        name, sql, rest = wire.parse_parse(body)
        return wire.build_parse(name, self._rewrite(sql), rest)

    # -- DISCARD ALL -------------------------------------------------------

    def _start_discard(self, messages):
        """messages: the client's DISCARD ALL (a Query, or a batch ending in Sync), already
        counted in pending. Runs now if the server is idle, else once it is."""
        self.held = messages
        self._maybe_run_held()

    def _maybe_run_held(self):
        if self.held is not None and self.pending == 1:
            messages, self.held = self.held, None
            self._run_discard(messages)

    def _backend_exchange(self, raw):
        """Send raw and collect the server's messages up to and including ReadyForQuery.
        Only used while the server is idle, so every message belongs to raw."""
        self._to_backend(raw)
        out = []
        while True:
            msg = self.breader.next()
            if msg is None:
                select.select([self.backend], [], [], 60)
                self.breader.feed(_recv_some(self.backend))
                continue
            out.append(msg)
            if msg[0] == "Z":
                return out

    def _run_discard(self, messages):
        role_rows = [wire.parse_data_row(b) for k, b in self._backend_exchange(
            wire.query("SELECT current_user::text, session_user::text")) if k == "D"]
        current, session = role_rows[0] if role_rows else (None, None)
        replies = self._backend_exchange(b"".join(messages))
        ok = not any(k == "E" for k, _ in replies)
        if ok and current and current != session:
            restore = self._backend_exchange(wire.query('SET ROLE "%s"' % current.replace('"', '""')))
            if any(k == "E" for k, _ in restore):
                self.log("DISCARD ALL: could not restore role %s" % current)
            else:
                self.log("DISCARD ALL: role %s kept" % current)
                # The client's ReadyForQuery reports the state after the restore.
                replies = replies[:-1] + [m for m in restore if m[0] == "S"] + [restore[-1]]
        self._to_client(replies)

    # -- server -> client --------------------------------------------------

    def _server_message(self, kind, body):
        if kind == "Z":
            self.pending -= 1
        elif kind == "E" and self.refusals:
            fields = wire.parse_fields(body)
            msg = dict(fields).get("M")
            if msg in self.refusals:
                self.refusals.discard(msg)
                body = wire.build_fields([(c, v) for c, v in fields if c != "W"])
        return wire.message(kind, body)

    def _to_client(self, messages):
        out = []
        for kind, body in messages:
            out.append(self._server_message(kind, body))
        _send_all(self.client, b"".join(out))

    # -- the loop ----------------------------------------------------------

    def run(self):
        self.client.setblocking(False)
        self.backend.setblocking(False)
        try:
            while True:
                want = [self.backend]
                if self.held is None:
                    want.append(self.client)
                client_buffered = self.held is None and isinstance(self.client, ssl.SSLSocket) \
                    and self.client.pending() > 0
                readable = want if client_buffered else select.select(want, [], [])[0]
                if self.backend in readable:
                    self.breader.feed(_recv_some(self.backend))
                    out = []
                    while True:
                        msg = self.breader.next()
                        if msg is None:
                            break
                        out.append(self._server_message(*msg))
                    if out:
                        _send_all(self.client, b"".join(out))
                    self._maybe_run_held()
                if self.client in readable or (client_buffered and self.held is None):
                    self.creader.feed(_recv_some(self.client))
                while self.held is None:
                    msg = self.creader.next()
                    if msg is None:
                        break
                    if not self._client_message(*msg):
                        return
        except (wire.PeerClosed, ConnectionError, ssl.SSLError, OSError, wire.ProtocolError):
            return
