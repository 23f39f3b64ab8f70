#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "vaultwire/config.hpp"

// Every error message is asserted in full: a message that stops naming its key, or a
// check that stops firing, fails here.

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using vaultwire::config_overrides;
using vaultwire::config_result;
using vaultwire::env_lookup;
using vaultwire::parse_config;
using strings = std::vector<std::string>;

// An environment with nothing set, so the machine's VAULT_ADDR cannot leak in.
std::optional<std::string> no_env(std::string_view) { return std::nullopt; }

env_lookup env_of(std::map<std::string, std::string, std::less<>> vars) {
  return [vars = std::move(vars)](std::string_view k) -> std::optional<std::string> {
    const auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// A valid configuration with room for extra lines in each section. Keys it already
// sets (vault.address, listener route, route host and roles) cannot be repeated in
// the extras; tests that change those write the whole text.
std::string cfg(std::string_view vault_extra = "", std::string_view listener_extra = "",
                std::string_view route_extra = "", std::string_view tail = "") {
  std::string s = "[vault]\naddress = \"http://127.0.0.1:8200\"\n";
  s += vault_extra;
  s += "\n[[listener]]\nroute = \"main\"\n";
  s += listener_extra;
  s += "\n[route.main]\nhost = \"db.example\"\nroles = [\"app\"]\n";
  s += route_extra;
  s += "\n";
  s += tail;
  s += "\n";
  return s;
}

config_result parse(const std::string& text, const config_overrides& o = {},
                    const env_lookup& env = no_env, const fs::path& base_dir = {}) {
  return parse_config(text, o, env, base_dir, "test.toml");
}

// The errors of a text that must fail (and then has no value and no warnings).
strings errors_of(const std::string& text, const config_overrides& o = {},
                  const env_lookup& env = no_env, const fs::path& base_dir = {}) {
  auto r = parse(text, o, env, base_dir);
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.value.has_value());
  CHECK(r.warnings.empty());
  return r.errors;
}

vaultwire::config ok(const std::string& text, const config_overrides& o = {},
                     const env_lookup& env = no_env, const fs::path& base_dir = {}) {
  auto r = parse(text, o, env, base_dir);
  INFO("errors: " << [&] {
    std::string all;
    for (const auto& e : r.errors) all += "\n  " + e;
    return all;
  }());
  REQUIRE(r.ok());
  REQUIRE(r.errors.empty());
  return *r.value;
}

// A scratch directory with a few readable files, removed at the end of the test.
struct temp_dir {
  fs::path path;
  temp_dir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() /
           ("vaultwire-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  fs::path file(const std::string& name, std::string_view content = "x\n") const {
    const fs::path p = path / name;
    std::ofstream{p} << content;
    return p;
  }
};

}  // namespace

TEST_CASE("config: a minimal file gets every default", "[config]") {
  const auto c = ok(cfg());
  CHECK(c.vault.address == "http://127.0.0.1:8200");
  CHECK_FALSE(c.vault.namespace_.has_value());
  CHECK_FALSE(c.vault.ca_file.has_value());
  CHECK(c.vault.mount == "database");
  CHECK(c.vault.request_timeout == 5s);
  CHECK_FALSE(c.vault.token_file.has_value());

  REQUIRE(c.listeners.size() == 1);
  const auto& l = c.listeners[0];
  CHECK(l.bind == "127.0.0.1:26257");
  CHECK(l.host == "127.0.0.1");
  CHECK(l.port == 26257);
  CHECK_FALSE(l.ipv6);
  CHECK_FALSE(l.unix_socket.has_value());
  CHECK_FALSE(l.tls());
  CHECK(l.route == "main");
  CHECK_FALSE(l.allow_plaintext_remote);

  REQUIRE(c.routes.size() == 1);
  const auto& r = c.routes.at("main");
  CHECK(r.name == "main");
  CHECK(r.host == "db.example");
  CHECK(r.port == 26257);
  CHECK(r.server_name == "db.example");
  CHECK_FALSE(r.ca_file.has_value());
  CHECK(r.sslmode == vaultwire::ssl_mode::verify_full);
  CHECK_FALSE(r.allow_insecure_upstream);
  CHECK_FALSE(r.client_cert.has_value());
  CHECK_FALSE(r.client_key.has_value());
  CHECK(r.roles == strings{"app"});
  CHECK_FALSE(r.options.has_value());
  CHECK_FALSE(r.database_prefix.has_value());
  CHECK_FALSE(r.default_database.has_value());
  CHECK_FALSE(r.session_role.has_value());
  CHECK(r.scram_max_iterations == 1000000);

  CHECK(c.limits.max_client_connections == 10000);
  CHECK(c.limits.startup_timeout == 10s);
  CHECK(c.limits.upstream_connect_timeout == 5s);
  CHECK(c.limits.tcp_keepalive == 60s);
  CHECK_FALSE(c.limits.client_idle_timeout.has_value());

  const auto& cr = c.credentials;
  CHECK(cr.token_recheck == 10s);
  CHECK(cr.negative_cache == 2s);
  CHECK(cr.revoke_idle_after == 60s);
  CHECK(cr.revoke_on_shutdown);
  CHECK(cr.on_revoke == vaultwire::on_revoke_policy::at_idle);
  CHECK(cr.revoke_grace == 30s);
  CHECK(cr.expiry_notice == 60s);
  CHECK_FALSE(cr.session_may_outlive_lease);
  CHECK(cr.token_grace == std::chrono::milliseconds{5min});
  CHECK(cr.max_leases == 1000);

  CHECK(c.pool.reuse);
  CHECK(c.pool.reset_query == "DISCARD ALL");
  CHECK(c.pool.max_idle_per_key == 8);
  CHECK(c.pool.max_idle_total == 256);
  CHECK(c.pool.idle_timeout == 60s);

  CHECK(c.log.level == vaultwire::log_level::info);
  CHECK(c.log.format == vaultwire::log_format::text);
  CHECK(c.runtime.threads == std::max(1u, std::thread::hardware_concurrency()));
}

TEST_CASE("config: every key is read", "[config]") {
  temp_dir d;
  d.file("vault-ca.pem");
  d.file("cluster-ca.crt");
  d.file("client.crt");
  d.file("client.key");
  d.file("listener.crt");
  d.file("listener.key");
  d.file("token", "hvs.not-a-real-token\n");
  const std::string text = R"(
[vault]
address = "https://vault.example:8200/"
namespace = "admin"
ca_file = "vault-ca.pem"
mount = "/db-prod/"
request_timeout = "1m30s"
token_file = "token"

[[listener]]
bind = "[::1]:5433"
unix_socket = "."
tls_cert = "listener.crt"
tls_key = "listener.key"
route = "serverless"
allow_plaintext_remote = true

[[listener]]
bind = "127.0.0.2:5434"
route = "serverless"

[route.serverless]
host = "free-tier.example.cloud"
port = 26258
server_name = "sni.example.cloud"
ca_file = "cluster-ca.crt"
sslmode = "verify-full"
allow_insecure_upstream = false
client_cert = "client.crt"
client_key = "client.key"
roles = ["crdb-role", "reader", "crdb-role"]
options = "--cluster=lilac-grizzly-684"
database_prefix = "lilac-grizzly-684."
default_database = "defaultdb"
session_role = "app_owner"
scram_max_iterations = 250000

[credentials]
token_recheck = "1s"
negative_cache = "500ms"
revoke_idle_after = "2s"
revoke_on_shutdown = false
on_revoke = "now"
revoke_grace = "2500ms"
expiry_notice = "30s"
session_may_outlive_lease = true
token_grace = "1m"
max_leases = 7

[pool]
reuse = false
reset_query = "RESET ALL"
max_idle_per_key = 2
max_idle_total = 3
idle_timeout = "5s"

[limits]
max_client_connections = 50
startup_timeout = "250ms"
upstream_connect_timeout = "2s"
tcp_keepalive = "30s"
client_idle_timeout = "1h"

[log]
level = "debug"
format = "json"

[runtime]
threads = 3
)";
  const auto c = ok(text, {}, no_env, d.path);
  CHECK(c.vault.address == "https://vault.example:8200");
  CHECK(c.vault.namespace_ == "admin");
  CHECK(c.vault.ca_file == d.path / "vault-ca.pem");
  CHECK(c.vault.mount == "db-prod");
  CHECK(c.vault.request_timeout == 90s);
  CHECK(c.vault.token_file == d.path / "token");

  REQUIRE(c.listeners.size() == 2);
  const auto& l = c.listeners[0];
  CHECK(l.bind == "[::1]:5433");
  CHECK(l.host == "::1");
  CHECK(l.port == 5433);
  CHECK(l.ipv6);
  CHECK(l.unix_socket == d.path / ".");
  CHECK(l.tls());
  CHECK(l.tls_cert == d.path / "listener.crt");
  CHECK(l.tls_key == d.path / "listener.key");
  CHECK(l.route == "serverless");
  CHECK(l.allow_plaintext_remote);
  CHECK(c.listeners[1].bind == "127.0.0.2:5434");  // 127/8 is loopback

  REQUIRE(c.routes.size() == 1);
  const auto& r = c.routes.at("serverless");
  CHECK(r.name == "serverless");
  CHECK(r.host == "free-tier.example.cloud");
  CHECK(r.port == 26258);
  CHECK(r.server_name == "sni.example.cloud");
  CHECK(r.ca_file == d.path / "cluster-ca.crt");
  CHECK(r.client_cert == d.path / "client.crt");
  CHECK(r.client_key == d.path / "client.key");
  CHECK(r.roles == strings{"crdb-role", "reader"});
  CHECK(r.options == "--cluster=lilac-grizzly-684");
  CHECK(r.database_prefix == "lilac-grizzly-684.");
  CHECK(r.default_database == "defaultdb");
  CHECK(r.session_role == "app_owner");
  CHECK(r.scram_max_iterations == 250000);

  CHECK(c.limits.max_client_connections == 50);
  CHECK(c.limits.startup_timeout == 250ms);
  CHECK(c.limits.upstream_connect_timeout == 2s);
  CHECK(c.limits.tcp_keepalive == 30s);
  CHECK(c.limits.client_idle_timeout == std::chrono::milliseconds{1h});
  CHECK(c.log.level == vaultwire::log_level::debug);
  CHECK(c.log.format == vaultwire::log_format::json);
  CHECK(c.runtime.threads == 3);

  const auto& cr = c.credentials;
  CHECK(cr.token_recheck == 1s);
  CHECK(cr.negative_cache == 500ms);
  CHECK(cr.revoke_idle_after == 2s);
  CHECK_FALSE(cr.revoke_on_shutdown);
  CHECK(cr.on_revoke == vaultwire::on_revoke_policy::now);
  CHECK(cr.revoke_grace == 2500ms);
  CHECK(cr.expiry_notice == 30s);
  CHECK(cr.session_may_outlive_lease);
  CHECK(cr.token_grace == std::chrono::milliseconds{1min});
  CHECK(cr.max_leases == 7);
  CHECK_FALSE(c.pool.reuse);
  CHECK(c.pool.reset_query == "RESET ALL");
  CHECK(c.pool.max_idle_per_key == 2);
  CHECK(c.pool.max_idle_total == 3);
  CHECK(c.pool.idle_timeout == 5s);
}

