// The proxy's one error convention. A step that can fail returns result<T>: a value,
// or a `failure` carrying an errc (whose SQLSTATE comes from sqlstate_for, the one
// map) and a message a person can act on, which never holds a secret.
//
// The Vault client and the broker keep richer errors (vault_error, broker_error: the
// HTTP status, Vault's own text), and each names its errc with code(). The data path
// (net/stream) keeps Asio's std::error_code out-parameters, which cost no allocation
// per read.
#pragma once

#include <string>
#include <string_view>

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>

#include "vaultwire/errc.hpp"

namespace vaultwire {

struct failure {
  errc code = errc::protocol_violation;
  std::string message;

  [[nodiscard]] std::string_view sqlstate() const noexcept { return sqlstate_for(code); }
};

template <class T>
using result = boost::outcome_v2::basic_result<T, failure, boost::outcome_v2::policy::terminate>;

}  // namespace vaultwire
