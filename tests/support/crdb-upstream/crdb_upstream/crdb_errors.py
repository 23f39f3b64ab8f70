"""Every error the stand-in writes itself, with CockroachDB's text and SQLSTATE.

One place so the README and the tests can name them; each entry cites the
cockroachdb/cockroach file (and function) that produces the same error.
"""

from . import wire

# pkg/sql/pgwire/server.go, ErrSSLRequired; sent by
# pkg/sql/pgwire/pre_serve.go maybeUpgradeToSecureConn with pgcode.ProtocolViolation
# when a secure node sees a TCP startup without SSLRequest.
SSL_REQUIRED = ("08P01", "node is running secure mode, SSL connection required")

# pkg/sql/pgwire/pre_serve.go PreServe, case versionGSSENC.
GSSENC_UNSUPPORTED = ("08P01", "GSS encryption is not yet supported")

# pkg/sql/pgwire/pre_serve.go PreServe, default case after the TLS upgrade.
def unknown_protocol(version):
    return ("08P01", "unknown protocol version %d" % version)


# pkg/security/auth.go NewErrPasswordUserAuthFailed, sent with pgcode.InvalidPassword by
# pkg/sql/pgwire/auth.go handleAuthentication (unknown user, wrong password, and the
# SCRAM handshake failing for any reason in auth_methods.go scramAuthenticator).
def password_auth_failed(user):
    return ("28P01", "password authentication failed for user %s" % user)


# pkg/sql/pgwire/auth.go handleAuthentication, !canLoginSQL.
def no_login_privilege(user):
    return ("28000", "%s does not have login privilege" % user)


# pkg/sql/pgwire/auth_methods.go errExpiredPassword, returned by passwordAuthenticator
# (cleartext) and wrapped with pgcode.InvalidAuthorizationSpecification in auth.go.
PASSWORD_EXPIRED = ("28000", "password is expired")

# pkg/sql/pgwire/pre_serve_options.go parseClientProvidedSessionParameters,
# case "crdb:remote_addr" when server.trust_client_provided_remote_addr is off.
def remote_addr_not_trusted(value):
    return ("08P01", "server not configured to accept remote address override (requested: %s)" % go_quote(value))


# pkg/sql/pgwire/auth_methods.go authSessionRevivalToken: the setting
# server.user_login.session_revival_token.enabled defaults to false.
REVIVAL_TOKEN_UNSUPPORTED = ("28000", "session revival tokens are not supported on this cluster")

# pkg/sql/pgwire/pre_serve_options.go parseOptions / splitOption.
def option_bad_prefix(opt):
    return ("08P01", "option %s is invalid, must have prefix '-c' or '--'" % go_quote(opt))


def option_bad_equals(opt):
    return ("08P01", "option %s is invalid, check '='" % go_quote(opt))


# pkg/ccl/sqlproxyccl/frontend_admitter.go FrontendAdmit: codeUnexpectedInsecureStartupMessage,
# which pkg/ccl/sqlproxyccl/proxy.go toPgError sanitizes to this text.
PROXY_REQUIRES_ENCRYPTION = "server requires encryption"

# The SQLSTATE of every proxy refusal: pkg/ccl/sqlproxyccl/proxy.go toPgError sends
# pgcode.ProxyConnectionError, "08C00" (pkg/ccl/sqlproxyccl/authentication_test.go expects
# Code "08C00" for a proxy error).
PROXY_SQLSTATE = "08C00"


def go_quote(s):
    """Go's %q for the printable ASCII the stand-in meets."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def send(sock, err, severity="FATAL", hint=None, detail=None):
    code, msg = err
    sock.sendall(wire.error_response(code, msg, severity=severity, hint=hint, detail=detail))


# The version string CockroachDB reports in crdb_version (pkg/build/info.go, Info.Short)
# and the major.minor its unimplemented-feature hints link to (build.VersionForURLs).
CRDB_VERSION = "CockroachDB CCL v24.1.0 (x86_64-pc-linux-gnu, built 2024/05/15 00:00:00, go1.22.2)"
CRDB_VERSION_FOR_URLS = "v24.1"


def _parse_error_detail(sql, tok):
    """The DETAIL CockroachDB's lexer attaches to a parse error
    (pkg/sql/parser/lexer.go populateErrorDetails): the input up to the end of the
    offending token's line and a caret under the token."""
    nl = sql.find("\n", tok.start)
    end = len(sql) if nl < 0 else nl
    line_start = sql.rfind("\n", 0, tok.start) + 1
    return "source SQL:\n%s\n%s^" % (sql[:end], " " * (tok.start - line_start))


def _token_text(tok):
    # The lexer reports identifiers normalized (lower-cased), quoted identifiers and
    # string constants by their value.
    return tok.value if tok.value is not None else tok.text


def session_authorization_refusal(sql, kind, stmt):
    """(code, message, detail, hint) for a statement refused by
    sqltext.refused_session_authorization, as pkg/sql/parser/sql.y reports it."""
    if kind == "set_name":
        # set_rest_more: SESSION AUTHORIZATION non_reserved_word_or_sconst
        # -> unimplementedWithIssue(sqllex, 40283); lexer.go UnimplementedWithIssue
        # wraps unimp.NewWithIssue(40283, "this syntax") (SQLSTATE 0A000) with
        # "syntax error" and "at or near".
        tok = stmt[-1]
        msg = 'at or near "%s": syntax error: unimplemented: this syntax' % _token_text(tok)
        hint = ("You have attempted to use a feature that is not yet implemented.\n"
                "See: https://go.crdb.dev/issue-v/40283/%s" % CRDB_VERSION_FOR_URLS)
        return "0A000", msg, _parse_error_detail(sql, tok), hint
    # reset_session_stmt: AUTHORIZATION is no session_var, so the grammar fails at it and
    # the "RESET error" rule adds the help hint (helpWith(sqllex, "RESET")).
    tok = next(t for t in stmt if t.kind == "word" and t.value == "authorization")
    msg = 'at or near "%s": syntax error' % _token_text(tok)
    return "42601", msg, _parse_error_detail(sql, tok), "try \\h RESET"


def proxy_refusal(code_name, text, hints=()):
    """An error of the Serverless proxy: pkg/ccl/sqlproxyccl/proxy.go toPgError sends
    codes such as codeParamsRoutingFailed "as is" (errWithCode.Error(): "<code>: <cause>",
    pkg/ccl/sqlproxyccl/error.go), FATAL, SQLSTATE 08C00, hints flattened with
    errors.FlattenHints (joined by "\\n--\\n")."""
    msg = "%s: %s" % (code_name, text) if code_name else ""
    return msg, ("\n--\n".join(hints) if hints else None)


def send_proxy(sock, msg, hint=None):
    sock.sendall(wire.error_response(PROXY_SQLSTATE, msg, severity="FATAL", hint=hint))


def unsupported_password_hash(scheme):
    """(code, message, hint) for a pre-hashed password CockroachDB recognizes but cannot use:
    pkg/sql/create_role.go checkPasswordAndGetHash returns unimplemented.NewWithIssueDetailf
    with the issue pkg/security/password/password.go CheckPasswordHashValidity names (73337
    for md5)."""
    return ("0A000", 'unimplemented: the password hash scheme "%s" is not supported' % scheme,
            "You have attempted to use a feature that is not yet implemented.\n"
            "See: https://go.crdb.dev/issue-v/73337/%s" % CRDB_VERSION_FOR_URLS)