TEST_CASE("config: conf/vaultwire.toml loads", "[config]") {
  const fs::path example = fs::path{VAULTWIRE_SOURCE_DIR} / "conf" / "vaultwire.toml";
  const auto r = vaultwire::load_config(example, {}, no_env);
  INFO((r.errors.empty() ? std::string{} : r.errors.front()));
  REQUIRE(r.ok());
  CHECK(r.warnings.empty());
  CHECK(r.value->vault.address == "http://127.0.0.1:8200");
  CHECK(r.value->listeners.size() == 1);
  CHECK(r.value->routes.count("main") == 1);
  // The example sets the documented defaults.
  CHECK(r.value->credentials.token_recheck == 10s);
  CHECK(r.value->credentials.max_leases == 1000);
  CHECK(r.value->credentials.on_revoke == vaultwire::on_revoke_policy::at_idle);
  CHECK(r.value->pool.reset_query == "DISCARD ALL");
  CHECK(r.value->pool.idle_timeout == 60s);
}

TEST_CASE("config: the commented keys of conf/vaultwire.toml are real keys", "[config]") {
  // Uncomment every `# key = value` line: the only errors left must be about the
  // example paths not existing — no unknown key, no wrong type.
  const fs::path example = fs::path{VAULTWIRE_SOURCE_DIR} / "conf" / "vaultwire.toml";
  std::ifstream in{example};
  REQUIRE(in);
  std::string text, line;
  int uncommented = 0;
  while (std::getline(in, line)) {
    const auto eq = line.find(" = ");
    if (line.rfind("# ", 0) == 0 && eq != std::string::npos &&
        line.find(' ', 2) == eq && line.find('`') == std::string::npos) {
      line = line.substr(2);
      ++uncommented;
    }
    text += line + "\n";
  }
  CHECK(uncommented == 21);
  const auto errors = errors_of(text);
  for (const auto& e : errors) {
    INFO(e);
    const bool file_missing = e.find(": cannot read \"/etc/vaultwire/") != std::string::npos ||
                              e.find(": cannot use \"/run/vaultwire\"") != std::string::npos ||
                              e == "audit.file: \"/var/log/vaultwire/audit.jsonl\": the directory does not exist";
    CHECK(file_missing);
  }
  // vault ca_file, ca_path, client_cert, client_key, token_file, unix_socket, tls_cert,
  // tls_key, route ca_file, client_cert, client_key, and the audit file's directory
  // where it does not exist
  CHECK(errors.size() == (fs::is_directory("/var/log/vaultwire") ? 11u : 12u));
}

TEST_CASE("config: unknown keys are errors naming the full key", "[config]") {
  SECTION("top level") {
    CHECK(errors_of(cfg("", "", "", "[credential]\ntoken_recheck = \"10s\"")) ==
          strings{"credential: unknown key (did you mean \"credentials\"?)"});
    CHECK(errors_of(cfg("", "", "", "[throtle]\nbase_delay = \"1s\"")) ==
          strings{"throtle: unknown key (did you mean \"throttle\"?)"});
    CHECK(errors_of("valt = 1\n" + cfg()) ==
          strings{"valt: unknown key (did you mean \"vault\"?)"});
  }
  SECTION("in a section") {
    CHECK(errors_of(cfg("token_fil = \"/x\"")) ==
          strings{"vault.token_fil: unknown key (did you mean \"token_file\"?)"});
    CHECK(errors_of(cfg("", "", "", "[credentials]\nmax_lease = 5")) ==
          strings{"credentials.max_lease: unknown key (did you mean \"max_leases\"?)"});
    CHECK(errors_of(cfg("", "", "", "[pool]\nresue = true")) ==
          strings{"pool.resue: unknown key (did you mean \"reuse\"?)"});
    CHECK(errors_of(cfg("", "", "", "[limits]\nstartup_timout = \"1s\"")) ==
          strings{"limits.startup_timout: unknown key (did you mean \"startup_timeout\"?)"});
  }
  SECTION("in a route") {
    CHECK(errors_of(cfg("", "", "hots = \"x\"")) ==
          strings{"route.main.hots: unknown key (did you mean \"host\"?)"});
  }
  SECTION("in a listener") {
    CHECK(errors_of(cfg("", "proxy_v1 = true")) == strings{"listener[0].proxy_v1: unknown key"});
  }
  SECTION("a dotted key is the same key") {
    CHECK(errors_of("vault.address = \"http://v:8200\"\nvault.adress = \"x\"\n"
                    "[[listener]]\nroute = \"main\"\n[route.main]\nhost = \"h\"\nroles = [\"r\"]\n") ==
          strings{"vault.adress: unknown key (did you mean \"address\"?)"});
  }
}

TEST_CASE("config: durations", "[config]") {
  using vaultwire::parse_duration;
  CHECK(parse_duration("10s") == std::chrono::milliseconds{10s});
  CHECK(parse_duration("5m") == std::chrono::milliseconds{5min});
  CHECK(parse_duration("1h") == std::chrono::milliseconds{1h});
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("1h30m") == std::chrono::milliseconds{90min});
  CHECK(parse_duration("1m500ms") == 60500ms);
  CHECK(parse_duration("0") == 0ms);
  CHECK(parse_duration("0s") == 0ms);
  CHECK(parse_duration("8760h") == std::chrono::milliseconds{8760h});
  for (const char* bad : {"", "10", "s", "10 s", " 10s", "10s ", "-1s", "1.5s", "10x", "10sec",
                          "h1", "1h30", "10S", "8761h", "99999999999999999999ms"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad).has_value());
  }

  CHECK(errors_of(cfg("", "", "", "[limits]\nstartup_timeout = \"10 parsecs\"")) ==
        strings{"limits.startup_timeout: invalid duration \"10 parsecs\" (write e.g. \"250ms\", "
                "\"10s\", \"5m\", \"1h30m\"; at most a year)"});
  CHECK(errors_of(cfg("request_timeout = 5")) ==
        strings{"vault.request_timeout: expected a duration string like \"10s\", got an integer"});
  CHECK(errors_of(cfg("", "", "", "[limits]\nupstream_connect_timeout = \"0s\"")) ==
        strings{"limits.upstream_connect_timeout: must be more than 0"});
  CHECK(errors_of(cfg("", "", "", "[limits]\ntcp_keepalive = \"500ms\"")) ==
        strings{"limits.tcp_keepalive: must be at least 1s"});
  CHECK(errors_of(cfg("", "", "", "[limits]\nclient_idle_timeout = true")) ==
        strings{"limits.client_idle_timeout: expected a duration string like \"10s\", or \"off\", "
                "got a boolean"});
  CHECK_FALSE(ok(cfg("", "", "", "[limits]\nclient_idle_timeout = \"0s\""))
                  .limits.client_idle_timeout.has_value());
  CHECK_FALSE(ok(cfg("", "", "", "[limits]\nclient_idle_timeout = \"off\""))
                  .limits.client_idle_timeout.has_value());
}

TEST_CASE("config: session_role and scram_max_iterations", "[config]") {
  CHECK(errors_of(cfg("", "", "session_role = \"\"")) == strings{"route.main.session_role: must not be empty"});
  CHECK(errors_of(cfg("", "", "scram_max_iterations = 100")) ==
        strings{"route.main.scram_max_iterations: 100 is out of range (4096-2147483647)"});
  CHECK(errors_of(cfg("", "", "scram_max_iterations = 4294967296")) ==
        strings{"route.main.scram_max_iterations: 4294967296 is out of range (4096-2147483647)"});
}

TEST_CASE("config: upstream sslmode weaker than verify-full", "[config]") {
  CHECK(errors_of(cfg("", "", "sslmode = \"require\"")) ==
        strings{"route.main.sslmode: \"require\" does not verify the cluster's certificate; set "
                "route.main.allow_insecure_upstream = true to allow it"});
  CHECK(errors_of(cfg("", "", "sslmode = \"verify-ca\"")) ==
        strings{"route.main.sslmode: \"verify-ca\" checks the cluster's CA but not its host name; "
                "set route.main.allow_insecure_upstream = true to allow it"});
  CHECK(errors_of(cfg("", "", "sslmode = \"disable\"\nallow_insecure_upstream = false")) ==
        strings{"route.main.sslmode: \"disable\" sends the database credential in clear; set "
                "route.main.allow_insecure_upstream = true to allow it"});
  CHECK(errors_of(cfg("", "", "sslmode = \"prefer\"\nallow_insecure_upstream = true")) ==
        strings{"route.main.sslmode: \"prefer\" is not one of verify-full, verify-ca, require, "
                "disable"});

  const auto r = parse(cfg("", "", "sslmode = \"require\"\nallow_insecure_upstream = true"));
  REQUIRE(r.ok());
  CHECK(r.value->routes.at("main").sslmode == vaultwire::ssl_mode::require);
  CHECK(r.warnings ==
        strings{"route.main.sslmode = \"require\": vaultwire does not verify the cluster's "
                "certificate (allowed by allow_insecure_upstream)"});
  CHECK(parse(cfg("", "", "allow_insecure_upstream = true")).warnings.empty());
}

