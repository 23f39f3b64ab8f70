"""pgwire framing and the few messages the stand-in builds itself.

Message formats: https://www.postgresql.org/docs/15/protocol-message-formats.html

Every reader here takes a socket-like object with recv() (a plain socket or an
ssl.SSLSocket) and returns whole messages; a peer that closes mid-message raises
PeerClosed. Builders return bytes ready to send.
"""

import struct

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3_0 = 196608

# CockroachDB reads the startup packet with pgwirebase.ReadBuffer, whose default
# limit is far larger; the stand-in only needs to refuse absurd lengths.
MAX_STARTUP_LEN = 10000
MAX_MESSAGE_LEN = 1 << 30


class PeerClosed(Exception):
    """The peer closed the connection (or sent something that ends it)."""


class ProtocolError(Exception):
    """Bytes that are not pgwire."""


def recv_exact(sock, n):
    chunks = []
    while n > 0:
        b = sock.recv(min(n, 65536))
        if not b:
            raise PeerClosed()
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_untyped(sock):
    """One untyped message (startup, SSLRequest, CancelRequest): (code, body after the code)."""
    (length,) = struct.unpack("!I", recv_exact(sock, 4))
    if length < 8 or length > MAX_STARTUP_LEN:
        raise ProtocolError("startup packet length %d" % length)
    body = recv_exact(sock, length - 4)
    (code,) = struct.unpack("!I", body[:4])
    return code, body[4:]


def read_message(sock):
    """One typed message: (type byte as str, body)."""
    head = recv_exact(sock, 5)
    kind = chr(head[0])
    (length,) = struct.unpack("!I", head[1:])
    if length < 4 or length > MAX_MESSAGE_LEN:
        raise ProtocolError("message %r length %d" % (kind, length))
    return kind, recv_exact(sock, length - 4)


def message(kind, body=b""):
    return kind.encode() + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    if isinstance(s, str):
        s = s.encode()
    return s + b"\0"


def parse_startup_params(body):
    """Key/value pairs of a StartupMessage body (after the protocol code), in order."""
    parts = body.split(b"\0")
    params = []
    i = 0
    while i + 1 < len(parts) and parts[i]:
        params.append((parts[i].decode("utf-8", "replace"), parts[i + 1].decode("utf-8", "replace")))
        i += 2
    return params


def startup_message(params):
    body = struct.pack("!I", PROTOCOL_3_0)
    for k, v in params:
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def cancel_request(pid, secret):
    return struct.pack("!IIII", 16, CANCEL_REQUEST, pid, secret)


def auth(code, data=b""):
    return message("R", struct.pack("!I", code) + data)


AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


def parameter_status(name, value):
    return message("S", cstr(name) + cstr(value))


def backend_key_data(pid, secret):
    return message("K", struct.pack("!II", pid, secret))


def ready_for_query(status="I"):
    return message("Z", status.encode())


def error_response(code, msg, severity="FATAL", hint=None, detail=None):
    """An ErrorResponse as CockroachDB's pgwire writes one (errWriter: S, V, C, M, D, H)."""
    body = b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(code) + b"M" + cstr(msg)
    if detail:
        body += b"D" + cstr(detail)
    if hint:
        body += b"H" + cstr(hint)
    return message("E", body + b"\0")


def parse_fields(body):
    """Fields of an ErrorResponse/NoticeResponse body: list of (code char, value str)."""
    fields = []
    i = 0
    while i < len(body) and body[i] != 0:
        code = chr(body[i])
        end = body.index(b"\0", i + 1)
        fields.append((code, body[i + 1:end].decode("utf-8", "replace")))
        i = end + 1
    return fields


def build_fields(fields):
    return b"".join(c.encode() + cstr(v) for c, v in fields) + b"\0"


def parse_data_row(body):
    """Column values of a DataRow (text format): list of str or None."""
    (n,) = struct.unpack("!H", body[:2])
    pos = 2
    out = []
    for _ in range(n):
        (ln,) = struct.unpack("!i", body[pos:pos + 4])
        pos += 4
        if ln < 0:
            out.append(None)
        else:
            out.append(body[pos:pos + ln].decode("utf-8", "replace"))
            pos += ln
    return out


def query(sql):
    return message("Q", cstr(sql))


def parse_parse(body):
    """Parse message: (statement name, query text, rest bytes: the parameter types)."""
    name_end = body.index(b"\0")
    q_end = body.index(b"\0", name_end + 1)
    return body[:name_end].decode(), body[name_end + 1:q_end].decode("utf-8", "replace"), body[q_end + 1:]


def build_parse(name, sql, rest):
    return message("P", cstr(name) + cstr(sql) + rest)


def parse_bind_statement(body):
    """The prepared statement a Bind message refers to."""
    portal_end = body.index(b"\0")
    stmt_end = body.index(b"\0", portal_end + 1)
    return body[portal_end + 1:stmt_end].decode()
