// The columnar layout of a batch body (docs/protocol.md, "Batch bodies").
//
// A batch carries mostly fields written once by one replica (a register whose context
// is its own dot): those are split into columns, each compressing on its own: keys as
// a prefix shared with the previous record id, sequence numbers and timestamps as
// differences from the previous entry's, values side by side. Every other state
// travels whole in the engine's field encoding. Decoding checks what the row layout
// checks, and that every column is consumed exactly.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::net {

// Appends the body of `deltas` to *out. `name` gives a name's index in the batch's name
// table (adding it); `table` is the batch's replica table. `logical_deltas` (the layout
// `columns2`): a timestamp's logical counter is a difference from the previous entry's
// when their milliseconds agree, rather than the counter itself (`columns`).
Status EncodeColumns(const std::vector<engine::FieldDelta>& deltas,
                     const std::function<uint64_t(const std::string&)>& name,
                     engine::ReplicaTable& table, bool logical_deltas, std::string* out);
// Decodes a body; at most `max_entries` entries.
Status DecodeColumns(std::string_view body, const std::vector<std::string>& names,
                     const engine::ReplicaTable& table, size_t max_entries, bool logical_deltas,
                     std::vector<engine::FieldDelta>* out);

}  // namespace tandem::net
