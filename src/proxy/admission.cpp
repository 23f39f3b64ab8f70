// The admission phase: an optional PROXY protocol header, SSLRequest / GSSENCRequest
// / CancelRequest / StartupMessage, NegotiateProtocolVersion, the role check and
// caps, then the client's proof of who it is: the cleartext password that carries
// the Vault token, the kernel's peer credentials, or a local user's SCRAM exchange.
#include <openssl/crypto.h>

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/proxy_protocol.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <system_error>
#include <variant>

#include "ops/metrics.hpp"
#include "proxy/fleet.hpp"
#include "proxy/session.hpp"
#include "proxy/startup_rules.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;

namespace {

constexpr std::size_t max_auth_message = 8 * 1024;

// What was wrong with a startup packet the decoder refused, for the client: the
// length or the protocol version it carried (PostgreSQL names them too).
std::string describe_startup_error(std::span<const std::uint8_t> in, std::error_code error) {
  if (in.size() >= 4 && (error == pgwire::errc::length_too_long || error == pgwire::errc::length_too_short)) {
    const std::uint32_t length = pgwire::load_be32(in, 0);
    if (error == pgwire::errc::length_too_long) {
      return "invalid startup packet: length " + std::to_string(length) + " is over the limit of " +
             std::to_string(pgwire::max_startup_packet) + " bytes";
    }
    return "invalid startup packet: length " + std::to_string(length) + " is below the minimum of " +
           std::to_string(pgwire::startup_header_size) + " bytes";
  }
  if (in.size() >= pgwire::startup_header_size && error == pgwire::errc::unsupported_protocol) {
    const std::uint32_t code = pgwire::load_be32(in, 4);
    return "unsupported frontend protocol " + std::to_string(code >> 16) + "." + std::to_string(code & 0xffff) +
           ": vaultwire speaks protocol 3.0";
  }
  return "invalid startup packet: " + error.message();
}

}  // namespace

// True when the session holds a token and goes on; the startup timer is cancelled
// either way.
net::awaitable<bool> session::admit() {
  const bool admitted = (!listener_->config->proxy_protocol || co_await read_proxy_header()) && co_await admission();
  startup_timer_.reset();  // cancels its wait; the handler sees operation_aborted
  if (admitted && !timed_out_ && !stopping_) co_return true;
  if (end_request_ && stopping_) {
    outcome_ = stop_outcome_;
    refused_message_ = end_request_->message;
  }
  co_return false;
}

// Appends what the client sent next to `buf`. The bytes may be a PasswordMessage
// (the token): the chunk is wiped, and so is the old buffer when `buf` must grow.
net::awaitable<bool> session::read_more(std::vector<std::uint8_t>& buf) {
  std::uint8_t chunk[4096];
  std::error_code ec;
  std::size_t n = co_await client_.read_some(chunk, ec);
  if (ec || n == 0) {
    if (outcome_ == session_outcome::ok) outcome_ = session_outcome::client_gone;
    co_return false;
  }
  if (buf.size() + n > buf.capacity()) {
    std::vector<std::uint8_t> grown;
    grown.reserve(std::max(buf.size() + n, 2 * buf.capacity()));
    grown.assign(buf.begin(), buf.end());
    OPENSSL_cleanse(buf.data(), buf.size());
    buf.swap(grown);
  }
  buf.insert(buf.end(), chunk, chunk + n);
  OPENSSL_cleanse(chunk, n);
  co_return true;
}

// A listener behind a load balancer: the PROXY protocol v2 header comes first and
// names the client. A connection without a valid one is refused.
net::awaitable<bool> session::read_proxy_header() {
  std::vector<std::uint8_t> buf;
  for (;;) {
    auto d = pgwire::decode_proxy_v2(buf);
    if (d.status == pgwire::decode_status::need_more) {
      if (!co_await read_more(buf)) co_return false;
      continue;
    }
    if (d.status == pgwire::decode_status::error) {
      co_await refuse(errc::protocol_violation, "invalid PROXY protocol header: " + d.error.message() +
                                                    "; this listener expects a PROXY protocol v2 header first "
                                                    "(proxy_protocol = true)");
      co_return false;
    }
    if (d.header.has_address()) {
      const auto& a = d.header.src_address;
      peer_ = d.header.family == pgwire::proxy_family::inet6 ? "[" + a + "]:" + std::to_string(d.header.src_port)
              : d.header.family == pgwire::proxy_family::inet ? a + ":" + std::to_string(d.header.src_port)
                                                               : a;
    }
    early_bytes_.assign(buf.begin() + static_cast<std::ptrdiff_t>(d.consumed), buf.end());
    co_return true;
  }
}

