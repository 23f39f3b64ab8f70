// vault-dev: HTTP(S)/1.1 front end (Boost.Beast, one coroutine per connection)
// and main(). All Asio/Beast code lives in this file.
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "front.hpp"
#include "util.hpp"
#include "vault.hpp"

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using net::awaitable;
using net::use_awaitable;

namespace {

constexpr std::size_t kBodyLimit = 32 * 1024 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(300);
constexpr auto kIoTimeout = std::chrono::seconds(60);

struct Shared {
  vd::Vault* vault = nullptr;
  net::thread_pool* pool = nullptr;
  ssl::context* tls = nullptr;
  bool quiet = false;
  vd::FrontOptions front;
};

std::string decode_path(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string normalize_ns(std::string ns) {
  ns = vd::trim(ns);
  while (!ns.empty() && ns.front() == '/') ns.erase(0, 1);
  while (!ns.empty() && ns.back() == '/') ns.pop_back();
  if (ns == "root") ns.clear();
  return ns;
}

// The TLS state of a connection the cert auth method looks at.
struct ConnTls {
  std::vector<std::string> chain_der;  // as presented, leaf first
};

std::string der_of(X509* x) {
  unsigned char* buf = nullptr;
  int n = i2d_X509(x, &buf);
  if (n <= 0) return "";
  std::string out(reinterpret_cast<char*>(buf), static_cast<std::size_t>(n));
  OPENSSL_free(buf);
  return out;
}

// The client's certificate chain after the handshake. On the server side OpenSSL's peer
// chain leaves the leaf out; it is put first.
ConnTls peer_chain(SSL* ssl) {
  ConnTls c;
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (!leaf) return c;
  c.chain_der.push_back(der_of(leaf));
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  for (int i = 0; chain && i < sk_X509_num(chain); ++i) {
    X509* x = sk_X509_value(chain, i);
    if (X509_cmp(x, leaf) != 0) c.chain_der.push_back(der_of(x));
  }
  return c;
}

// The path for the log: token values that may appear in a path are redacted, and so is
// whatever follows an AppRole secret-id, role-id or accessor segment or looks like a JWT.
std::string loggable_path(const std::string& path) {
  std::string out;
  auto parts = vd::split(path, '/');
  for (std::size_t i = 0; i < parts.size(); ++i) {
    std::string seg = parts[i];
    bool token_like = vd::starts_with(seg, "hvs.") || vd::starts_with(seg, "hvb.") || vd::starts_with(seg, "s.") ||
                      vd::starts_with(seg, "b.");
    bool after_token_op = i >= 1 && i + 1 == parts.size() && i >= 3 && parts[i - 2] == "token" &&
                          (parts[i - 1] == "lookup" || parts[i - 1] == "revoke" || parts[i - 1] == "renew" ||
                           parts[i - 1] == "revoke-orphan");
    bool jwt_like = vd::starts_with(seg, "eyJ") && seg.find('.') != std::string::npos;
    bool after_secret = i >= 1 && seg != "lookup" && seg != "destroy" &&
                        (parts[i - 1] == "secret-id" || parts[i - 1] == "custom-secret-id" ||
                         parts[i - 1] == "secret-id-accessor" || parts[i - 1] == "role-id");
    if (!seg.empty() && (token_like || after_token_op || jwt_like || after_secret)) seg = "<redacted>";
    if (i) out += '/';
    out += seg;
  }
  return out;
}

// Runs a (blocking) handler on the worker pool.
awaitable<vd::Response> run_handler(vd::Vault* vault, std::shared_ptr<vd::Request> req, bool dev) {
  co_return dev ? vault->handle_dev(*req) : vault->handle_v1(*req);
}

template <class Stream>
void reset_connection(Stream& stream) {
  auto& sock = beast::get_lowest_layer(stream).socket();
  beast::error_code ec;
  sock.set_option(net::socket_base::linger(true, 0), ec);
  sock.close(ec);
}

template <class Stream>
awaitable<void> serve(Stream& stream, Shared* sh, const ConnTls* tls) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    parser.header_limit(64 * 1024);
    beast::get_lowest_layer(stream).expires_after(kIdleTimeout);
    beast::error_code ec;
    co_await http::async_read_header(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
    if (!ec && !parser.is_done()) {
      // curl sends "Expect: 100-continue" for larger bodies and waits for it.
      if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
        beast::get_lowest_layer(stream).expires_after(kIoTimeout);
        co_await http::async_write(stream, cont, net::redirect_error(use_awaitable, ec));
      }
      if (!ec) {
        beast::get_lowest_layer(stream).expires_after(kIoTimeout);
        co_await http::async_read(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
      }
    }
    if (ec) {
      if (ec == http::error::body_limit || ec == http::error::header_limit) {
        http::response<http::string_body> res{http::status::payload_too_large, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"errors":["http: request body too large"]})";
        res.keep_alive(false);
        res.prepare_payload();
        beast::get_lowest_layer(stream).expires_after(kIoTimeout);
        co_await http::async_write(stream, res, net::redirect_error(use_awaitable, ec));
      }
      co_return;
    }
    auto& msg = parser.get();
    auto req = std::make_shared<vd::Request>();
    req->method = std::string(msg.method_string());
    for (char& c : req->method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string target(msg.target());
    std::string query;
    if (auto q = target.find('?'); q != std::string::npos) {
      query = target.substr(q + 1);
      target.resize(q);
    }
    req->raw_query = query;
    for (auto& kv : vd::split(query, '&')) {
      if (kv.empty()) continue;
      auto eq = kv.find('=');
      std::string k = vd::url_unescape(kv.substr(0, eq));
      std::string v = eq == std::string::npos ? "" : vd::url_unescape(kv.substr(eq + 1));
      req->query.emplace(std::move(k), std::move(v));
    }
    req->token = std::string(msg["X-Vault-Token"]);
    if (req->token.empty()) {
      std::string auth(msg[http::field::authorization]);
      if (vd::starts_with(auth, "Bearer ")) req->token = vd::trim(auth.substr(7));
    }
    req->ns = normalize_ns(std::string(msg["X-Vault-Namespace"]));
    req->body = std::move(msg.body());
    if (tls) {
      req->tls = true;
      req->peer_certs_der = tls->chain_der;
    }
    std::string path = decode_path(target);
    bool v1 = vd::starts_with(path, "/v1/");
    bool dev = vd::starts_with(path, "/_dev/");
    req->path = v1 ? path.substr(4) : dev ? path.substr(6) : path;

    vd::Response r;
    if (v1) vd::force_auto_auth(sh->front, *req);
    if (v1) {
      vd::Fault f = sh->vault->take_fault(*req);
      if (f.delay_ms > 0) {
        net::steady_timer timer(co_await net::this_coro::executor);
        timer.expires_after(std::chrono::milliseconds(f.delay_ms));
        co_await timer.async_wait(net::redirect_error(use_awaitable, ec));
      }
      if (f.reset) {
        static const std::string partial =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"request_id\":\"";
        beast::get_lowest_layer(stream).expires_after(kIoTimeout);
        co_await net::async_write(stream, net::buffer(partial), net::redirect_error(use_awaitable, ec));
        reset_connection(stream);
        if (!sh->quiet) std::cerr << "vault-dev: " << req->method << " " << loggable_path(path) << " reset (injected)" << std::endl;
        co_return;
      }
      if (f.status > 0) {
        r.status = f.status;
        if (f.errors.empty()) {
          r.body = R"j({"errors":["injected failure (vault-dev /_dev/fail)"]})j";
        } else {
          vd::json errs = vd::json::array();
          for (auto& e : f.errors) errs.push_back(e);
          r.body = vd::json::object({{"errors", errs}}).dump(-1, ' ', false, vd::json::error_handler_t::replace);
        }
        r.headers = f.headers;
      } else if (auto redirect = vd::standby_redirect(sh->front, *req)) {
        r = std::move(*redirect);
      } else {
        r = co_await net::co_spawn(sh->pool->get_executor(), run_handler(sh->vault, req, false), use_awaitable);
        vd::sanitize_auto_auth(sh->front, *req, r);
      }
    } else if (dev) {
      r = co_await net::co_spawn(sh->pool->get_executor(), run_handler(sh->vault, req, true), use_awaitable);
    } else {
      r.status = 404;
      r.body = R"({"errors":[]})";
    }
    if (r.drop) {
      if (!sh->quiet) std::cerr << "vault-dev: " << req->method << " " << loggable_path(path) << " dropped" << std::endl;
      co_return;
    }

    http::response<http::string_body> res{static_cast<http::status>(r.status), msg.version()};
    res.set(http::field::server, "vault-dev");
    res.set(http::field::cache_control, "no-store");
    for (const auto& [name, value] : r.headers) res.set(name, value);
    if (!r.body.empty()) {
      res.set(http::field::content_type, "application/json");
      res.body() = std::move(r.body);
    }
    res.keep_alive(msg.keep_alive());
    res.prepare_payload();
    if (req->method == "HEAD") res.body().clear();
    if (!sh->quiet) std::cerr << "vault-dev: " << req->method << " " << loggable_path(path) << " " << r.status << std::endl;
    beast::get_lowest_layer(stream).expires_after(kIoTimeout);
    if (req->method == "HEAD") {
      http::response_serializer<http::string_body> sr{res};
      co_await http::async_write_header(stream, sr, net::redirect_error(use_awaitable, ec));
    } else {
      co_await http::async_write(stream, res, net::redirect_error(use_awaitable, ec));
    }
    if (ec) co_return;
    if (!res.keep_alive()) break;
  }
}

awaitable<void> session_plain(tcp::socket sock, Shared* sh) {
  beast::tcp_stream stream(std::move(sock));
  try {
    co_await serve(stream, sh, static_cast<const ConnTls*>(nullptr));
  } catch (const std::exception& e) {
    if (!sh->quiet) std::cerr << "vault-dev: connection error: " << e.what() << std::endl;
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.socket().close(ec);
}

awaitable<void> session_tls(tcp::socket sock, Shared* sh) {
  beast::ssl_stream<beast::tcp_stream> stream(std::move(sock), *sh->tls);
  try {
    beast::get_lowest_layer(stream).expires_after(kIoTimeout);
    beast::error_code ec;
    co_await stream.async_handshake(ssl::stream_base::server, net::redirect_error(use_awaitable, ec));
    if (!ec) {
      ConnTls info = peer_chain(stream.native_handle());
      co_await serve(stream, sh, &info);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
      co_await stream.async_shutdown(net::redirect_error(use_awaitable, ec));
    }
  } catch (const std::exception& e) {
    if (!sh->quiet) std::cerr << "vault-dev: connection error: " << e.what() << std::endl;
  }
  beast::error_code ec;
  beast::get_lowest_layer(stream).socket().close(ec);
}

// A unix socket listener (Vault's listener "unix", and Vault Agent's and Vault Proxy's:
// command/server/listener_unix.go, command/agentproxyshared/listener.go), plain HTTP.
awaitable<void> session_unix(net::local::stream_protocol::socket sock, Shared* sh) {
  beast::basic_stream<net::local::stream_protocol> stream(std::move(sock));
  try {
    co_await serve(stream, sh, static_cast<const ConnTls*>(nullptr));
  } catch (const std::exception& e) {
    if (!sh->quiet) std::cerr << "vault-dev: connection error: " << e.what() << std::endl;
  }
  beast::error_code ec;
  stream.socket().close(ec);
}

awaitable<void> unix_listener(net::local::stream_protocol::acceptor* acceptor, net::io_context* ioc, Shared* sh) {
  for (;;) {
    beast::error_code ec;
    auto sock = co_await acceptor->async_accept(net::make_strand(*ioc), net::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == net::error::operation_aborted) co_return;
      continue;
    }
    auto ex = sock.get_executor();
    net::co_spawn(ex, session_unix(std::move(sock), sh), net::detached);
  }
}

awaitable<void> listener(tcp::acceptor* acceptor, net::io_context* ioc, Shared* sh) {
  for (;;) {
    beast::error_code ec;
    tcp::socket sock = co_await acceptor->async_accept(net::make_strand(*ioc), net::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == net::error::operation_aborted) co_return;
      continue;
    }
    auto ex = sock.get_executor();
    if (sh->tls) {
      net::co_spawn(ex, session_tls(std::move(sock), sh), net::detached);
    } else {
      net::co_spawn(ex, session_plain(std::move(sock), sh), net::detached);
    }
  }
}

