#include "pgwire/messages.hpp"

#include <algorithm>
#include <utility>

namespace pgwire {
namespace {

// The body must end exactly where the reader is.
outcome::std_result<void> expect_end(const byte_reader& r) {
  if (!r.empty()) return errc::trailing_bytes;
  return outcome::success();
}

// ErrorResponse and NoticeResponse: (Byte1 code, String value)* then a 0 byte.
outcome::std_result<std::vector<error_field>> parse_error_fields(bytes_view body) {
  byte_reader r(body);
  std::vector<error_field> fields;
  for (;;) {
    const auto code = r.byte();
    if (!code) return errc::malformed_message;  // no terminator
    if (*code == 0) break;
    const auto value = r.cstring();
    if (!value) return errc::malformed_message;
    fields.emplace_back(static_cast<char>(*code), std::string(*value));
  }
  if (auto end = expect_end(r); !end) return end.error();
  return fields;
}

}  // namespace

std::optional<std::string_view> startup_message::find(std::string_view name) const noexcept {
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    if (it->first == name) return std::string_view(it->second);
  }
  return std::nullopt;
}

std::string_view error_fields::field(char code) const noexcept {
  for (const auto& [c, value] : fields) {
    if (c == code) return value;
  }
  return {};
}

bool error_fields::has_field(char code) const noexcept {
  return std::any_of(fields.begin(), fields.end(),
                     [code](const error_field& f) { return f.first == code; });
}

std::string_view error_fields::severity() const noexcept {
  return has_field('V') ? field('V') : field('S');
}

outcome::std_result<std::vector<std::pair<std::string, std::string>>> parse_startup_params(
    bytes_view params) {
  byte_reader r(params);
  std::vector<std::pair<std::string, std::string>> out;
  for (;;) {
    const auto name = r.cstring();
    if (!name) return errc::malformed_message;  // no terminator
    if (name->empty()) break;                   // the terminator
    const auto value = r.cstring();
    if (!value) return errc::malformed_message;  // a name without a value
    out.emplace_back(std::string(*name), std::string(*value));
  }
  if (auto end = expect_end(r); !end) return end.error();
  return out;
}

outcome::std_result<authentication> parse_authentication(bytes_view body) {
  byte_reader r(body);
  const auto code = r.int32();
  if (!code) return errc::malformed_message;
  authentication msg;
  switch (*code) {
    case static_cast<std::int32_t>(auth_type::ok):
    case static_cast<std::int32_t>(auth_type::kerberos_v5):
    case static_cast<std::int32_t>(auth_type::cleartext_password):
    case static_cast<std::int32_t>(auth_type::gss):
    case static_cast<std::int32_t>(auth_type::sspi):
      break;
    case static_cast<std::int32_t>(auth_type::md5_password): {
      const auto salt = r.bytes(msg.md5_salt.size());
      if (!salt) return errc::malformed_message;
      std::copy(salt->begin(), salt->end(), msg.md5_salt.begin());
      break;
    }
    case static_cast<std::int32_t>(auth_type::sasl): {
      for (;;) {
        const auto name = r.cstring();
        if (!name) return errc::malformed_message;  // list not terminated
        if (name->empty()) break;
        msg.mechanisms.emplace_back(*name);
      }
      if (msg.mechanisms.empty()) return errc::malformed_message;
      break;
    }
    case static_cast<std::int32_t>(auth_type::gss_continue):
    case static_cast<std::int32_t>(auth_type::sasl_continue):
    case static_cast<std::int32_t>(auth_type::sasl_final):
      msg.data = std::string(as_chars(r.rest()));
      break;
    default:
      return errc::malformed_message;
  }
  msg.type = static_cast<auth_type>(*code);
  if (auto end = expect_end(r); !end) return end.error();
  return msg;
}

outcome::std_result<error_response> parse_error_response(bytes_view body) {
  auto fields = parse_error_fields(body);
  if (!fields) return fields.error();
  error_response msg;
  msg.fields = std::move(fields).value();
  return msg;
}

