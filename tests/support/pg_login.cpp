#include "support/pg_login.hpp"

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/md5.hpp>
#include <pgwire/messages.hpp>
#include <pgwire/scram.hpp>

#include <exception>

#include "support/tls_client.hpp"

namespace vwtest {
namespace {

constexpr std::size_t max_server_message = 1 << 20;

// Reads the next backend message into `msg_type`/`body`, keeping leftovers in `buf`.
bool next_message(tls_client& sock, std::vector<std::uint8_t>& buf, char& msg_type,
                  std::vector<std::uint8_t>& body, login_result& r) {
  for (;;) {
    auto d = pgwire::decode_message(buf, max_server_message, pgwire::direction::backend);
    if (d.status == pgwire::decode_status::message) {
      msg_type = d.message.type;
      body.assign(d.message.body.begin(), d.message.body.end());
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(d.consumed));
      return true;
    }
    if (d.status == pgwire::decode_status::error) {
      r.error = "bad message from server: " + d.error.message();
      return false;
    }
    if (!sock.read_some(buf)) {
      r.error = "server closed the connection";
      return false;
    }
  }
}

void send(tls_client& sock, std::vector<std::uint8_t>& out) {
  sock.write_all(out);
  out.clear();
}

login_result run(const login_options& o) {
  login_result r;
  tls_client sock;
  sock.connect(o.host, o.port);
  std::vector<std::uint8_t> out;

  if (o.use_tls) {
    pgwire::encode_ssl_request(out);
    send(sock, out);
    // Exactly one byte: anything more before the handshake would be injected.
    auto answer = sock.read_exact(1);
    if (answer[0] != 'S') {
      r.tls_error = "server does not accept TLS";
      return r;
    }
    tls_options t{o.ca_file, o.server_name.empty() ? o.host : o.server_name};
    if (!sock.start_tls(t)) {
      r.tls_error = sock.error();
      return r;
    }
    r.tls = true;
  }

  pgwire::startup_message sm;
  sm.params = {{"user", o.user}, {"database", o.database}, {"application_name", "pgwire-login"}};
  if (auto e = pgwire::encode_startup_message(out, sm); !e) {
    r.error = "cannot encode startup: " + e.error().message();
    return r;
  }
  send(sock, out);

  std::optional<pgwire::scram_client> scram;
  std::vector<std::uint8_t> buf, body;
  char type = 0;
  while (next_message(sock, buf, type, body, r)) {
    switch (type) {
      case pgwire::backend_type::authentication: {
        auto auth = pgwire::parse_authentication(body);
        if (!auth) {
          r.error = "bad Authentication message: " + auth.error().message();
          return r;
        }
        const auto& a = auth.value();
        if (a.type != pgwire::auth_type::ok && r.auth_request < 0) {
          r.auth_request = static_cast<int>(a.type);
        }
        switch (a.type) {
          case pgwire::auth_type::ok:
            break;
          case pgwire::auth_type::cleartext_password:
            if (!pgwire::encode_password_message(out, o.password)) return r;
            r.password_sent = true;
            send(sock, out);
            break;
          case pgwire::auth_type::md5_password: {
            auto resp = pgwire::md5_password_response(o.user, o.password, a.md5_salt);
            if (!resp || !pgwire::encode_password_message(out, resp.value().view())) {
              r.error = "cannot build the MD5 response";
              return r;
            }
            r.password_sent = true;
            send(sock, out);
            break;
          }
          case pgwire::auth_type::sasl: {
            r.sasl_offered = a.mechanisms;
            std::vector<std::uint8_t> hash;
            if (r.tls && o.allow_channel_binding) {
              if (o.channel_binding_override) {
                hash = *o.channel_binding_override;
              } else {
                auto h = pgwire::tls_server_end_point_hash(sock.peer_certificate_der(),
                                                           sock.peer_signature_digest_nid());
                if (!h) {
                  r.error = "cannot hash the server certificate: " + h.error().message();
                  return r;
                }
                hash = std::move(h).value();
              }
            }
            auto choice = pgwire::choose_scram_mechanism(
                a.mechanisms, r.tls, !hash.empty(),
                o.allow_channel_binding ? pgwire::channel_binding_mode::prefer
                                        : pgwire::channel_binding_mode::disable);
            if (!choice) {
              r.error = "no usable SASL mechanism: " + choice.error().message();
              return r;
            }
            pgwire::scram_options so;
            so.channel_binding = choice.value();
            if (so.channel_binding == pgwire::scram_channel_binding::tls_server_end_point) {
              so.cert_hash = hash;
            }
            scram.emplace(o.password, std::move(so));
            r.sasl_mechanism = std::string(scram->mechanism());
            auto first = scram->client_first();
            if (!first || !pgwire::encode_sasl_initial_response(out, scram->mechanism(), first.value())) {
              r.error = "cannot build the SCRAM client-first message";
              return r;
            }
            r.password_sent = true;
            send(sock, out);
            break;
          }
          case pgwire::auth_type::sasl_continue: {
            if (!scram) {
              r.error = "SASLContinue without SASL";
              return r;
            }
            auto final_msg = scram->on_server_first(a.data);
            if (!final_msg) {
              r.error = "SCRAM server-first refused: " + final_msg.error().message();
              return r;
            }
            if (!pgwire::encode_sasl_response(out, final_msg.value().view())) return r;
            send(sock, out);
            break;
          }
          case pgwire::auth_type::sasl_final: {
            if (!scram) {
              r.error = "SASLFinal without SASL";
              return r;
            }
            if (auto v = scram->on_server_final(a.data); !v) {
              r.error = "SCRAM server-final refused: " + v.error().message();
              return r;
            }
            break;
          }
          default:
            r.error = "unsupported authentication request " + std::to_string(r.auth_request);
            return r;
        }
        break;
      }
      case pgwire::backend_type::error_response: {
        auto e = pgwire::parse_error_response(body);
        if (e) {
          r.sqlstate = std::string(e.value().sqlstate());
          r.error = std::string(e.value().message());
        } else {
          r.error = "malformed ErrorResponse";
        }
        return r;
      }
      case pgwire::backend_type::parameter_status: {
        if (auto p = pgwire::parse_parameter_status(body)) {
          r.parameters.emplace_back(p.value().name, p.value().value);
        }
        break;
      }
      case pgwire::backend_type::backend_key_data: {
        if (auto k = pgwire::parse_backend_key_data(body)) r.backend_pid = k.value().process_id;
        break;
      }
      case pgwire::backend_type::ready_for_query: {
        if (scram && !scram->authenticated()) {
          r.error = "server skipped the SCRAM server signature";
          return r;
        }
        r.ready = true;
        pgwire::encode_terminate(out);
        send(sock, out);
        return r;
      }
      default:
        break;  // NoticeResponse and the like
    }
  }
  return r;
}

}  // namespace

login_result pg_login(const login_options& options) {
  try {
    return run(options);
  } catch (const std::exception& e) {
    login_result r;
    r.error = e.what();
    return r;
  }
}

}  // namespace vwtest
