// The local identities' admission: a peer on the unix socket (SO_PEERCRED against
// [[listener.peer]]) and a local user of a users file (a SCRAM exchange). Both read
// their credential with vaultwire's own Vault token.
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <pgwire/encoder.hpp>
#include <pgwire/messages.hpp>
#include <pgwire/scram_server.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "core/text.hpp"
#include "proxy/session.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;

namespace {

// tls-server-end-point channel binding data of the certificate this side of `s`
// presents (RFC 5929 4.1). Empty without TLS, or when the certificate's signature has
// no single digest (RSA-PSS, EdDSA): then SCRAM-SHA-256-PLUS is not offered, as
// PostgreSQL's be_tls_get_certificate_hash leaves it out.
std::vector<std::uint8_t> own_certificate_hash(stream& s) {
  if (!s.tls_active()) return {};
  X509* cert = SSL_get_certificate(s.ssl());
  const int len = cert != nullptr ? i2d_X509(cert, nullptr) : 0;
  if (len <= 0) return {};
  std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  i2d_X509(cert, &p);
  auto hash = pgwire::tls_server_end_point_hash(der);
  return hash ? std::move(hash).value() : std::vector<std::uint8_t>{};
}

// The iteration count of a mock exchange: the one the users' verifiers have (the
// first user's), so an unknown user's i= looks like a known one's.
std::uint32_t mock_iterations(const local_users* users) {
  if (users == nullptr || users->empty()) return pgwire::scram_default_iterations;
  return users->begin()->second.verifier.iterations;
}

}  // namespace

// client_auth = "peer", after the StartupMessage was admitted: no password is asked
// for. The client must be on the listener's unix socket; the kernel's SO_PEERCRED
// names its uid and gid, and the first [[listener.peer]] rule that matches one of them
// and lists the role admits it. The credential is then read with vaultwire's own
// Vault token, so sessions of a role share its lease while that token lasts.
net::awaitable<bool> session::admit_peer() {
  const int fd = client_.socket().native_handle();
  const std::string socket_path =
      listener_->config->unix_socket
          ? (*listener_->config->unix_socket / (".s.PGSQL." + std::to_string(listener_->config->port))).string()
          : std::string("(none)");
  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 || local.ss_family != AF_UNIX) {
    co_await refuse(errc::role_not_allowed, "this listener admits clients by peer authentication on its unix socket "
                                            "only (client_auth = \"peer\"): connect through " + socket_path);
    co_return false;
  }
  // SO_PEERCRED gives the effective uid and gid of the process that called connect(2)
  // (unix(7), SO_PEERCRED; socket(7)), not its supplementary groups: a gid rule
  // matches the primary group only.
  ucred cred{};
  socklen_t cred_len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0 || cred_len != sizeof cred) {
    const int e = errno;
    co_await refuse(errc::role_not_allowed, "peer authentication failed for user \"" + role_ +
                                                "\": could not get peer credentials: " +
                                                std::generic_category().message(e));
    co_return false;
  }
  const auto uid = static_cast<std::uint32_t>(cred.uid);
  const auto gid = static_cast<std::uint32_t>(cred.gid);
  const auto& rules = listener_->config->peer;
  const bool admitted = std::any_of(rules.begin(), rules.end(), [&](const peer_rule& r) {
    const bool who = (r.uid && *r.uid == uid) || (r.gid && *r.gid == gid);
    return who && std::find(r.roles.begin(), r.roles.end(), role_) != r.roles.end();
  });
  // Worded after PostgreSQL's "Peer authentication failed for user \"%s\""
  // (src/backend/libpq/auth.c, auth_failed), with the local identity the rules saw.
  if (!admitted) {
    spdlog::info("{} refused: peer uid {} gid {} matches no [[listener.peer]] rule for role \"{}\"", prefix(), uid,
                 gid, role_);
    co_await refuse(errc::role_not_allowed, "peer authentication failed for user \"" + role_ + "\": uid " +
                                                std::to_string(uid) + " (gid " + std::to_string(gid) +
                                                ") matches no [[listener.peer]] rule that allows this role");
    co_return false;
  }
  local_identity_ = "uid:" + std::to_string(uid);
  co_return co_await take_own_token();
}

