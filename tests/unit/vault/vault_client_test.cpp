// The pure parts of vault_client: Vault's error text, JSON → credential parsing
// (including malformed bodies), the SQLSTATE and message a client sees, path escaping.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "vaultwire/config.hpp"
#include "vaultwire/errc.hpp"
#include "vault/vault_client.hpp"

namespace {

using vaultwire::vault_error;
using vaultwire::vault_error_kind;
namespace vd = vaultwire::detail;

constexpr std::string_view addr = "https://vault.example:8200";
constexpr std::string_view creds_req = "GET database/creds/app";

// vault-api.md §2.4, verbatim.
constexpr std::string_view creds_body =
    R"({"request_id":"6e3c1f1e-2a2b-8f47-0c52-4a0d3b2f9c11","lease_id":"database/creds/crdb-role/1pcS5YcSaSS4Fgy4BiXpQz9a","renewable":true,"lease_duration":3600,)"
    R"("data":{"username":"v-token-hc-crdb-rol-1pcS5YcSaSS4Fgy4BiXp-1653512968","password":"Qx7-Lm2pZr9aKd4TbW1s"},)"
    R"("wrap_info":null,"warnings":null,"auth":null,"mount_type":"database"})";

vault_error error_for(int status, std::string_view body, std::string_view location = {}) {
  return vd::error_from_response(status, body, location, addr, creds_req);
}

}  // namespace

TEST_CASE("Vault's multierror text is condensed for people", "[vault]") {
  CHECK(vd::condense_vault_error("1 error occurred:\n\t* permission denied\n\n") == "permission denied");
  CHECK(vd::condense_vault_error("permission denied") == "permission denied");
  CHECK(vd::condense_vault_error("2 errors occurred:\n\t* first thing\n\t* second\nthing\n\n") ==
        "first thing; second thing");
  CHECK(vd::condense_vault_error("1 error occurred:\n\t* \"crdb-role\" is not an allowed role\n\n") ==
        "\"crdb-role\" is not an allowed role");
  CHECK(vd::condense_vault_error(
            "1 error occurred:\n\t* failed to execute query: ERROR: role \"x\" already exists (SQLSTATE 42710)\n\n") ==
        "failed to execute query: ERROR: role \"x\" already exists (SQLSTATE 42710)");
  CHECK(vd::condense_vault_error("  unknown role: foo\n") == "unknown role: foo");
  // Text that only looks like a header stays as it is (whitespace collapsed).
  CHECK(vd::condense_vault_error("some errors occurred:\nbut no bullets") == "some errors occurred: but no bullets");
  CHECK(vd::condense_vault_error("") == "");
  CHECK(vd::condense_vault_errors({}) == "");
  CHECK(vd::condense_vault_errors({"1 error occurred:\n\t* permission denied\n\n", "", "Vault is sealed"}) ==
        "permission denied; Vault is sealed");
}

TEST_CASE("a credential is parsed from Vault's answer", "[vault]") {
  auto r = vd::parse_credential(creds_body, addr, creds_req);
  REQUIRE(r);
  const auto& c = r.value();
  CHECK(c.lease_id == "database/creds/crdb-role/1pcS5YcSaSS4Fgy4BiXpQz9a");
  CHECK(c.lease_duration == std::chrono::seconds(3600));
  CHECK(c.renewable);
  CHECK(c.username == "v-token-hc-crdb-rol-1pcS5YcSaSS4Fgy4BiXp-1653512968");
  CHECK(c.password.view() == "Qx7-Lm2pZr9aKd4TbW1s");
  CHECK(c.warnings.empty());

  auto w = vd::parse_credential(
      R"({"lease_id":"l/1","renewable":false,"lease_duration":0,"data":{"username":"u","password":"p"},"warnings":["a","b"]})",
      addr, creds_req);
  REQUIRE(w);
  CHECK(w.value().warnings == std::vector<std::string>{"a", "b"});
  CHECK_FALSE(w.value().renewable);
}