TEST_CASE("config: plaintext listeners off loopback are refused", "[config]") {
  const std::string refusal_v4 =
      "listener[0].bind: plaintext listener on non-loopback address 0.0.0.0:26257: a client's "
      "Vault token would cross the network in clear; set tls_cert and tls_key, or "
      "allow_plaintext_remote = true";
  CHECK(errors_of(cfg("", "bind = \"0.0.0.0:26257\"")) == strings{refusal_v4});
  CHECK(errors_of(cfg("", "bind = \"[::]:26257\"")) ==
        strings{"listener[0].bind: plaintext listener on non-loopback address [::]:26257: a "
                "client's Vault token would cross the network in clear; set tls_cert and "
                "tls_key, or allow_plaintext_remote = true"});
  CHECK(errors_of(cfg("", "bind = \"10.1.2.3:5432\"\nallow_plaintext_remote = false")).size() ==
        1);

  CHECK(ok(cfg("", "bind = \"0.0.0.0:26257\"\nallow_plaintext_remote = true"))
            .listeners[0]
            .allow_plaintext_remote);
  CHECK(ok(cfg("", "bind = \"[::1]:26257\"")).listeners[0].ipv6);
  CHECK(ok(cfg("", "bind = \"[::ffff:127.0.0.1]:26257\"")).listeners[0].port == 26257);

  temp_dir d;
  d.file("l.crt");
  d.file("l.key");
  const auto tls = ok(cfg("", "bind = \"0.0.0.0:26257\"\ntls_cert = \"l.crt\"\ntls_key = \"l.key\""),
                      {}, no_env, d.path);
  CHECK(tls.listeners[0].tls());

  // --listen is checked the same way, and named.
  config_overrides o;
  o.listen = "192.168.1.5:26257";
  CHECK(errors_of(cfg(), o) ==
        strings{"--listen: plaintext listener on non-loopback address 192.168.1.5:26257: a "
                "client's Vault token would cross the network in clear; set tls_cert and "
                "tls_key, or allow_plaintext_remote = true"});
}

TEST_CASE("config: bind addresses, IPv4 and IPv6", "[config]") {
  auto l = ok(cfg("", "bind = \"[::1]:5432\"")).listeners[0];
  CHECK(l.host == "::1");
  CHECK(l.port == 5432);
  CHECK(l.ipv6);
  CHECK(l.bind == "[::1]:5432");
  l = ok(cfg("", "bind = \"127.0.0.1:1\"")).listeners[0];
  CHECK(l.host == "127.0.0.1");
  CHECK(l.port == 1);
  CHECK_FALSE(l.ipv6);
  l = ok(cfg("", "bind = \"[fe80::1]:65535\"\nallow_plaintext_remote = true")).listeners[0];
  CHECK(l.host == "fe80::1");
  CHECK(l.port == 65535);

  for (const char* bad : {"localhost:26257", "::1:26257", "[::1]", "[::1]26257", "127.0.0.1",
                          "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:26x",
                          "[127.0.0.1]:26257", "256.0.0.1:26257", ":26257", "[]:26257"}) {
    INFO(bad);
    CHECK(errors_of(cfg("", std::string{"bind = \""} + bad + "\"")) ==
          strings{std::string{"listener[0].bind: \""} + bad +
                  "\" is not an IP address and port (e.g. 127.0.0.1:26257 or [::1]:26257)"});
  }

  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[[listener]]
route = "main"
[[listener]]
route = "main"
bind = "127.0.0.1:26257"
[route.main]
host = "h"
roles = ["r"]
)") == strings{"listener[1].bind: 127.0.0.1:26257 is already used by listener[0]"});
}

TEST_CASE("config: listener routes", "[config]") {
  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[[listener]]
route = "mian"
[route.main]
host = "h"
roles = ["r"]
[route.other]
host = "h2"
roles = ["r"]
)") == strings{"listener[0].route: no route named \"mian\" (defined: main, other)"});

  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[[listener]]
bind = "127.0.0.1:26257"
[route.main]
host = "h"
roles = ["r"]
)") == strings{"listener[0].route: required (the [route.NAME] this listener forwards to)"});

  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[[listener]]
route = "main"
)") == strings{"route: at least one [route.NAME] is required",
               "listener[0].route: no route named \"main\" (no [route.NAME] is defined)"});

  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[route.main]
host = "h"
roles = ["r"]
)") == strings{"listener: at least one [[listener]] is required"});

  CHECK(errors_of(R"(
listener = []
[vault]
address = "http://v:8200"
[route.main]
host = "h"
roles = ["r"]
)") == strings{"listener: at least one [[listener]] is required"});

  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[listener]
route = "main"
[route.main]
host = "h"
roles = ["r"]
)") == strings{"listener: expected an array of tables ([[listener]]), got a table"});

  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[[listener]]
route = "a.b"
[route."a.b"]
host = "h"
roles = ["r"]
)") == strings{"route.\"a.b\": a route name uses only letters, digits, '_' and '-'",
               "listener[0].route: no route named \"a.b\" (no [route.NAME] is defined)"});
}

TEST_CASE("config: vault address from file, environment and flag", "[config]") {
  const std::string no_address = R"(
[[listener]]
route = "main"
[route.main]
host = "h"
roles = ["r"]
)";
  CHECK(errors_of(no_address) ==
        strings{"vault.address: required (set it in [vault], VAULT_AGENT_ADDR, VAULT_ADDR or --vault-addr)"});
  CHECK(errors_of("[vault]\naddress = \"\"\n" + no_address) ==
        strings{"vault.address: required (set it in [vault], VAULT_AGENT_ADDR, VAULT_ADDR or --vault-addr)"});

  // The environment applies where the file is silent.
  const auto env = env_of({{"VAULT_ADDR", "https://from-env:8200"},
                           {"VAULT_NAMESPACE", "ns-env"},
                           {"VAULT_TOKEN", "hvs.never-read-here"}});
  auto c = ok(no_address, {}, env);
  CHECK(c.vault.address == "https://from-env:8200");
  CHECK(c.vault.namespace_ == "ns-env");

  // The file wins over the environment ...
  c = ok("[vault]\naddress = \"http://from-file:8200\"\nnamespace = \"ns-file\"\n" + no_address,
         {}, env);
  CHECK(c.vault.address == "http://from-file:8200");
  CHECK(c.vault.namespace_ == "ns-file");
  // ... and namespace = "" means none, even with VAULT_NAMESPACE set.
  c = ok("[vault]\nnamespace = \"\"\n" + no_address, {}, env);
  CHECK_FALSE(c.vault.namespace_.has_value());

  // The flag wins over both.
  config_overrides o;
  o.vault_addr = "https://from-flag:8200";
  CHECK(ok(no_address, o, env).vault.address == "https://from-flag:8200");
  CHECK(ok("[vault]\naddress = \"http://from-file:8200\"\n" + no_address, o, env).vault.address ==
        "https://from-flag:8200");

  // A bad value names where it came from.
  CHECK(errors_of("[vault]\naddress = \"vault:8200\"\n" + no_address) ==
        strings{"vault.address: \"vault:8200\" must start with http://, https:// or unix://"});
  CHECK(errors_of(no_address, {}, env_of({{"VAULT_ADDR", "ftp://v"}})) ==
        strings{"vault.address (from VAULT_ADDR): \"ftp://v\" must start with http://, https:// or unix://"});
  o.vault_addr = "https://";
  CHECK(errors_of(no_address, o) == strings{"--vault-addr: \"https://\" has no host"});
  CHECK(errors_of("[vault]\naddress = 8200\n" + no_address) ==
        strings{"vault.address: expected a string, got an integer"});
}

TEST_CASE("config: the address as Vault's client reads it: file, VAULT_AGENT_ADDR, VAULT_ADDR, flag",
          "[config][vault-env]") {
  const std::string no_address = "[[listener]]\nroute = \"main\"\n[route.main]\nhost = \"h\"\nroles = [\"r\"]\n";
  const auto both = env_of({{"VAULT_ADDR", "https://vault:8200"}, {"VAULT_AGENT_ADDR", "unix:///run/agent.sock"}});
  // The agent's address wins over VAULT_ADDR (api/client.go NewClient) ...
  auto c = ok(no_address, {}, both);
  CHECK(c.vault.address == "unix:///run/agent.sock");
  CHECK(ok(no_address, {}, env_of({{"VAULT_AGENT_ADDR", "http://127.0.0.1:8100"}})).vault.address ==
        "http://127.0.0.1:8100");
  // ... the file over both, the flag over all.
  CHECK(ok("[vault]\naddress = \"https://file:8200\"\n" + no_address, {}, both).vault.address == "https://file:8200");
  config_overrides o;
  o.vault_addr = "unix:///run/flag.sock";
  CHECK(ok("[vault]\naddress = \"https://file:8200\"\n" + no_address, o, both).vault.address ==
        "unix:///run/flag.sock");
  // A unix socket names an absolute path that fits in sockaddr_un.
  CHECK(errors_of(no_address, {}, env_of({{"VAULT_AGENT_ADDR", "unix://run/agent.sock"}})) ==
        strings{"vault.address (from VAULT_AGENT_ADDR): \"unix://run/agent.sock\" must name the socket's absolute "
                "path, e.g. unix:///run/vault-agent.sock"});
  CHECK(errors_of("[vault]\naddress = \"unix://\"\n" + no_address) ==
        strings{"vault.address: \"unix://\" must name the socket's absolute path, e.g. unix:///run/vault-agent.sock"});
  CHECK(errors_of("[vault]\naddress = \"unix:///" + std::string(120, 's') + "\"\n" + no_address) ==
        strings{"vault.address: \"unix:///" + std::string(120, 's') + "\": a unix socket path has at most 107 bytes"});
}

