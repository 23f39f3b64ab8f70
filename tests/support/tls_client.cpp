#include "support/tls_client.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace vwtest {
namespace {

std::string openssl_errors() {
  std::string out;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool is_ip_literal(const std::string& name) {
  in6_addr a6{};
  in_addr a4{};
  return inet_pton(AF_INET, name.c_str(), &a4) == 1 || inet_pton(AF_INET6, name.c_str(), &a6) == 1;
}

}  // namespace

tls_client::~tls_client() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
}

void tls_client::connect(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) throw std::runtime_error("getaddrinfo " + host + ": " + gai_strerror(rc));
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fd_ = fd;
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (fd_ < 0) throw std::runtime_error("connect " + host + ":" + std::to_string(port) + ": " + last_error);
}

bool tls_client::start_tls(const tls_options& options) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) throw std::runtime_error("SSL_CTX_new: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx_, options.ca_file.c_str(), nullptr) != 1) {
    error_ = "cannot load CA file " + options.ca_file + ": " + openssl_errors();
    return false;
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  if (is_ip_literal(options.server_name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), options.server_name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, options.server_name.c_str());
    SSL_set1_host(ssl_, options.server_name.c_str());
  }
  if (SSL_connect(ssl_) != 1) {
    long verify = SSL_get_verify_result(ssl_);
    error_ = verify != X509_V_OK ? std::string("certificate verify failed: ") +
                                       X509_verify_cert_error_string(verify)
                                 : "TLS handshake failed: " + openssl_errors();
    ERR_clear_error();
    SSL_free(ssl_);
    ssl_ = nullptr;
    return false;
  }
  return true;
}

void tls_client::write_all(const std::uint8_t* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    if (ssl_ != nullptr) {
      int n = SSL_write(ssl_, data + done, static_cast<int>(size - done));
      if (n <= 0) throw std::runtime_error("SSL_write: " + openssl_errors());
      done += static_cast<std::size_t>(n);
    } else {
      ssize_t n = ::send(fd_, data + done, size - done, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(std::string("send: ") + std::strerror(errno));
      }
      done += static_cast<std::size_t>(n);
    }
  }
  bytes_written_ += size;
}

bool tls_client::read_some(std::vector<std::uint8_t>& out) {
  std::uint8_t buf[16384];
  for (;;) {
    if (ssl_ != nullptr) {
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n > 0) {
        out.insert(out.end(), buf, buf + n);
        return true;
      }
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL) {
        ERR_clear_error();
        return false;
      }
      throw std::runtime_error("SSL_read: " + openssl_errors());
    }
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      out.insert(out.end(), buf, buf + n);
      return true;
    }
    if (n == 0) return false;
    if (errno != EINTR) throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
  }
}

std::vector<std::uint8_t> tls_client::read_exact(std::size_t n) {
  std::vector<std::uint8_t> out;
  out.reserve(n);
  while (out.size() < n) {
    std::uint8_t b = 0;
    // One byte at a time is fine here: used only for the 1-byte SSLRequest answer.
    if (ssl_ != nullptr) {
      int r = SSL_read(ssl_, &b, 1);
      if (r <= 0) throw std::runtime_error("end of stream");
    } else {
      ssize_t r = ::recv(fd_, &b, 1, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) throw std::runtime_error("end of stream");
    }
    out.push_back(b);
  }
  return out;
}

std::vector<std::uint8_t> tls_client::peer_certificate_der() const {
  if (ssl_ == nullptr) return {};
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return {};
  int len = i2d_X509(cert, nullptr);
  if (len <= 0) return {};
  std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  i2d_X509(cert, &p);
  return der;
}

int tls_client::peer_signature_digest_nid() const {
  if (ssl_ == nullptr) return NID_undef;
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return NID_undef;
  int md_nid = NID_undef;
  int pk_nid = NID_undef;
  if (OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid) != 1) return NID_undef;
  return md_nid;
}

}  // namespace vwtest
