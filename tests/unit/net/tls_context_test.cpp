// The data path's TLS contexts: a file that cannot be loaded is a setup_failed
// failure naming the file; a context that loads is owned by the result.
#include <catch2/catch.hpp>

#include <string>

#include "net/stream.hpp"

using vaultwire::errc;

TEST_CASE("tls contexts: files that cannot be loaded fail with setup_failed, naming them", "[tls]") {
  SECTION("a listener certificate") {
    const auto r = vaultwire::detail::make_server_tls_context("/nonexistent/cert.pem", "/nonexistent/key.pem");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::setup_failed);
    CHECK(r.error().message.rfind("cannot load listener certificate /nonexistent/cert.pem: ", 0) == 0);
  }
  SECTION("a route's CA file") {
    vaultwire::detail::tls_client_context_options o;
    o.ca_file = "/nonexistent/ca.pem";
    const auto r = vaultwire::detail::make_client_tls_context(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::setup_failed);
    CHECK(r.error().message.rfind("cannot load CA file /nonexistent/ca.pem: ", 0) == 0);
  }
  SECTION("no files: a context with the data-path settings") {
    const auto r = vaultwire::detail::make_client_tls_context({});
    REQUIRE(r);
    REQUIRE(r.value());
    CHECK(SSL_CTX_get_min_proto_version(r.value().get()) == TLS1_2_VERSION);
    CHECK((SSL_CTX_get_mode(r.value().get()) & SSL_MODE_RELEASE_BUFFERS) != 0);
  }
}