// Startup packets until the StartupMessage: encryption requests are answered, a
// CancelRequest is served; then admit_startup() and the token.
net::awaitable<bool> session::admission() {
  std::vector<std::uint8_t> buf = std::move(early_bytes_);
  bool tls_done = false;
  bool ssl_asked = false, gss_asked = false;
  for (;;) {
    auto d = pgwire::decode_startup_packet(buf);
    if (d.status == pgwire::decode_status::need_more) {
      if (!co_await read_more(buf)) co_return false;  // client left; nothing to say
      continue;
    }
    if (d.status == pgwire::decode_status::error) {
      if (d.error == pgwire::errc::malformed_message && buf.size() >= pgwire::startup_header_size &&
          static_cast<std::int32_t>(pgwire::load_be32(buf, 4)) == pgwire::cancel_request_code) {
        // A CancelRequest of the wrong length: closed without a word, as PostgreSQL
        // does (the sender never reads an answer).
        outcome_ = session_outcome::cancel_malformed;
        co_return false;
      }
      co_await refuse(d.error == pgwire::errc::unsupported_protocol ? errc::unsupported_protocol
                                                                     : errc::protocol_violation,
                      describe_startup_error(buf, d.error));
      co_return false;
    }
    std::vector<std::uint8_t> rest(buf.begin() + static_cast<std::ptrdiff_t>(d.consumed), buf.end());
    buf.swap(rest);

    // One SSLRequest and one GSSENCRequest at most, and no GSSENCRequest over TLS
    // (PostgreSQL's ssl_done / gss_done): a repeat is refused, not answered again.
    const bool is_ssl = std::holds_alternative<pgwire::ssl_request>(d.packet);
    const bool is_gss = std::holds_alternative<pgwire::gssenc_request>(d.packet);
    if ((is_ssl && ssl_asked) || (is_gss && (gss_asked || tls_done))) {
      co_await refuse(errc::protocol_violation, std::string("invalid startup packet: ") +
                                                    (is_ssl ? "SSLRequest" : "GSSENCRequest") +
                                                    " after encryption was already negotiated on this connection");
      co_return false;
    }
    ssl_asked = ssl_asked || is_ssl;
    gss_asked = gss_asked || is_gss;
    if (is_ssl || is_gss) {
      if (!co_await negotiate_encryption(is_ssl, buf, tls_done)) co_return false;
      continue;
    }
    if (auto* c = std::get_if<pgwire::cancel_request>(&d.packet)) {
      co_await cancel(*c);
      co_return false;
    }
    if (!buf.empty()) {
      co_await refuse(errc::protocol_violation, "unexpected data after the startup packet");
      co_return false;
    }
    if (!co_await admit_startup(std::get<pgwire::startup_message>(d.packet))) co_return false;
    switch (listener_->config->client_auth) {
      case client_auth_mode::peer: co_return co_await admit_peer();
      case client_auth_mode::password: co_return co_await admit_password();
      case client_auth_mode::vault_token: break;
    }
    co_return co_await read_token();
  }
}