TEST_CASE("malformed credential answers are bad_response errors without the body", "[vault]") {
  const char* bodies[] = {
      "",
      "not json",
      "[]",
      "null",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":{"username":"u","password":"secret-pw")",  // cut
      R"({"renewable":true,"lease_duration":1,"data":{"username":"u","password":"secret-pw"}})",                // no lease_id
      R"({"lease_id":"","renewable":true,"lease_duration":1,"data":{"username":"u","password":"secret-pw"}})",  // empty
      R"({"lease_id":"l","renewable":true,"lease_duration":"1h","data":{"username":"u","password":"secret-pw"}})",
      R"({"lease_id":"l","renewable":true,"lease_duration":-5,"data":{"username":"u","password":"secret-pw"}})",
      R"({"lease_id":"l","renewable":"yes","lease_duration":1,"data":{"username":"u","password":"secret-pw"}})",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":null})",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":{"password":"secret-pw"}})",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":{"username":"u"}})",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":{"username":"u","password":""}})",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":{"username":"u","password":42}})",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":{"username":"u","password":"secret-pw"},"warnings":[1]})",
      R"({"lease_id":"l","renewable":true,"lease_duration":1,"data":{"username":"u","password":"secret-pw"},"warnings":"x"})",
  };
  for (const char* body : bodies) {
    INFO(body);
    auto r = vd::parse_credential(body, addr, creds_req);
    REQUIRE_FALSE(r);
    const vault_error& e = r.error();
    CHECK(e.kind == vault_error_kind::bad_response);
    CHECK(e.address == addr);
    CHECK(e.request == creds_req);
    CHECK(e.sqlstate() == "08001");
    CHECK(e.message.find("secret-pw") == std::string::npos);
    CHECK(e.to_client_message().find("secret-pw") == std::string::npos);
  }
}

TEST_CASE("lease renewal, lookup-self and renew-self answers are parsed", "[vault]") {
  auto renew = vd::parse_lease_renewal(
      R"({"request_id":"x","lease_id":"database/creds/crdb-role/1pcS","renewable":true,"lease_duration":3550,"data":null,)"
      R"("wrap_info":null,"warnings":["TTL of \"2h0m0s\" exceeded the effective max_ttl of \"59m10s\"; TTL value is capped accordingly"],"auth":null})",
      addr, "PUT sys/leases/renew");
  REQUIRE(renew);
  CHECK(renew.value().lease_id == "database/creds/crdb-role/1pcS");
  CHECK(renew.value().lease_duration == std::chrono::seconds(3550));
  CHECK(renew.value().renewable);
  REQUIRE(renew.value().warnings.size() == 1);

  auto look = vd::parse_lookup_self(
      R"({"request_id":"x","lease_id":"","renewable":false,"lease_duration":0,"data":{"accessor":"B6oixijqmeR4bsLOJH88Ska9",)"
      R"("creation_time":1653512968,"creation_ttl":3600,"display_name":"token-app","entity_id":"7d2e3179-f69b-450c-7179-ac8ee8bd8ca9","expire_time":"2022-05-25T21:49:28Z",)"
      R"("explicit_max_ttl":0,"id":"hvs.SECRETTOKENVALUE","issue_time":"2022-05-25T20:49:28Z","meta":null,"num_uses":0,)"
      R"("orphan":false,"path":"auth/token/create","policies":["app","default"],"renewable":true,"ttl":3559,"type":"service"},)"
      R"("wrap_info":null,"warnings":null,"auth":null})",
      addr, "GET auth/token/lookup-self");
  REQUIRE(look);
  CHECK(look.value().accessor == "B6oixijqmeR4bsLOJH88Ska9");
  CHECK(look.value().ttl == std::chrono::seconds(3559));
  CHECK(look.value().policies == std::vector<std::string>{"app", "default"});
  CHECK(look.value().display_name == "token-app");
  CHECK(look.value().entity_id == "7d2e3179-f69b-450c-7179-ac8ee8bd8ca9");
  CHECK(look.value().renewable);

  auto self = vd::parse_renew_self(
      R"({"request_id":"x","lease_id":"","renewable":false,"lease_duration":0,"data":null,"wrap_info":null,"warnings":null,)"
      R"("auth":{"client_token":"hvs.SECRET","accessor":"acc","policies":["default"],"token_policies":["default"],)"
      R"("metadata":null,"lease_duration":7200,"renewable":true,"entity_id":"","token_type":"service","orphan":false}})",
      addr, "POST auth/token/renew-self");
  REQUIRE(self);
  CHECK(self.value().accessor == "acc");
  CHECK(self.value().ttl == std::chrono::seconds(7200));
  CHECK(self.value().renewable);

  CHECK_FALSE(look.value().orphan);

  // A root token without a lease (vault operator init, generate-root): token_store.go
  // handleLookup leaves out "renewable" and "issue_time" when the token has no lease times.
  auto root = vd::parse_lookup_self(
      R"({"request_id":"x","lease_id":"","renewable":false,"lease_duration":0,"data":{"accessor":"Xo1",)"
      R"("creation_time":1653512968,"creation_ttl":0,"display_name":"root","entity_id":"","expire_time":null,)"
      R"("explicit_max_ttl":0,"id":"hvs.SECRETROOT","meta":null,"num_uses":0,"orphan":true,"path":"auth/token/root",)"
      R"("policies":["root"],"ttl":0,"type":"service"},"wrap_info":null,"warnings":null,"auth":null})",
      addr, "GET auth/token/lookup-self");
  REQUIRE(root);
  CHECK(root.value().ttl == std::chrono::seconds(0));
  CHECK_FALSE(root.value().renewable);
  CHECK(root.value().orphan);
  CHECK(root.value().policies == std::vector<std::string>{"root"});
  CHECK_FALSE(vd::parse_lookup_self(R"({"data":{"accessor":"a","ttl":0,"renewable":"yes"}})", addr,
                                    "GET auth/token/lookup-self"));

  CHECK_FALSE(vd::parse_lookup_self(R"({"data":null})", addr, "GET auth/token/lookup-self"));
  CHECK_FALSE(vd::parse_renew_self(R"({"auth":null})", addr, "POST auth/token/renew-self"));
  CHECK_FALSE(vd::parse_lease_renewal(R"({"lease_id":"l"})", addr, "PUT sys/leases/renew"));
}

