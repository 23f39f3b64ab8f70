// splice: after the handover, copy bytes both ways between the client and the
// server until either side ends. Private header of src/ (includes Asio).
//
// Data path contract: each pump reads into a per-thread buffer and writes the
// bytes straight out with a non-blocking write in the same turn; only a partial
// write copies the rest into a buffer of its own while it waits. An idle
// connection holds no splice buffer. When one side ends cleanly the other gets a
// half-close (shutdown of sending); on an error both are closed.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>
#include <string>
#include <system_error>

#include "stream.hpp"

namespace vaultwire::detail {

struct splice_result {
  std::uint64_t client_to_server = 0;
  std::uint64_t server_to_client = 0;
  std::string ended_by;  // "client", "server", "idle timeout", "client error: ...", ...
  bool idle_timeout = false;
};

// Runs until both directions are done. Both streams outlive the call.
// With idle_timeout set, a session with no bytes in either direction for that long
// gets `idle_message` (an ErrorResponse, written best effort) and both sides closed.
boost::asio::awaitable<splice_result> splice(stream& client, stream& server,
                                             std::optional<std::chrono::milliseconds> idle_timeout = std::nullopt,
                                             std::vector<std::uint8_t> idle_message = {});

}  // namespace vaultwire::detail
