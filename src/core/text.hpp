// Text helpers shared by the modules' messages.
#pragma once

#include <chrono>
#include <string>

namespace vaultwire::detail {

// A duration as the configuration writes it: whole seconds as "10s", anything else
// in milliseconds ("1500ms"), so a message names the value the operator wrote.
[[nodiscard]] std::string duration_text(std::chrono::milliseconds d);

}  // namespace vaultwire::detail
