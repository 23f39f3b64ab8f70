// Text helpers shared by the modules' messages.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace vaultwire::detail {

// A duration as the configuration writes it: whole seconds as "10s", anything else
// in milliseconds ("1500ms"), so a message names the value the operator wrote.
[[nodiscard]] std::string duration_text(std::chrono::milliseconds d);

// The strings of `v` with `sep` between them.
[[nodiscard]] std::string join(const std::vector<std::string>& v, std::string_view sep);

}  // namespace vaultwire::detail
