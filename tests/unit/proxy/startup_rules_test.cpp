// The startup-parameter rule of every route (proxy/startup_rules.hpp): parameters that
// change how the server authenticates or which role the session has are refused, and
// a route that fixes its cluster lets exactly one cluster reach the server.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "proxy/startup_rules.hpp"

namespace {

using params_t = std::vector<std::pair<std::string, std::string>>;
namespace d = vaultwire::detail;

vaultwire::route_config route_with(std::optional<std::string> options, std::optional<std::string> prefix = {},
                                   std::string server_name = "db.internal") {
  vaultwire::route_config r;
  r.host = "db.internal";
  r.server_name = std::move(server_name);
  r.options = std::move(options);
  r.database_prefix = std::move(prefix);
  return r;
}

// The refusal message, or "" when accepted.
std::string refusal(const vaultwire::route_config& r, params_t& p, std::string& db) {
  return d::apply_startup_rules(r, p, db).value_or("");
}

}  // namespace

TEST_CASE("startup rules: options split and join as PostgreSQL reads them", "[proxy][startup]") {
  CHECK(d::split_options("  -c a=b\t--x=y  ") == std::vector<std::string>{"-c", "a=b", "--x=y"});
  CHECK(d::split_options(R"(-c search_path=a\ b\\c)") == std::vector<std::string>{"-c", R"(search_path=a b\c)"});
  CHECK(d::join_options({"-c", R"(search_path=a b\c)"}) == R"(-c search_path=a\ b\\c)");
  CHECK(d::split_options("").empty());
}

TEST_CASE("startup rules: parameters that change the role or the authentication are refused", "[proxy][startup]") {
  const auto r = route_with(std::nullopt);
  std::string db = "defaultdb";
  for (const char* name : {"crdb:jwt_auth_enabled", "crdb:remote_addr", "CRDB:session_revival_token_base64", "role",
                           "session_authorization"}) {
    params_t p{{"application_name", "x"}, {name, "v"}};
    INFO(name);
    const std::string m = refusal(r, p, db);
    CHECK(m.find(std::string("startup parameter \"") + name + "\" is not allowed") != std::string::npos);
  }
  for (const char* options : {"-c role=admin", "-crole=admin", "--role=admin", "--session-authorization=root",
                              "-c session_authorization=root", "--crdb:jwt_auth_enabled=true",
                              "-c crdb:remote_addr=1.2.3.4", "-c statement_timeout=5s -c ROLE=admin"}) {
    params_t p{{"options", options}};
    INFO(options);
    CHECK(refusal(r, p, db).find("startup parameter options: \"") == 0);
  }
  params_t fine{{"options", "-c statement_timeout=5s --search-path=app"}, {"application_name", "psql"}};
  CHECK(refusal(r, fine, db).empty());
  CHECK(fine[0].second == "-c statement_timeout=5s --search-path=app");
}

TEST_CASE("startup rules: the route's cluster and the client's", "[proxy][startup]") {
  SECTION("which routes fix a cluster") {
    CHECK(d::route_cluster(route_with("--cluster=lilac-grizzly-684")) == "lilac-grizzly-684");
    CHECK(d::route_cluster(route_with("-c cluster=lilac-grizzly-684")) == "lilac-grizzly-684");
    CHECK(d::route_cluster(route_with("-ccluster=lilac-grizzly-684 -c x=y")) == "lilac-grizzly-684");
    CHECK(d::route_cluster(route_with(std::nullopt, "lilac-grizzly-684.")) == "lilac-grizzly-684");
    CHECK(d::route_cluster(route_with(std::nullopt, {}, "lilac-grizzly-684.g8z.cockroachlabs.cloud")) ==
          "lilac-grizzly-684");
    CHECK(d::route_cluster(route_with(std::nullopt, {}, "free-tier14.aws-us-east-1.cockroachlabs.cloud")).empty());
    CHECK(d::route_cluster(route_with(std::nullopt)).empty());
  }
  const auto r = route_with("--cluster=lilac-grizzly-684");
  SECTION("the same cluster in options is dropped, so one reaches the server") {
    params_t p{{"options", "-c statement_timeout=5s --cluster=lilac-grizzly-684"}};
    std::string db = "defaultdb";
    CHECK(refusal(r, p, db).empty());
    CHECK(p == params_t{{"options", "-c statement_timeout=5s"}});
    params_t only{{"options", "-c cluster=lilac-grizzly-684"}};
    CHECK(refusal(r, only, db).empty());
    CHECK(only.empty());
  }
  SECTION("another cluster in options is refused") {
    params_t p{{"options", "--cluster=happy-koala-5"}};
    std::string db = "defaultdb";
    CHECK(refusal(r, p, db) ==
          "startup parameter options: --cluster=happy-koala-5 names another cluster than this route's "
          "(lilac-grizzly-684)");
  }
  SECTION("two cluster flags are refused even when equal") {
    params_t p{{"options", "--cluster=lilac-grizzly-684 -ccluster=lilac-grizzly-684"}};
    std::string db = "defaultdb";
    CHECK(refusal(r, p, db).find("more than one --cluster flag") != std::string::npos);
  }
  SECTION("a cluster in the database") {
    params_t p;
    std::string db = "lilac-grizzly-684.defaultdb";
    CHECK(refusal(r, p, db).empty());
    CHECK(db == "defaultdb");
    db = "cluster:lilac-grizzly-684/bank";
    CHECK(refusal(r, p, db).empty());
    CHECK(db == "bank");
    db = "happy-koala-5.defaultdb";
    CHECK(refusal(r, p, db) ==
          "database \"happy-koala-5.defaultdb\" names cluster \"happy-koala-5\", not this route's (lilac-grizzly-684)");
  }
  SECTION("a route without a cluster leaves the client's alone") {
    const auto plain = route_with("-c statement_timeout=1s");
    params_t p{{"options", "--cluster=happy-koala-5"}};
    std::string db = "happy-koala-5.defaultdb";
    CHECK(refusal(plain, p, db).empty());
    CHECK(p == params_t{{"options", "--cluster=happy-koala-5"}});
    CHECK(db == "happy-koala-5.defaultdb");
  }
}
