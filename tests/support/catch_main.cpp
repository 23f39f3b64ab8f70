// The Catch2 main of every test executable: quiets spdlog so test output shows
// only Catch2's report (a test that wants log lines raises the level itself).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

#include <csignal>

int main(int argc, char* argv[]) {
  spdlog::set_level(spdlog::level::off);
  // In-process proxies and TLS peers: a reset peer gives EPIPE, not a dead test run.
  std::signal(SIGPIPE, SIG_IGN);
  return Catch::Session().run(argc, argv);
}