TEST_CASE("HTTP statuses map to error kinds with Vault's text", "[vault]") {
  auto denied = error_for(403, R"({"errors":["1 error occurred:\n\t* permission denied\n\n"]})");
  CHECK(denied.kind == vault_error_kind::forbidden);
  CHECK(denied.http_status == 403);
  CHECK(denied.message == "permission denied");

  auto plain = error_for(403, R"({"errors":["permission denied"]})");
  CHECK(plain.message == "permission denied");

  auto unknown = error_for(400, R"({"errors":["unknown role: app"]})");
  CHECK(unknown.kind == vault_error_kind::bad_request);
  CHECK(unknown.message == "unknown role: app");

  CHECK(error_for(404, R"({"errors":[]})").kind == vault_error_kind::not_found);
  CHECK(error_for(404, R"({"errors":[]})").message == "not found");
  CHECK(error_for(405, R"({"errors":["1 error occurred:\n\t* unsupported operation\n\n"]})").kind ==
        vault_error_kind::bad_request);

  auto sealed = error_for(503, R"({"errors":["Vault is sealed"]})");
  CHECK(sealed.kind == vault_error_kind::sealed);
  CHECK(sealed.message == "Vault is sealed");
  CHECK(error_for(503, R"({"errors":["injected failure"]})").kind == vault_error_kind::server_error);
  CHECK(error_for(500, R"({"errors":["1 error occurred:\n\t* \"app\" is not an allowed role\n\n"]})").message ==
        "\"app\" is not an allowed role");
  CHECK(error_for(502, "<html>bad gateway</html>").kind == vault_error_kind::server_error);
  CHECK(error_for(502, "<html>bad gateway</html>").message.empty());
  CHECK(error_for(429, "").kind == vault_error_kind::rate_limited);

  auto moved = error_for(307, "", "https://standby.example:8200/v1/database/creds/app");
  CHECK(moved.kind == vault_error_kind::redirected);
  CHECK(moved.message == "HTTP 307 to https://standby.example:8200/v1/database/creds/app");
}

