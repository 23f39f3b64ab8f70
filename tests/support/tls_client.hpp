// A blocking TCP + TLS client socket for tests and the demo's login client.
// Not the proxy's data path (that drives OpenSSL on non-blocking sockets); this one
// keeps test code short and obviously correct.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace vwtest {

struct tls_options {
  std::string ca_file;      // trust anchor for verify-full
  std::string server_name;  // verified against the certificate (DNS name or IP); SNI when a name
};

class tls_client {
 public:
  tls_client() = default;
  ~tls_client();
  tls_client(const tls_client&) = delete;
  tls_client& operator=(const tls_client&) = delete;

  // Connects over TCP to host:port (any address getaddrinfo returns). Throws on failure.
  void connect(const std::string& host, int port);
  // Starts TLS on the connected socket, verifying the chain against options.ca_file
  // and the name against options.server_name. Returns false with error() set when
  // the handshake or verification fails (nothing else was sent by then).
  [[nodiscard]] bool start_tls(const tls_options& options);

  void write_all(const std::uint8_t* data, std::size_t size);
  void write_all(const std::vector<std::uint8_t>& bytes) { write_all(bytes.data(), bytes.size()); }
  // Reads at least one byte and appends to out; returns false at end of stream.
  bool read_some(std::vector<std::uint8_t>& out);
  // Reads exactly n bytes (throws at end of stream).
  std::vector<std::uint8_t> read_exact(std::size_t n);

  [[nodiscard]] bool tls_active() const { return ssl_ != nullptr; }
  [[nodiscard]] const std::string& error() const { return error_; }
  // DER bytes of the server's certificate and the NID of its signature digest
  // (for tls-server-end-point channel binding). Empty before TLS.
  [[nodiscard]] std::vector<std::uint8_t> peer_certificate_der() const;
  [[nodiscard]] int peer_signature_digest_nid() const;
  // Total bytes written to the peer since connect (the SSLRequest included).
  [[nodiscard]] std::size_t bytes_written() const { return bytes_written_; }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string error_;
  std::size_t bytes_written_ = 0;
};

}  // namespace vwtest