// Answers an SSLRequest ('S' and the handshake when the listener has TLS, else 'N')
// or a GSSENCRequest ('N'). `rest`: the bytes that followed the request.
net::awaitable<bool> session::negotiate_encryption(bool is_ssl, const std::vector<std::uint8_t>& rest,
                                                   bool& tls_done) {
  if (!is_ssl) {
    std::uint8_t no = 'N';
    std::error_code ec;
    co_await client_.write_all(std::span<const std::uint8_t>(&no, 1), ec);
    if (ec) co_return false;
    if (!rest.empty()) {
      // Sent before the answer was read, as PostgreSQL refuses it too.
      co_await refuse(errc::protocol_violation, "received unencrypted data after GSSAPI encryption request");
      co_return false;
    }
    co_return true;
  }
  if (!rest.empty()) {
    // Bytes after an SSLRequest and before the handshake: a man in the middle
    // could have injected them (CVE-2021-23222). Disconnect.
    outcome_ = session_outcome::unencrypted_data_after_ssl_request;
    co_return false;
  }
  const ssl_ctx tls = tls_done ? ssl_ctx{} : listener_->acquire_tls();
  std::uint8_t answer = tls ? 'S' : 'N';
  std::error_code ec;
  co_await client_.write_all(std::span<const std::uint8_t>(&answer, 1), ec);
  if (!tls) co_return !ec;
  if (!ec) co_await client_.tls_accept(tls.get(), ec);  // the connection takes its own reference
  if (ec) {
    outcome_ = session_outcome::client_tls_failed;
    spdlog::info("{} client TLS handshake failed: {}", prefix(), client_.tls_error());
    co_return false;
  }
  tls_done = true;
  co_return true;
}

// The StartupMessage: the client limit, protocol negotiation, the role (the user
// name) against the route and its cap, the database. On a password listener the user
// is a local user whose role is known only once the exchange has proved who it is:
// admit_password() checks the role then.
net::awaitable<bool> session::admit_startup(pgwire::startup_message& sm) {
  if (over_limit_) {
    co_await refuse(errc::too_many_clients, "too many client connections (limit " +
                                                std::to_string(cfg_->limits.max_client_connections) + ")");
    co_return false;
  }
  // Protocol 3.x above 3.0, or _pq_ options: tell the client what we speak.
  std::vector<std::string> unrecognized;
  for (const auto& [name, value] : sm.params) {
    if (name.starts_with("_pq_.")) unrecognized.push_back(name);
  }
  if (sm.minor > 0 || !unrecognized.empty()) {
    std::vector<std::uint8_t> out;
    if (pgwire::encode_negotiate_protocol_version(out, pgwire::protocol_version_3_0, unrecognized)) {
      std::error_code ec;
      co_await client_.write_all(out, ec);
      if (ec) co_return false;
    }
  }
  std::optional<std::string> user, database;
  for (auto& [name, value] : sm.params) {
    if (name == "user") {
      user = value;
    } else if (name == "database") {
      database = value;
    } else if (!name.starts_with("_pq_.")) {
      params_.emplace_back(name, value);
    }
  }
  if (!user || user->empty()) {
    co_await refuse(errc::role_not_allowed, "no user name in the startup packet: the user name selects the Vault role");
    co_return false;
  }
  // A newline or other control byte would forge lines in the log, which names the role.
  if (std::any_of(user->begin(), user->end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7f;
      })) {
    co_await refuse(errc::role_not_allowed, "invalid user name: it holds a control character");
    co_return false;
  }
  role_ = *user;
  const route_config& route = route_config_();
  std::string requested = database.value_or("");
  if (auto refused = apply_startup_rules(route, params_, requested)) {
    co_await refuse(errc::protocol_violation, *refused);
    co_return false;
  }
  if (database) database = requested;
  // libpq defaults the database to the user name: the route's default replaces it.
  if ((!database || database->empty() || *database == role_) && route.default_database) {
    database = *route.default_database;
  }
  database_ = database.value_or(role_);
  if (listener_->config->client_auth == client_auth_mode::password) co_return true;
  co_return co_await admit_role();
}