TEST_CASE("errors map to DESIGN.md's SQLSTATEs and readable messages", "[vault]") {
  auto denied = error_for(403, R"({"errors":["permission denied"]})");
  CHECK(denied.token_rejected());
  CHECK(denied.sqlstate() == "28P01");
  CHECK(denied.to_client_message() == "Vault rejected the token: permission denied");
  CHECK(error_for(400, R"({"errors":["unknown role: app"]})").sqlstate() == "28P01");
  CHECK(error_for(404, R"({"errors":[]})").sqlstate() == "28P01");
  CHECK(denied.code() == vaultwire::errc::vault_rejected_token);
  CHECK(vaultwire::sqlstate_for(vaultwire::errc::vault_rejected_token) == denied.sqlstate());

  auto acl = error_for(403, R"({"errors":["1 error occurred:\n\t* permission denied\n\n"]})");
  CHECK_FALSE(acl.token_rejected());
  CHECK(acl.policy_denied());
  CHECK(acl.sqlstate() == "28000");
  CHECK(acl.code() == vaultwire::errc::vault_denied_role);
  CHECK(acl.to_client_message() == "Vault's policy for the token denies GET database/creds/app: permission denied");

  auto sealed = error_for(503, R"({"errors":["Vault is sealed"]})");
  CHECK(sealed.sqlstate() == "08001");
  CHECK(sealed.code() == vaultwire::errc::vault_unavailable);
  CHECK(vaultwire::sqlstate_for(vaultwire::errc::vault_unavailable) == sealed.sqlstate());
  CHECK(sealed.to_client_message() ==
        "Vault at https://vault.example:8200 is unavailable: Vault is sealed (HTTP 503)");
  CHECK(error_for(429, "").sqlstate() == "08001");
  CHECK(error_for(500, "").sqlstate() == "08001");
  CHECK(error_for(500, "").to_client_message() == "Vault at https://vault.example:8200 is unavailable: HTTP 500");

  auto moved = error_for(307, "", "https://standby.example:8200/v1/x");
  CHECK(moved.sqlstate() == "08001");
  CHECK(moved.to_client_message().find("HTTP 307") != std::string::npos);
  CHECK(moved.to_client_message().find("does not follow") != std::string::npos);

  vault_error down;
  down.kind = vault_error_kind::unreachable;
  down.message = "Failed to connect to 127.0.0.1 port 1: Connection refused";
  down.address = "http://127.0.0.1:1";
  CHECK(down.sqlstate() == "08001");
  CHECK(down.to_client_message() ==
        "cannot reach Vault at http://127.0.0.1:1: Failed to connect to 127.0.0.1 port 1: Connection refused");

  vault_error slow;
  slow.kind = vault_error_kind::timeout;
  slow.message = "Operation timed out after 1000 milliseconds with 0 bytes received";
  slow.address = "http://127.0.0.1:8200";
  CHECK(slow.sqlstate() == "08001");
  CHECK(slow.to_client_message().starts_with("Vault at http://127.0.0.1:8200 did not answer in time: "));
}

TEST_CASE("a 403 is told apart on Vault's raw errors[]: a bad token, or the policy's denial of the path",
          "[vault][refusal]") {
  using vaultwire::vault_refusal;
  // request_handling.go: an unknown, revoked or expired token fails the token check
  // with the bare logical.ErrPermissionDenied.
  auto bad = error_for(403, R"({"errors":["permission denied"]})");
  CHECK(bad.refusal == vault_refusal::bad_token);
  CHECK(bad.token_rejected());
  // Vault 1.17 adds logical.ErrInvalidToken: two multierror items.
  auto bad_1_17 = error_for(403, R"({"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]})");
  CHECK(bad_1_17.refusal == vault_refusal::bad_token);
  CHECK(bad_1_17.token_rejected());
  CHECK(bad_1_17.message == "permission denied; invalid token");
  CHECK(error_for(403, R"({"errors":["invalid token"]})").refusal == vault_refusal::bad_token);
  // CheckToken: the ACL denies the path for a valid token, wrapped in a multierror.
  auto acl = error_for(403, R"({"errors":["1 error occurred:\n\t* permission denied\n\n"]})");
  CHECK(acl.refusal == vault_refusal::policy_denied);
  CHECK(acl.message == "permission denied");  // the condensed text alone could not tell
  CHECK_FALSE(acl.token_rejected());
  // Anything else stays unclassified (and still rejects the token, as before).
  auto other = error_for(403, R"({"errors":["bad token: something"]})");
  CHECK(other.refusal == vault_refusal::none);
  CHECK(other.token_rejected());
  CHECK(error_for(403, R"({"errors":[]})").token_rejected());
  // The same texts with another status are not a 403's refusal.
  CHECK(error_for(500, R"({"errors":["1 error occurred:\n\t* permission denied\n\n"]})").refusal ==
        vault_refusal::none);
}

