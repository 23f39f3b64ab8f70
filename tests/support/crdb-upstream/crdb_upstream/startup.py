"""Startup parameters: what CockroachDB accepts, refuses, and what reaches PostgreSQL.

Two layers, applied in CockroachDB's order:
  1. with --cluster, the Serverless proxy's admission and routing
     (pkg/ccl/sqlproxyccl/frontend_admitter.go FrontendAdmit,
      pkg/ccl/sqlproxyccl/proxy_handler.go clusterNameAndTenantFromParams,
      parseDatabaseParam, parseOptionsParam, parseClusterIdentifier, validateConnection);
  2. the SQL node's parameter parsing
     (pkg/sql/pgwire/pre_serve_options.go parseClientProvidedSessionParameters,
      parseOptions, splitOptions, splitOption, loadParameter).
Each function returns a Refusal (sent to the client, then the connection closes) or
the parameters to use.
"""

import base64
import re
import urllib.parse

from . import crdb_errors, wire


class Refusal(Exception):
    """A startup refusal: bytes of the ErrorResponse are built by send()."""

    def __init__(self, code, msg, hint=None, detail=None):
        super().__init__(msg)
        self.code, self.msg, self.hint, self.detail = code, msg, hint, detail

    def send(self, sock):
        sock.sendall(wire.error_response(self.code, self.msg, severity="FATAL", hint=self.hint, detail=self.detail))


# ---------------------------------------------------------------------------
# The Serverless proxy (pkg/ccl/sqlproxyccl/proxy_handler.go).

CLUSTER_OPTION_RE = re.compile(r"(?:-c\s*|--)cluster=([\S]*)")
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{4,98}[a-z0-9]$")

CLUSTER_IDENTIFIER_HINT = """Ensure that your cluster identifier is uniquely specified using any of the
following methods:

1) Host name:
   Use a driver that supports server name identification (SNI) with TLS 
   connection and the hostname assigned to your cluster 
   (e.g. serverless-101.5xj.gcp-us-central1.cockroachlabs.cloud)

2) Options parameter:
   Use "--cluster=<cluster identifier>" as the options parameter.
   (e.g. options="--cluster=active-roach-42")

3) Database parameter:
   Use "<cluster identifier>.<database name>" as the database parameter.
   (e.g. database="active-roach-42.defaultdb")

For more details, please visit our docs site at:
\thttps://www.cockroachlabs.com/docs/cockroachcloud/connect-to-a-serverless-cluster
"""
CLUSTER_NAME_FORM_HINT = "Cluster identifiers come in the form of <name>-<tenant ID> (e.g. lazy-roach-3)."
MISSING_TENANT_ID_HINT = "Did you forget to include your tenant ID in the cluster identifier?"

SESSION_REVIVAL_TOKEN = "crdb:session_revival_token_base64"
REMOTE_ADDR = "crdb:remote_addr"


def _routing_refusal(text, hints=()):
    msg, hint = crdb_errors.proxy_refusal("codeParamsRoutingFailed", text, hints)
    return Refusal(crdb_errors.PROXY_SQLSTATE, msg, hint=hint)


class ClusterIdentifierError(Exception):
    def __init__(self, text, hints):
        super().__init__(text)
        self.text, self.hints = text, hints


def parse_cluster_identifier(ident):
    """(cluster name, tenant id) from "<name>-<tenant id>" (parseClusterIdentifier)."""
    sep = ident.rfind("-")
    if sep == -1 or sep == len(ident) - 1:
        raise ClusterIdentifierError("invalid cluster identifier '%s'" % ident,
                                     [MISSING_TENANT_ID_HINT, CLUSTER_NAME_FORM_HINT])
    name, tenant = ident[:sep], ident[sep + 1:]
    if not CLUSTER_NAME_RE.match(name):
        raise ClusterIdentifierError("invalid cluster identifier '%s'" % ident,
                                     ["Is '%s' a valid cluster name?" % name, CLUSTER_NAME_FORM_HINT])
    if not tenant.isdigit() or int(tenant) >= 1 << 64:
        raise ClusterIdentifierError("invalid cluster identifier '%s'" % ident,
                                     ["Is '%s' a valid tenant ID?" % tenant, CLUSTER_NAME_FORM_HINT])
    if int(tenant) < 2:  # roachpb.MinTenantID: 0 is invalid, 1 is the system tenant
        raise ClusterIdentifierError("invalid cluster identifier '%s'" % ident,
                                     ["Tenant ID %d is invalid." % int(tenant)])
    return name, int(tenant)


def _parse_database_param(db):
    if not db:
        return "", ""
    parts = db.split(".")
    if len(parts) <= 1:
        return "", db
    if len(parts) > 2 or not parts[0] or not parts[1]:
        raise _routing_refusal("invalid database param")
    return parts[0], parts[1]


def _parse_options_param(options):
    matches = list(CLUSTER_OPTION_RE.finditer(options))[:2]
    if not matches:
        return "", options
    if len(matches) > 1:
        # "we will just error out if at least two cluster flags are provided", even
        # when they name the same cluster.
        raise _routing_refusal("multiple cluster flags provided")
    if not matches[0].group(1):
        raise _routing_refusal("invalid cluster flag")
    return matches[0].group(1), options.replace(matches[0].group(0), "").strip()


