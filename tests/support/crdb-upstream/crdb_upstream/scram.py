"""SCRAM-SHA-256 (RFC 5802, RFC 7677) verifiers and the server side of the exchange.

Verifiers use PostgreSQL's text form, which pg_authid.rolpassword holds and which
PostgreSQL stores unchanged when CREATE/ALTER ROLE is given one:
    SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>
CockroachDB stores the same form (pkg/security/password/password.go, scramPrefix).
"""

import base64
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata

# pkg/security/password/password.go: DefaultSCRAMCost, the default of the cluster setting
# server.user_login.password_hashes.default_cost.scram_sha_256, and its allowed range.
DEFAULT_COST = 10610
MIN_COST = 4096
MAX_COST = 240000000000

SALT_LEN = 16
NONCE_LEN = 18

VERIFIER_RE = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")
MD5_RE = re.compile(r"^md5[0-9a-f]{32}$")


def saslprep(password):
    """RFC 4013 SASLprep; on failure the password is used as given, as PostgreSQL
    (src/common/saslprep.c, pg_saslprep) and libpq do."""
    try:
        chars = []
        for c in password:
            if stringprep.in_table_c12(c):
                chars.append(" ")  # non-ASCII space maps to SPACE
            elif stringprep.in_table_b1(c):
                continue  # commonly mapped to nothing
            else:
                chars.append(c)
        s = unicodedata.normalize("NFKC", "".join(chars))
        if not s:
            return password
        for c in s:
            if (stringprep.in_table_c12(c) or stringprep.in_table_c21_c22(c) or stringprep.in_table_c3(c)
                    or stringprep.in_table_c4(c) or stringprep.in_table_c5(c) or stringprep.in_table_c6(c)
                    or stringprep.in_table_c7(c) or stringprep.in_table_c8(c) or stringprep.in_table_c9(c)
                    or stringprep.in_table_a1(c)):
                return password
        has_randal = any(stringprep.in_table_d1(c) for c in s)
        if has_randal:
            if any(stringprep.in_table_d2(c) for c in s):
                return password
            if not (stringprep.in_table_d1(s[0]) and stringprep.in_table_d1(s[-1])):
                return password
        return s
    except Exception:
        return password


def _hmac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def salted_password(password, salt, iterations):
    return hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)


def make_verifier(password, iterations, salt=None):
    salt = salt if salt is not None else secrets.token_bytes(SALT_LEN)
    sp = salted_password(password, salt, iterations)
    stored = hashlib.sha256(_hmac(sp, b"Client Key")).digest()
    server = _hmac(sp, b"Server Key")
    b64 = lambda b: base64.b64encode(b).decode()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored), b64(server))


class Verifier:
    def __init__(self, text):
        m = VERIFIER_RE.match(text or "")
        if not m:
            raise ValueError("not a SCRAM-SHA-256 verifier")
        self.iterations = int(m.group(1))
        self.salt = base64.b64decode(m.group(2))
        self.stored_key = base64.b64decode(m.group(3))
        self.server_key = base64.b64decode(m.group(4))

    def check_cleartext(self, password):
        sp = salted_password(password, self.salt, self.iterations)
        stored = hashlib.sha256(_hmac(sp, b"Client Key")).digest()
        return hmac.compare_digest(stored, self.stored_key)


def parse_verifier(text):
    try:
        return Verifier(text)
    except ValueError:
        return None


class ScramError(Exception):
    pass


def _attrs(msg):
    out = {}
    for part in msg.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out


class ServerConversation:
    """The server's half of one SCRAM-SHA-256 exchange (no channel binding).

    client_first() takes the client-first-message and returns server-first;
    client_final() takes client-final and returns server-final, or raises ScramError
    when the proof is wrong. The verifier is only needed for client_first onward, so a
    missing or unusable one is reported there, as CockroachDB's credentials callback
    does (pkg/sql/pgwire/auth_methods.go scramAuthenticator).
    """

    def __init__(self, verifier, nonce=None):
        self.verifier = verifier
        self._server_nonce = nonce or base64.b64encode(secrets.token_bytes(NONCE_LEN)).decode()

    def client_first(self, msg):
        # gs2-header: "n,," or "y,," (client supports binding, server offered none);
        # "p=..." asks for channel binding, which SCRAM-SHA-256 (not -PLUS) cannot do.
        if msg.startswith("n,") or msg.startswith("y,"):
            cb_flag = msg[0]
        else:
            raise ScramError("channel binding not supported")
        rest = msg[2:]
        authzid, sep, bare = rest.partition(",")
        if not sep or (authzid and not authzid.startswith("a=")):
            raise ScramError("malformed client-first-message")
        self.gs2_header = msg[:2] + authzid + ","
        self.cb_flag = cb_flag
        self.client_first_bare = bare
        attrs = _attrs(bare)
        if "r" not in attrs:
            raise ScramError("client-first-message without nonce")
        if self.verifier is None:
            raise ScramError("no usable stored credentials")
        self.nonce = attrs["r"] + self._server_nonce
        self.server_first = "r=%s,s=%s,i=%d" % (
            self.nonce, base64.b64encode(self.verifier.salt).decode(), self.verifier.iterations)
        return self.server_first

    def client_final(self, msg):
        without_proof, sep, proof_part = msg.rpartition(",p=")
        if not sep:
            raise ScramError("client-final-message without proof")
        attrs = _attrs(without_proof)
        if attrs.get("r") != self.nonce:
            raise ScramError("nonce mismatch")
        if base64.b64decode(attrs.get("c", "")) != self.gs2_header.encode():
            raise ScramError("channel binding data mismatch")
        proof = base64.b64decode(proof_part)
        auth_message = ",".join([self.client_first_bare, self.server_first, without_proof]).encode()
        client_signature = _hmac(self.verifier.stored_key, auth_message)
        if len(proof) != len(client_signature):
            raise ScramError("bad proof length")
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.verifier.stored_key):
            raise ScramError("invalid proof")
        server_signature = _hmac(self.verifier.server_key, auth_message)
        return "v=" + base64.b64encode(server_signature).decode()
