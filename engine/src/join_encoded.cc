// Join of two delta encodings, an item at a time: both lists of each state are in the
// order every encoder writes them (markers by dot, set elements by value), so the join is
// a merge of the two, each item decided as Join decides it.
#include "tandem/engine/join_encoded.h"

#include <optional>
#include <set>
#include <vector>

#include "codec_state.h"

namespace tandem::engine {

namespace {

// One delta encoding, read an item at a time: its markers, then its elements, then its
// totals (Finish). A list out of order fails the reader.
class ItemCursor {
 public:
  explicit ItemCursor(Reader& r) : r_(r) {
    if (r.U8() != 1) r.Fail("unknown field delta version");
    key_ = ReadKey(r);
    ReadReplicaTable(r, &table_);
    if (r.ok()) ReadHead(r, table_, head_, ctx_, &flags_);
    left_ = r.ok() ? r.Count(4) : 0;
  }
  const FieldKey& key() const { return key_; }
  // Its context; with its totals once finished.
  const FieldState& head() const { return head_; }

  // The next marker; false after the last, or where the reader failed.
  bool NextMarker(Dot* d, Marker* m) {
    if (!r_.ok() || !in_markers_) return false;
    if (left_ == 0) {
      in_markers_ = false;
      left_ = flags_ & kHasElements ? r_.Count(4) : 0;
      if (r_.ok() && (flags_ & kHasElements) && left_ == 0) r_.Fail("empty optional section");
      return false;
    }
    --left_;
    if (!ReadMarker(r_, ctx_, d, m)) return false;
    if (last_dot_ && !(*last_dot_ < *d)) {
      r_.Fail("markers not in canonical order");
      return false;
    }
    last_dot_ = *d;
    return true;
  }
  // The next set element, once NextMarker has said there is no more marker: its value
  // and dots, valid until the next call. False after the last, or where the reader failed.
  bool NextElement(const Value** v, const std::set<Dot>** dots) {
    if (!r_.ok() || in_markers_ || left_ == 0) return false;
    --left_;
    at_ ^= 1;  // the value before stays, for the order (a large one is not copied)
    if (!ReadElement(r_, ctx_, true, &values_[at_], &dots_)) return false;
    if (read_one_ && CompareValues(values_[at_ ^ 1], values_[at_]) >= 0) {
      r_.Fail("set elements not in canonical order");
      return false;
    }
    read_one_ = true;
    *v = &values_[at_];
    *dots = &dots_;
    return true;
  }
  // After the last element: the totals, and nothing may follow them.
  void Finish() {
    if (!r_.ok()) return;
    if (in_markers_ || left_ != 0) return r_.Fail("a state not read to its end");
    if (flags_ & kHasCounter) DecodeTotals(r_, ctx_, &head_.counter, true);
    if (flags_ & kHasBase) DecodeTotals(r_, ctx_, &head_.counter_base, true);
    if (r_.ok() && (((flags_ & kHasCounter) && head_.counter.empty()) ||
                    ((flags_ & kHasBase) && head_.counter_base.empty())))
      r_.Fail("empty optional section");
    if (r_.ok() && r_.remaining() != 0) r_.Fail("trailing bytes");
  }