def proxy_route(params, sni, expected_ident, client_addr):
    """Apply the proxy to the startup params (a dict). Returns (params for the node,
    cluster identifier) or raises Refusal."""
    # FrontendAdmit: the proxy forwards the client's address and forbids revival tokens.
    # The refusal has codeUnexpectedStartupMessage, which toPgError does not send "as is":
    # the client sees an empty message.
    if SESSION_REVIVAL_TOKEN in params:
        raise Refusal(crdb_errors.PROXY_SQLSTATE, "")
    params = dict(params)
    params[REMOTE_ADDR] = "%s:%d" % client_addr

    ident_db, database = _parse_database_param(params.get("database", ""))
    ident_opt, new_options = _parse_options_param(params.get("options", ""))
    if not ident_db and not ident_opt:
        ident_sni = sni.split(".", 1)[0] if sni and "." in sni else ""
        try:
            if not ident_sni:
                raise ClusterIdentifierError("", [])
            parse_cluster_identifier(ident_sni)
            ident = ident_sni
        except ClusterIdentifierError:
            raise _routing_refusal("missing cluster identifier", [CLUSTER_IDENTIFIER_HINT])
    elif ident_db and ident_opt and ident_db != ident_opt:
        raise _routing_refusal(
            "multiple different cluster identifiers provided",
            ["Is '%s' or '%s' the identifier for the cluster that you're connecting to?" % (ident_db, ident_opt),
             CLUSTER_IDENTIFIER_HINT])
    else:
        ident = ident_db or ident_opt
    try:
        name, tenant = parse_cluster_identifier(ident)
    except ClusterIdentifierError as e:
        raise _routing_refusal(e.text, e.hints)

    # validateConnection: a tenant the directory does not know, or one whose cluster name
    # differs, is reported as not found.
    exp_name, exp_tenant = parse_cluster_identifier(expected_ident)
    if (name, tenant) != (exp_name, exp_tenant):
        raise _routing_refusal("cluster %s-%d not found" % (name, tenant))

    if ident_db or ident_opt:
        if "database" in params:
            params["database"] = database
        if "options" in params:
            if new_options:
                params["options"] = new_options
            else:
                del params["options"]
    return params, ident


# ---------------------------------------------------------------------------
# The SQL node (pkg/sql/pgwire/pre_serve_options.go).

def _split_options(s):
    res = []
    i, n = 0, len(s)
    while i < n:
        while i < n and s[i].isspace():
            i += 1
        if i == n:
            break
        buf = []
        escape = False
        while i < n:
            if s[i].isspace() and not escape:
                break
            if not escape and s[i] == "\\":
                escape = True
            else:
                escape = False
                buf.append(s[i])
            i += 1
        res.append("".join(buf))
    return res


def parse_options(options):
    """[(key, value)] from an options string (parseOptions)."""
    try:
        raw = urllib.parse.unquote_plus(options, errors="strict")
    except UnicodeDecodeError:
        raise Refusal("08P01", "failed to unescape options %s" % crdb_errors.go_quote(options))
    res = []
    last_was_dash_c = False
    for opt in _split_options(raw):
        prefix = opt[:2] if len(opt) > 1 else ""
        if opt == "-c":
            last_was_dash_c = True
            continue
        if last_was_dash_c:
            last_was_dash_c = False
            prefix = ""
        elif prefix in ("--", "-c"):
            last_was_dash_c = False
        else:
            raise Refusal(*crdb_errors.option_bad_prefix(opt))
        kv = opt.split("=")
        if len(kv) != 2:
            raise Refusal(*crdb_errors.option_bad_equals(opt))
        key = kv[0][len(prefix):] if kv[0].startswith(prefix) else kv[0]
        res.append((key.replace("-", "_"), kv[1]))
    return res


def _go_base64_error_offset(value):
    """The input byte Go's base64.StdEncoding names for undecodable input: the first
    byte outside the alphabet; for a bad length, where the last quantum starts (the
    stand-in does not reproduce Go's decoder beyond that)."""
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    for i, c in enumerate(value.rstrip("=")):
        if c not in alphabet:
            return i
    return len(value) - len(value) % 4


class NodeParams:
    """The node's view of the startup parameters and what goes to PostgreSQL."""

    def __init__(self):
        self.user = ""
        self.database = "defaultdb"  # "if no database is specified, default to defaultdb"
        self.options = []  # (key, value) to pass to PostgreSQL as -c key=value
        self.forward = []  # other (key, value) startup parameters for PostgreSQL
        self.revival_token = None
        self.application_name = ""


def node_params(params, trust_remote_addr):
    """Apply parseClientProvidedSessionParameters to the startup params (ordered pairs)."""
    out = NodeParams()
    for key, value in params:
        key = key.lower()
        if key == "user":
            out.user = value
        elif key == "database":
            out.database = value if value else out.database
        elif key == SESSION_REVIVAL_TOKEN:
            try:
                base64.b64decode(value, validate=True)
            except Exception:
                raise Refusal("08P01", "%s: illegal base64 data at input byte %d"
                              % (key, _go_base64_error_offset(value)))
            out.revival_token = value
        elif key == REMOTE_ADDR:
            if not trust_remote_addr:
                raise Refusal(*crdb_errors.remote_addr_not_trusted(value))
        elif key == "results_buffer_size":
            pass  # a CockroachDB result-buffering knob with no PostgreSQL counterpart
        elif key == "options":
            for okey, ovalue in parse_options(value):
                if okey.lower() == "crdb:jwt_auth_enabled":
                    continue  # JWT login is not part of the stand-in
                if okey.lower() == "cluster" or okey.lower().startswith("crdb:"):
                    continue  # loadParameter: unknown variables are only a warning on a node
                out.options.append((okey, ovalue))
        elif key.startswith("crdb:"):
            pass  # loadParameter: unknown parameter, logged and ignored
        else:
            if key == "application_name":
                out.application_name = value
            out.forward.append((key, value))
    return out
