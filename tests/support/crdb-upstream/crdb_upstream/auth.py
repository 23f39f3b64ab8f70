"""Authentication of the login user against the verifier PostgreSQL stores.

Follows pkg/sql/pgwire/auth.go handleAuthentication for the order of checks (the role
exists, it may log in, then the method's authenticator runs) and
pkg/sql/pgwire/auth_methods.go for the two methods:
  scram          scramAuthenticator: AuthenticationSASL offering only SCRAM-SHA-256
                 (no SCRAM-SHA-256-PLUS: channel binding is not supported);
  cert-password  authCertPassword for a client without a certificate, with
                 server.user_login.cert_password_method.auto_scram_promotion.enabled
                 off: passwordAuthenticator, AuthenticationCleartextPassword.
Nothing here logs a password, a proof or a verifier.
"""

import hashlib
import hmac
import struct

from . import crdb_errors, pg, scram, wire


class AuthFailed(Exception):
    """The client was refused; the ErrorResponse has been sent."""


def _refuse(sock, err):
    crdb_errors.send(sock, err)
    raise AuthFailed(err[1])


def _read_password_message(sock):
    kind, body = wire.read_message(sock)
    if kind != "p":
        raise wire.PeerClosed()
    return body


def _scram(sock, user, role):
    verifier = None if role.expired else scram.parse_verifier(role.password)
    sock.sendall(wire.auth(wire.AUTH_SASL, b"SCRAM-SHA-256\0\0"))
    body = _read_password_message(sock)
    mech_end = body.index(b"\0")
    mech = body[:mech_end].decode()
    if mech != "SCRAM-SHA-256":
        # unimplemented.NewWithIssue(74300, "channel binding not supported")
        crdb_errors.send(sock, ("0A000", "unimplemented: channel binding not supported"),
                         hint="You have attempted to use a feature that is not yet implemented.\n"
                              "See: https://go.crdb.dev/issue-v/74300/%s" % crdb_errors.CRDB_VERSION_FOR_URLS)
        raise AuthFailed("client asked for %s" % mech)
    (ln,) = struct.unpack("!i", body[mech_end + 1:mech_end + 5])
    first = body[mech_end + 5:mech_end + 5 + ln].decode("utf-8", "replace") if ln >= 0 else ""
    conv = scram.ServerConversation(verifier)
    try:
        server_first = conv.client_first(first)
    except scram.ScramError:
        # An expired role, a non-SCRAM hash or a malformed message all end the
        # handshake; scramAuthenticator then reports the generic password failure.
        _refuse(sock, crdb_errors.password_auth_failed(user))
    sock.sendall(wire.auth(wire.AUTH_SASL_CONTINUE, server_first.encode()))
    final = _read_password_message(sock).decode("utf-8", "replace")
    try:
        server_final = conv.client_final(final)
    except (scram.ScramError, ValueError):
        _refuse(sock, crdb_errors.password_auth_failed(user))
    sock.sendall(wire.auth(wire.AUTH_SASL_FINAL, server_final.encode()))


def _cleartext(sock, user, role):
    sock.sendall(wire.auth(wire.AUTH_CLEARTEXT))
    body = _read_password_message(sock)
    if body.find(b"\0") != len(body) - 1:
        # passwordString: "expected 0-terminated byte array" (28000 via handleAuthentication)
        _refuse(sock, ("28000", "expected 0-terminated byte array"))
    password = body[:-1].decode("utf-8", "replace")
    if role.expired:
        _refuse(sock, crdb_errors.PASSWORD_EXPIRED)
    ok = False
    if password:  # UserAuthPasswordHook: an empty password never authenticates
        v = scram.parse_verifier(role.password)
        if v is not None:
            ok = v.check_cleartext(password)
        elif role.password and scram.MD5_RE.match(role.password):
            digest = "md5" + hashlib.md5((password + user).encode()).hexdigest()
            ok = hmac.compare_digest(digest, role.password)
    if not ok:
        _refuse(sock, crdb_errors.password_auth_failed(user))


def authenticate(sock, env, user, method, revival_token=None):
    """Run the login exchange on sock; returns the role's pg_authid facts on success
    (AuthenticationOk not yet sent), raises AuthFailed after sending the refusal."""
    role = pg.lookup_role(env, user)
    if role is None:
        # "If the user does not exist, we show the same error used for invalid passwords"
        _refuse(sock, crdb_errors.password_auth_failed(user))
    if not role.can_login:
        _refuse(sock, crdb_errors.no_login_privilege(user))
    if revival_token is not None:
        # findAuthenticationMethod picks authSessionRevivalToken when the parameter is set.
        _refuse(sock, crdb_errors.REVIVAL_TOKEN_UNSUPPORTED)
    if method == "scram":
        _scram(sock, user, role)
    else:
        _cleartext(sock, user, role)
    return role
