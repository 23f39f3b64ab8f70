#include "pgwire/encoder.hpp"

#include <algorithm>

namespace pgwire {
namespace {

bool has_nul(std::string_view s) noexcept { return s.find('\0') != std::string_view::npos; }

// A message with no body beyond fixed-size fields cannot fail; this turns the
// builder's answer into a void for the infallible encoders.
void finish_infallible(message_builder& b) {
  auto r = b.finish();
  (void)r;  // fixed layout: no String, length far below any cap
}

outcome::std_result<void> encode_auth_with_data(std::vector<std::uint8_t>& out, auth_type type,
                                                std::string_view data) {
  message_builder b(out);
  b.begin(backend_type::authentication);
  b.add_int32(static_cast<std::int32_t>(type));
  b.add_bytes(data);
  return b.finish();
}

template <typename String>
outcome::std_result<void> encode_sasl_list(std::vector<std::uint8_t>& out,
                                           std::span<const String> mechanisms) {
  if (mechanisms.empty()) return errc::malformed_message;
  message_builder b(out);
  b.begin(backend_type::authentication);
  b.add_int32(static_cast<std::int32_t>(auth_type::sasl));
  for (const auto& m : mechanisms) {
    // An empty name would read as the end of the list.
    if (std::string_view(m).empty()) b.fail(errc::malformed_message);
    b.add_cstring(m);
  }
  b.add_byte(0);
  return b.finish();
}

outcome::std_result<void> encode_fields(std::vector<std::uint8_t>& out, char type,
                                        std::span<const error_field> fields) {
  message_builder b(out);
  b.begin(type);
  for (const auto& [code, value] : fields) {
    if (code == '\0') b.fail(errc::malformed_message);  // 0 ends the field list
    b.add_byte(static_cast<std::uint8_t>(code));
    b.add_cstring(value);
  }
  b.add_byte(0);
  return b.finish();
}

}  // namespace

// ---- message_builder ----

void message_builder::discard() noexcept {
  if (open_) out_.resize(start_);
  open_ = false;
}

bool message_builder::writable() noexcept {
  if (!open_ && !error_) error_ = errc::malformed_message;
  return open_ && !error_;
}

void message_builder::fail(errc e) noexcept {
  if (!error_) error_ = e;
}

void message_builder::begin(char type) {
  discard();
  error_.clear();
  start_ = out_.size();
  out_.push_back(static_cast<std::uint8_t>(type));
  length_at_ = out_.size();
  out_.insert(out_.end(), 4, 0);
  open_ = true;
}

void message_builder::begin_untyped() {
  discard();
  error_.clear();
  start_ = out_.size();
  length_at_ = start_;
  out_.insert(out_.end(), 4, 0);
  open_ = true;
}

void message_builder::add_byte(std::uint8_t v) {
  if (!writable()) return;
  out_.push_back(v);
}

void message_builder::add_int16(std::int16_t v) {
  if (!writable()) return;
  std::uint8_t buf[2];
  store_be16(buf, static_cast<std::uint16_t>(v));
  out_.insert(out_.end(), buf, buf + 2);
}

void message_builder::add_int32(std::int32_t v) {
  if (!writable()) return;
  std::uint8_t buf[4];
  store_be32(buf, static_cast<std::uint32_t>(v));
  out_.insert(out_.end(), buf, buf + 4);
}

void message_builder::add_cstring(std::string_view s) {
  if (!writable()) return;
  if (has_nul(s)) {
    error_ = errc::malformed_message;
    return;
  }
  out_.insert(out_.end(), s.begin(), s.end());
  out_.push_back(0);
}

void message_builder::add_bytes(bytes_view b) {
  if (!writable()) return;
  out_.insert(out_.end(), b.begin(), b.end());
}

outcome::std_result<void> message_builder::finish(std::size_t max_length) {
  if (!open_) {
    if (error_) return error_;
    return errc::malformed_message;
  }
  if (error_) {
    const auto e = error_;
    discard();
    error_.clear();
    return e;
  }
  const std::size_t length = out_.size() - length_at_;
  if (length > max_length || length > max_length_field) {
    discard();
    return errc::length_too_long;
  }
  store_be32(out_.data() + length_at_, static_cast<std::uint32_t>(length));
  open_ = false;
  return outcome::success();
}

// ---- startup phase ----

outcome::std_result<void> encode_startup_message(std::vector<std::uint8_t>& out,
                                                 const startup_message& msg) {
  message_builder b(out);
  b.begin_untyped();
  b.add_int32(make_protocol_version(msg.major, msg.minor));
  for (const auto& [name, value] : msg.params) {
    if (name.empty()) b.fail(errc::malformed_message);  // "" ends the list
    b.add_cstring(name);
    b.add_cstring(value);
  }
  b.add_byte(0);
  return b.finish(max_startup_packet);
}

void encode_ssl_request(std::vector<std::uint8_t>& out) {
  message_builder b(out);
  b.begin_untyped();
  b.add_int32(ssl_request_code);
  finish_infallible(b);
}

void encode_gssenc_request(std::vector<std::uint8_t>& out) {
  message_builder b(out);
  b.begin_untyped();
  b.add_int32(gssenc_request_code);
  finish_infallible(b);
}

void encode_cancel_request(std::vector<std::uint8_t>& out, const cancel_request& msg) {
  message_builder b(out);
  b.begin_untyped();
  b.add_int32(cancel_request_code);
  b.add_int32(msg.process_id);
  b.add_int32(msg.secret_key);
  finish_infallible(b);
}

// ---- authentication (backend) ----

void encode_authentication_ok(std::vector<std::uint8_t>& out) {
  message_builder b(out);
  b.begin(backend_type::authentication);
  b.add_int32(static_cast<std::int32_t>(auth_type::ok));
  finish_infallible(b);
}

void encode_authentication_cleartext_password(std::vector<std::uint8_t>& out) {
  message_builder b(out);
  b.begin(backend_type::authentication);
  b.add_int32(static_cast<std::int32_t>(auth_type::cleartext_password));
  finish_infallible(b);
}

void encode_authentication_md5_password(std::vector<std::uint8_t>& out,
                                        const std::array<std::uint8_t, 4>& salt) {
  message_builder b(out);
  b.begin(backend_type::authentication);
  b.add_int32(static_cast<std::int32_t>(auth_type::md5_password));
  b.add_bytes(bytes_view(salt));
  finish_infallible(b);
}

outcome::std_result<void> encode_authentication_sasl(
    std::vector<std::uint8_t>& out, std::span<const std::string_view> mechanisms) {
  return encode_sasl_list(out, mechanisms);
}

outcome::std_result<void> encode_authentication_sasl(std::vector<std::uint8_t>& out,
                                                     std::span<const std::string> mechanisms) {
  return encode_sasl_list(out, mechanisms);
}

outcome::std_result<void> encode_authentication_sasl_continue(std::vector<std::uint8_t>& out,
                                                              std::string_view data) {
  return encode_auth_with_data(out, auth_type::sasl_continue, data);
}

outcome::std_result<void> encode_authentication_sasl_final(std::vector<std::uint8_t>& out,
                                                           std::string_view data) {
  return encode_auth_with_data(out, auth_type::sasl_final, data);
}

outcome::std_result<void> encode_authentication(std::vector<std::uint8_t>& out,
                                                const authentication& msg) {
  switch (msg.type) {
    case auth_type::ok:
    case auth_type::kerberos_v5:
    case auth_type::cleartext_password:
    case auth_type::gss:
    case auth_type::sspi:
      return encode_auth_with_data(out, msg.type, {});
    case auth_type::md5_password:
      encode_authentication_md5_password(out, msg.md5_salt);
      return outcome::success();
    case auth_type::sasl:
      return encode_authentication_sasl(out, std::span<const std::string>(msg.mechanisms));
    case auth_type::gss_continue:
    case auth_type::sasl_continue:
    case auth_type::sasl_final:
      return encode_auth_with_data(out, msg.type, msg.data);
  }
  return errc::malformed_message;
}

// ---- authentication (frontend) ----

outcome::std_result<void> encode_password_message(std::vector<std::uint8_t>& out,
                                                  std::string_view password) {
  message_builder b(out);
  b.begin(frontend_type::password);
  b.add_cstring(password);
  return b.finish();
}

outcome::std_result<void> encode_sasl_initial_response(std::vector<std::uint8_t>& out,
                                                       std::string_view mechanism,
                                                       std::optional<std::string_view> data) {
  if (mechanism.empty()) return errc::malformed_message;
  if (data && data->size() > max_length_field) return errc::length_too_long;
  message_builder b(out);
  b.begin(frontend_type::password);
  b.add_cstring(mechanism);
  if (data) {
    b.add_int32(static_cast<std::int32_t>(data->size()));
    b.add_bytes(*data);
  } else {
    b.add_int32(-1);
  }
  return b.finish();
}

outcome::std_result<void> encode_sasl_response(std::vector<std::uint8_t>& out,
                                               std::string_view data) {
  message_builder b(out);
  b.begin(frontend_type::password);
  b.add_bytes(data);
  return b.finish();
}

// ---- ErrorResponse / NoticeResponse ----

outcome::std_result<void> encode_error_response(std::vector<std::uint8_t>& out,
                                                std::span<const error_field> fields) {
  return encode_fields(out, backend_type::error_response, fields);
}

outcome::std_result<void> encode_notice_response(std::vector<std::uint8_t>& out,
                                                 std::span<const error_field> fields) {
  return encode_fields(out, backend_type::notice_response, fields);
}

std::string_view to_string(error_severity s) noexcept {
  switch (s) {
    case error_severity::error: return "ERROR";
    case error_severity::fatal: return "FATAL";
    case error_severity::panic: return "PANIC";
    case error_severity::warning: return "WARNING";
    case error_severity::notice: return "NOTICE";
    case error_severity::debug: return "DEBUG";
    case error_severity::info: return "INFO";
    case error_severity::log: return "LOG";
  }
  return "ERROR";
}

error_builder& error_builder::field(char code, std::string_view value) {
  switch (code) {
    case 'S':
    case 'V': return *this;
    case 'C': return sqlstate(value);
    case 'M': return message(value);
    case 'D': return detail(value);
    case 'H': return hint(value);
    default: extra_.emplace_back(code, std::string(value)); return *this;
  }
}

std::vector<error_field> error_builder::fields() const {
  std::vector<error_field> out;
  out.reserve(6 + extra_.size());
  const auto severity = std::string(to_string(severity_));
  out.emplace_back('S', severity);
  out.emplace_back('V', severity);
  if (sqlstate_) out.emplace_back('C', *sqlstate_);
  if (message_) out.emplace_back('M', *message_);
  if (detail_) out.emplace_back('D', *detail_);
  if (hint_) out.emplace_back('H', *hint_);
  out.insert(out.end(), extra_.begin(), extra_.end());
  return out;
}

// ---- other backend messages ----

outcome::std_result<void> encode_parameter_status(std::vector<std::uint8_t>& out,
                                                  std::string_view name, std::string_view value) {
  message_builder b(out);
  b.begin(backend_type::parameter_status);
  b.add_cstring(name);
  b.add_cstring(value);
  return b.finish();
}

void encode_backend_key_data(std::vector<std::uint8_t>& out, const backend_key_data& msg) {
  message_builder b(out);
  b.begin(backend_type::backend_key_data);
  b.add_int32(msg.process_id);
  b.add_int32(msg.secret_key);
  finish_infallible(b);
}

outcome::std_result<void> encode_ready_for_query(std::vector<std::uint8_t>& out,
                                                 transaction_status status) {
  switch (status) {
    case transaction_status::idle:
    case transaction_status::in_transaction:
    case transaction_status::failed:
      break;
    default:
      return errc::malformed_message;
  }
  message_builder b(out);
  b.begin(backend_type::ready_for_query);
  b.add_byte(static_cast<std::uint8_t>(status));
  return b.finish();
}

outcome::std_result<void> encode_negotiate_protocol_version(
    std::vector<std::uint8_t>& out, std::int32_t newest_version,
    std::span<const std::string> unrecognized) {
  if (unrecognized.size() > max_length_field) return errc::length_too_long;
  message_builder b(out);
  b.begin(backend_type::negotiate_protocol_version);
  b.add_int32(newest_version);
  b.add_int32(static_cast<std::int32_t>(unrecognized.size()));
  for (const auto& name : unrecognized) b.add_cstring(name);
  return b.finish();
}

// ---- other frontend messages ----

void encode_terminate(std::vector<std::uint8_t>& out) {
  message_builder b(out);
  b.begin(frontend_type::terminate);
  finish_infallible(b);
}

}  // namespace pgwire