TEST_CASE("config: Vault's TLS variables: VAULT_CAPATH, client certificate, server name", "[config][vault-env]") {
  temp_dir d;
  const fs::path ca = d.file("ca.pem");
  const fs::path cert = d.file("client.crt");
  const fs::path key = d.file("client.key");
  fs::create_directories(d.path / "ca.d");
  const auto env = env_of({{"VAULT_CAPATH", (d.path / "ca.d").string()},
                           {"VAULT_CLIENT_CERT", cert.string()},
                           {"VAULT_CLIENT_KEY", key.string()},
                           {"VAULT_TLS_SERVER_NAME", "vault.internal"}});
  auto c = ok(cfg(), {}, env);
  CHECK(c.vault.ca_path == d.path / "ca.d");
  CHECK_FALSE(c.vault.ca_file.has_value());
  CHECK(c.vault.client_cert == cert);
  CHECK(c.vault.client_key == key);
  CHECK(c.vault.tls_server_name == "vault.internal");

  // The file naming either half of a pair silences both variables.
  c = ok(cfg("ca_file = \"ca.pem\"\nclient_cert = \"client.crt\"\nclient_key = \"client.key\"\n"
             "tls_server_name = \"other\""),
         {}, env, d.path);
  CHECK(c.vault.ca_file == ca);
  CHECK_FALSE(c.vault.ca_path.has_value());
  CHECK(c.vault.tls_server_name == "other");
  c = ok(cfg("ca_path = \"\""), {}, env_of({{"VAULT_CACERT", ca.string()}, {"VAULT_CAPATH", "/nonexistent"}}));
  CHECK_FALSE(c.vault.ca_file.has_value());
  CHECK_FALSE(c.vault.ca_path.has_value());

  // Half a pair, from anywhere, is an error naming both.
  CHECK(errors_of(cfg(), {}, env_of({{"VAULT_CLIENT_CERT", cert.string()}})) ==
        strings{"vault.client_key (from VAULT_CLIENT_KEY): required when vault.client_cert (from "
                "VAULT_CLIENT_CERT) is set"});
  CHECK(errors_of(cfg("client_key = \"client.key\""), {}, env, d.path) ==
        strings{"vault.client_cert: required when vault.client_key is set"});
  // A CA directory must be a readable directory.
  CHECK(errors_of(cfg(), {}, env_of({{"VAULT_CAPATH", ca.string()}})) ==
        strings{"vault.ca_path (from VAULT_CAPATH): \"" + ca.string() + "\" is not a directory"});
}

TEST_CASE("config: VAULT_SKIP_VERIFY is refused unless vault.allow_insecure", "[config][vault-env]") {
  for (const char* yes : {"1", "true", "T", "TRUE"}) {
    INFO(yes);
    CHECK(errors_of(cfg(), {}, env_of({{"VAULT_SKIP_VERIFY", yes}})) ==
          strings{std::string("VAULT_SKIP_VERIFY: set to \"") + yes +
                  "\": vaultwire does not turn off the verification of Vault's certificate unless [vault] "
                  "allow_insecure = true; unset it, or give Vault's CA in vault.ca_file"});
  }
  CHECK(errors_of(cfg(), {}, env_of({{"VAULT_SKIP_VERIFY", "yes"}})) ==
        strings{"VAULT_SKIP_VERIFY: \"yes\" is not true or false"});
  // False values change nothing.
  auto c = ok(cfg(), {}, env_of({{"VAULT_SKIP_VERIFY", "false"}}));
  CHECK_FALSE(c.vault.skip_verify);
  // Allowed: verification is off, and every start says so.
  auto r = parse(cfg("allow_insecure = true"), {}, env_of({{"VAULT_SKIP_VERIFY", "1"}}));
  REQUIRE(r.ok());
  CHECK(r.value->vault.skip_verify);
  CHECK(r.warnings == strings{"VAULT_SKIP_VERIFY: Vault's certificate is not verified ([vault] allow_insecure = "
                              "true): whoever sits between vaultwire and Vault reads every client's token"});
  // allow_insecure alone turns nothing off.
  CHECK_FALSE(ok(cfg("allow_insecure = true")).vault.skip_verify);
}

TEST_CASE("config: VAULT_CACERT and ca files", "[config]") {
  temp_dir d;
  const fs::path ca = d.file("ca.pem");
  auto c = ok(cfg(), {}, env_of({{"VAULT_CACERT", ca.string()}}));
  CHECK(c.vault.ca_file == ca);

  CHECK(errors_of(cfg(), {}, env_of({{"VAULT_CACERT", (d.path / "nope.pem").string()}})) ==
        strings{"vault.ca_file (from VAULT_CACERT): cannot read \"" + (d.path / "nope.pem").string() +
                "\": No such file or directory"});
  // The file's ca_file wins; "" means the system store even with VAULT_CACERT set.
  c = ok(cfg("ca_file = \"\""), {}, env_of({{"VAULT_CACERT", "/nonexistent/ca.pem"}}));
  CHECK_FALSE(c.vault.ca_file.has_value());

  CHECK(errors_of(cfg("", "", "ca_file = \"missing-ca.crt\""), {}, no_env, d.path) ==
        strings{"route.main.ca_file: cannot read \"" + (d.path / "missing-ca.crt").string() +
                "\": No such file or directory"});
  CHECK(errors_of(cfg("", "", "ca_file = \"" + d.path.string() + "\"")) ==
        strings{"route.main.ca_file: \"" + d.path.string() + "\" is not a regular file"});
  CHECK(errors_of(cfg("", "unix_socket = \"ca.pem\""), {}, no_env, d.path) ==
        strings{"listener[0].unix_socket: \"" + (d.path / "ca.pem").string() +
                "\" is not a directory"});
  CHECK(errors_of(cfg("", "", "ca_file = \"\"")) == strings{"route.main.ca_file: must not be empty"});

  const fs::path long_dir = d.path / std::string(100, 'd');
  fs::create_directories(long_dir);
  CHECK(errors_of(cfg("", "unix_socket = \"" + long_dir.string() + "\"")) ==
        strings{"listener[0].unix_socket: socket path \"" + (long_dir / ".s.PGSQL.26257").string() +
                "\" is longer than 107 bytes"});
}

TEST_CASE("config: certificate and key go together", "[config]") {
  temp_dir d;
  d.file("c.crt");
  d.file("c.key");
  CHECK(errors_of(cfg("", "tls_cert = \"c.crt\""), {}, no_env, d.path) ==
        strings{"listener[0].tls_key: required when tls_cert is set"});
  CHECK(errors_of(cfg("", "tls_key = \"c.key\""), {}, no_env, d.path) ==
        strings{"listener[0].tls_cert: required when tls_key is set"});
  CHECK(errors_of(cfg("", "", "client_cert = \"c.crt\""), {}, no_env, d.path) ==
        strings{"route.main.client_key: required when client_cert is set"});
  CHECK(errors_of(cfg("", "", "client_key = \"c.key\""), {}, no_env, d.path) ==
        strings{"route.main.client_cert: required when client_key is set"});
  const auto c = ok(cfg("", "", "client_cert = \"c.crt\"\nclient_key = \"c.key\""), {}, no_env,
                    d.path);
  CHECK(c.routes.at("main").client_cert == d.path / "c.crt");
  CHECK(c.routes.at("main").client_key == d.path / "c.key");
}

TEST_CASE("config: wrong types and bad values name the key", "[config]") {
  CHECK(errors_of(cfg("", "", "port = \"26257\"")) ==
        strings{"route.main.port: expected an integer, got a string"});
  CHECK(errors_of(cfg("", "", "port = 70000")) ==
        strings{"route.main.port: 70000 is out of range (1-65535)"});
  CHECK(errors_of(cfg("", "allow_plaintext_remote = \"yes\"")) ==
        strings{"listener[0].allow_plaintext_remote: expected true or false, got a string"});
  CHECK(errors_of(cfg("", "", "", "[limits]\nmax_client_connections = 0")) ==
        strings{"limits.max_client_connections: 0 is out of range (1-1000000)"});
  CHECK(errors_of(cfg("", "", "", "[log]\nlevel = \"verbose\"\nformat = \"xml\"")) ==
        strings{"log.level: \"verbose\" is not one of trace, debug, info, warn, error, off",
                "log.format: \"xml\" is not one of text, json"});
  CHECK(errors_of(cfg("", "", "", "[runtime]\nthreads = 0")) ==
        strings{"runtime.threads: 0 is out of range (1-1024)"});
  CHECK(errors_of("log = \"info\"\n" + cfg()) ==
        strings{"log: expected a table ([log]), got a string"});
  CHECK(errors_of(cfg("mount = \"/\"")) ==
        strings{"vault.mount: must name the database secrets engine's mount"});

  const std::string route_head = R"(
[vault]
address = "http://v:8200"
[[listener]]
route = "main"
[route.main]
)";
  CHECK(errors_of(route_head + "roles = [\"r\"]\n") ==
        strings{"route.main.host: required (the cluster's host name or address)"});
  CHECK(errors_of(route_head + "host = \"h\"\n") ==
        strings{"route.main.roles: required (the Vault roles clients may ask for)"});
  CHECK(errors_of(route_head + "host = \"h\"\nroles = []\n") ==
        strings{"route.main.roles: must list at least one Vault role"});
  CHECK(errors_of(route_head + "host = \"h\"\nroles = \"r\"\n") ==
        strings{"route.main.roles: expected an array of strings, got a string"});
  CHECK(errors_of(route_head + "host = \"h\"\nroles = [\"ok\", 3, \"\", \"a/b\"]\n") ==
        strings{"route.main.roles[1]: expected a string, got an integer",
                "route.main.roles[2]: must not be empty",
                "route.main.roles[3]: \"a/b\": a Vault role name cannot contain '/'"});
}

