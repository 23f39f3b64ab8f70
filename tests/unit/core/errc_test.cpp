// errc: the one map from vaultwire's codes to the SQLSTATE a client sees (DESIGN.md
// "Errors a client sees") and to the labels logs and metrics carry; result<T>'s
// failure answers with the same SQLSTATE.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <utility>

#include "core/result.hpp"
#include "vaultwire/errc.hpp"

using vaultwire::errc;

TEST_CASE("errc: each code has its SQLSTATE and a label of its own", "[errc]") {
  // clang-format off
  const std::pair<errc, const char*> table[] = {
      {errc::vault_rejected_token, "28P01"},      {errc::role_not_allowed, "28000"},
      {errc::vault_unavailable, "08001"},         {errc::upstream_unreachable, "08001"},
      {errc::upstream_tls_failed, "08001"},       {errc::upstream_auth_unsupported, "08001"},
      {errc::upstream_protocol, "08001"},         {errc::too_many_clients, "53300"},
      {errc::throttled, "08004"},                 {errc::protocol_violation, "08P01"},
      {errc::unsupported_protocol, "08P01"},      {errc::startup_timeout, "08P01"},
      {errc::session_ended, "57P01"},             {errc::client_idle_timeout, "57P05"},
      {errc::tls_error, "08006"},                 {errc::setup_failed, "XX000"},
      {errc::vault_denied_role, "28000"},         {errc::password_rejected, "28P01"},
  };
  // clang-format on
  std::set<std::string> labels;
  for (const auto& [code, sqlstate] : table) {
    INFO(vaultwire::label_for(code));
    CHECK(vaultwire::sqlstate_for(code) == sqlstate);
    CHECK(vaultwire::label_for(code) != "unknown");
    labels.emplace(vaultwire::label_for(code));
    CHECK(make_error_code(code).message() == vaultwire::label_for(code));
  }
  CHECK(labels.size() == std::size(table));
}

TEST_CASE("result: a failure carries its errc and message and answers with its SQLSTATE", "[errc]") {
  const vaultwire::result<int> ok = 7;
  REQUIRE(ok);
  CHECK(ok.value() == 7);
  const vaultwire::result<int> refused = vaultwire::failure{errc::too_many_clients, "too many client connections"};
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == errc::too_many_clients);
  CHECK(refused.error().sqlstate() == "53300");
  CHECK(refused.error().message == "too many client connections");
}
