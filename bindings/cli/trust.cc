// The CLI's pairing and trust-set commands: invite, join, devices, permissions, revoke,
// role, permit.
#include "cli.h"

namespace tandem::cli {

using tandem::bindings::Canonical;
using tandem::bindings::Printable;

void RunInvite(const std::string& dir, device::InviteOptions io) {
  auto d = OpenDevice(dir);
  if (io.addresses.empty()) {
    auto ds = DaemonStatus(dir);
    std::string l;
    if (ds && (*ds)["running"] == true)
      if (auto at = ds->find("listen"); at != ds->end() && at->is_string()) l = *at;
    // A wildcard listen address says nothing to another machine.
    if (l.rfind("0.0.0.0:", 0) == 0 || l.rfind("[::]:", 0) == 0) {
      std::fprintf(stderr, "the daemon listens on %s: give --address HOST:PORT for a hint\n",
                   l.c_str());
      l.clear();
    }
    if (!l.empty()) io.addresses.push_back(l);
  }
  std::string invite_code = Check(d->Invite(io));
  Print(invite_code);
  std::fprintf(stderr,
               "one-time invite for a new %s, valid %lld minutes%s.\n"
               "on the new device: tandem init DIR; tandem join DIR CODE; then sync with "
               "this device (%s)\n",
               net::RoleName(io.role), static_cast<long long>(io.expires_minutes),
               io.addresses.empty() ? " (no address hint: give --address HOST:PORT or "
                                      "run `tandem serve` first)"
                                    : "",
               d->device_id().c_str());
}

void RunJoin(const std::string& dir, const std::string& code, bool merge) {
  auto d = OpenDevice(dir);
  auto inv = Check(d->Join(code, merge));
  if (merge) {
    auto h = Check(d->OwnHoldings());
    std::fprintf(stderr,
                 "joining with --merge: at the first sync, records in %zu collection(s) go to "
                 "the group of %s, and its data comes here\n",
                 h.collections.size(), net::DeviceId(inv.inviter).c_str());
    if (!h.devices.empty())
      std::fprintf(stderr,
                   "the %zu other device(s) this replica trusts do not become members of that "
                   "group, and cannot sync with this one once it joins: give each an invite "
                   "of its own (tandem invite, then tandem join on it)\n",
                   h.devices.size());
  }
  if (const uint64_t now = storage::SystemClockMs(); inv.expires_ms < now) {
    const uint64_t minutes = (now - inv.expires_ms) / 60000;
    std::fprintf(stderr,
                 "note: by this device's clock the invite expired %s ago; the inviter judges "
                 "by its own clock, so the first sync will tell\n",
                 minutes ? (std::to_string(minutes) + " minute" + (minutes == 1 ? "" : "s")).c_str()
                         : "less than a minute");
  }
  std::string hints;
  for (const auto& a : inv.addresses) hints += " --peer " + Printable(a);
  std::fprintf(stderr,
               "stored the invite from %s; the first sync with it joins its group: "
               "tandem sync %s%s\n",
               net::DeviceId(inv.inviter).c_str(), dir.c_str(),
               hints.empty() ? " --peer HOST:PORT" : hints.c_str());
}

std::map<std::string, std::string> DeviceOfReplica(Device& d) {
  std::map<std::string, std::string> out;
  for (const auto& m : Check(d.Devices()))
    for (const auto& r : m.replicas) out[r.Hex()] = m.device;
  return out;
}

void PrintDevices(Device& d, bool as_json) {
  // Each member's last report of what it holds (collection waits for it).
  std::map<std::string, net::MemberHolding> held;
  auto holding =
      net::HeldByMembers(d.replica(), d.layout().group(), d.device_id(), storage::SystemClockMs());
  if (holding.ok())
    for (auto& h : holding->members) {
      h.heard_ms = 0;  // a read notes nothing: "heard now" would change at every call
      held[h.device] = std::move(h);
    }
  for (const auto& m : Check(d.Devices())) {
    bool me = m.device == d.device_id();
    auto h = held.find(m.device);
    if (as_json) {
      Json j = tandem::bindings::MemberToJson(m, me);
      j["last_report_ms"] = h == held.end() ? 0 : h->second.reported_ms;
      Print(Canonical(j));
      continue;
    }
    std::string standing = m.revoked ? "revoked" : net::RoleName(m.role);
    standing.resize(8, ' ');
    std::string line = m.device + "  " + standing;
    if (m.founder) line += "  founder";
    if (m.revoked) {
      if (!m.revoked_by.empty()) line += "  revoked by " + Printable(m.revoked_by);
    } else if (!m.added_by.empty()) {
      line += "  granted by " + Printable(m.added_by);
    }
    if (me) line += "  (this device)";
    if (!me && h != held.end()) line += "  " + ReportLine(h->second);
    Print(line);
  }
  auto a = Check(d.Authority());
  if (a.legacy)
    std::fprintf(stderr,
                 "this group's trust set is not signed yet: its founder %s signs it when it "
                 "next runs serve, sync, invite, role or revoke\n",
                 net::DeviceId(a.root).c_str());
  if (a.bindings_required)
    std::fprintf(stderr,
                 "bound replicas required: changes written under a replica no binding names "
                 "are held until its binding arrives\n");
  for (const auto& r : a.refused)
    std::fprintf(stderr, "refused statement by %s: %s: %s\n",
                 r.signer.empty() ? "?" : r.signer.c_str(), r.what.c_str(), r.why.c_str());
}

void PrintPermissions(Device& d, bool as_json) {
  auto a = Check(d.Authority());
  if (a.permits.empty() && !as_json)
    Print("no permits: members and above read and write every collection, readers read");
  for (const auto& p : a.permits) {
    if (as_json) {
      Print(Canonical(Json{{"collection", p.collection},
                           {"device", p.device},
                           {"role", p.device.empty() ? net::RoleName(p.role) : ""},
                           {"level", net::LevelName(p.level)},
                           {"granted_by", p.granted_by}}));
      continue;
    }
    const std::string to = p.device.empty() ? std::string(net::RoleName(p.role)) + "s" : p.device;
    Print(Printable(p.collection) + "  " + to + "  " + net::LevelName(p.level) + "  granted by " +
          p.granted_by);
  }
}

void ChangeTrust(const std::string& dir, TrustChange change, const std::string& typed,
                 const std::string& collection, const std::string& what) {
  // A device id as typed (dashes anywhere or none) is named as `devices` lists it.
  const auto id = net::CanonicalDeviceId(typed);
  if (change != TrustChange::kPermit && !id)
    throw Exit{2, "not a device id (check for typos): " + typed};
  const std::string& who = id && !net::ParseRole(typed) ? *id : typed;
  auto d = OpenDevice(dir);
  switch (change) {
    case TrustChange::kRevoke:
      Check(d->Revoke(who));
      std::fprintf(stderr,
                   "revoked %s, and gave the others a new group key; members refuse it once "
                   "this has synced to them\n",
                   who.c_str());
      return;
    case TrustChange::kRole:
      Check(d->SetRole(who, *net::ParseRole(what)));
      std::fprintf(stderr, "%s is now %s, once this has synced to the other members\n", who.c_str(),
                   what.c_str());
      return;
    case TrustChange::kPermit:
      Check(d->SetPermit(collection, who, *net::ParseLevel(what)));
      std::fprintf(stderr, "%s may now %s %s, once this has synced to the other members\n",
                   who.c_str(),
                   what == "none"   ? "neither read nor write"
                   : what == "read" ? "read, not write"
                                    : "read and write",
                   collection == "*" ? "every collection no permit names" : collection.c_str());
      return;
  }
}

}  // namespace tandem::cli
