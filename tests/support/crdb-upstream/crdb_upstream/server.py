"""Accepting connections: admission (TLS, cancel), startup, login, handover to the relay.

A connection reads as its phases (pkg/sql/pgwire/pre_serve.go PreServe, then
pkg/sql/pgwire/server.go ServeConn; with --cluster the proxy's
pkg/ccl/sqlproxyccl/proxy_handler.go handle first):
  admit -> startup parameters -> authenticate -> PostgreSQL session -> status -> relay.
"""

import os
import secrets
import select
import socket
import ssl
import struct
import threading
import traceback

from . import auth, crdb_errors, pg, relay, startup, wire

# pkg/sql/pgwire/conn.go statusReportParams (session_authorization is sent after them,
# "handled specially in serveImpl()"); values a fresh CockroachDB session reports.
SERVER_VERSION = "13.0.0"  # pkg/sql/vars.go PgServerVersion
STATUS_PARAMS = ["server_version", "server_encoding", "client_encoding", "application_name", "DateStyle",
                 "IntervalStyle", "is_superuser", "TimeZone", "integer_datetimes",
                 "standard_conforming_strings", "crdb_version"]
# CockroachDB's session defaults for the variables above that PostgreSQL may not share;
# the relay asks PostgreSQL for them unless the client chose its own.
SESSION_DEFAULTS = [("TimeZone", "UTC"), ("DateStyle", "ISO, MDY"), ("IntervalStyle", "postgres")]


class Config:
    def __init__(self, env, auth_method, iterations, cluster, check_cancel_source, log):
        self.env = env
        self.auth_method = auth_method
        self.iterations = iterations
        self.cluster = cluster
        self.check_cancel_source = check_cancel_source
        self.log = log
        cert = env.get("PGH_SERVER_CERT") or os.path.join(env["PGH_TLS_DIR"], "server.crt")
        key = cert[:-len(".crt")] + ".key" if cert.endswith(".crt") else os.path.join(env["PGH_TLS_DIR"], "server.key")
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls.load_cert_chain(cert, key)
        self.tls.sni_callback = _remember_sni


def _remember_sni(sslsock, name, ctx):
    sslsock.crdb_sni = name or ""
    return None