TEST_CASE("config: [credentials], [pool] and token_file bad values name the key", "[config]") {
  const auto creds = [](std::string_view body) { return cfg("", "", "", "[credentials]\n" + std::string{body}); };
  const auto pool = [](std::string_view body) { return cfg("", "", "", "[pool]\n" + std::string{body}); };
  const std::string bad_duration = R"( (write e.g. "250ms", "10s", "5m", "1h30m"; at most a year))";
  for (const char* key :
       {"token_recheck", "negative_cache", "revoke_idle_after", "revoke_grace", "expiry_notice", "token_grace"}) {
    INFO(key);
    CHECK(errors_of(creds(std::string{key} + " = \"soon\"")) ==
          strings{"credentials." + std::string{key} + ": invalid duration \"soon\"" + bad_duration});
    CHECK(errors_of(creds(std::string{key} + " = 10")) ==
          strings{"credentials." + std::string{key} + ": expected a duration string like \"10s\", got an integer"});
    CHECK(errors_of(creds(std::string{key} + " = \"0\"")) ==
          strings{"credentials." + std::string{key} + ": must be more than 0"});
  }
  // revoke_grace is a bound: "off" is not a duration here.
  CHECK(errors_of(creds("revoke_grace = \"off\"")) ==
        strings{"credentials.revoke_grace: invalid duration \"off\"" + bad_duration});
  CHECK(errors_of(creds("revoke_on_shutdown = \"no\"")) ==
        strings{"credentials.revoke_on_shutdown: expected true or false, got a string"});
  CHECK(errors_of(creds("session_may_outlive_lease = 1")) ==
        strings{"credentials.session_may_outlive_lease: expected true or false, got an integer"});
  CHECK(errors_of(creds("on_revoke = \"later\"")) ==
        strings{"credentials.on_revoke: \"later\" is not one of at_idle, now, ignore"});
  CHECK(errors_of(creds("on_revoke = true")) ==
        strings{"credentials.on_revoke: expected a string, got a boolean"});
  CHECK(errors_of(creds("max_leases = 0")) ==
        strings{"credentials.max_leases: 0 is out of range (1-1000000)"});
  CHECK(errors_of(creds("max_leases = \"5\"")) ==
        strings{"credentials.max_leases: expected an integer, got a string"});
  CHECK(errors_of("credentials = 3\n" + cfg()) ==
        strings{"credentials: expected a table ([credentials]), got an integer"});

  CHECK(errors_of(pool("reuse = \"yes\"")) == strings{"pool.reuse: expected true or false, got a string"});
  CHECK(errors_of(pool("reset_query = \"\"")) == strings{"pool.reset_query: must not be empty"});
  CHECK(errors_of(pool("reset_query = \"DISCARD\\u0000ALL\"")) ==
        strings{"pool.reset_query: must not contain a NUL character"});
  CHECK(errors_of(pool("max_idle_per_key = -1")) ==
        strings{"pool.max_idle_per_key: -1 is out of range (0-1000000)"});
  CHECK(errors_of(pool("max_idle_total = 2000000")) ==
        strings{"pool.max_idle_total: 2000000 is out of range (0-1000000)"});
  CHECK(errors_of(pool("max_idle_per_key = 10\nmax_idle_total = 5")) ==
        strings{"pool.max_idle_per_key: 10 is more than max_idle_total (5)"});
  CHECK(errors_of(pool("idle_timeout = \"1 minute\"")) ==
        strings{"pool.idle_timeout: invalid duration \"1 minute\"" + bad_duration});
  // Zero idle connections is allowed (reuse with nowhere to keep one is off in effect).
  CHECK(ok(pool("max_idle_per_key = 0\nmax_idle_total = 0")).pool.max_idle_total == 0);

  CHECK(errors_of(cfg("token_file = \"\"")) == strings{"vault.token_file: must not be empty"});
  CHECK(errors_of(cfg("token_file = \"/nonexistent/vaultwire-token\"")) ==
        strings{"vault.token_file: cannot read \"/nonexistent/vaultwire-token\": No such file or directory"});
  temp_dir d;
  CHECK(errors_of(cfg("token_file = \".\""), {}, no_env, d.path) ==
        strings{"vault.token_file: \"" + (d.path / ".").string() + "\" is not a regular file"});
}

TEST_CASE("config: [admin], [audit], proxy_protocol and shutdown_grace", "[config]") {
  const auto defaults = ok(cfg());
  CHECK(defaults.admin.enabled);
  CHECK(defaults.admin.bind == "127.0.0.1:9187");
  CHECK(defaults.admin.readiness_timeout == std::chrono::seconds(1));
  CHECK_FALSE(defaults.audit.file);
  CHECK_FALSE(defaults.listeners.at(0).proxy_protocol);
  CHECK(defaults.runtime.shutdown_grace == std::chrono::seconds(30));

  temp_dir d;
  const auto c = ok(cfg("", "proxy_protocol = true\n", "",
                        "[admin]\nbind = \"[::1]:9999\"\nreadiness_timeout = \"250ms\"\n"
                        "[audit]\nfile = \"audit.jsonl\"\n"
                        "[runtime]\nshutdown_grace = \"2s\"\n"),
                    {}, no_env, d.path);
  CHECK(c.admin.bind == "[::1]:9999");
  CHECK(c.admin.port == 9999);
  CHECK(c.admin.readiness_timeout == std::chrono::milliseconds(250));
  CHECK(c.audit.file == fs::absolute(d.path / "audit.jsonl"));
  CHECK(c.listeners.at(0).proxy_protocol);
  CHECK(c.runtime.shutdown_grace == std::chrono::seconds(2));
  CHECK_FALSE(ok(cfg("", "", "", "[admin]\nbind = \"\"\n")).admin.enabled);

  CHECK(errors_of(cfg("", "", "", "[admin]\nbind = \"localhost\"\n")) ==
        strings{"admin.bind: \"localhost\" is not an IP address and port (e.g. 127.0.0.1:9187), or \"\" for none"});
  CHECK(errors_of(cfg("", "", "", "[audit]\nfile = \"/nonexistent-dir/audit.jsonl\"\n")) ==
        strings{"audit.file: \"/nonexistent-dir/audit.jsonl\": the directory does not exist"});
  CHECK(errors_of(cfg("", "proxy_protocol = 1\n")) ==
        strings{"listener[0].proxy_protocol: expected true or false, got an integer"});
  CHECK(errors_of(cfg("", "", "", "[runtime]\nshutdown_grace = \"0\"\n")) ==
        strings{"runtime.shutdown_grace: must be more than 0"});
}

TEST_CASE("config: runtime.allow_core_dumps", "[config]") {
  CHECK_FALSE(ok(cfg()).runtime.allow_core_dumps);
  CHECK(ok(cfg("", "", "", "[runtime]\nallow_core_dumps = true\n")).runtime.allow_core_dumps);
  CHECK(errors_of(cfg("", "", "", "[runtime]\nallow_core_dumps = \"yes\"\n")) ==
        strings{"runtime.allow_core_dumps: expected true or false, got a string"});
}

TEST_CASE("config: every error is reported at once", "[config]") {
  const auto errors = errors_of(R"(
[vault]
request_timeout = "soon"
[[listener]]
bind = "0.0.0.0:26257"
route = "nowhere"
[route.main]
hots = "h"
roles = ["r"]
sslmode = "require"
[limits]
startup_timeout = "10 parsecs"
)");
  CHECK(errors ==
        strings{
            "vault.address: required (set it in [vault], VAULT_AGENT_ADDR, VAULT_ADDR or --vault-addr)",
            "vault.request_timeout: invalid duration \"soon\" (write e.g. \"250ms\", \"10s\", "
            "\"5m\", \"1h30m\"; at most a year)",
            "route.main.host: required (the cluster's host name or address)",
            "route.main.sslmode: \"require\" does not verify the cluster's certificate; set "
            "route.main.allow_insecure_upstream = true to allow it",
            "route.main.hots: unknown key (did you mean \"host\"?)",
            "listener[0].bind: plaintext listener on non-loopback address 0.0.0.0:26257: a "
            "client's Vault token would cross the network in clear; set tls_cert and tls_key, "
            "or allow_plaintext_remote = true",
            "listener[0].route: no route named \"nowhere\" (defined: main)",
            "limits.startup_timeout: invalid duration \"10 parsecs\" (write e.g. \"250ms\", "
            "\"10s\", \"5m\", \"1h30m\"; at most a year)",
        });
}

TEST_CASE("config: flags override the file", "[config]") {
  const std::string text = cfg("", "bind = \"127.0.0.1:1111\"", "",
                               "[log]\nlevel = \"warn\"\n[runtime]\nthreads = 2");
  auto c = ok(text);
  CHECK(c.listeners[0].port == 1111);
  CHECK(c.log.level == vaultwire::log_level::warn);
  CHECK(c.runtime.threads == 2);

  config_overrides o;
  o.listen = "[::1]:2222";
  o.log_level = "trace";
  o.threads = 7;
  c = ok(text, o);
  CHECK(c.listeners[0].bind == "[::1]:2222");
  CHECK(c.listeners[0].ipv6);
  CHECK(c.log.level == vaultwire::log_level::trace);
  CHECK(c.runtime.threads == 7);

  o = {};
  o.log_level = "loud";
  o.threads = 0;
  o.listen = "nowhere";
  CHECK(errors_of(text, o) ==
        strings{"--listen: \"nowhere\" is not an IP address and port (e.g. 127.0.0.1:26257 or "
                "[::1]:26257)",
                "--log-level: \"loud\" is not one of trace, debug, info, warn, error, off",
                "--threads: 0 is out of range (1-1024)"});

  // --listen replaces the bind of the only listener; with two it is ambiguous.
  o = {};
  o.listen = "127.0.0.1:3333";
  CHECK(errors_of(R"(
[vault]
address = "http://v:8200"
[[listener]]
route = "main"
[[listener]]
route = "main"
bind = "127.0.0.1:4444"
[route.main]
host = "h"
roles = ["r"]
)",
                  o) == strings{"--listen: applies to a single [[listener]]; the file has 2"});
}