// client_auth = "password", after the StartupMessage was admitted: SCRAM-SHA-256, or
// SCRAM-SHA-256-PLUS on TLS, as PostgreSQL's backend runs it (src/backend/libpq/auth.c
// CheckSASLAuth; the message flow of pgwire/scram_server.hpp). An unknown user gets
// a mock exchange that fails at the proof like a wrong password, so the answer does
// not tell who exists. Failures feed the throttle per (client host, user name).
net::awaitable<bool> session::admit_password() {
  const std::string user = role_;  // the startup packet's user: a local user, not yet a role
  const std::shared_ptr<const local_users> users = listener_->acquire_users();
  const local_user* entry = nullptr;
  if (users) {
    if (auto it = users->find(user); it != users->end()) entry = &it->second;
  }
  if (cfg_->throttle.base_delay) {
    const std::string subject = "local-user\n" + user;  // never equal to a token's key
    throttle_key_ = auth_throttle::make_key(auth_throttle::client_host(peer_), sha256(subject));
    const auth_throttle::verdict v = state_->throttle.check(throttle_key_);
    if (!v.allowed) {
      spdlog::info("{} login throttled: {} failed password logins in a row, {} left of {}", prefix(), v.failures,
                   duration_text(v.retry_after), duration_text(v.backoff));
      co_await refuse(errc::throttled, throttle_message(v, "for user \"" + user + "\""));
      co_return false;
    }
    throttle_ticket_ = v.ticket;
  }

  pgwire::scram_server_options options;
  options.cert_hash = own_certificate_hash(client_);
  std::optional<pgwire::scram_server> scram;
  if (entry != nullptr) {
    scram.emplace(entry->verifier.clone(), std::move(options));
  } else {
    auto mock = pgwire::scram_server::mock(user, state_->scram_mock_secret, std::move(options),
                                           mock_iterations(users.get()));
    if (!mock) {
      co_await refuse_with(pgwire::scram_server_sqlstate(mock.error()),
                           "password authentication could not start: " + mock.error().message(),
                           session_outcome::protocol_violation);
      co_return false;
    }
    scram.emplace(std::move(mock).value());
  }

  std::error_code failure;
  std::string server_final;
  if (!co_await run_scram(*scram, failure, server_final)) co_return false;
  if (failure) {
    co_await refuse_password(failure, user, entry != nullptr);
    co_return false;
  }
  std::vector<std::uint8_t> out;
  (void)pgwire::encode_authentication_sasl_final(out, server_final);
  if (!co_await write_auth(out)) co_return false;

  if (!throttle_key_.empty()) {
    state_->throttle.succeeded(throttle_key_);
    throttle_key_.clear();  // a later failure (Vault, the server) is not this password's
  }
  local_identity_ = "user:" + user;
  role_ = entry->role;
  if (!co_await admit_role()) co_return false;
  co_return co_await take_own_token();
}

// The next SASLResponse's data into `data`; false when the client left or sent
// something else (refused).
net::awaitable<bool> session::read_sasl_response(std::vector<std::uint8_t>& body, pgwire::secret_string& data) {
  if (!co_await read_auth_message(body, "SASLResponse message")) co_return false;
  auto response = pgwire::parse_sasl_response(body);
  if (!response) {
    co_await refuse(errc::protocol_violation, "invalid SASLResponse message: " + response.error().message());
    co_return false;
  }
  data = std::move(response.value().data);
  co_return true;
}

