// The `tandem` command-line program: operators' and scripts' way into a replica.
//
// Exit status: 0 success, 1 runtime failure (not found, corrupt, I/O), 2 usage error
// (bad arguments or input). Errors are one line on stderr: "tandem: <message>".
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>

#include "cli.h"
#include "tandem/bindings/json.h"
#include "tandem/data/etl.h"
#include "tandem/data/schema.h"
#include "tandem/device/device.h"
#include "tandem/net/group.h"
#include "tandem/net/identity.h"
#include "tandem/net/node.h"
#include "tandem/storage/replica.h"

namespace {
using namespace tandem::cli;

int Main(int argc, char** argv) {
  CLI::App app{"tandem: an offline-first sync engine; this program works with one replica."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  std::string dir, coll, id, field, value, dest, backup;
  std::vector<std::string> assignments;
  std::string amount_text;
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
  put->add_option("FIELD=JSON", assignments,
                  "One or more assignments; FIELD=@FILE takes the JSON in FILE (- for stdin)")
      ->required();

  auto* incr = app.add_subcommand("incr", "Add N (may be negative) to a counter field");
  incr->add_option("DIR", dir)->required();
  incr->add_option("COLL", coll)->required();
  incr->add_option("ID", id)->required();
  incr->add_option("FIELD", field)->required();
  incr->add_option("N", amount_text, "A decimal 64-bit integer")->required();
  bool replace_value = false;
  incr->add_flag("--replace-value", replace_value,
                 "Make a field that holds a value (written by put or import) a counter of N, "
                 "instead of refusing");

  auto* add = app.add_subcommand("add", "Add a JSON scalar to an add-wins set field");
  auto* remove = app.add_subcommand("remove", "Remove a JSON scalar from a set field");
  for (auto* s : {add, remove}) {
    s->add_option("DIR", dir)->required();
    s->add_option("COLL", coll)->required();
    s->add_option("ID", id)->required();
    s->add_option("FIELD", field)->required();
    s->add_option("JSON", value, "The element")->required();
  }

  auto* del = app.add_subcommand(
      "del",
      "Delete a record (ID - deletes the ids read from stdin, one per line, CRLF line ends "
      "dropped when every line has one; a record whose id is - itself: echo - | tandem del "
      "DIR COLL -)");
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
  bool system = false;
  dump->add_flag("--system", system, "Include tandem's own collections (the trust set)");

  auto* changes = app.add_subcommand(
      "changes", "Print the change feed: the current state of each changed record, with a cursor");
  changes->add_option("DIR", dir)->required();
  std::string since_text;
  changes->add_option("--since", since_text, "Only changes after this cursor (a line's cursor)");
  changes->add_flag("--follow,-f", follow, "Keep running and print new changes as they commit");
  changes->add_flag("--system", system, "Include tandem's own collections (the trust set)");

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

  // --- Data in and out ---
  std::string file, format_name, id_field = "id";
  bool strict = false;
  auto* import = app.add_subcommand(
      "import", "Load records from JSON lines or CSV; each row sets the fields it names");
  import->footer(
      "Typed by the collection's schema, else inferred: in JSON lines, values as JSON, "
      "arrays as sets, {\"$counter\": N} as counters, {\"$bytes\": base64}; in CSV (header "
      "row, RFC 4180) a cell that is JSON (5, 2.5, true, null, \"text\", [..], {\"$counter\": "
      "N}) is read as JSON, any other cell is a string, an empty cell leaves the field unset.\n"
      "Exit status: 0, 3 if bad rows were skipped (each is reported with its line), 2 if the "
      "input cannot be read as a whole (or, with --strict, on the first bad row: then nothing "
      "is imported). Importing the same file again writes nothing.");
  import->add_option("DIR", dir)->required();
  import->add_option("COLL", coll)->required();
  import->add_option("FILE", file, "The input file (- for stdin)")->required();
  import->add_option("--id", id_field, "The column or key that holds the record id (default id)");
  import->add_option("--format", format_name,
                     "jsonl or csv (default: by the file's extension; jsonl for stdin)");
  import->add_flag("--strict", strict, "The first bad row rejects the whole input");

  auto* export_cmd = app.add_subcommand(
      "export", "Write a collection's records as JSON lines or CSV (id first), for import");
  export_cmd->add_option("DIR", dir)->required();
  export_cmd->add_option("COLL", coll)->required();
  export_cmd->add_option("--format", format_name, "jsonl (default) or csv");

  auto* schema = app.add_subcommand(
      "schema",
      "Set a collection's schema from FILE (- for stdin), or print it: field types, required, "
      "min/max, patterns, enums, normalizers (trim, lower, upper, phone), conflict rules. It "
      "syncs to every device; see docs/schema.md");
  schema->add_option("DIR", dir)->required();
  schema->add_option("COLL", coll)->required();
  schema->add_option("FILE", file, "The schema's JSON (- for stdin)");

  // --- Groups, pairing and the daemon ---
  std::vector<std::string> addresses, peers;
  std::string listen, code, device, send_list, receive_list;
  int64_t expires_min = 24 * 60;
  int interval = 0;
  bool discover = false, as_json = false;

  auto* invite = app.add_subcommand(
      "invite", "Print a one-time invite code for a new device (alone on stdout)");
  invite->add_option("DIR", dir)->required();
  invite->add_option("--address", addresses,
                     "HOST:PORT where this device can be reached (repeatable; default: the "
                     "running daemon's listen address)");
  invite->add_option("--expires", expires_min, "Minutes until the code expires (default 1440)")
      ->transform(Whole(1, 60 * 24 * 30));
  std::string role_name = "member";
  invite
      ->add_option("--role", role_name,
                   "What the new device becomes: reader, member (default) or admin; below "
                   "this device's own role")
      ->check(CLI::IsMember({"reader", "member", "admin"}));

  auto* join = app.add_subcommand(
      "join", "Store an invite code; the first sync with the inviter joins its group");
  join->add_option("DIR", dir)->required();
  bool cancel = false;
  join->add_option("CODE", code, "The code printed by `tandem invite` (- reads it from stdin)");
  join->add_flag("--cancel", cancel, "Give up a pending join (the code is forgotten)");
  bool merge = false;
  join->add_flag("--merge", merge,
                 "Join although this replica holds data or trusts other devices: its data "
                 "goes to the inviter's group and the group's comes here; the devices it "
                 "trusted do not become members (each needs an invite of its own)");

  int horizon_days = 30;
  auto* gc = app.add_subcommand(
      "gc", "Remove deleted data every member of the group holds; say what was freed");
  gc->add_option("DIR", dir)->required();
  gc->add_flag("--json", as_json, "One JSON object");

  auto* devices = app.add_subcommand("devices", "List the group's devices");
  devices->add_option("DIR", dir)->required();
  devices->add_flag("--json", as_json, "One JSON object per line");

  auto* quarantine = app.add_subcommand(
      "quarantine",
      "List changes from peers held instead of applied (they broke a collection's schema, "
      "or await their writer's binding); --release applies one as it is (then write over "
      "it to correct it)");
  quarantine->add_option("DIR", dir)->required();
  std::vector<uint64_t> release_ids;
  bool release_all = false;
  quarantine->add_option("--release", release_ids, "Apply the change with this id (repeatable)")
      ->check(CLI::Validator(
          [](std::string& v) {  // "-1" would otherwise wrap to 2^64 - 1
            const bool digits =
                !v.empty() && v.size() <= 19 && v.find_first_not_of("0123456789") == v.npos;
            return digits ? std::string()
                          : "not a quarantine id: " + v + " (tandem quarantine DIR lists them)";
          },
          "ID"));
  quarantine->add_flag("--release-all", release_all, "Apply every held change");

  auto* where = app.add_subcommand(
      "where",
      "Which devices hold a record's current state, from the version vectors they last "
      "reported here (answered offline)");
  where->add_option("DIR", dir)->required();
  where->add_option("COLL", coll)->required();
  where->add_option("ID", id)->required();
  where->add_flag("--json", as_json, "One JSON object per line");

  auto* revoke = app.add_subcommand(
      "revoke", "Revoke a device: every member refuses it once the revocation has synced");
  revoke->add_option("DIR", dir)->required();
  revoke->add_option("DEVICE", device, "Its device id (see `tandem devices`)")->required();

  auto* role = app.add_subcommand(
      "role", "Give a device another role (reader, member, admin, owner): signed by this device");
  role->add_option("DIR", dir)->required();
  role->add_option("DEVICE", device, "Its device id (see `tandem devices`)")->required();
  role->add_option("ROLE", role_name, "reader, member, admin or owner")
      ->required()
      ->check(CLI::IsMember({"reader", "member", "admin", "owner"}));

  auto* permit = app.add_subcommand(
      "permit",
      "Grant a role or a device none, read or write on a collection (* for every collection "
      "no permit names): signed by this device");
  permit->add_option("DIR", dir)->required();
  permit->add_option("COLL", coll, "A collection, or * for the others")->required();
  std::string who, level_name;
  permit->add_option("WHO", who, "A role (reader, member, admin, owner) or a device id")
      ->required();
  permit->add_option("LEVEL", level_name, "none, read or write (write implies read)")
      ->required()
      ->check(CLI::IsMember({"none", "read", "write"}));

  auto* permissions = app.add_subcommand("permissions", "List the group's permits");
  permissions->add_option("DIR", dir)->required();
  permissions->add_flag("--json", as_json, "One JSON object per line");

  auto* serve = app.add_subcommand("serve", "Run the sync daemon (live by default)");
  serve->add_option("DIR", dir)->required();
  serve->add_option("--listen", listen, "HOST:PORT to accept peers on (port 0: any free port)");
  serve->add_option("--peer", peers, "HOST:PORT of a peer to connect to (repeatable)");
  serve
      ->add_option("--interval", interval,
                   "Sync with each --peer every SECONDS, then disconnect (batch mode)")
      ->transform(Whole(1, 86400 * 7));
  std::vector<CLI::Option*> filter_opts;
  filter_opts.push_back(
      serve->add_option("--send", send_list, "Only send these collections (COLL,... or none)"));
  filter_opts.push_back(serve->add_option("--receive", receive_list,
                                          "Only accept these collections (COLL,... or none)"));
  serve->add_flag("--discover", discover, "Find peers of this group on the local network");
  std::string metrics_address, log_format = "text";
  serve->add_option("--metrics", metrics_address,
                    "HOST:PORT to serve Prometheus metrics on, at /metrics (port 0: any free "
                    "port; see docs/metrics.md)");

  auto* sync = app.add_subcommand("sync", "Sync once with peers, both ways; exit 0 when caught up");
  sync->add_option("DIR", dir)->required();
  sync->add_option("--peer", peers,
                   "HOST:PORT (repeatable; default: the address hints of a pending invite)");
  filter_opts.push_back(
      sync->add_option("--send", send_list, "Only send these collections (COLL,... or none)"));
  filter_opts.push_back(sync->add_option("--receive", receive_list,
                                         "Only accept these collections (COLL,... or none)"));

  int timeout_s = 45;
  for (auto* s : {serve, sync})
    s->add_option("--log-format", log_format, "text (default) or json: one JSON object per line")
        ->check(CLI::IsMember({"text", "json"}));
  for (auto* s : {serve, sync})
    s->add_option("--timeout", timeout_s,
                  "Seconds without progress before a connection is dropped (default 45; "
                  "keepalives go out at a third of it)")
        ->transform(Whole(1, 3600));
  int collect_s = 3600;
  serve
      ->add_option("--collect-every", collect_s,
                   "Seconds between collections of deleted data every member holds (default "
                   "3600; 0: never)")
      ->transform(Whole(0, 86400 * 7));
  for (auto* s : {gc, serve})
    s->add_option("--horizon", horizon_days,
                  "Days after which a silent member stops holding collection back (default 30)")
        ->transform(Whole(1, 3650));
  int64_t key_grace_s = 7 * 24 * 3600;
  for (auto* s : {serve, sync})
    s->add_option("--key-grace", key_grace_s,
                  "Seconds after a group key rotation during which members that still have "
                  "the previous key may connect and get the new one (default 604800: 7 days)")
        ->transform(Whole(0, int64_t{365} * 24 * 3600));

  std::string blob_mode = "eager";
  for (auto* s : {serve, sync})
    s->add_option("--blobs", blob_mode,
                  "eager (default): fetch the blobs fields reference as they arrive; lazy: "
                  "when read; lazy=COLL,...: lazy for those collections");
  BlobCommands blob_cmds = AddBlobCommands(app);

  auto* status = app.add_subcommand(
      "status", "Show peers: connected or not, last sync, pending changes, traffic, errors");
  status->add_option("DIR", dir)->required();
  status->add_flag("--json", as_json, "One JSON object");

  // A path given as "" would name the working directory to some calls and nothing to
  // others: refused before anything opens it.
  for (auto* sub : app.get_subcommands({}))
    for (auto* opt : sub->get_options())
      if (opt->get_positional() && (opt->get_name() == "DIR" || opt->get_name() == "DEST" ||
                                    opt->get_name() == "BACKUP" || opt->get_name() == "FILE"))
        opt->check(CLI::Validator(
            [](std::string& v) { return v.empty() ? std::string("an empty path") : std::string(); },
            ""));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    std::fprintf(stderr, "tandem: %s (see tandem --help)\n", Printable(what).c_str());
    return 2;
  }
  if (!dir.empty()) NoteCrashesOn(dir);

  for (auto* s : {put, incr, add, remove, del, import, schema})
    if (s->parsed()) CheckWritable(coll);

  if (blob_cmds.Parsed()) return blob_cmds.Run();
  if (init->parsed()) {
    auto d = Check(Device::Create(dir));
    Print(d->device_id());
    std::fprintf(stderr, "created replica %s in %s\n", Check(d->GetInfo()).replica_id.Hex().c_str(),
                 dir.c_str());
  } else if (put->parsed()) {
    std::vector<std::pair<std::string, engine::Value>> fields;
    for (const auto& a : assignments) {
      size_t eq = a.find('=');
      if (eq == std::string::npos || eq == 0)
        throw Exit{2, "expected FIELD=JSON (or FIELD=@FILE), got " + Quote(a)};
      for (const auto& given : fields)
        if (given.first == a.substr(0, eq))
          throw Exit{2, Quote(given.first) + " is assigned twice; give each field once"};
      try {  // which of several assignments is wrong
        fields.emplace_back(a.substr(0, eq), ParseValue(ValueText(a.substr(eq + 1))));
      } catch (Exit& e) {
        e.message = Quote(a.substr(0, eq)) + ": " + e.message;
        throw;
      }
    }
    Check(Open(dir).Put(coll, id, fields));
  } else if (incr->parsed()) {
    const int64_t by = ParseDecimal(amount_text, "N");
    // An increment replaces whatever else the field holds: a count imported or put as a
    // plain number (7) would silently become N, not 7 + N. Refused unless asked for.
    Check(Open(dir).Write([&](engine::Batch& b) -> Status {
      engine::RecordState rec;
      if (!replace_value) TANDEM_RETURN_IF_ERROR(b.ReadRecord(coll, id, &rec));
      auto f = rec.fields.find(field);
      if (auto v = f == rec.fields.end() ? std::nullopt : engine::Read(f->second);
          v && v->kind != engine::Kind::kCounter) {
        std::string held = Canonical(tandem::bindings::FieldToJson(*v));
        if (held.size() > 40) held = held.substr(0, 37) + "...";
        std::string keep;
        const auto* n = std::get_if<int64_t>(&v->scalar);
        int64_t sum = 0;
        if (v->kind == engine::Kind::kRegister && n && !__builtin_add_overflow(*n, by, &sum))
          keep = "; to count on from " + std::to_string(*n) + ", give " + std::to_string(sum) +
                 " with --replace-value";
        return Status::Invalid(coll + "/" + id + "." + field + " holds " + held +
                               ", not a counter: incr would replace it with " + std::to_string(by) +
                               " (--replace-value does" + keep + ")");
      }
      return b.Incr(coll, id, field, by);
    }));
  } else if (add->parsed()) {
    Check(Open(dir).Add(coll, id, field, ParseValue(value)));
  } else if (remove->parsed()) {
    // A field that holds nothing (a deleted record, a typo) has nothing to remove, and a
    // removal would bring it back as an empty set: refused, as `del` of a missing record.
    const engine::Value element = ParseValue(value);
    Check(Open(dir).Write([&](engine::Batch& b) -> Status {
      engine::RecordState rec;
      TANDEM_RETURN_IF_ERROR(b.ReadRecord(coll, id, &rec));
      auto f = rec.fields.find(field);
      if (f == rec.fields.end() || f->second.markers.empty())
        return Status::NotFound("not found: " + coll + "/" + id + "." + field +
                                " holds nothing to remove");
      return b.Remove(coll, id, field, element);
    }));
  } else if (del->parsed() && id == "-") {
    DeleteFromStdin(Open(dir), coll);
  } else if (del->parsed()) {
    Check(Open(dir).Delete(coll, id));
  } else if (get->parsed()) {
    Print(Canonical(tandem::bindings::RecordToJson(Check(Inspect(dir).Get(coll, id)))));
  } else if (conflicts->parsed()) {
    Print(Canonical(tandem::bindings::ConflictsToJson(Check(Inspect(dir).Conflicts(coll, id)))));
  } else if (ls->parsed()) {
    Check(engine::ValidateCollection(coll));
    Check(Inspect(dir).Scan(coll, "", [](const engine::Record& r) {
      Print(Canonical(tandem::bindings::RecordToJson(r)));
      return true;
    }));
  } else if (dump->parsed()) {
    auto& r = Inspect(dir);
    for (const auto& c : Check(r.Collections())) {
      if (!system && IsSystem(c)) continue;
      Check(r.Scan(c, "", [&](const engine::Record& rec) {
        Print(Canonical(tandem::bindings::DumpLine(c, rec)));
        return true;
      }));
    }
  } else if (changes->parsed()) {
    if (!since_text.empty()) {
      const int64_t s = ParseDecimal(since_text, "--since");
      if (s < 0) throw Exit{2, "--since takes a cursor (0 or more), got " + Quote(since_text)};
      since = static_cast<uint64_t>(s);
    }
    auto d = InspectDevice(dir);
    std::unique_ptr<storage::ChangeWatcher> watcher;
    if (follow) watcher = Check(d->Watch());
    // The data file followed: a directory removed (or replaced) meanwhile ends the command,
    // which would otherwise wait for ever on a replica nobody can write any more.
    const std::string data = dir + "/data.mdb";
    struct stat followed {};
    if (follow && ::stat(data.c_str(), &followed) != 0)
      throw Exit{1, "cannot follow " + Quote(data) + ": " + std::strerror(errno)};
    for (;;) {
      auto page = Check(d->replica().Changes(since, 1000));
      for (const auto& c : page.changes)
        if (system || !IsSystem(c.collection)) Print(Canonical(tandem::bindings::ChangeToJson(c)));
      CheckOutput();
      if (page.next_cursor == since) {
        if (!follow) break;
        // Until a commit by any process (a stale notification just reads nothing), or a
        // few seconds, to see whether the replica is still there.
        while (!watcher->Wait(2000)) {
          struct stat now {};
          if (::stat(data.c_str(), &now) != 0 || now.st_ino != followed.st_ino ||
              now.st_dev != followed.st_dev)
            throw Exit{1, "the replica in " + Quote(dir) + " was removed or replaced while " +
                              "following its changes"};
        }
      }
      since = page.next_cursor;
    }
  } else if (bk->parsed()) {
    Check(InspectDevice(dir)->Backup(dest));  // reads only: a backup of a backup too
    std::fprintf(stderr, "backed up %s to %s\n", dir.c_str(), dest.c_str());
  } else if (rs->parsed()) {
    // Whatever a crash checking a damaged backup's copy left in the target goes with it;
    // only where the target was missing or empty (restore refuses any other before it
    // copies anything).
    std::error_code ec;
    const bool had_dir = std::filesystem::exists(dir, ec);
    const bool was_empty = !had_dir || std::filesystem::is_empty(dir, ec);
    const int restored = Isolated(
        backup + "/data.mdb",
        [&] {
          Check(Device::Restore(backup, dir));
          auto d = OpenDevice(dir);
          std::fprintf(stderr, "restored %s to %s as replica %s\n", backup.c_str(), dir.c_str(),
                       Check(d->GetInfo()).replica_id.Hex().c_str());
        },
        [&] {
          std::error_code e;
          storage::SweepDeadBuilds(dir);  // the copy the crashed worker was checking
          if (!was_empty) return;
          if (!had_dir) {
            std::filesystem::remove_all(dir, e);
          } else {
            for (const auto& f : std::filesystem::directory_iterator(dir, e))
              std::filesystem::remove_all(f.path(), e);
          }
        },
        "no replica made: restore another backup");
    // A worker that ended otherwise than by a signal may not have cleaned up either (a
    // sanitizer's report of a bad read ends it with a status).
    if (restored != 0) storage::SweepDeadBuilds(dir);
    return restored;
  } else if (check->parsed()) {
    return Isolated(dir + "/data.mdb", [&] {
      auto checked = InspectDevice(dir);
      auto rep = Check(checked->Check());
      if (rep.refused_damaged)
        std::fprintf(stderr,
                     "warning: %llu record(s) of refused fields are damaged and passed over: a "
                     "value one of them held back may not arrive until its field is written "
                     "again\n",
                     static_cast<unsigned long long>(rep.refused_damaged));
      // The data is whole, but a device that lost its key cannot pair or sync.
      const Status intact = checked->IdentityIntact();
      // Nor one that lost the group's root: it cannot tell who may do what.
      const Status root = checked->RootIntact();
      Print(Canonical(Json{{"ok", true},
                           {"identity", intact.ok()},
                           {"group_root", root.ok()},
                           {"records", rep.records},
                           {"fields", rep.fields},
                           {"log_entries", rep.log_entries},
                           {"blobs", rep.blobs},
                           {"blob_bytes", rep.blob_bytes},
                           {"refused_damaged", rep.refused_damaged},
                           {"fields_out_of_line", rep.fields_out_of_line}}));
      if (!intact.ok()) throw Exit{1, intact.message()};
      if (!root.ok()) throw Exit{1, root.message()};
    });
  } else if (import->parsed()) {
    return RunImport(dir, coll, file, format_name, id_field, strict);
  } else if (export_cmd->parsed()) {
    auto format = Check(tandem::data::ParseFormat(format_name.empty() ? "jsonl" : format_name));
    Check(engine::ValidateCollection(coll));
    uint64_t n = Check(tandem::data::Export(Inspect(dir), coll, format, stdout));
    std::fprintf(stderr, "exported %llu records\n", static_cast<unsigned long long>(n));
  } else if (schema->parsed()) {
    auto& r = file.empty() ? Inspect(dir) : Open(dir);
    if (file.empty()) {
      auto stored = Check(tandem::data::LoadSchema(r, coll));
      if (!stored) throw Exit{1, "collection " + Quote(coll) + " has no schema"};
      Print(Canonical(Json::parse(stored->text)));
      std::fprintf(stderr, "version %lld\n", static_cast<long long>(stored->version));
      if (stored->concurrent)
        std::fprintf(stderr,
                     "%zu other schema%s set at the same time on other devices: this one "
                     "wins, and changes made under any of them are taken; set the schema "
                     "again to settle it\n",
                     stored->concurrent, stored->concurrent == 1 ? " was" : "s were");
    } else {
      std::string text = ValueText("@" + file);
      int64_t version = Check(tandem::data::SaveSchema(r, coll, text));
      std::fprintf(stderr, "schema of %s is now version %lld; it applies to every write\n",
                   Printable(coll).c_str(), static_cast<long long>(version));
    }
  } else if (info->parsed()) {
    auto in = Check(InspectDevice(dir)->GetInfo());
    Json vv = Json::object();
    for (const auto& [rid, seq] : in.version_vector.entries()) vv[rid.Hex()] = seq;
    Json j{{"replica_id", in.replica_id.Hex()}, {"version_vector", vv}, {"format", in.format}};
    if (!in.device_id.empty()) j["device_id"] = in.device_id;
    Print(Canonical(j));
  }
  if (invite->parsed()) {
    tandem::device::InviteOptions io;
    io.addresses = addresses;
    io.expires_minutes = expires_min;
    io.role = *net::ParseRole(role_name);
    RunInvite(dir, io);
  } else if (join->parsed() && cancel) {
    if (!code.empty()) throw Exit{2, "give either CODE or --cancel"};
    Check(OpenDevice(dir)->CancelJoin());
    std::fprintf(stderr, "pending join cancelled\n");
  } else if (join->parsed()) {
    if (code.empty()) throw Exit{2, "join needs CODE (or --cancel)"};
    if (code == "-" && !std::getline(std::cin, code)) throw Exit{2, "no invite code on stdin"};
    RunJoin(dir, code, merge);
  } else if (gc->parsed()) {
    return RunGc(dir, horizon_days, as_json);
  } else if (devices->parsed()) {
    PrintDevices(*InspectDevice(dir), as_json);
  } else if (quarantine->parsed()) {
    return RunQuarantine(dir, std::move(release_ids), release_all);
  } else if (where->parsed()) {
    PrintWhere(dir, coll, id, as_json);
  } else if (revoke->parsed()) {
    ChangeTrust(dir, TrustChange::kRevoke, device, "", "");
  } else if (permit->parsed()) {
    ChangeTrust(dir, TrustChange::kPermit, who, coll, level_name);
  } else if (permissions->parsed()) {
    PrintPermissions(*InspectDevice(dir), as_json);
  } else if (role->parsed()) {
    ChangeTrust(dir, TrustChange::kRole, device, "", role_name);
  } else if (serve->parsed() || sync->parsed()) {
    net::NodeOptions o;
    o.listen = listen;
    o.peers = peers;
    o.interval_s = interval;
    o.mode = sync->parsed() ? net::NodeMode::kOnce
             : interval > 0 ? net::NodeMode::kInterval
                            : net::NodeMode::kLive;
    o.discover = discover;
    o.idle_timeout_s = timeout_s;
    o.key_grace_s = key_grace_s;
    o.collect_interval_s = collect_s;
    o.horizon_ms = static_cast<uint64_t>(horizon_days) * 24 * 3600 * 1000;
    o.keepalive_s = std::max(1, timeout_s / 3);
    for (auto* opt : filter_opts)
      if (opt->count() > 0 && opt->as<std::string>().empty())
        throw Exit{2, opt->get_name() + " needs a list of collections (COLL,...)"};
    o.send = ParseFilter(send_list, "--send");
    o.receive = ParseFilter(receive_list, "--receive");
    o.lazy_blobs = ParseBlobMode(blob_mode);
    for (const auto& a : o.peers) {
      CheckAddress(a);
    }
    if (serve->parsed() && listen.empty() && peers.empty())
      throw Exit{2, "serve needs --listen HOST:PORT or --peer HOST:PORT"};
    if (discover && listen.empty())
      throw Exit{2, "--discover needs --listen HOST:PORT (peers dial the announced port)"};
    if (serve->parsed() && interval > 0 && peers.empty())
      throw Exit{2, "--interval needs at least one --peer"};
    if (!listen.empty()) CheckAddress(listen);
    if (!metrics_address.empty()) CheckAddress(metrics_address);
    auto d = OpenDevice(dir);
    Check(d->identity().status());
    Check(net::LoadGroupKey(d->layout().group()).status());
    if (o.mode == net::NodeMode::kOnce && o.peers.empty()) {
      auto pending = Check(d->PendingJoin());
      if (!pending || pending->addresses.empty()) throw Exit{2, "sync needs --peer HOST:PORT"};
      for (const auto& a : pending->addresses) {
        if (!IsAddress(a))
          throw Exit{2, "the invite's address hint " + Quote(a) + " is not HOST:PORT; give --peer"};
      }
      o.peers = pending->addresses;
      o.peers_are_alternatives = true;  // the inviter's addresses, tried in turn
    }
    return RunNode(*d, std::move(o), metrics_address, LogFormat{log_format == "json"});
  } else if (status->parsed()) {
    auto d = InspectDevice(dir);
    auto meta = Check(d->replica().Meta());
    std::string self_device = d->device_id();
    auto ds = DaemonStatus(dir);
    Json replicas = Json::array();
    auto device_of = DeviceOfReplica(*d);
    for (const auto& [rid, ps] : Check(d->replica().Peers())) {
      // Changes this replica holds that the peer's last report does not cover.
      bool exact = true;
      const uint64_t unheld = Check(d->replica().CountUnheld(ps, 100000, &exact));
      replicas.push_back(Json{{"replica_id", rid.Hex()},
                              {"device", device_of.count(rid.Hex()) ? device_of[rid.Hex()] : ""},
                              {"last_sync_ms", ps.last_sync_ms},
                              {"fields_received", ps.fields_received},
                              {"fields_refused", ps.fields_refused},
                              {"not_held", unheld},
                              {"not_held_exact", exact},
                              {"cursor", ps.cursor}});
    }
    const auto authority = Check(d->Authority());
    Json refused = Json::array();
    for (const auto& r : authority.refused)
      refused.push_back(Json{{"id", r.id}, {"signer", r.signer}, {"what", r.what}, {"why", r.why}});
    size_t quarantined = 0, awaiting_binding = 0, held_by_damage = 0;
    for (const auto& e : Check(d->replica().Quarantined())) {
      ++quarantined;
      awaiting_binding += e.held;
      held_by_damage += !e.held && e.reason == engine::kDamagedReason;
    }
    if (as_json) {
      Json j{{"device", self_device},
             {"replica_id", meta.id.Hex()},
             {"quarantined", quarantined},
             {"quarantined_awaiting_binding", awaiting_binding},
             {"quarantined_for_damage", held_by_damage},
             {"bound_replicas_required", authority.bindings_required},
             {"daemon", ds ? *ds : Json(nullptr)},
             {"replicas", replicas},
             {"statements", authority.counted},
             {"statements_waiting", authority.waiting},
             {"statements_refused", refused}};
      Print(Canonical(j));
      return 0;
    }
    Print("device " +
          (self_device.empty() ? std::string("unknown: identity.key is missing") : self_device) +
          " (replica " + meta.id.Hex() + ")");
    PrintDaemon(ds, tandem::device::Layout(dir).status_file());
    Print("authority: " +
          (authority.legacy
               ? std::string("unsigned (a group from before statements)")
               : std::to_string(authority.counted) + " statements count, " +
                     std::to_string(authority.waiting) + " wait for their parents, " +
                     std::to_string(refused.size()) + " refused" +
                     (authority.bindings_required ? ", bound replicas required" : "")));
    for (const auto& r : authority.refused)
      Print("  refused: " + (r.signer.empty() ? std::string("?") : r.signer) + ": " + r.what +
            ": " + r.why);
    if (quarantined > awaiting_binding + held_by_damage)
      Print("quarantined: " + std::to_string(quarantined - awaiting_binding - held_by_damage) +
            " changes from peers broke a schema (tandem quarantine " + dir + ")");
    if (held_by_damage > 0)
      Print("quarantined: " + std::to_string(held_by_damage) +
            " changes from peers to fields whose value is damaged here, held aside "
            "(tandem check " +
            dir + " names the fields, tandem quarantine " + dir + " the changes)");
    if (awaiting_binding > 0)
      Print("quarantined: " + std::to_string(awaiting_binding) +
            " changes from peers written under a replica no binding names, held until its "
            "binding arrives (tandem quarantine " +
            dir + ")");
    Print("replicas synced with: " + std::to_string(replicas.size()));
    for (const auto& j : replicas)
      Print("  " + j["replica_id"].get<std::string>() +
            (j["device"].get<std::string>().empty() ? ""
                                                    : " (" + j["device"].get<std::string>() + ")") +
            "  last sync " + Ago(j["last_sync_ms"].get<uint64_t>()) + "  fields received " +
            std::to_string(j["fields_received"].get<uint64_t>()) + "  refused " +
            std::to_string(j["fields_refused"].get<uint64_t>()) + "  not yet held there " +
            (j["not_held_exact"].get<bool>() ? "" : ">=") +
            std::to_string(j["not_held"].get<uint64_t>()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  SetUpProcess();
  return Reported([&] {
    const int code = Main(argc, argv);
    CheckOutput();
    return code;
  });
}