TEST_CASE("config: TOML syntax errors and unreadable files", "[config]") {
  CHECK(errors_of("[vault]\naddress = \n") ==
        strings{"test.toml:2:11: Error while parsing key-value pair: expected value, saw '\\n'"});
  const auto r = vaultwire::load_config("/nonexistent/vaultwire.toml", {}, no_env);
  CHECK_FALSE(r.ok());
  CHECK(r.errors == strings{"/nonexistent/vaultwire.toml: cannot read: No such file or directory"});
}

TEST_CASE("config: load_config reads paths relative to the file", "[config]") {
  temp_dir d;
  d.file("ca.crt");
  const fs::path file = d.file("v.toml", cfg("", "", "ca_file = \"ca.crt\""));
  const auto r = vaultwire::load_config(file, {}, no_env);
  REQUIRE(r.ok());
  CHECK(r.value->routes.at("main").ca_file == d.path / "ca.crt");
}

TEST_CASE("config: [throttle], per-role caps and max_session_lifetime", "[config]") {
  // Defaults: throttling on (1s doubling to 60s); no per-role cap; no lifetime.
  const auto d = ok(cfg());
  CHECK(d.throttle.base_delay == std::chrono::milliseconds{1s});
  CHECK(d.throttle.max_delay == 60s);
  CHECK(d.limits.max_connections_per_role.empty());
  CHECK_FALSE(d.limits.max_session_lifetime.has_value());

  std::string two_roles = cfg();
  two_roles.replace(two_roles.find("roles = [\"app\"]"), 15, "roles = [\"app\", \"report\"]");
  const auto c = ok(two_roles + std::string(
                        "[limits]\nmax_session_lifetime = \"1h\"\nmax_connections_per_role = { app = 5, report = 1 }\n"
                        "[throttle]\nbase_delay = \"250ms\"\nmax_delay = \"30s\""));
  CHECK(c.throttle.base_delay == 250ms);
  CHECK(c.throttle.max_delay == 30s);
  CHECK(c.limits.max_session_lifetime == std::chrono::milliseconds{1h});
  CHECK(c.limits.max_connections_per_role == std::map<std::string, std::uint32_t>{{"app", 5}, {"report", 1}});
  // The table form works too.
  CHECK(ok(cfg("", "", "", "[limits.max_connections_per_role]\napp = 2")).limits.max_connections_per_role.at("app") ==
        2);

  CHECK_FALSE(ok(cfg("", "", "", "[throttle]\nbase_delay = \"off\"")).throttle.base_delay.has_value());
  CHECK_FALSE(ok(cfg("", "", "", "[limits]\nmax_session_lifetime = \"off\"")).limits.max_session_lifetime.has_value());

  CHECK(errors_of(cfg("", "", "", "[throttle]\nbase_delay = \"2m\"")) ==
        strings{"throttle.base_delay: 120s is more than max_delay (60s)"});
  CHECK(errors_of(cfg("", "", "", "[throttle]\nmax_delay = \"off\"")) ==
        strings{"throttle.max_delay: invalid duration \"off\" (write e.g. \"250ms\", \"10s\", \"5m\", \"1h30m\"; "
                "at most a year)"});
  CHECK(errors_of(cfg("", "", "", "[throttle]\nbase_dealy = \"1s\"")) ==
        strings{"throttle.base_dealy: unknown key (did you mean \"base_delay\"?)"});
  CHECK(errors_of(cfg("", "", "", "[limits]\nmax_connections_per_role = { apq = 3 }")) ==
        strings{"limits.max_connections_per_role.apq: no [route.NAME] allows the role \"apq\" (roles: app)"});
  CHECK(errors_of(cfg("", "", "", "[limits]\nmax_connections_per_role = { app = 0 }")) ==
        strings{"limits.max_connections_per_role.app: 0 is out of range (1-1000000)"});
  CHECK(errors_of(cfg("", "", "", "[limits]\nmax_connections_per_role = { app = \"5\" }")) ==
        strings{"limits.max_connections_per_role.app: expected an integer, got a string"});
  CHECK(errors_of(cfg("", "", "", "[limits]\nmax_connections_per_role = 5")) ==
        strings{"limits.max_connections_per_role: expected a table ([limits.max_connections_per_role]), got an "
                "integer"});
}

TEST_CASE("config: [vault.auth] login methods, their files and mounts", "[config][vault-auth]") {
  using vaultwire::vault_auth_method;
  temp_dir d;
  d.file("role-id");
  d.file("secret-id");
  d.file("jwt");
  const auto auth = [](std::string_view body) { return cfg("\n[vault.auth]\n" + std::string{body}); };

  // Without [vault.auth] vaultwire has no token of its own, or token_file's.
  CHECK(ok(cfg()).vault.auth.method == vault_auth_method::none);
  CHECK_FALSE(ok(cfg()).vault.auth.logs_in());
  const auto legacy = ok(cfg("token_file = \"secret-id\""), {}, no_env, d.path);
  CHECK(legacy.vault.auth.method == vault_auth_method::token_file);
  CHECK(legacy.vault.token_file == d.path / "secret-id");

  const auto a = ok(auth("method = \"approle\"\nrole_id_file = \"role-id\"\nsecret_id_file = \"secret-id\""), {},
                    no_env, d.path);
  CHECK(a.vault.auth.method == vault_auth_method::approle);
  CHECK(a.vault.auth.logs_in());
  CHECK(a.vault.auth.mount == "approle");
  CHECK(a.vault.auth.role_id_file == d.path / "role-id");
  CHECK(a.vault.auth.secret_id_file == d.path / "secret-id");
  CHECK_FALSE(a.vault.token_file);
  // The secret ID is optional (a role with bind_secret_id = false); the mount is the
  // operator's, slashes trimmed.
  const auto a2 = ok(auth("method = \"approle\"\nmount = \"/approle-prod/\"\nrole_id_file = \"role-id\""), {}, no_env,
                     d.path);
  CHECK(a2.vault.auth.mount == "approle-prod");
  CHECK_FALSE(a2.vault.auth.secret_id_file);

  const auto k = ok(auth("method = \"kubernetes\"\nrole = \"vaultwire\"\njwt_file = \"jwt\""), {}, no_env, d.path);
  CHECK(k.vault.auth.mount == "kubernetes");
  CHECK(k.vault.auth.role == "vaultwire");
  CHECK(k.vault.auth.jwt_file == d.path / "jwt");
  const auto j = ok(auth("method = \"jwt\"\nmount = \"jwt/ci\"\njwt_file = \"jwt\""), {}, no_env, d.path);
  CHECK(j.vault.auth.mount == "jwt/ci");
  CHECK_FALSE(j.vault.auth.role);  // the mount's default_role

  const fs::path cert = d.file("client.pem");
  const fs::path key = d.file("client.key");
  const std::string https = "[vault]\naddress = \"https://vault.example:8200\"\nclient_cert = \"" + cert.string() +
                            "\"\nclient_key = \"" + key.string() + "\"\n";
  const std::string rest = "\n[[listener]]\nroute = \"main\"\n[route.main]\nhost = \"db\"\nroles = [\"app\"]\n";
  const auto c = ok(https + "[vault.auth]\nmethod = \"cert\"\nname = \"web\"\n" + rest);
  CHECK(c.vault.auth.method == vault_auth_method::cert);
  CHECK(c.vault.auth.mount == "cert");
  CHECK(c.vault.auth.name == "web");
  // The certificate may come from VAULT_CLIENT_CERT and VAULT_CLIENT_KEY.
  CHECK(ok("[vault]\naddress = \"https://vault.example:8200\"\n[vault.auth]\nmethod = \"cert\"\n" + rest, {},
           env_of({{"VAULT_CLIENT_CERT", cert.string()}, {"VAULT_CLIENT_KEY", key.string()}}))
            .vault.client_cert == cert);

  // [vault.auth] method token_file is [vault] token_file written the other way.
  CHECK(ok(auth("method = \"token_file\"\ntoken_file = \"secret-id\""), {}, no_env, d.path).vault.token_file ==
        d.path / "secret-id");
  CHECK(ok(cfg("token_file = \"secret-id\"\n[vault.auth]\nmethod = \"token_file\""), {}, no_env, d.path)
            .vault.token_file == d.path / "secret-id");
  CHECK(ok(cfg("token_file = \"secret-id\"\n[vault.auth]\nmethod = \"token_file\"\ntoken_file = \"secret-id\""), {},
           no_env, d.path)
            .vault.auth.method == vault_auth_method::token_file);
}