outcome::std_result<notice_response> parse_notice_response(bytes_view body) {
  auto fields = parse_error_fields(body);
  if (!fields) return fields.error();
  notice_response msg;
  msg.fields = std::move(fields).value();
  return msg;
}

outcome::std_result<parameter_status> parse_parameter_status(bytes_view body) {
  byte_reader r(body);
  const auto name = r.cstring();
  if (!name) return errc::malformed_message;
  const auto value = r.cstring();
  if (!value) return errc::malformed_message;
  if (auto end = expect_end(r); !end) return end.error();
  return parameter_status{std::string(*name), std::string(*value)};
}

outcome::std_result<backend_key_data> parse_backend_key_data(bytes_view body) {
  byte_reader r(body);
  const auto pid = r.int32();
  const auto key = r.int32();
  if (!pid || !key) return errc::malformed_message;
  if (auto end = expect_end(r); !end) return end.error();
  return backend_key_data{*pid, *key};
}

outcome::std_result<ready_for_query> parse_ready_for_query(bytes_view body) {
  byte_reader r(body);
  const auto status = r.byte();
  if (!status) return errc::malformed_message;
  if (auto end = expect_end(r); !end) return end.error();
  switch (static_cast<char>(*status)) {
    case 'I': return ready_for_query{transaction_status::idle};
    case 'T': return ready_for_query{transaction_status::in_transaction};
    case 'E': return ready_for_query{transaction_status::failed};
    default: return errc::malformed_message;
  }
}

outcome::std_result<negotiate_protocol_version> parse_negotiate_protocol_version(
    bytes_view body) {
  byte_reader r(body);
  const auto newest = r.int32();
  const auto count = r.int32();
  if (!newest || !count) return errc::malformed_message;
  // Each name takes at least its NUL: a count beyond the bytes left is a lie,
  // caught before anything is reserved for it.
  if (*count < 0 || static_cast<std::size_t>(*count) > r.remaining()) {
    return errc::malformed_message;
  }
  negotiate_protocol_version msg;
  msg.newest_minor = *newest;
  msg.unrecognized.reserve(static_cast<std::size_t>(*count));
  for (std::int32_t i = 0; i < *count; ++i) {
    const auto name = r.cstring();
    if (!name) return errc::malformed_message;
    msg.unrecognized.emplace_back(*name);
  }
  if (auto end = expect_end(r); !end) return end.error();
  return msg;
}

outcome::std_result<password_message> parse_password_message(bytes_view body) {
  byte_reader r(body);
  const auto password = r.cstring();
  if (!password) return errc::malformed_message;
  if (auto end = expect_end(r); !end) return end.error();
  return password_message{secret_string(*password)};
}

outcome::std_result<sasl_initial_response> parse_sasl_initial_response(bytes_view body) {
  byte_reader r(body);
  const auto mechanism = r.cstring();
  const auto length = r.int32();
  // An empty name is no mechanism (PostgreSQL refuses it as an invalid one); the
  // encoder refuses to write one, so everything that parses encodes back.
  if (!mechanism || mechanism->empty() || !length) return errc::malformed_message;
  sasl_initial_response msg;
  msg.mechanism = std::string(*mechanism);
  if (*length != -1) {
    if (*length < 0) return errc::malformed_message;
    const auto data = r.bytes(static_cast<std::size_t>(*length));
    if (!data) return errc::malformed_message;
    msg.data = std::string(as_chars(*data));
  }
  if (auto end = expect_end(r); !end) return end.error();
  return msg;
}

outcome::std_result<sasl_response> parse_sasl_response(bytes_view body) {
  return sasl_response{secret_string(as_chars(body))};
}

outcome::std_result<terminate> parse_terminate(bytes_view body) {
  if (!body.empty()) return errc::trailing_bytes;
  return terminate{};
}

}  // namespace pgwire