TEST_CASE("a renewal's 400 is told apart: the lease gone, final, or anything else (retried)", "[vault][refusal]") {
  using vaultwire::vault_refusal;
  const auto renew = [](std::string_view text) {
    const std::string body = R"({"errors":[")" + std::string(text) + R"("]})";
    return vd::error_from_response(400, body, {}, addr, "PUT sys/leases/renew").refusal;
  };
  // expiration.go leaseEntry.renewable.
  CHECK(renew("lease not found") == vault_refusal::lease_gone);
  CHECK(renew("lease expired") == vault_refusal::lease_gone);
  CHECK(renew("lease is expired and has failed previous revocation attempts") == vault_refusal::lease_gone);
  CHECK(renew("lease not found or lease is not renewable") == vault_refusal::lease_gone);  // Vault < 1.0
  CHECK(renew("lease is not renewable") == vault_refusal::lease_final);
  // CalculateTTL, from the expiration manager (bare) or from the backend (wrapped by renewEntry).
  CHECK(renew("past the max TTL, cannot renew") == vault_refusal::lease_final);
  CHECK(renew("failed to renew entry: resp: (*logical.Response)(nil) err: past the max TTL, cannot renew") ==
        vault_refusal::lease_final);
  // A failed database connection is answered 400 too: not final.
  CHECK(renew("failed to renew entry: resp: (*logical.Response)(nil) err: failed to connect to `host=127.0.0.1 "
              "user=vault database=app`: dial error (dial tcp 127.0.0.1:5432: connect: connection refused)") ==
        vault_refusal::none);
  CHECK(renew("failed to renew entry: resp: (*logical.Response)(nil) err: error during renew: could not find role "
              "with name \"app\"") == vault_refusal::none);
  CHECK(renew("lease_id must be specified") == vault_refusal::none);
  CHECK(renew("a lease expired somewhere") == vault_refusal::none);
  auto gone = vd::error_from_response(400, R"({"errors":["lease not found"]})", {}, addr, "PUT sys/leases/renew");
  CHECK(gone.message == "lease not found");
  CHECK(gone.token_rejected());  // a 400 still says nothing good about the request
}

TEST_CASE("Retry-After: delta-seconds or an HTTP-date, capped, 0 when absent or past", "[vault][retry-after]") {
  const std::int64_t now = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(vd::parse_retry_after("3", now) == std::chrono::seconds{3});
  CHECK(vd::parse_retry_after(" 120 \r", now) == std::chrono::seconds{120});
  CHECK(vd::parse_retry_after("0", now) == std::chrono::seconds{0});
  CHECK(vd::parse_retry_after("86400", now) == std::chrono::seconds{3600});
  CHECK(vd::parse_retry_after("99999999999", now) == std::chrono::seconds{3600});
  CHECK(vd::parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == std::chrono::seconds{10});
  CHECK(vd::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == std::chrono::seconds{0});
  CHECK(vd::parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now) == std::chrono::seconds{0});
  CHECK(vd::parse_retry_after("", now) == std::chrono::seconds{0});
  CHECK(vd::parse_retry_after("soon", now) == std::chrono::seconds{0});
  CHECK(vd::parse_retry_after("-5", now) == std::chrono::seconds{0});
  // A 429's error carries no Retry-After of its own: the transport adds it.
  CHECK(error_for(429, R"({"errors":["request path \"database/creds/app\": rate limit quota exceeded"]})")
            .retry_after == std::chrono::seconds{0});
}