TEST_CASE("config: [vault.auth] mistakes name the key", "[config][vault-auth]") {
  temp_dir d;
  d.file("role-id");
  d.file("jwt");
  const auto auth = [](std::string_view body) { return cfg("\n[vault.auth]\n" + std::string{body}); };
  const auto errors = [&d](const std::string& text) { return errors_of(text, {}, no_env, d.path); };

  CHECK(errors(auth("mount = \"approle\"")) ==
        strings{"vault.auth.method: required (one of token_file, approle, kubernetes, jwt, cert)"});
  CHECK(errors(auth("method = \"github\"")) ==
        strings{"vault.auth.method: \"github\" is not one of token_file, approle, kubernetes, jwt, cert"});
  CHECK(errors(auth("method = 3")) == strings{"vault.auth.method: expected a string, got an integer"});
  CHECK(errors(cfg("auth = \"approle\"")) == strings{"vault.auth: expected a table ([vault.auth]), got a string"});
  CHECK(errors(auth("method = \"approle\"")) ==
        strings{"vault.auth.role_id_file: required with method \"approle\" (the file holding the role ID)"});
  CHECK(errors(auth("method = \"approle\"\nrole_id_file = \"nope\"")) ==
        strings{"vault.auth.role_id_file: cannot read \"" + (d.path / "nope").string() +
                "\": No such file or directory"});
  CHECK(errors(auth("method = \"approle\"\nrole_id_file = \"role-id\"\nsecret_id_fil = \"x\"")) ==
        strings{"vault.auth.secret_id_fil: unknown key (did you mean \"secret_id_file\"?)"});
  CHECK(errors(auth("method = \"approle\"\nrole_id_file = \"role-id\"\nrole = \"x\"\njwt_file = \"jwt\"")) ==
        strings{"vault.auth.role: not used by method \"approle\" (only by kubernetes, jwt)",
                "vault.auth.jwt_file: not used by method \"approle\" (only by kubernetes, jwt)"});
  CHECK(errors(auth("method = \"approle\"\nmount = \"/\"\nrole_id_file = \"role-id\"")) ==
        strings{"vault.auth.mount: must name the auth method's mount (default \"approle\")"});
  CHECK(errors(auth("method = \"kubernetes\"\njwt_file = \"jwt\"")) ==
        strings{"vault.auth.role: required with method \"kubernetes\" (the Vault role to log in as)"});
  CHECK(errors(auth("method = \"kubernetes\"\nrole = \"\"\njwt_file = \"jwt\"")) ==
        strings{"vault.auth.role: must not be empty"});
  // The service account's token is read where Kubernetes mounts it unless jwt_file says otherwise.
  if (!fs::exists(vaultwire::kubernetes_service_account_token)) {
    CHECK(errors(auth("method = \"kubernetes\"\nrole = \"vaultwire\"")) ==
          strings{"vault.auth.jwt_file (default): cannot read \"" +
                  std::string{vaultwire::kubernetes_service_account_token} + "\": No such file or directory"});
  }
  CHECK(errors(auth("method = \"jwt\"\nrole = \"ci\"")) ==
        strings{"vault.auth.jwt_file: required with method \"jwt\" (the file holding the JWT)"});
  CHECK(errors(auth("method = \"cert\"")) ==
        strings{"vault.client_cert: required with vault.auth.method \"cert\" (with vault.client_key, or "
                "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY): the login presents that certificate",
                "vault.auth.method: \"cert\" logs in with the TLS client certificate, which needs an https:// "
                "vault.address (not \"http://127.0.0.1:8200\")"});
  CHECK(errors(auth("method = \"cert\"\nrole_id_file = \"role-id\"")).front() ==
        "vault.auth.role_id_file: not used by method \"cert\" (only by approle)");

  // One token of vaultwire's own: token_file and a login method exclude each other.
  CHECK(errors(cfg("token_file = \"role-id\"\n[vault.auth]\nmethod = \"approle\"\nrole_id_file = \"role-id\"")) ==
        strings{"vault.token_file: set while vault.auth.method is \"approle\": vaultwire has one token of its own; "
                "remove vault.token_file, or set vault.auth.method = \"token_file\""});
  CHECK(errors(auth("method = \"token_file\"")) ==
        strings{"vault.auth.token_file: required with method \"token_file\" (the file holding vaultwire's token)"});
  CHECK(errors(auth("method = \"token_file\"\ntoken_file = \"role-id\"\nmount = \"x\"")) ==
        strings{"vault.auth.mount: not used by method \"token_file\" (only by approle, kubernetes, jwt, cert)"});
  CHECK(errors(cfg("token_file = \"role-id\"\n[vault.auth]\nmethod = \"token_file\"\ntoken_file = \"jwt\"")) ==
        strings{"vault.auth.token_file: \"" + (d.path / "jwt").string() + "\" differs from vault.token_file (\"" +
                (d.path / "role-id").string() + "\"); set one of the two"});
}

TEST_CASE("config: each [vault.auth] example of conf/vaultwire.toml loads as a table of its own",
          "[config][vault-auth]") {
  // The example's "#   key = value" lines after "# [vault.auth]", one block per method:
  // each, uncommented under [vault.auth], may fail only on its example paths.
  std::ifstream in{fs::path{VAULTWIRE_SOURCE_DIR} / "conf" / "vaultwire.toml"};
  REQUIRE(in);
  std::vector<std::string> blocks;
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "# [vault.auth]") {
      inside = true;
    } else if (inside && line.rfind("#   ", 0) == 0) {
      if (line.rfind("#   method = ", 0) == 0) blocks.emplace_back();
      REQUIRE_FALSE(blocks.empty());
      blocks.back() += line.substr(4) + "\n";
    } else if (inside && line != "#") {
      break;
    }
  }
  REQUIRE(blocks.size() == 5);
  temp_dir d;
  const std::string https_with_cert = "[vault]\naddress = \"https://vault.example:8200\"\nclient_cert = \"" +
                                      d.file("c.pem").string() + "\"\nclient_key = \"" +
                                      d.file("c.key").string() + "\"\n";
  const std::string rest = "\n[[listener]]\nroute = \"main\"\n[route.main]\nhost = \"db\"\nroles = [\"app\"]\n";
  for (const auto& block : blocks) {
    INFO(block);
    const auto r = parse(https_with_cert + "[vault.auth]\n" + block + rest);
    for (const auto& e : r.errors) {
      INFO(e);
      CHECK((e.find(": cannot read \"/etc/vaultwire/") != std::string::npos ||
             e.find(": cannot read \"/run/secrets/") != std::string::npos ||
             e.find(": cannot read \"/var/run/secrets/") != std::string::npos));
    }
  }
}

TEST_CASE("config: client_auth = \"peer\" and [[listener.peer]] rules", "[config][peer]") {
  using vaultwire::client_auth_mode;
  temp_dir d;
  d.file("token");
  const std::string own = "token_file = \"token\"";
  const auto peer = [&](std::string_view listener, std::string_view vault = "token_file = \"token\"") {
    return cfg(vault, "unix_socket = \".\"\nclient_auth = \"peer\"\n" + std::string{listener});
  };
  const auto errors = [&](const std::string& text) { return errors_of(text, {}, no_env, d.path); };

  CHECK(ok(cfg()).listeners[0].client_auth == client_auth_mode::vault_token);
  CHECK(ok(cfg("", "client_auth = \"vault_token\"")).listeners[0].client_auth == client_auth_mode::vault_token);
  const auto c = ok(peer("[[listener.peer]]\nuid = 1000\nroles = [\"app\"]\n"
                         "[[listener.peer]]\nuser = \"root\"\nroles = [\"app\", \"app\"]\n"
                         "[[listener.peer]]\ngroup = \"root\"\nroles = [\"app\"]\n"
                         "[[listener.peer]]\ngid = 7\nroles = [\"app\"]\n"),
                    {}, no_env, d.path);
  const auto& l = c.listeners[0];
  CHECK(l.client_auth == client_auth_mode::peer);
  REQUIRE(l.peer.size() == 4);
  CHECK(l.peer[0].uid == 1000u);
  CHECK_FALSE(l.peer[0].gid);
  CHECK(l.peer[1].uid == 0u);  // root
  CHECK(l.peer[1].roles == strings{"app"});
  CHECK(l.peer[2].gid == 0u);
  CHECK_FALSE(l.peer[2].uid);
  CHECK(l.peer[3].gid == 7u);
  // A [vault.auth] login gives vaultwire a token of its own too.
  d.file("role-id");
  CHECK(ok(peer("[[listener.peer]]\nuid = 1\nroles = [\"app\"]\n",
                "\n[vault.auth]\nmethod = \"approle\"\nrole_id_file = \"role-id\""),
           {}, no_env, d.path)
            .listeners[0]
            .client_auth == client_auth_mode::peer);

  CHECK(errors(cfg("", "client_auth = \"trust\"")) ==
        strings{"listener[0].client_auth: \"trust\" is not one of vault_token, peer, password"});
  CHECK(errors(cfg(own, "client_auth = \"peer\"\n[[listener.peer]]\nuid = 1\nroles = [\"app\"]\n")) ==
        strings{"listener[0].client_auth: \"peer\" needs unix_socket: peer credentials exist only on a unix socket"});
  CHECK(errors(peer("[[listener.peer]]\nuid = 1\nroles = [\"app\"]\n", "")) ==
        strings{"listener[0].client_auth: \"peer\" needs a Vault token of vaultwire's own to read credentials with: "
                "set a [vault.auth] login method or [vault] token_file"});
  CHECK(errors(peer("")) ==
        strings{"listener[0].peer: client_auth = \"peer\" needs at least one [[listener.peer]] rule"});
  CHECK(errors(peer("[[listener.peer]]\nroles = [\"app\"]\n")) ==
        strings{"listener[0].peer[0]: set one of uid, user, gid or group (the local identity this rule admits)"});
  CHECK(errors(peer("[[listener.peer]]\nuid = 1\ngroup = \"root\"\nroles = [\"app\"]\n")) ==
        strings{"listener[0].peer[0]: set only one of uid, user, gid or group"});
  CHECK(errors(peer("[[listener.peer]]\nuser = \"no-such-user-vw\"\nroles = [\"app\"]\n")) ==
        strings{"listener[0].peer[0].user: no local user named \"no-such-user-vw\""});
  CHECK(errors(peer("[[listener.peer]]\ngroup = \"no-such-group-vw\"\nroles = [\"app\"]\n")) ==
        strings{"listener[0].peer[0].group: no local group named \"no-such-group-vw\""});
  CHECK(errors(peer("[[listener.peer]]\nuid = 1\nroles = []\n")) ==
        strings{"listener[0].peer[0].roles: must list at least one role"});
  CHECK(errors(peer("[[listener.peer]]\nuid = 1\n")) ==
        strings{"listener[0].peer[0].roles: required (the roles this local identity may ask for)"});
  CHECK(errors(peer("[[listener.peer]]\nuid = 1\nroles = [\"app\"]\n[[listener.peer]]\ngid = 1\nroles = [\"other\"]\n")) ==
        strings{"listener[0].peer[1].roles: \"other\" is not one of route.main.roles (app)"});
  CHECK(errors(peer("[[listener.peer]]\nuid = -1\nroles = [\"app\"]\n")) ==
        strings{"listener[0].peer[0].uid: -1 is out of range (0-4294967294)"});
  CHECK(errors(peer("[[listener.peer]]\nuid = 1\nroles = [\"app\"]\nuidd = 2\n")) ==
        strings{"listener[0].peer[0].uidd: unknown key (did you mean \"uid\"?)"});
  CHECK(errors(cfg(own, "[[listener.peer]]\nuid = 1\nroles = [\"app\"]\n")) ==
        strings{"listener[0].peer: [[listener.peer]] rules apply only with client_auth = \"peer\""});
}