class CancelRegistry:
    """Client-visible BackendKeyData -> (client IP, PostgreSQL backend key)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}

    def add(self, client_ip, backend_pid, backend_secret, proxy_ip=None):
        with self.lock:
            while True:
                if proxy_ip is not None:
                    # pkg/ccl/sqlproxyccl/query_cancel.go makeCancelInfo: the proxy's IPv4
                    # address as ProcessID, a random proxySecretID as SecretKey.
                    pid = struct.unpack("!I", socket.inet_aton(proxy_ip))[0]
                    secret = secrets.randbits(32)
                else:
                    # pkg/sql/pgwire/pgwirecancel (docs/RFCS/20220202_pgwire_compatible_cancel.md):
                    # leading bit 0, an 11-bit SQLInstanceID (1 here), 52 random bits.
                    key = (1 << 52) | secrets.randbits(52)
                    pid, secret = key >> 32, key & 0xFFFFFFFF
                if (pid, secret) not in self.keys:
                    self.keys[(pid, secret)] = (client_ip, backend_pid, backend_secret)
                    return pid, secret

    def remove(self, pid, secret):
        with self.lock:
            self.keys.pop((pid, secret), None)

    def get(self, pid, secret):
        with self.lock:
            return self.keys.get((pid, secret))


def _handle_cancel(cfg, registry, body, source_ip):
    if len(body) < 8:
        return
    pid, secret = struct.unpack("!II", body[:8])
    entry = registry.get(pid, secret)
    if entry is None:
        cfg.log("cancel ignored: unfamiliar key")
        return
    client_ip, backend_pid, backend_secret = entry
    # The Serverless proxy forwards a cancel only when it comes from the address the
    # session's client connected from (docs/RFCS/20220202_pgwire_compatible_cancel.md,
    # "SQL Proxy Changes"); a mismatch is dropped without a reply, as every cancel is.
    if cfg.check_cancel_source and source_ip != client_ip:
        cfg.log("cancel dropped: source %s is not the session's %s" % (source_ip, client_ip))
        return
    try:
        pg.send_cancel(cfg.env, backend_pid, backend_secret)
        cfg.log("cancel forwarded")
    except OSError as e:
        cfg.log("cancel not forwarded: %s" % e)


def _extra_bytes_waiting(sock):
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def _admit(cfg, registry, sock, addr):
    """The TLS socket and startup parameters of a login, or None when the connection
    was a cancel or has been refused."""
    proxy = cfg.cluster is not None
    code, body = wire.read_untyped(sock)
    if code == wire.CANCEL_REQUEST:
        # "The cancel message is rather peculiar: it is sent without authentication,
        # always over an unencrypted channel." (pre_serve.go PreServe)
        _handle_cancel(cfg, registry, body, addr[0])
        return None
    if code != wire.SSL_REQUEST:
        if proxy:
            # frontend_admitter.go: a startup that is not an SSLRequest is
            # codeUnexpectedInsecureStartupMessage, sanitized by toPgError.
            crdb_errors.send_proxy(sock, crdb_errors.PROXY_REQUIRES_ENCRYPTION)
        elif code == wire.GSSENC_REQUEST:
            crdb_errors.send(sock, crdb_errors.GSSENC_UNSUPPORTED)
        else:
            crdb_errors.send(sock, crdb_errors.SSL_REQUIRED)
        return None
    if _extra_bytes_waiting(sock):
        # maybeUpgradeToSecureConn: "unexpected data after SSLRequest" is a server-side
        # error; the connection just closes.
        cfg.log("unexpected data after SSLRequest from %s" % addr[0])
        return None
    sock.sendall(b"S")
    tls = cfg.tls.wrap_socket(sock, server_side=True)
    code, body = wire.read_untyped(tls)
    if code == wire.CANCEL_REQUEST:
        # "we've found clients in the wild that send the cancel after the TLS handshake"
        _handle_cancel(cfg, registry, body, addr[0])
        return None
    if code != wire.PROTOCOL_3_0:
        if proxy:
            crdb_errors.send_proxy(tls, "")  # codeUnexpectedStartupMessage: not sent as is
        else:
            crdb_errors.send(tls, crdb_errors.unknown_protocol(code))
        return None
    return tls, wire.parse_startup_params(body), getattr(tls, "crdb_sni", "")


def _status(backend, user, role):
    values = dict(backend.params)
    values["server_version"] = SERVER_VERSION
    values["crdb_version"] = crdb_errors.CRDB_VERSION
    values["is_superuser"] = "on" if role.superuser else "off"
    values.setdefault("application_name", "")
    out = [wire.parameter_status(name, values.get(name, "")) for name in STATUS_PARAMS]
    out.append(wire.parameter_status("session_authorization", user))
    return b"".join(out)


def serve_connection(cfg, registry, sock, addr):
    proxy_ip = sock.getsockname()[0] if cfg.cluster is not None else None
    tls = None
    backend = None
    key = None
    try:
        sock.settimeout(60)
        admitted = _admit(cfg, registry, sock, addr)
        if admitted is None:
            return
        tls, params, sni = admitted
        cluster = "-"
        try:
            if cfg.cluster is not None:
                routed, cluster = startup.proxy_route(dict(params), sni, cfg.cluster, addr)
                # The proxy hands the node a startup message built from a map.
                params = list(routed.items())
            node = startup.node_params(params, trust_remote_addr=cfg.cluster is not None)
        except startup.Refusal as r:
            r.send(tls)
            cfg.log("refused startup from %s: %s" % (addr[0], r.msg or "(empty message)"))
            return
        try:
            role = auth.authenticate(tls, cfg.env, node.user, cfg.auth_method, node.revival_token)
        except auth.AuthFailed as e:
            cfg.log("login refused for user=%s: %s" % (node.user, e))
            return
        tls.sendall(wire.auth(wire.AUTH_OK))

        pg_params = [("user", node.user), ("database", node.database)]
        given = {k.lower() for k, _ in node.forward} | {k.lower() for k, _ in node.options}
        pg_params += node.forward
        options = " ".join("-c %s=%s" % (k, v.replace("\\", "\\\\").replace(" ", "\\ "))
                           for k, v in node.options)
        defaults = [(k, v) for k, v in SESSION_DEFAULTS if k.lower() not in given]
        pg_params += defaults
        if options:
            pg_params.append(("options", options))
        backend = pg.Backend(cfg.env)
        try:
            backend.connect(pg_params)
        except pg.BackendError as e:
            tls.sendall(e.response)
            cfg.log("PostgreSQL refused user=%s database=%s: %s" % (node.user, node.database, e))
            return
        pid, secret = registry.add(addr[0], backend.pid, backend.secret, proxy_ip)
        key = (pid, secret)
        # Logged before ReadyForQuery so that a client which has its session can read the line.
        cfg.log("login user=%s database=%s options=%s cluster=%s" % (node.user, node.database, options, cluster))
        tls.sendall(_status(backend, node.user, role) + wire.backend_key_data(pid, secret) + wire.ready_for_query("I"))
        tls.settimeout(None)
        relay.Session(tls, backend, node.user, cfg.iterations, cfg.log).run()
    except (wire.PeerClosed, wire.ProtocolError, ConnectionError, ssl.SSLError, socket.timeout, OSError) as e:
        if not isinstance(e, wire.PeerClosed):
            cfg.log("connection from %s ended: %s: %s" % (addr[0], e.__class__.__name__, e))
    except Exception:
        cfg.log("session failed:\n" + traceback.format_exc())
    finally:
        if key is not None:
            registry.remove(*key)
        if backend is not None:
            backend.close()
        for s in (tls, sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def serve(cfg, listener, stop):
    registry = CancelRegistry()
    while not stop.is_set():
        try:
            sock, addr = listener.accept()
        except OSError:
            if stop.is_set():
                return
            continue
        threading.Thread(target=serve_connection, args=(cfg, registry, sock, addr), daemon=True).start()