[[noreturn]] void usage(const char* msg) {
  std::cerr << "vault-dev: " << msg << "\n"
            << "usage: vault-dev [--listen 127.0.0.1:PORT] [--root-token TOKEN] [--tls-cert FILE --tls-key FILE\n"
            << "                 [--tls-client-ca FILE | --tls-disable-client-certs]] [--unix-socket PATH]\n"
            << "                 [--standby-of URL]\n"
            << "                 [--auto-auth-force TOKEN] [--retry-base-ms MS] [--retry-max-attempts N]\n"
            << "                 [--io-threads N] [--db-threads N] [--quiet]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  std::string root_token;
  std::string tls_cert, tls_key, tls_client_ca, unix_socket;
  bool tls_disable_client_certs = false;
  vd::Options opts;
  vd::FrontOptions front;
  int io_threads = 4;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      auto eq = a.find('=');
      if (eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    auto name = a.substr(0, a.find('='));
    auto to_int = [&](const std::string& v) {
      try {
        return std::stoi(v);
      } catch (...) {
        usage(("bad number for " + name).c_str());
      }
    };
    if (name == "--listen") listen = value();
    else if (name == "--root-token" || name == "--dev-root-token-id" || name == "-dev-root-token-id") root_token = value();
    else if (name == "--tls-cert") tls_cert = value();
    else if (name == "--tls-key") tls_key = value();
    else if (name == "--tls-client-ca") tls_client_ca = value();
    else if (name == "--tls-disable-client-certs") tls_disable_client_certs = true;
    else if (name == "--unix-socket") unix_socket = value();
    else if (name == "--standby-of") front.standby_of = value();
    else if (name == "--auto-auth-force") front.auto_auth_token = value();
    else if (name == "--retry-base-ms") opts.retry_base_ms = to_int(value());
    else if (name == "--retry-max-attempts") opts.retry_max_attempts = to_int(value());
    else if (name == "--io-threads") io_threads = std::max(1, to_int(value()));
    else if (name == "--db-threads") opts.db_threads = std::max(1, to_int(value()));
    else if (name == "--quiet") quiet = true;
    else if (name == "--help" || name == "-h") usage("help");
    else usage(("unknown flag " + a).c_str());
  }
  if (tls_cert.empty() != tls_key.empty()) usage("--tls-cert and --tls-key go together");
  if (!tls_client_ca.empty() && tls_cert.empty()) usage("--tls-client-ca needs --tls-cert and --tls-key");
  if (!tls_client_ca.empty() && tls_disable_client_certs) {
    usage("--tls-client-ca and --tls-disable-client-certs exclude each other");
  }
  while (!front.standby_of.empty() && front.standby_of.back() == '/') front.standby_of.pop_back();
  opts.standby = !front.standby_of.empty();
  opts.root_token_from_init = root_token.empty();
  if (root_token.empty()) root_token = "hvs." + vd::random_base62(24);
  opts.root_token = root_token;

  auto colon = listen.rfind(':');
  if (colon == std::string::npos) usage("--listen wants HOST:PORT");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    usage("bad port in --listen");
  }

  std::signal(SIGPIPE, SIG_IGN);
  try {
    net::io_context ioc(io_threads);
    std::optional<ssl::context> tls;
    if (!tls_cert.empty()) {
      tls.emplace(ssl::context::tls_server);
      tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      tls->use_certificate_chain_file(tls_cert);
      tls->use_private_key_file(tls_key, ssl::context::pem);
      // A client certificate is asked for; the cert auth method checks it (and needs the
      // session ID context for resumed sessions to keep it).
      static const unsigned char sid_ctx[] = "vault-dev";
      SSL_CTX_set_session_id_context(tls->native_handle(), sid_ctx, sizeof sid_ctx - 1);
      if (!tls_client_ca.empty()) {
        // tls_require_and_verify_client_cert = true with tls_client_ca_file
        // (internalshared/listenerutil/listener.go TLSConfig: RequireAndVerifyClientCert).
        tls->load_verify_file(tls_client_ca);
        tls->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      } else if (!tls_disable_client_certs) {
        // Vault's listener default (listener.go TLSConfig: tls.RequestClientCert): ask for
        // a client certificate, accept the connection without one, verify nothing.
        tls->set_verify_mode(ssl::verify_peer);
        tls->set_verify_callback([](bool, ssl::verify_context&) { return true; });
      }
    }
    tcp::endpoint ep(net::ip::make_address(host), static_cast<unsigned short>(port));
    tcp::acceptor acceptor(ioc);
    acceptor.open(ep.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(net::socket_base::max_listen_connections);
    auto bound = acceptor.local_endpoint();

    vd::Vault vault(opts);
    net::thread_pool pool(static_cast<std::size_t>(opts.db_threads));
    Shared sh;
    sh.vault = &vault;
    sh.pool = &pool;
    sh.tls = tls ? &*tls : nullptr;
    sh.quiet = quiet;
    sh.front = front;

    // listenerutil.UnixSocketListener: a file left at the path is removed first, and
    // the socket file is removed when the listener closes.
    std::optional<net::local::stream_protocol::acceptor> unix_acceptor;
    if (!unix_socket.empty()) {
      ::unlink(unix_socket.c_str());
      unix_acceptor.emplace(ioc, net::local::stream_protocol::endpoint(unix_socket));
    }

    // SIGTERM is handled from before the readiness line: a stop right after it still
    // shuts down cleanly (the socket file removed).
    net::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const beast::error_code&, int) {
      beast::error_code ec;
      acceptor.close(ec);
      if (unix_acceptor) unix_acceptor->close(ec);
      ioc.stop();
    });

    std::string host_shown = bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
    std::cout << "vault-dev listening on " << (tls ? "https" : "http") << "://" << host_shown << ":" << bound.port()
              << " root_token=" << root_token << std::endl;
    std::cout.flush();
    net::co_spawn(ioc, listener(&acceptor, &ioc, &sh), net::detached);
    if (unix_acceptor) net::co_spawn(ioc, unix_listener(&*unix_acceptor, &ioc, &sh), net::detached);

    std::vector<std::thread> threads;
    for (int i = 1; i < io_threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& t : threads) t.join();
    pool.stop();
    pool.join();
    vault.shutdown();
    if (!unix_socket.empty()) ::unlink(unix_socket.c_str());
  } catch (const std::exception& e) {
    std::cerr << "vault-dev: fatal: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
