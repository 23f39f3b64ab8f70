#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets to tests/fuzz/corpus/<target>/.

Small hand-made inputs: valid exchanges and the edges next to them. The files are
committed; rerun this after changing it (it replaces each target's directory).
The fuzzers never write here: scripts/fuzz.sh copies the corpora to a work dir.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "corpus")


def be32(v):
    return struct.pack(">i", v)


def be16(v):
    return struct.pack(">H", v)


# ---------------------------------------------------------------- startup phase

def startup(params, major=3, minor=0):
    body = be32((major << 16) | minor)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return be32(len(body) + 4) + body


SSL = be32(8) + be32(80877103)
GSSENC = be32(8) + be32(80877104)
CANCEL = be32(16) + be32(80877102) + be32(4242) + be32(-559038737)
SIG = b"\r\n\r\n\0\r\nQUIT\n"


def proxy_v2(cmd, fam, block, tlvs=b""):
    rest = block + tlvs
    return SIG + bytes([0x20 | cmd, fam]) + be16(len(rest)) + rest


INET = bytes([203, 0, 113, 7, 10, 0, 0, 1]) + be16(51234) + be16(5432)
INET6 = bytes(range(16)) + bytes(15) + b"\x01" + be16(40000) + be16(5432)
UNIX = b"/run/client.sock".ljust(108, b"\0") + b"/run/vaultwire/.s.PGSQL.5432".ljust(108, b"\0")
TLV = b"\x01" + be16(2) + b"h2" + b"\x04" + be16(0)
USER = startup([("user", "app"), ("database", "appdb"), ("application_name", "psql")])


def startup_seeds():
    return {
        "startup_v3": USER,
        "startup_options": startup([("user", "crdb-role"), ("options", "--cluster=x -c search_path=a"),
                                    ("client_encoding", "UTF8")]),
        "startup_v3_2": startup([("user", "app"), ("_pq_.x", "1")], minor=2),
        "startup_v2": startup([("user", "app")], major=2),
        "startup_dup_and_empty": startup([("user", ""), ("user", "b"), ("", "")]),
        "ssl_then_startup": SSL + USER,
        "gssenc_ssl_startup": GSSENC + SSL + USER,
        "cancel": CANCEL,
        "cancel_long": be32(20) + be32(80877102) + be32(1) + be32(2) + be32(3),
        "length_short": be32(4) + be32(196608),
        "length_huge": be32(0x7fffffff) + be32(196608),
        "truncated": USER[:-3],
        "no_terminator": be32(len(USER) - 1) + USER[4:-1],
        "proxy_inet_startup": proxy_v2(1, 0x11, INET) + USER,
        "proxy_inet6_ssl": proxy_v2(1, 0x21, INET6) + SSL + USER,
        "proxy_unix_tlv": proxy_v2(1, 0x31, UNIX, TLV) + USER,
        "proxy_local": proxy_v2(0, 0x00, b"") + CANCEL,
        "proxy_unspec": proxy_v2(1, 0x00, b"\x01\x02\x03") + USER,
        "proxy_bad_tlv": proxy_v2(1, 0x11, INET, b"\x01" + be16(9) + b"ab") + USER,
        "proxy_v1": b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 5432\r\n" + USER,
        "proxy_dgram": proxy_v2(1, 0x12, INET) + USER,
    }


# ---------------------------------------------------------------- typed messages