 private:
  Reader& r_;
  FieldKey key_;
  VectorReplicaTable table_;
  FieldState head_;
  std::vector<CtxEntry> ctx_;
  uint8_t flags_ = 0;
  bool in_markers_ = true;
  uint64_t left_ = 0;  // items left in the list being read
  std::optional<Dot> last_dot_;
  Value values_[2];  // the element's, and the one before
  int at_ = 0;
  bool read_one_ = false;
  std::set<Dot> dots_;
};

// Hands each marker and element of Join(a, b) to `marker` and `element`, in order, as
// Join decides them: an item both hold stays (of two markers under one dot, the greater:
// MarkerLess), and one that only one holds stays unless the other has seen its dot, or
// the cut for its side covers it (JoinCuts: a is ours, b theirs). Notes in `facts` where
// the join is not a, and where a's cut dropped something.
template <typename OnMarker, typename OnElement>
void JoinItems(ItemCursor& a, ItemCursor& b, const JoinCuts& cuts, JoinFacts* facts,
               OnMarker marker, OnElement element) {
  const VersionVector& actx = a.head().ctx;
  const VersionVector& bctx = b.head().ctx;
  // Whether a dot only a holds stays; only b holds, likewise.
  auto a_keeps = [&](const Dot& d) {
    if (cuts.ours && cuts.ours->Covers(d)) return !(facts->dropped_ours = true);
    return !bctx.Covers(d);
  };
  auto b_keeps = [&](const Dot& d) {
    return !actx.Covers(d) && !(cuts.theirs && cuts.theirs->Covers(d));
  };
  Dot da, db;
  Marker ma, mb;
  bool ha = a.NextMarker(&da, &ma), hb = b.NextMarker(&db, &mb);
  while (ha || hb) {
    if (ha && (!hb || da < db)) {
      if (a_keeps(da))
        marker(da, ma);
      else
        facts->changes_ours = true;
      ha = a.NextMarker(&da, &ma);
    } else if (!ha || db < da) {
      if (b_keeps(db)) {
        marker(db, mb);
        facts->changes_ours = true;
      }
      hb = b.NextMarker(&db, &mb);
    } else {
      const bool theirs = !(ma == mb) && MarkerLess(ma, mb);
      facts->changes_ours |= theirs;
      marker(da, theirs ? mb : ma);
      ha = a.NextMarker(&da, &ma);
      hb = b.NextMarker(&db, &mb);
    }
  }
  const Value *va = nullptr, *vb = nullptr;
  const std::set<Dot>*sa = nullptr, *sb = nullptr;
  std::set<Dot> kept;
  ha = a.NextElement(&va, &sa);
  hb = b.NextElement(&vb, &sb);
  while (ha || hb) {
    const int c = !ha ? 1 : !hb ? -1 : CompareValues(*va, *vb);
    kept.clear();
    if (c <= 0)
      for (const Dot& d : *sa)
        if ((c == 0 && sb->count(d)) || a_keeps(d)) kept.insert(kept.end(), d);
    if (c >= 0)
      for (const Dot& d : *sb)
        if (!(c == 0 && sa->count(d)) && b_keeps(d)) kept.insert(d);
    facts->changes_ours |= c > 0 ? !kept.empty() : kept != *sa;
    if (!kept.empty()) element(c <= 0 ? *va : *vb, kept);
    if (c <= 0) ha = a.NextElement(&va, &sa);
    if (c >= 0) hb = b.NextElement(&vb, &sb);
  }
  a.Finish();
  b.Finish();
}

// What a join holds beside its items: its context and totals, and how many items.
struct JoinedHead {
  FieldKey key;
  FieldState head;
  uint64_t markers = 0, elements = 0;
  bool operator==(const JoinedHead&) const = default;
};

// Opens both sources and hands `fn` a cursor on each; the first failure, of a source, of
// an encoding or of `fn`.
Status WithBoth(const DeltaSource& ours, const DeltaSource& theirs,
                const std::function<Status(ItemCursor&, ItemCursor&)>& fn) {
  Status done = Status::Corrupt("a state to join was not read"), inner, broken;
  const Status outer = ours([&](Reader& ra) {
    inner = theirs([&](Reader& rb) {
      ItemCursor a(ra), b(rb);
      if (ra.ok() && rb.ok() && !(a.key() == b.key())) {
        done = Status::Invalid("a join of the states of two different fields");
        return;
      }
      done = fn(a, b);
      if (!rb.ok()) broken = rb.status().With("the state joined in");
    });
    if (!ra.ok()) broken = ra.status().With("the state joined into");
  });
  TANDEM_RETURN_IF_ERROR(outer);
  TANDEM_RETURN_IF_ERROR(inner);
  TANDEM_RETURN_IF_ERROR(broken);
  return done;
}

}  // namespace

Status JoinDeltas(const DeltaSource& ours, const DeltaSource& theirs,
                  const std::function<Status(std::string_view part)>& out, const JoinCuts& cuts,
                  JoinFacts* facts) {
  // The first pass counts.
  JoinFacts noted;
  auto count = [&](ItemCursor& a, ItemCursor& b, JoinedHead* h, const auto& marker,
                   const auto& element) {
    noted = JoinFacts{};
    JoinItems(
        a, b, cuts, &noted,
        [&](const Dot& d, const Marker& m) {
          ++h->markers;
          marker(d, m);
        },
        [&](const Value& v, const std::set<Dot>& dots) {
          ++h->elements;
          element(v, dots);
        });
    h->key = a.key();
    h->head = a.head();
    Join(h->head, b.head());
    noted.changes_ours |= !(h->head == a.head());
  };
  auto nothing = [](const auto&, const auto&) {};
  JoinedHead first;
  TANDEM_RETURN_IF_ERROR(WithBoth(ours, theirs, [&](ItemCursor& a, ItemCursor& b) {
    count(a, b, &first, nothing, nothing);
    return Status::Ok();
  }));

  // The second writes, in parts.
  const FieldState& head = first.head;
  const uint8_t flags = (first.elements ? kHasElements : 0) |
                        (head.counter.empty() ? 0 : kHasCounter) |
                        (head.counter_base.empty() ? 0 : kHasBase);
  const std::vector<CtxEntry> ctx(head.ctx.entries().begin(), head.ctx.entries().end());
  std::string buf = DeltaHead(
      first.key, StoredHead{static_cast<uint8_t>(kFieldFormatVersion << 4 | flags), head.ctx, 0});
  Writer w(&buf);
  w.Varint(first.markers);
  Status sent;
  auto flush = [&](bool all) {
    if (sent.ok() && !buf.empty() && (all || buf.size() >= kJoinedPartBytes)) {
      sent = out(buf);
      buf.clear();
    }
  };
  JoinedHead second;
  TANDEM_RETURN_IF_ERROR(WithBoth(ours, theirs, [&](ItemCursor& a, ItemCursor& b) {
    // Every dot either names is within its own context, so within `ctx` if both contexts
    // are those the first pass read (else the writer would refuse a dot, below).
    VersionVector seen = a.head().ctx;
    seen.Merge(b.head().ctx);
    if (!(seen == head.ctx)) return Status::Corrupt("a state changed while it was joined");
    count(
        a, b, &second,
        [&](const Dot& d, const Marker& m) {
          if (sent.ok()) sent = WriteMarker(d, m, ctx, w);
          flush(false);
        },
        [&](const Value& v, const std::set<Dot>& dots) {
          if (second.elements == 1) w.Varint(first.elements);
          if (sent.ok()) sent = WriteElement(v, dots, ctx, w);
          flush(false);
        });
    return sent;
  }));
  // The same items as the first pass counted, under the same head, or the bytes written
  // describe another state.
  if (!(second == first)) return Status::Corrupt("a state changed while it was joined");
  if (flags & kHasCounter) TANDEM_RETURN_IF_ERROR(WriteTotals(head.counter, ctx, w));
  if (flags & kHasBase) TANDEM_RETURN_IF_ERROR(WriteTotals(head.counter_base, ctx, w));
  TANDEM_RETURN_IF_ERROR(sent);
  flush(true);
  if (sent.ok() && facts) *facts = noted;
  return sent;
}

}  // namespace tandem::engine