net::awaitable<bool> session::admit_role() {
  const route_config& route = route_config_();
  if (std::find(route.roles.begin(), route.roles.end(), role_) == route.roles.end()) {
    std::string roles;
    for (const auto& r : route.roles) roles += (roles.empty() ? "" : ", ") + r;
    co_await refuse(errc::role_not_allowed,
                    "role \"" + role_ + "\" is not allowed on this listener; allowed roles: " + roles);
    co_return false;
  }
  // Per-role cap: before the token is read, so Vault is never asked.
  const auto& caps = cfg_->limits.max_connections_per_role;
  const auto cap = caps.find(role_);
  if (!state_->take_role_slot(role_, cap == caps.end() ? std::nullopt : std::optional(cap->second))) {
    co_await refuse(errc::too_many_clients, "too many connections for role \"" + role_ + "\" (limit " +
                                                std::to_string(cap->second) + ", [limits] max_connections_per_role)");
    co_return false;
  }
  role_slot_ = true;
  co_return true;
}

net::awaitable<bool> session::read_auth_message(std::vector<std::uint8_t>& body, std::string_view expected) {
  wiped_bytes buf;
  for (;;) {
    auto d = pgwire::decode_message(buf.v, max_auth_message, pgwire::direction::frontend);
    if (d.status == pgwire::decode_status::need_more) {
      if (!co_await read_more(buf.v)) co_return false;
      continue;
    }
    if (d.status == pgwire::decode_status::error) {
      co_await refuse(errc::protocol_violation, "invalid message during authentication: " + d.error.message());
      co_return false;
    }
    if (d.message.type == pgwire::frontend_type::terminate) {
      outcome_ = session_outcome::client_terminated;  // the client gave up before proving who it is
      co_return false;
    }
    if (d.message.type != pgwire::frontend_type::password) {
      co_await refuse(errc::protocol_violation, "expected a " + std::string(expected) + ", got message type '" +
                                                    d.message.type + "'");
      co_return false;
    }
    if (d.consumed != buf.v.size()) {
      // Nothing may follow before the server answers: bytes read here would be lost.
      co_await refuse(errc::protocol_violation, "unexpected data after the " + std::string(expected));
      co_return false;
    }
    OPENSSL_cleanse(body.data(), body.size());  // the previous message's secret, if any
    body.assign(d.message.body.begin(), d.message.body.end());
    co_return true;
  }
}

// AuthenticationCleartextPassword, then the PasswordMessage: the Vault token.
net::awaitable<bool> session::read_token() {
  std::vector<std::uint8_t> out;
  pgwire::encode_authentication_cleartext_password(out);
  if (!co_await write_auth(out)) co_return false;
  wiped_bytes body;
  if (!co_await read_auth_message(body.v, "password message")) co_return false;
  auto p = pgwire::parse_password_message(body.v);
  if (!p) {
    co_await refuse(errc::protocol_violation, "invalid password message: " + p.error().message());
    co_return false;
  }
  if (p.value().password.empty()) {
    co_await refuse(errc::vault_rejected_token, "no password supplied: give a Vault token as the password");
    co_return false;
  }
  // A Vault token is printable ASCII; anything else would reach Vault's HTTP header
  // as it is (a CR LF could add a header). Refused without asking Vault.
  const auto token = p.value().password.view();
  if (std::any_of(token.begin(), token.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x21 || c > 0x7e;
      })) {
    co_await refuse(errc::vault_rejected_token,
                    "the password is not a Vault token: it holds a byte outside printable ASCII");
    co_return false;
  }
  token_.emplace(std::move(p.value().password));
  token_sha256_ = sha256(token_->view());
  co_return true;
}

net::awaitable<bool> session::write_auth(const std::vector<std::uint8_t>& out) {
  std::error_code ec;
  co_await client_.write_all(out, ec);
  if (ec && outcome_ == session_outcome::ok) outcome_ = session_outcome::client_gone;
  co_return !ec;
}

// A CancelRequest for a key vaultwire issued: forwarded to the server that holds the
// session, over a new connection, or to the fleet's instance that issued the key.
// Unknown keys are dropped silently, as PostgreSQL does.
net::awaitable<void> session::cancel(pgwire::cancel_request key) {
  outcome_ = session_outcome::cancel;
  const cancel_route route = co_await serve_cancel(state_, key, auth_throttle::client_host(peer_), false);
  if (route == cancel_route::unknown_key || route == cancel_route::rate_limited)
    outcome_ = session_outcome::cancel_unknown_key;
}

}  // namespace vaultwire::detail