// The SCRAM messages after AuthenticationSASL's offer: SASLInitialResponse (an empty
// AuthenticationSASLContinue first asks for the client-first-message when it came
// without one, as auth.c does), the server-first-message, the client-final-message.
// False when the client left or broke the protocol (refused here); otherwise
// `failure` is the exchange's error, or empty with `server_final` to send.
net::awaitable<bool> session::run_scram(pgwire::scram_server& scram, std::error_code& failure,
                                        std::string& server_final) {
  std::vector<std::uint8_t> out;
  const std::vector<std::string_view> mechanisms = scram.mechanisms();
  if (!pgwire::encode_authentication_sasl(out, mechanisms)) co_return false;  // the names are constants
  if (!co_await write_auth(out)) co_return false;
  wiped_bytes body;
  if (!co_await read_auth_message(body.v, "SASLInitialResponse message")) co_return false;
  auto initial = pgwire::parse_sasl_initial_response(body.v);
  if (!initial) {
    co_await refuse(errc::protocol_violation, "invalid SASLInitialResponse message: " + initial.error().message());
    co_return false;
  }
  if (auto chosen = scram.select_mechanism(initial.value().mechanism); !chosen) failure = chosen.error();
  std::string client_first = initial.value().data.value_or("");
  if (!failure && !initial.value().data) {
    // No initial response: an empty AuthenticationSASLContinue asks for it (auth.c).
    out.clear();
    (void)pgwire::encode_authentication_sasl_continue(out, "");
    if (!co_await write_auth(out)) co_return false;
    pgwire::secret_string response;
    if (!co_await read_sasl_response(body.v, response)) co_return false;
    client_first.assign(response.view());
  }
  if (!failure) {
    auto server_first = scram.on_client_first(client_first);
    if (server_first) {
      out.clear();
      (void)pgwire::encode_authentication_sasl_continue(out, server_first.value());
      if (!co_await write_auth(out)) co_return false;
      pgwire::secret_string client_final;
      if (!co_await read_sasl_response(body.v, client_final)) co_return false;
      auto final_message = scram.on_client_final(client_final.view());
      if (final_message)
        server_final = std::move(final_message).value();
      else
        failure = final_message.error();
    } else {
      failure = server_first.error();
    }
  }
  co_return true;
}

// A failed SCRAM exchange: 28P01 with PostgreSQL's words for a wrong password or an
// unknown user alike (auth.c auth_failed); the operator's log tells them apart.
net::awaitable<void> session::refuse_password(std::error_code failure, const std::string& user, bool known) {
  const std::string_view sqlstate = pgwire::scram_server_sqlstate(failure);
  const bool wrong_password = failure == pgwire::errc::scram_invalid_proof;
  if (wrong_password && !throttle_key_.empty()) state_->throttle.failed(throttle_key_, throttle_ticket_, cfg_->throttle);
  spdlog::info("{} refused: password authentication failed for local user \"{}\": {}", prefix(), user,
               known ? failure.message() : "no such user in users_file (" + failure.message() + ")");
  if (wrong_password) {
    co_await refuse_with(sqlstate, "password authentication failed for user \"" + user + "\"",
                         session_outcome::password_rejected);
  } else {
    co_await refuse_with(sqlstate, "password authentication failed for user \"" + user + "\": " + failure.message(),
                         sqlstate.starts_with("28") ? session_outcome::password_rejected
                                                    : session_outcome::protocol_violation);
  }
}

net::awaitable<bool> session::take_own_token() {
  pgwire::secret_string own = state_->broker->own_token();
  if (own.empty()) {
    std::string why = state_->broker->own_token_problem();
    if (why.empty()) why = "no token is held ([vault] token_file unreadable or empty?)";
    co_await refuse(errc::vault_unavailable,
                    "vaultwire holds no valid Vault token of its own to read the credential with: " + why);
    co_return false;
  }
  token_.emplace(std::move(own));
  token_sha256_ = sha256(token_->view());
  co_return true;
}

}  // namespace vaultwire::detail