def msg(t, body):
    return t.encode() + be32(len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


RFC_FIRST = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def error_body(fields):
    return b"".join(c.encode() + cstr(v) for c, v in fields) + b"\0"


def message_seeds():
    B, F = b"\x01", b"\x00"  # flags: bit 0 backend, bit 1 the 8 KiB cap
    auth_ok = msg("R", be32(0))
    sasl = msg("R", be32(10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0")
    cont = msg("R", be32(11) + RFC_FIRST.encode())
    final = msg("R", be32(12) + RFC_FINAL.encode())
    err = msg("E", error_body([("S", "FATAL"), ("V", "FATAL"), ("C", "28P01"),
                              ("M", 'password authentication failed for user "app"'),
                              ("F", "auth.c"), ("L", "323"), ("R", "auth_failed")]))
    ps = b"".join(msg("S", cstr(k) + cstr(v)) for k, v in
                  [("server_version", "15.4"), ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                   ("integer_datetimes", "on"), ("standard_conforming_strings", "on")])
    key = msg("K", be32(31337) + be32(-1))
    rfq = msg("Z", b"I")
    login = sasl + cont + final + auth_ok + ps + key + rfq
    return {
        "be_login_scram": B + login,
        "be_login_capped": b"\x03" + login,
        "be_auth_md5": B + msg("R", be32(5) + b"\x01\x02\x03\x04"),
        "be_auth_cleartext": B + msg("R", be32(3)),
        "be_auth_gss_continue": B + msg("R", be32(8) + b"\x60\x82gss"),
        "be_auth_scm": B + msg("R", be32(6)),
        "be_sasl_empty_list": B + msg("R", be32(10) + b"\0"),
        "be_error_fatal": B + err,
        "be_notice": B + msg("N", error_body([("S", "NOTICE"), ("C", "00000"), ("M", "hello")])),
        "be_error_no_terminator": B + msg("E", b"SFATAL\0CXX000\0"),
        "be_negotiate": B + msg("v", be32(196608) + be32(2) + cstr("_pq_.a") + cstr("_pq_.b")),
        "be_negotiate_bad_count": B + msg("v", be32(196608) + be32(-1)),
        "be_ready_states": B + msg("Z", b"T") + msg("Z", b"E") + msg("Z", b"X"),
        "be_key_short": B + msg("K", be32(1)),
        "be_datarow": B + msg("T", be16(0)) + msg("D", be16(1) + be32(-1)) + msg("C", cstr("SELECT 1")),
        "be_unknown_type": B + b"!" + be32(4),
        "be_length_huge": B + b"D" + be32(0x7fffffff),
        "fe_password": F + msg("p", cstr("hvs.CAESIJ-token")),
        "fe_sasl_initial": F + msg("p", cstr("SCRAM-SHA-256") + be32(32) + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO1234"),
        "fe_sasl_initial_none": F + msg("p", cstr("SCRAM-SHA-256") + be32(-1)),
        "fe_sasl_response": F + msg("p", b"c=biws,r=abc,p=dHp1aWN2dGNwbw=="),
        "fe_query_terminate": F + msg("Q", cstr("select 1")) + msg("X", b""),
        "fe_terminate_body": F + msg("X", b"x"),
        "fe_extended": F + msg("P", cstr("") + cstr("select $1") + be16(0)) + msg("B", b"\0\0" + be16(0) * 3)
                       + msg("E", b"\0" + be32(0)) + msg("S", b""),
    }


# ---------------------------------------------------------------- SCRAM

NONCE = "rOprNGfwEbeRWgbNEkqO"


def scram_exchange(password, salt, iterations, gs2, user="", server_nonce_tail="srvNONCE"):
    """A valid server-first and server-final for the fuzz target's fixed client nonce."""
    nonce = NONCE + server_nonce_tail
    server_first = "r=%s,s=%s,i=%d" % (nonce, base64.b64encode(salt).decode(), iterations)
    client_first_bare = "n=%s,r=%s" % (user, NONCE)
    c = base64.b64encode(gs2).decode()
    without_proof = "c=%s,r=%s" % (c, nonce)
    auth_message = ",".join([client_first_bare, server_first, without_proof]).encode()
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    sig = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    return server_first, "v=" + base64.b64encode(sig).decode()


def scram(flags, password, first, final=None):
    out = bytes([flags]) + password.encode() + b"\0" + first.encode()
    if final is not None:
        out += b"\0" + final.encode()
    return out


def scram_seeds():
    salt = b"0123456789abcdef"
    n_first, n_final = scram_exchange("pencil", salt, 1, b"n,,")
    y_first, y_final = scram_exchange("pencil", salt, 2, b"y,,")
    p_first, p_final = scram_exchange("pencil", salt, 3, b"p=tls-server-end-point,," + b"\x5a" * 32)
    ok = NONCE + "srv"
    return {
        "rfc7677": scram(8, "pencil", RFC_FIRST, RFC_FINAL),
        "rfc7677_cached": scram(12, "pencil", RFC_FIRST, RFC_FINAL),
        "valid_n_i1": scram(0, "pencil", n_first, n_final),
        "valid_y_i2": scram(1, "pencil", y_first, y_final),
        "valid_p_i3": scram(2, "pencil", p_first, p_final),
        "wrong_signature": scram(0, "pencil", n_first, "v=" + base64.b64encode(b"\0" * 32).decode()),
        "server_error": scram(0, "pencil", n_first, "e=invalid-proof"),
        "final_extension": scram(0, "pencil", n_first, n_final + ",x=ext"),
        "final_bad_base64": scram(0, "pencil", n_first, "v=!!!!"),
        "final_short_sig": scram(0, "pencil", n_first, "v=AAAA"),
        "first_mandatory_ext": scram(0, "pencil", "m=ext," + n_first),
        "first_trailing_ext": scram(0, "pencil", n_first + ",x=1,y=2", n_final),
        "i_zero": scram(0, "pencil", "r=%s,s=AAAA,i=0" % ok),
        "i_over_bound": scram(0, "pencil", "r=%s,s=AAAA,i=4097" % ok),
        "i_huge": scram(0, "pencil", "r=%s,s=AAAA,i=99999999999999999999" % ok),
        "i_negative": scram(0, "pencil", "r=%s,s=AAAA,i=-1" % ok),
        "i_sign_space": scram(0, "pencil", "r=%s,s=AAAA,i=+1 " % ok),
        "salt_bad_base64": scram(0, "pencil", "r=%s,s=A=A=,i=1" % ok),
        "salt_empty": scram(0, "pencil", "r=%s,s=,i=1" % ok),
        "nonce_not_ours": scram(0, "pencil", "r=xyz,s=AAAA,i=1"),
        "nonce_only_ours": scram(0, "pencil", "r=%s,s=AAAA,i=1" % NONCE),
        "nonce_long": scram(0, "pencil", "r=%s%s,s=AAAA,i=1" % (NONCE, "x" * 3000)),
        "nonce_comma_in_order": scram(0, "pencil", "s=AAAA,r=%s,i=1" % ok),
        "password_nonascii": scram(0, "p\u00e4ss\u2163word\u00ad", n_first, n_final),
        "password_bad_utf8": b"\x00\xff\xfe\x00" + n_first.encode() + b"\0" + n_final.encode(),
        "password_prohibited": scram(0, "a\u0000b".replace("\u0000", "\u200e\u05d0"), n_first),
    }


# ---------------------------------------------------------------- SCRAM server

RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"


def client_final_for(password, client_first, gs2, cbind_data=b"", salt=RFC_SALT, iterations=4096):
    """The client-final-message a client with `password` sends to the fuzz target's server."""
    bare = client_first[len(gs2):]
    c_nonce = bare.split(",r=", 1)[1].split(",", 1)[0]
    server_first = "r=%s%s,s=%s,i=%d" % (c_nonce, RFC_SERVER_NONCE, base64.b64encode(salt).decode(), iterations)
    without_proof = "c=%s,r=%s%s" % (base64.b64encode(gs2.encode() + cbind_data).decode(), c_nonce,
                                     RFC_SERVER_NONCE)
    auth_message = ",".join([bare, server_first, without_proof]).encode()
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return without_proof + ",p=" + base64.b64encode(proof).decode()


def server(flags, first, final=None):
    out = bytes([flags]) + first.encode()
    if final is not None:
        out += b"\0" + final.encode()
    return out


def scram_server_seeds():
    # flags: bit 0 the server offers PLUS, bit 1 the client selects PLUS, bit 2 mock.
    rfc_first = "n,,n=user,r=" + NONCE
    rfc_final = "c=biws,r=%s%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=" % (NONCE, RFC_SERVER_NONCE)
    plus_gs2 = "p=tls-server-end-point,,"
    plus_first = plus_gs2 + "n=,r=" + NONCE
    y_first = "y,,n=,r=" + NONCE
    cert = b"\x5a" * 32
    zero_proof = ",p=" + base64.b64encode(b"\0" * 32).decode()
    r = ",r=%s%s" % (NONCE, RFC_SERVER_NONCE)
    return {
        "rfc7677": server(0, rfc_first, rfc_final),
        "rfc7677_computed": server(0, rfc_first, client_final_for("pencil", rfc_first, "n,,")),
        "rfc7677_tls_no_plus": server(1, rfc_first, rfc_final),
        "rfc7677_mock": server(4, rfc_first, rfc_final),
        "plus_valid": server(3, plus_first, client_final_for("pencil", plus_first, plus_gs2, cert)),
        "plus_wrong_hash": server(3, plus_first, client_final_for("pencil", plus_first, plus_gs2, b"\x5b" * 32)),
        "plus_not_offered": server(2, plus_first),
        "plus_then_n": server(3, rfc_first, rfc_final),
        "y_valid": server(0, y_first, client_final_for("pencil", y_first, "y,,")),
        "y_downgrade": server(1, y_first, client_final_for("pencil", y_first, "y,,")),
        "wrong_password": server(0, rfc_first, client_final_for("pencil2", rfc_first, "n,,")),
        "authzid": server(0, "n,a=admin,n=,r=" + NONCE),
        "mandatory_ext": server(0, "n,,m=ext,n=,r=" + NONCE),
        "first_extensions": server(0, rfc_first + ",x=1,y=", client_final_for("pencil", rfc_first + ",x=1,y=", "n,,")),
        "first_empty_nonce": server(0, "n,,n=,r="),
        "first_bad_flag": server(0, "x,,n=,r=abc"),
        "first_tls_unique": server(3, "p=tls-unique,,n=,r=abc"),
        "first_long_nonce": server(0, "n,,n=,r=" + "N" * 3000, "c=biws,r=" + "N" * 3000 + RFC_SERVER_NONCE + zero_proof),
        "final_two_proofs": server(0, rfc_first, "c=biws" + r + zero_proof + zero_proof),
        "final_after_proof": server(0, rfc_first, "c=biws" + r + zero_proof + ",x=1"),
        "final_extension": server(0, rfc_first, "c=biws" + r + ",x=ext" + zero_proof),
        "final_bad_base64": server(0, rfc_first, "c=biws" + r + ",p=!!!!"),
        "final_short_proof": server(0, rfc_first, "c=biws" + r + ",p=AAAA"),
        "final_nonce_mismatch": server(0, rfc_first, "c=biws,r=" + NONCE + "x" + zero_proof),
        "final_cbind_y_after_n": server(0, rfc_first, "c=eSws" + r + zero_proof),
        "final_order": server(0, rfc_first, r[1:] + ",c=biws" + zero_proof),
        "first_only": server(0, rfc_first),
        "empty": b"\0",
    }


# ---------------------------------------------------------------- Vault answers

def vault_seeds():
    creds = {"request_id": "c0ffee", "lease_id": "database/creds/app/AbCdEf0123",
             "lease_duration": 3600, "renewable": True,
             "data": {"username": "v-token-app-x1y2z3", "password": "A1a-secretpassword-xyz"},
             "wrap_info": None, "warnings": None, "auth": None}
    renew = {"lease_id": "database/creds/app/AbCdEf0123", "lease_duration": 1800, "renewable": True,
             "data": None, "warnings": ["TTL of \"1h\" exceeded the effective max_ttl"]}
    lookup = {"data": {"accessor": "acc3ss0r", "ttl": 2764, "policies": ["default", "app"],
                       "display_name": "token-app", "entity_id": "", "renewable": True,
                       "id": "hvs.CAESIJ-the-token-itself", "meta": None}, "warnings": None}
    renew_self = {"auth": {"client_token": "hvs.CAESIJ-the-token-itself", "accessor": "acc3ss0r",
                           "policies": ["default"], "lease_duration": 3600, "renewable": True}}
    d = lambda v: json.dumps(v, separators=(",", ":")).encode()  # noqa: E731
    return {
        "creds.json": d(creds),
        "renew.json": d(renew),
        "lookup_self.json": d(lookup),
        "renew_self.json": d(renew_self),
        "errors_denied.json": d({"errors": ["permission denied"]}),
        "errors_multierror.json": d({"errors": ["1 error occurred:\n\t* invalid lease ID\n\n",
                                                "2 errors occurred:\n\t* a\n\t* b\n\n"]}),
        "errors_sealed.json": d({"errors": ["Vault is sealed"]}),
        "errors_not_strings.json": d({"errors": [1, None, {"x": 1}, "ok"]}),
        "creds_negative_ttl.json": d(dict(creds, lease_duration=-1)),
        "creds_huge_ttl.json": d(creds).replace(b"3600", b"18446744073709551615"),
        "creds_float_ttl.json": d(creds).replace(b"3600", b"3.6e3"),
        "creds_password_number.json": d(dict(creds, data={"username": "u", "password": 12345678901234})),
        "creds_escapes.json": d(dict(creds, data={"username": "\u00e9\ud83d\ude00\u0000",
                                                  "password": "\"\\/\b\f\n\r\t"})),
        "lookup_policies_mixed.json": d({"data": dict(lookup["data"], policies=["a", 1])}),
        "not_object.json": b'["lease_id"]',
        "nested.json": b'{"data":' * 64 + b"{}" + b"}" * 64,
        "truncated.json": d(creds)[:57],
        "bom.json": b"\xef\xbb\xbf" + d(renew),
        "duplicate_keys.json": b'{"lease_id":"a","lease_id":"","lease_duration":1,"renewable":false}',
        "empty": b"",
    }


# ---------------------------------------------------------------- config

MINIMAL = """[vault]
address = "http://127.0.0.1:8200"

[[listener]]
route = "main"

[route.main]
host = "db.example"
roles = ["app"]
"""


def config_seeds():
    with open(os.path.join(HERE, "..", "..", "conf", "vaultwire.toml"), encoding="utf-8") as f:
        example = "\n".join(line for line in f.read().splitlines() if line.strip() and not line.startswith("#"))
    return {
        "example.toml": example + "\n",
        "minimal.toml": MINIMAL,
        "two_listeners.toml": MINIMAL + """
[[listener]]
bind = "[::1]:6432"
route = "main"
unix_socket = "relative/dir"
tls_cert = "c.pem"
proxy_protocol = true
""",
        "durations.toml": MINIMAL + """
[credentials]
token_recheck = "1h30m"
negative_cache = "250ms"
revoke_idle_after = "0"
on_revoke = "now"

[limits]
startup_timeout = "10 parsecs"
""",
        "bad_types.toml": MINIMAL.replace('roles = ["app"]', 'roles = "app"\nport = 70000\nsslmode = "prefer"'),
        "unknown_key.toml": MINIMAL + "\n[vault.extra]\nadress = 1\n",
        "inline_tables.toml": 'vault = { address = "https://v:8200", mount = "db/x" }\n'
                              'listener = [{ route = "r", bind = "0.0.0.0:1" }]\n'
                              'route = { r = { host = "h", roles = ["a","b"], port = 0x10 } }\n',
        "syntax_error.toml": '[vault\naddress = "x"\n',
        "unicode.toml": MINIMAL.replace("db.example", "d\u00e9\\u0000b") + 'log = { level = "d\\U0001F600" }\n',
        "dates_and_floats.toml": MINIMAL + "\n[runtime]\nthreads = 1e3\nshutdown_grace = 1979-05-27T07:32:00Z\n",
    }


def main():
    targets = {
        "fuzz_startup": startup_seeds(),
        "fuzz_messages": message_seeds(),
        "fuzz_scram": scram_seeds(),
        "fuzz_scram_server": scram_server_seeds(),
        "fuzz_vault_json": vault_seeds(),
        "fuzz_config": config_seeds(),
    }
    total = 0
    for target, seeds in targets.items():
        d = os.path.join(ROOT, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in seeds.items():
            if isinstance(data, str):
                data = data.encode()
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += len(data)
        print("%-16s %3d seeds" % (target, len(seeds)))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
