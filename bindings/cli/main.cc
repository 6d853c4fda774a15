// The `tandem` command-line program: operators' and scripts' way into a replica.
//
// Exit status: 0 success, 1 runtime failure (not found, corrupt, I/O), 2 usage error
// (bad arguments or input). Errors are one line on stderr: "tandem: <message>".
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "tandem/bindings/json.h"
#include "tandem/net/identity.h"
#include "tandem/storage/replica.h"

namespace {

using tandem::Code;
using tandem::Status;
using tandem::bindings::Canonical;
using tandem::bindings::Json;
namespace engine = tandem::engine;
namespace storage = tandem::storage;

// A failure that ends the program with a message and an exit code.
struct Exit {
  int code;
  std::string message;
};

int ExitCodeFor(const Status& st) { return st.code() == Code::kInvalidArgument ? 2 : 1; }

// Usage and not-found messages read best alone; others carry their kind ("corrupt: ...").
std::string Message(const Status& st) {
  if (st.code() == Code::kInvalidArgument || st.code() == Code::kNotFound) return st.message();
  return st.ToString();
}

void Check(const Status& st) {
  if (!st.ok()) throw Exit{ExitCodeFor(st), Message(st)};
}
template <typename T>
T Check(tandem::Result<T> r) {
  if (!r.ok()) throw Exit{ExitCodeFor(r.status()), Message(r.status())};
  return std::move(r).value();
}

void Print(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
}

std::unique_ptr<engine::Replica> Open(const std::string& dir) {
  return Check(storage::OpenReplica(dir));
}

engine::Value ParseValue(const std::string& text) {
  auto v = tandem::bindings::ParseScalar(text);
  if (!v.ok()) throw Exit{2, v.status().message()};
  return std::move(v).value();
}

int Main(int argc, char** argv) {
  CLI::App app{"tandem: an offline-first sync engine; this program works with one replica."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  std::string dir, coll, id, field, value, dest, backup;
  std::vector<std::string> assignments;
  int64_t amount = 0;
  uint64_t since = 0;
  bool follow = false;

  auto* init = app.add_subcommand("init", "Create a replica in DIR and print its device id");
  init->add_option("DIR", dir, "Replica directory (created; must be empty)")->required();

  auto* put = app.add_subcommand("put",
                                 "Set register fields: FIELD=JSON (5, 2.5, \"Ann\", "
                                 "true, null, {\"$bytes\":\"<base64>\"})");
  put->add_option("DIR", dir)->required();
  put->add_option("COLL", coll, "Collection")->required();
  put->add_option("ID", id, "Record id")->required();
  put->add_option("FIELD=JSON", assignments, "One or more assignments")->required();

  auto* incr = app.add_subcommand("incr", "Add N (may be negative) to a counter field");
  incr->add_option("DIR", dir)->required();
  incr->add_option("COLL", coll)->required();
  incr->add_option("ID", id)->required();
  incr->add_option("FIELD", field)->required();
  incr->add_option("N", amount, "A 64-bit integer")->required();

  auto* add = app.add_subcommand("add", "Add a JSON scalar to an add-wins set field");
  auto* remove = app.add_subcommand("remove", "Remove a JSON scalar from a set field");
  for (auto* s : {add, remove}) {
    s->add_option("DIR", dir)->required();
    s->add_option("COLL", coll)->required();
    s->add_option("ID", id)->required();
    s->add_option("FIELD", field)->required();
    s->add_option("JSON", value, "The element")->required();
  }

  auto* del = app.add_subcommand("del", "Delete a record");
  auto* get = app.add_subcommand("get", "Print a record as one JSON object");
  auto* conflicts = app.add_subcommand(
      "conflicts", "Print the concurrent writes (siblings) of each conflicting field");
  for (auto* s : {del, get, conflicts}) {
    s->add_option("DIR", dir)->required();
    s->add_option("COLL", coll)->required();
    s->add_option("ID", id)->required();
  }

  auto* ls = app.add_subcommand("ls", "Print the records of a collection as JSON lines, by id");
  ls->add_option("DIR", dir)->required();
  ls->add_option("COLL", coll)->required();

  auto* dump = app.add_subcommand(
      "dump", "Print the whole replica as canonical JSON lines (converged replicas: equal bytes)");
  dump->add_option("DIR", dir)->required();

  auto* changes = app.add_subcommand(
      "changes", "Print the change feed: the current state of each changed record, with a cursor");
  changes->add_option("DIR", dir)->required();
  changes->add_option("--since", since, "Only changes after this cursor");
  changes->add_flag("--follow,-f", follow, "Keep running and print new changes as they commit");

  auto* bk = app.add_subcommand("backup", "Write a consistent, compacted copy of a replica");
  bk->add_option("DIR", dir)->required();
  bk->add_option("DEST", dest, "Backup directory (created; must be empty)")->required();

  auto* rs = app.add_subcommand("restore", "Make a replica from a backup, with a new replica id");
  rs->add_option("BACKUP", backup)->required();
  rs->add_option("DIR", dir, "New replica directory (created; must be empty)")->required();

  auto* check = app.add_subcommand("check", "Verify a replica's integrity");
  check->add_option("DIR", dir)->required();

  auto* info = app.add_subcommand("info", "Print a replica's ids and version vector as JSON");
  info->add_option("DIR", dir)->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    std::fprintf(stderr, "tandem: %s (see tandem --help)\n", what.c_str());
    return 2;
  }

  if (init->parsed()) {
    auto r = Check(storage::CreateReplica(dir));
    auto identity = tandem::net::GenerateIdentity();
    Check(tandem::net::SaveIdentity(identity, dir + "/" + storage::kIdentityFile));
    Print(tandem::net::DeviceId(identity.public_key));
    std::fprintf(stderr, "created replica %s in %s\n", Check(r->Meta()).id.Hex().c_str(),
                 dir.c_str());
  } else if (put->parsed()) {
    std::vector<std::pair<std::string, engine::Value>> fields;
    for (const auto& a : assignments) {
      size_t eq = a.find('=');
      if (eq == std::string::npos || eq == 0) throw Exit{2, "expected FIELD=JSON, got: " + a};
      fields.emplace_back(a.substr(0, eq), ParseValue(a.substr(eq + 1)));
    }
    Check(Open(dir)->Put(coll, id, fields));
  } else if (incr->parsed()) {
    Check(Open(dir)->Incr(coll, id, field, amount));
  } else if (add->parsed()) {
    Check(Open(dir)->Add(coll, id, field, ParseValue(value)));
  } else if (remove->parsed()) {
    Check(Open(dir)->Remove(coll, id, field, ParseValue(value)));
  } else if (del->parsed()) {
    Check(Open(dir)->Delete(coll, id));
  } else if (get->parsed()) {
    Print(Canonical(tandem::bindings::RecordToJson(Check(Open(dir)->Get(coll, id)))));
  } else if (conflicts->parsed()) {
    Print(Canonical(tandem::bindings::ConflictsToJson(Check(Open(dir)->Conflicts(coll, id)))));
  } else if (ls->parsed()) {
    Check(engine::ValidateCollection(coll));
    Check(Open(dir)->Scan(coll, "", [](const engine::Record& r) {
      Print(Canonical(tandem::bindings::RecordToJson(r)));
      return true;
    }));
  } else if (dump->parsed()) {
    auto r = Open(dir);
    for (const auto& c : Check(r->Collections()))
      Check(r->Scan(c, "", [&](const engine::Record& rec) {
        Print(Canonical(tandem::bindings::DumpLine(c, rec)));
        return true;
      }));
  } else if (changes->parsed()) {
    auto r = Open(dir);
    for (;;) {
      auto page = Check(r->Changes(since, 1000));
      for (const auto& c : page.changes) Print(Canonical(tandem::bindings::ChangeToJson(c)));
      std::fflush(stdout);
      if (std::ferror(stdout)) return 1;
      if (page.next_cursor == since) {
        if (!follow) break;
        // Polling a read snapshot is cheap (no lock, no I/O when nothing changed), and
        // sees commits from any process within one interval.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      since = page.next_cursor;
    }
  } else if (bk->parsed()) {
    auto r = Open(dir);
    Check(storage::Backup(storage::StoreOf(*r), dest));
    std::fprintf(stderr, "backed up %s to %s\n", dir.c_str(), dest.c_str());
  } else if (rs->parsed()) {
    Check(storage::Restore(backup, dir));
    auto r = Open(dir);
    std::fprintf(stderr, "restored %s to %s as replica %s\n", backup.c_str(), dir.c_str(),
                 Check(r->Meta()).id.Hex().c_str());
  } else if (check->parsed()) {
    auto r = Open(dir);
    storage::CheckReport rep;
    Check(storage::Check(storage::StoreOf(*r), &rep));
    Print(Canonical(Json{{"ok", true},
                         {"records", rep.records},
                         {"fields", rep.fields},
                         {"log_entries", rep.log_entries}}));
  } else if (info->parsed()) {
    auto r = Open(dir);
    auto meta = Check(r->Meta());
    Json vv = Json::object();
    for (const auto& [rid, seq] : meta.vv.entries()) vv[rid.Hex()] = seq;
    Json j{{"replica_id", meta.id.Hex()}, {"version_vector", vv}};
    auto ident = tandem::net::LoadIdentity(dir + "/" + storage::kIdentityFile);
    if (ident.ok()) j["device_id"] = tandem::net::DeviceId(ident->public_key);
    Print(Canonical(j));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe shows up as a write error instead
  try {
    return Main(argc, argv);
  } catch (const Exit& e) {
    std::fprintf(stderr, "tandem: %s\n", e.message.c_str());
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: internal error: %s\n", e.what());
    return 1;
  }
}
