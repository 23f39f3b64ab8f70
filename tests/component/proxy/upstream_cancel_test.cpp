// send_upstream_cancel's source address: the cancel connection leaves from the address
// it is given (the local address of the session's upstream connection), since a proxy
// in front of the cluster drops a CancelRequest from another source than its session's.
// A plain TCP listener on loopback stands in for the server; no PostgreSQL.
#include <catch2/catch.hpp>

#include <pgwire/decoder.hpp>
#include <pgwire/messages.hpp>

#include <array>
#include <chrono>
#include <exception>
#include <string>
#include <variant>

#include <boost/asio/read.hpp>

#include "proxy/upstream.hpp"

namespace {

namespace net = boost::asio;
using net::ip::tcp;

struct received {
  std::string source;
  std::array<std::uint8_t, 16> bytes{};
};

// One CancelRequest sent from `source` to a listener on 127.0.0.1: what the listener saw.
received cancel_from(const std::string& source) {
  net::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  vaultwire::detail::upstream_target target;
  target.host = "127.0.0.1";
  target.port = acceptor.local_endpoint().port();  // target.tls empty: no SSLRequest
  received got;
  bool accepted = false;
  acceptor.async_accept([&](const boost::system::error_code& ec, tcp::socket s) {
    REQUIRE_FALSE(ec);
    accepted = true;
    got.source = s.remote_endpoint().address().to_string();
    boost::system::error_code read_ec;
    net::read(s, net::buffer(got.bytes), read_ec);
    CHECK_FALSE(read_ec);
  });
  net::co_spawn(io, vaultwire::detail::send_upstream_cancel(target, {1234, 5678}, source),
                [](std::exception_ptr e) {
                  if (e) std::rethrow_exception(e);
                });
  io.run_for(std::chrono::seconds(10));
  REQUIRE(accepted);
  return got;
}

}  // namespace

TEST_CASE("upstream cancel: the connection leaves from the session's upstream address", "[component][cancel]") {
  // Every 127/8 address is local on Linux: 127.0.0.2 needs no set-up.
  const received r = cancel_from("127.0.0.2");
  CHECK(r.source == "127.0.0.2");
  const auto parsed = pgwire::decode_startup_packet(r.bytes);
  REQUIRE(parsed.status == pgwire::decode_status::message);
  REQUIRE(std::holds_alternative<pgwire::cancel_request>(parsed.packet));
  CHECK(std::get<pgwire::cancel_request>(parsed.packet).process_id == 1234);
  CHECK(std::get<pgwire::cancel_request>(parsed.packet).secret_key == 5678);

  CHECK(cancel_from("127.0.0.3").source == "127.0.0.3");
  CHECK(cancel_from("").source == "127.0.0.1");  // no source: the kernel's choice
}
