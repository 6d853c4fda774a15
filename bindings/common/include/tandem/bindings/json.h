// JSON renderings shared by the CLI, the C API and the tests.
//
// Scalars map to JSON as: null, true/false, integers (int64), doubles (always written
// with a decimal point or exponent, so 5.0 stays a double), strings, and bytes as
// {"$bytes": "<base64>"}. Counters read as numbers, sets as sorted arrays. Output is
// canonical: keys sorted, no spaces, one line; two converged replicas render equal bytes.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/net/node.h"

namespace tandem::bindings {

using Json = nlohmann::json;

// Whether JSON text nests arrays and objects deeper than `depth` (checked before
// parsing input from outside: printing a deeply nested value recurses).
bool NestedDeeperThan(std::string_view text, size_t depth);
// Parses one JSON scalar (or a {"$bytes": ...} object) as a Value.
Result<engine::Value> ParseScalar(std::string_view text);
// The first key that appears twice in one object of JSON text, which a JSON parser keeps
// only the last of; nullopt if none (or if the text is not JSON).
std::optional<std::string> DuplicateKey(std::string_view json);
// One pass over JSON text: how many keys its objects name at any depth, repeats counted
// (more than KeysIn the parsed value means a repeat: a cheap test before DuplicateKey),
// and the first integer literal (outside strings, with no fraction or exponent) that a
// JSON parser turns into a double, losing digits (a 21-digit SIM card number): below
// int64's range or above uint64's, empty if none. (One in between is read exact, as
// unsigned, and refused or taken as what it is for.)
struct JsonScan {
  size_t keys = 0;
  std::string_view oversized;
};
JsonScan ScanJson(std::string_view json);
// How many keys the objects in a parsed JSON value hold, at any depth.
size_t KeysIn(const Json& j);
// A key that JSON text names twice in one object, at any depth, given the value parsed
// from it (which kept only the last) and, if the caller has it, the text's scan; nullopt
// if none.
std::optional<std::string> RepeatedKey(std::string_view text, const Json& parsed,
                                       const JsonScan* scan = nullptr);
// The same for a parsed JSON value.
Result<engine::Value> JsonToScalar(const Json& j);
Json ValueToJson(const engine::Value& v);
Json FieldToJson(const engine::FieldValue& f);
// {"id": ..., field: value, ...}
Json RecordToJson(const engine::Record& r);
// {"collection": ..., "record": {...}}: one line of `tandem dump`.
Json DumpLine(const std::string& collection, const engine::Record& r);
// {"collection", "cursor", "deleted", "id", "record"?}: one line of the change feed.
Json ChangeToJson(const engine::Change& c);
// Register siblings of every conflicting field: {"field": [{"value", "kind", "writer",
// "hlc", "time", "winner"}...]}.
Json ConflictsToJson(
    const std::vector<std::pair<std::string, std::vector<engine::Sibling>>>& conflicts);
// A sync node's snapshot: what `tandem status` shows and DIR/daemon.json holds.
Json NodeSnapshotToJson(const net::NodeSnapshot& s);
// {"kind": "caught_up", "device", "address", "message", "ok", "fields_received",
// "fields_sent"}
Json NodeEventToJson(const net::NodeEvent& e);
// The group's devices as `tandem devices --json` prints them.
Json MemberToJson(const net::Member& m, bool this_device);
// Text from outside (an argument, a file, a peer) as it may appear in a one-line
// message: in double quotes, control bytes and invalid UTF-8 escaped (\n, \x1b),
// cut to about `max` bytes with the full length said.
std::string Quote(std::string_view text, size_t max = 60);
// A whole message made safe for a terminal: control bytes and invalid UTF-8 escaped.
std::string Printable(std::string_view text);
// The canonical one-line text of a JSON value.
std::string Canonical(const Json& j);
// The same for what the library reports (statuses, events: messages may quote what a
// peer or the system said), with invalid UTF-8 replaced rather than refused.
std::string Reported(const Json& j);

}  // namespace tandem::bindings