TEST_CASE("config: client_auth = \"password\" and its users file", "[config][users_file]") {
  using vaultwire::client_auth_mode;
  temp_dir d;
  d.file("token");
  // The RFC 7677 verifier (password "pencil").
  const std::string verifier =
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
      ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
  const auto users = [&](const std::string& name, const std::string& text, fs::perms mode = fs::perms::owner_read) {
    const fs::path p = d.file(name, text);
    fs::permissions(p, mode);
    return p;
  };
  users("users", "app-user " + verifier + " app\n# a comment\n");
  const std::string own = "token_file = \"token\"";
  const auto password = [&](std::string_view file, std::string_view more = "") {
    return cfg(own, "client_auth = \"password\"\nusers_file = \"" + std::string{file} + "\"\n" + std::string{more});
  };
  const auto errors = [&](const std::string& text) { return errors_of(text, {}, no_env, d.path); };

  const auto c = ok(password("users"), {}, no_env, d.path);
  CHECK(c.listeners[0].client_auth == client_auth_mode::password);
  CHECK(c.listeners[0].users_file == d.path / "users");
  // On a TLS listener the address may be any; so may it be on loopback without TLS.
  d.file("listener.crt");
  d.file("listener.key");
  CHECK(ok(cfg(own, "bind = \"0.0.0.0:26257\"\ntls_cert = \"listener.crt\"\ntls_key = \"listener.key\"\n"
                    "client_auth = \"password\"\nusers_file = \"users\"\n"),
           {}, no_env, d.path)
            .listeners[0]
            .client_auth == client_auth_mode::password);

  CHECK(errors(cfg(own, "client_auth = \"password\"\n")) ==
        strings{"listener[0].users_file: required with client_auth = \"password\" (the local users and their roles)"});
  CHECK(errors(cfg(own, "users_file = \"users\"\n")) ==
        strings{"listener[0].users_file: applies only with client_auth = \"password\""});
  CHECK(errors(cfg("", "client_auth = \"password\"\nusers_file = \"users\"\n")) ==
        strings{"listener[0].client_auth: \"password\" needs a Vault token of vaultwire's own to read credentials "
                "with: set a [vault.auth] login method or [vault] token_file"});
  // Plaintext on a network address: a SCRAM exchange there could be watched.
  CHECK(errors(cfg(own, "bind = \"0.0.0.0:26257\"\nallow_plaintext_remote = true\nclient_auth = \"password\"\n"
                        "users_file = \"users\"\n")) ==
        strings{"listener[0].bind: client_auth = \"password\" on 0.0.0.0:26257 without TLS: a password exchange on "
                "the network could be watched and guessed offline; bind to loopback or set tls_cert and tls_key"});
  // The file holds verifiers: group or others may not read it.
  users("open", "app-user " + verifier + " app\n", fs::perms::owner_read | fs::perms::group_read);
  const std::string open_path = (d.path / "open").string();
  CHECK(errors(password("open")) ==
        strings{"listener[0].users_file: " + open_path + ": mode 0440 gives group or others access; it holds "
                "password verifiers: chmod 600 " + open_path});
  // Every problem of the file, by line number, never quoting the line.
  users("bad", "app-user " + verifier + " app\nbroken-line\n");
  const auto bad = errors(password("bad"));
  REQUIRE(bad.size() == 1);
  CHECK(bad[0].starts_with("listener[0].users_file: " + (d.path / "bad").string() + ":2: "));
  CHECK(bad[0].find("broken-line") == std::string::npos);
  // A user's role must be one the route allows.
  users("other-role", "app-user " + verifier + " app\nops " + verifier + " ops\n");
  CHECK(errors(password("other-role")) ==
        strings{"listener[0].users_file: " + (d.path / "other-role").string() +
                ":2: user \"ops\"'s role \"ops\" is not one of route.main.roles (app)"});
  CHECK(errors(password("missing")) ==
        strings{"listener[0].users_file: " + (d.path / "missing").string() + ": cannot open: No such file or directory"});
}

TEST_CASE("config: [fleet] and its peers", "[config][fleet]") {
  temp_dir d;
  d.file("ca.pem");
  d.file("fleet.crt");
  d.file("fleet.key");
  const auto errors = [&](const std::string& text) { return errors_of(text, {}, no_env, d.path); };
  const std::string tls = "ca_file = \"ca.pem\"\ncert_file = \"fleet.crt\"\nkey_file = \"fleet.key\"\n";

  CHECK_FALSE(ok(cfg()).fleet.enabled);
  const auto c = ok(cfg("", "", "",
                        "[fleet]\ninstance_id = 3\nbind = \"127.0.0.1:26258\"\n"
                        "[[fleet.peer]]\nid = 4\naddress = \"127.0.0.1:26259\"\n"
                        "[[fleet.peer]]\nid = 0\naddress = \"[::1]:26260\"\n"));
  CHECK(c.fleet.enabled);
  CHECK(c.fleet.instance_id == 3u);
  CHECK(c.fleet.bind == "127.0.0.1:26258");
  CHECK_FALSE(c.fleet.tls());
  REQUIRE(c.fleet.peers.size() == 2);
  CHECK(c.fleet.peers[0].id == 4u);
  CHECK(c.fleet.peers[0].host == "127.0.0.1");
  CHECK(c.fleet.peers[0].port == 26259);
  CHECK(c.fleet.peers[1].address == "[::1]:26260");
  // Across hosts with mutual TLS.
  const auto t = ok(cfg("", "", "",
                        "[fleet]\ninstance_id = 1\nbind = \"0.0.0.0:26258\"\n" + tls +
                            "[[fleet.peer]]\nid = 2\naddress = \"10.0.0.2:26258\"\n"),
                    {}, no_env, d.path);
  CHECK(t.fleet.tls());
  CHECK(t.fleet.ca_file == d.path / "ca.pem");

  CHECK(errors(cfg("", "", "", "[fleet]\nbind = \"127.0.0.1:1\"\n")) ==
        strings{"fleet.instance_id: required (0-15, different on every instance of the fleet)"});
  CHECK(errors(cfg("", "", "", "[fleet]\ninstance_id = 16\nbind = \"127.0.0.1:1\"\n")) ==
        strings{"fleet.instance_id: 16 is out of range (0-15)"});
  CHECK(errors(cfg("", "", "", "[fleet]\ninstance_id = 1\n")) ==
        strings{"fleet.bind: required (where this instance accepts cancels forwarded by its peers)"});
  CHECK(errors(cfg("", "", "",
                   "[fleet]\ninstance_id = 1\nbind = \"127.0.0.1:1\"\n[[fleet.peer]]\nid = 1\n"
                   "address = \"127.0.0.1:2\"\n")) ==
        strings{"fleet.peer[0].id: 1 is this instance's own id (fleet.instance_id)"});
  CHECK(errors(cfg("", "", "",
                   "[fleet]\ninstance_id = 1\nbind = \"127.0.0.1:1\"\n[[fleet.peer]]\nid = 2\n"
                   "address = \"127.0.0.1:2\"\n[[fleet.peer]]\nid = 2\naddress = \"127.0.0.1:3\"\n")) ==
        strings{"fleet.peer[1].id: 2 is the id of another [[fleet.peer]]"});
  CHECK(errors(cfg("", "", "", "[fleet]\ninstance_id = 1\nbind = \"127.0.0.1:1\"\n[[fleet.peer]]\nid = 2\n")) ==
        strings{"fleet.peer[0].address: required (the peer's fleet.bind)"});
  CHECK(errors(cfg("", "", "",
                   "[fleet]\ninstance_id = 1\nbind = \"127.0.0.1:1\"\n[[fleet.peer]]\naddress = \"127.0.0.1:2\"\n")) ==
        strings{"fleet.peer[0].id: required (the peer's instance_id, 0-15)"});
  // Plaintext leaves loopback nowhere.
  CHECK(errors(cfg("", "", "",
                   "[fleet]\ninstance_id = 1\nbind = \"0.0.0.0:1\"\n[[fleet.peer]]\nid = 2\n"
                   "address = \"10.0.0.2:1\"\n")) ==
        strings{"fleet.bind: 0.0.0.0:1 without ca_file, cert_file and key_file: forwarded cancels would cross the "
                "network in clear and anyone could send them; set the three (mutual TLS) or use loopback",
                "fleet.peer[0].address: 10.0.0.2:1 without ca_file, cert_file and key_file: forwarded cancels would "
                "cross the network in clear and anyone could send them; set the three (mutual TLS) or use loopback"});
  CHECK(errors(cfg("", "", "", "[fleet]\ninstance_id = 1\nbind = \"127.0.0.1:1\"\nca_file = \"ca.pem\"\n")) ==
        strings{"fleet: set all of ca_file, cert_file and key_file, or none"});
}