TEST_CASE("path segments are percent-encoded", "[vault]") {
  CHECK(vd::escape_path("crdb-role", false) == "crdb-role");
  CHECK(vd::escape_path("a/b", false) == "a%2Fb");
  CHECK(vd::escape_path("../sys", false) == "..%2Fsys");
  CHECK(vd::escape_path("team/database", true) == "team/database");
  CHECK(vd::escape_path("r?x=1#f %", false) == "r%3Fx%3D1%23f%20%25");
}

TEST_CASE("vault_client refuses a bad address", "[vault]") {
  CHECK_THROWS_AS(vaultwire::vault_client({.address = "vault.example:8200"}), std::invalid_argument);
  CHECK_THROWS_AS(vaultwire::vault_client({.address = "http://x", .threads = 0}), std::invalid_argument);
  vaultwire::vault_client ok({.address = "http://127.0.0.1:8200/"});
  CHECK(ok.options().address == "http://127.0.0.1:8200");
}

TEST_CASE("client options come from the [vault] section", "[vault]") {
  vaultwire::vault_config c;
  c.address = "https://vault.example:8200";
  c.namespace_ = "admin";
  c.ca_file = "/etc/vault/ca.pem";
  c.request_timeout = std::chrono::seconds(3);
  auto o = vaultwire::make_vault_client_options(c, 8);
  CHECK(o.address == "https://vault.example:8200");
  CHECK(o.vault_namespace == "admin");
  CHECK(o.ca_file == "/etc/vault/ca.pem");
  CHECK(o.request_timeout == std::chrono::seconds(3));
  CHECK(o.threads == 8);
  vaultwire::vault_config bare;
  bare.address = "http://127.0.0.1:8200";
  auto plain = vaultwire::make_vault_client_options(bare);
  CHECK(plain.vault_namespace.empty());
  CHECK(plain.ca_file.empty());
  CHECK(plain.request_timeout == std::chrono::seconds(5));
}

TEST_CASE("login answers are parsed in the shapes the auth methods' docs show", "[vault][login]") {
  // api-docs/auth/approle "Login with AppRole", sample response.
  auto approle = vd::parse_login(
      R"({"auth":{"renewable":true,"lease_duration":1200,"metadata":null,"token_policies":["default"],)"
      R"("accessor":"fd6c9a00-d2dc-3b11-0be5-af7ae0e1d374","client_token":"5b1a0318-679c-9c45-e5c6-d1b9a9035d49"},)"
      R"("warnings":null,"wrap_info":null,"data":null,"lease_duration":0,"renewable":false,"lease_id":""})",
      addr, "POST auth/approle/login");
  REQUIRE(approle);
  CHECK(approle.value().client_token.view() == "5b1a0318-679c-9c45-e5c6-d1b9a9035d49");
  CHECK(approle.value().accessor == "fd6c9a00-d2dc-3b11-0be5-af7ae0e1d374");
  CHECK(approle.value().ttl == std::chrono::seconds(1200));
  CHECK(approle.value().renewable);
  CHECK(approle.value().token_type == "service");  // absent: a service token
  CHECK(approle.value().policies.empty());        // the sample has token_policies only

  // api-docs/auth/kubernetes "Login", sample response (no top-level fields but auth).
  auto k8s = vd::parse_login(
      R"({"auth":{"client_token":"62b858f9-529c-6b26-e0b8-0457b6aacdb4","accessor":"afa306d0-be3d-c8d2-b0d7-2676e1c0d9b4",)"
      R"("policies":["default"],"metadata":{"role":"test","service_account_name":"vault-auth",)"
      R"("service_account_namespace":"default","service_account_secret_name":"vault-auth-token-pd21c",)"
      R"("service_account_uid":"aa9aa8ff-98d0-11e7-9bb7-0800276d99bf"},"lease_duration":2764800,"renewable":true}})",
      addr, "POST auth/kubernetes/login");
  REQUIRE(k8s);
  CHECK(k8s.value().ttl == std::chrono::seconds(2764800));
  CHECK(k8s.value().policies == std::vector<std::string>{"default"});

  // api-docs/auth/cert "Login with TLS certificate method": no accessor in the sample.
  auto cert = vd::parse_login(
      R"({"auth":{"client_token":"cf95f87d-f95b-47ff-b1f5-ba7bff850425","policies":["web","stage"],)"
      R"("lease_duration":3600,"renewable":true}})",
      addr, "POST auth/cert/login");
  REQUIRE(cert);
  CHECK(cert.value().accessor.empty());
  CHECK(cert.value().policies == std::vector<std::string>{"web", "stage"});

  // What Vault sends (sdk/logical/translate_response.go HTTPAuth): a batch token, not
  // renewable, an orphan, with an entity.
  auto batch = vd::parse_login(
      R"({"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,"data":null,"wrap_info":null,)"
      R"("warnings":null,"auth":{"client_token":"hvb.AAAAAQJSECRET","accessor":"","policies":["default","vaultwire"],)"
      R"("token_policies":["default","vaultwire"],"metadata":{"role_name":"vaultwire"},"lease_duration":900,)"
      R"("renewable":false,"entity_id":"5b5a0b8c-1a5f-0c0b-4e6e-0f3c5c3e1d2a","token_type":"batch","orphan":true,)"
      R"("mfa_requirement":null,"num_uses":0},"mount_type":"approle"})",
      addr, "POST auth/approle/login");
  REQUIRE(batch);
  CHECK(batch.value().token_type == "batch");
  CHECK_FALSE(batch.value().renewable);
  CHECK(batch.value().orphan);
  CHECK(batch.value().entity_id == "5b5a0b8c-1a5f-0c0b-4e6e-0f3c5c3e1d2a");
  CHECK(batch.value().ttl == std::chrono::seconds(900));
}

