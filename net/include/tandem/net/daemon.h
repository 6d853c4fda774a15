// The sync daemon: `tandem serve` (live or interval mode) and `tandem sync` (one-shot).
//
// One thread runs everything (Boost.Asio, C++20 coroutines): a listener, one
// connection per peer (handshake, encrypted frames, an engine::Session), a watcher
// that wakes live sessions when the replica's data file changes (a commit by this
// process or any other), optional LAN discovery, and a status file for `tandem status`.
// Every read has a deadline; each connection has its own bounded send window, so a slow
// peer never holds up the others. See docs/protocol.md.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tandem/engine/sync.h"
#include "tandem/net/identity.h"

namespace tandem::net {

inline constexpr char kStatusFile[] = "daemon.json";
inline constexpr uint16_t kDiscoveryPort = 47474;
inline constexpr char kDiscoveryGroup[] = "239.255.74.74";

struct DaemonOptions {
  std::string dir;                      // the replica directory (group key, invites, status)
  std::string listen;                   // HOST:PORT; empty: no listener
  std::vector<std::string> peers;       // HOST:PORT to connect to
  bool peers_are_alternatives = false;  // peers are addresses of one device (invite hints)
  int interval_s = 0;                   // 0: live; N: sync every N seconds and disconnect
  bool once = false;                    // sync each peer once, then return
  bool discover = false;                // find peers of the group on the LAN
  engine::CollectionFilter send, receive;
  int idle_timeout_s = 45;                      // no frame for this long ends a connection
  int keepalive_s = 15;                         // an empty frame after this long without sending
  std::function<void(const std::string&)> log;  // one line per event; default stderr
};

// Runs until SIGINT/SIGTERM, or in `once` mode until every peer has been synced (or
// failed). Returns 0 on success; in `once` mode, 1 if any peer failed.
int RunDaemon(engine::Replica& replica, const Identity& self, const DaemonOptions& options);

// "host:port" → host, port; "[v6]:port" too. Fails on anything else.
Status ParseHostPort(const std::string& s, std::string* host, uint16_t* port);

}  // namespace tandem::net
