// [fleet] and its [[fleet.peer]] tables: several vaultwire instances behind one load
// balancer, forwarding CancelRequests to the instance that holds the session.
#include <set>

#include "config/reader.hpp"

namespace vaultwire::config_reader {

namespace {

// The instance id lives in 4 bits of each cancel secret.
constexpr std::int64_t max_instance_id = 15;
constexpr std::uint32_t no_id = 0xffffffff;  // a peer whose id is missing or invalid (already reported)

std::string normalised(const bind_address& a) {
  return a.ipv6 ? "[" + a.host + "]:" + std::to_string(a.port) : a.host + ":" + std::to_string(a.port);
}

fleet_peer read_fleet_peer(loader& l, const std::string& prefix, const toml::table* t) {
  fleet_peer p;
  p.id = no_id;
  section sec{l, t, prefix, {"id", "address"}};
  if (auto id = sec.get_integer("id", 0, max_instance_id))
    p.id = static_cast<std::uint32_t>(*id);
  else if (sec.get("id") == nullptr)
    l.error(sec.key("id"), "required (the peer's instance_id, 0-15)");
  if (auto a = sec.get_nonempty_string("address")) {
    if (auto addr = parse_bind(*a)) {
      p.host = addr->host;
      p.port = addr->port;
      p.address = normalised(*addr);
    } else {
      l.error(sec.key("address"), in_quotes(*a) + " is not an IP address and port (e.g. 10.0.0.2:26258): where "
                                  "the peer's fleet.bind accepts forwarded cancels");
    }
  } else if (sec.get("address") == nullptr) {
    l.error(sec.key("address"), "required (the peer's fleet.bind)");
  }
  sec.finish();
  return p;
}

void read_fleet_peers(loader& l, section& sec, fleet_config& f) {
  const toml::node* n = sec.get("peer");
  if (n == nullptr) return;
  const auto* arr = n->as_array();
  if (arr == nullptr || !arr->is_array_of_tables()) {
    sec.wrong_type("peer", "an array of tables ([[fleet.peer]])", *n);
    return;
  }
  std::set<std::uint32_t> ids;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const std::string prefix = sec.key("peer") + "[" + std::to_string(i) + "]";
    fleet_peer p = read_fleet_peer(l, prefix, arr->get(i)->as_table());
    if (p.id == no_id) {
      // reported by read_fleet_peer
    } else if (p.id == f.instance_id)
      l.error(prefix + ".id", std::to_string(p.id) + " is this instance's own id (fleet.instance_id)");
    else if (!ids.insert(p.id).second)
      l.error(prefix + ".id", std::to_string(p.id) + " is the id of another [[fleet.peer]]");
    f.peers.push_back(std::move(p));
  }
}

// Without the TLS files, forwarded cancels travel in clear: only on loopback, where
// no one else can see or send them.
void check_fleet_exposure(loader& l, const fleet_config& f, bool bind_loopback) {
  if (f.tls()) return;
  const std::string why = " without ca_file, cert_file and key_file: forwarded cancels would cross the network in "
                          "clear and anyone could send them; set the three (mutual TLS) or use loopback";
  if (!f.bind.empty() && !bind_loopback) l.error("fleet.bind", f.bind + why);
  for (std::size_t i = 0; i < f.peers.size(); ++i) {
    const auto addr = parse_bind(f.peers[i].address);
    if (addr && !addr->loopback) l.error("fleet.peer[" + std::to_string(i) + "].address", f.peers[i].address + why);
  }
}

}  // namespace

void read_fleet(loader& l, section& top, fleet_config& f) {
  const toml::table* t = top.get_table("fleet");
  if (t == nullptr) return;
  f.enabled = true;
  section sec{l, t, "fleet", {"instance_id", "bind", "ca_file", "cert_file", "key_file", "peer"}};
  if (auto id = sec.get_integer("instance_id", 0, max_instance_id))
    f.instance_id = static_cast<std::uint32_t>(*id);
  else if (sec.get("instance_id") == nullptr)
    l.error(sec.key("instance_id"), "required (0-15, different on every instance of the fleet)");
  bool bind_loopback = true;
  if (auto b = sec.get_nonempty_string("bind")) {
    if (auto addr = parse_bind(*b)) {
      f.host = addr->host;
      f.port = addr->port;
      f.ipv6 = addr->ipv6;
      f.bind = normalised(*addr);
      bind_loopback = addr->loopback;
    } else {
      l.error(sec.key("bind"), in_quotes(*b) + " is not an IP address and port (e.g. 10.0.0.1:26258)");
    }
  } else if (sec.get("bind") == nullptr) {
    l.error(sec.key("bind"), "required (where this instance accepts cancels forwarded by its peers)");
  }
  const int given = (sec.get("ca_file") != nullptr) + (sec.get("cert_file") != nullptr) +
                    (sec.get("key_file") != nullptr);
  if (given != 0 && given != 3) l.error("fleet", "set all of ca_file, cert_file and key_file, or none");
  if (auto c = sec.get_nonempty_string("ca_file")) f.ca_file = l.check_file(sec.key("ca_file"), *c);
  if (auto c = sec.get_nonempty_string("cert_file")) f.cert_file = l.check_file(sec.key("cert_file"), *c);
  if (auto k = sec.get_nonempty_string("key_file")) f.key_file = l.check_file(sec.key("key_file"), *k);
  if (given != 3) {
    f.ca_file.reset();
    f.cert_file.reset();
    f.key_file.reset();
  }
  read_fleet_peers(l, sec, f);
  check_fleet_exposure(l, f, bind_loopback);
  sec.finish();
}

}  // namespace vaultwire::config_reader