TEST_CASE("a login answer without a usable token is bad_response, without the body", "[vault][login]") {
  const auto bad = [](std::string_view body) {
    auto r = vd::parse_login(body, addr, "POST auth/approle/login");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == vault_error_kind::bad_response);
    CHECK(r.error().request == "POST auth/approle/login");
    CHECK(r.error().message.find("hvs.SECRET") == std::string::npos);
    return r.error().message;
  };
  CHECK(bad(R"({"auth":null})") == "unexpected answer: \"auth\" is not an object");
  CHECK(bad(R"({"data":{}})") == "unexpected answer: no \"auth\"");
  CHECK(bad(R"({"auth":{"client_token":"","lease_duration":60}})") ==
        "unexpected answer: \"client_token\" is not a non-empty string");
  CHECK(bad(R"({"auth":{"client_token":"hvs.SECRET"}})") == "unexpected answer: no \"lease_duration\"");
  CHECK(bad(R"({"auth":{"client_token":"hvs.SECRET","lease_duration":-1}})") ==
        "unexpected answer: \"lease_duration\" is not a non-negative integer");
  CHECK(bad(R"({"auth":{"client_token":"hvs.SECRET","lease_duration":60,"renewable":"yes"}})") ==
        "unexpected answer: \"renewable\" is not a boolean");
  // Login MFA: Vault answers with a requirement and no token.
  CHECK(bad(R"({"auth":{"client_token":"","lease_duration":0,"mfa_requirement":{"mfa_request_id":"x"}}})") ==
        "unexpected answer: the login asks for MFA (auth.mfa_requirement), which vaultwire cannot answer");
  CHECK(bad("not json") == "the answer is not a JSON object");
}

TEST_CASE("the metrics label of a login names no mount", "[vault][login]") {
  CHECK(vd::endpoint_label("auth/approle/login") == "login");
  CHECK(vd::endpoint_label("auth/k8s/cluster-1/login") == "login");
  CHECK(vd::endpoint_label("/auth/cert/login") == "login");
  CHECK(vd::endpoint_label("auth/token/lookup-self") == "lookup-self");
  CHECK(vd::endpoint_label("auth/token/renew-self") == "renew-self");
  CHECK(vd::endpoint_label("auth/approle/role/x/secret-id") == "other");
  CHECK(vd::endpoint_label("database/creds/app") == "creds");
}
