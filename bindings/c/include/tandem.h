/* tandem.h: the C API of Tandem, an embeddable, offline-first sync engine.
 *
 * Valid C11 and C++. Link with libtandem (pkg-config tandem, or CMake's
 * find_package(Tandem) and Tandem::tandem).
 *
 * RULES THAT HOLD FOR EVERY FUNCTION
 *
 * Status. Every function that can fail returns an int status: TANDEM_OK (0) or one of
 * the codes below, and takes an optional last argument `tandem_error* err` (NULL to
 * ignore), filled only on failure with the code and a one-line message.
 * tandem_status_str() names a code. No function aborts or throws on bad input.
 *
 * Ownership. Handles are opaque. What a `_new`, `_open` or `_create` function returns is
 * released with the matching `_free` or `_close`; passing NULL to those is a no-op.
 * Strings and buffers the library returns through `char** out` are NUL-terminated,
 * come with their length where a length out-parameter is given, and are freed with
 * tandem_free(). Inputs are copied if the library keeps them.
 *
 * Arguments. Out-parameters come first. Names (collections, record ids, fields,
 * directories) are NUL-terminated UTF-8; collection names are at most 64 bytes, record
 * ids 256, field names 128 ("id" is reserved). Values are typed (tandem_value) with
 * pointer + length for strings and bytes, at most 16 MiB. A NULL handle or pointer
 * where one is required gives TANDEM_INVALID; so does a handle already closed, where
 * the library can tell (it keeps a table of the handles it has open).
 *
 * Threads. A tandem_db, tandem_node and tandem_watch may be used from several threads at
 * once. A tandem_batch or tandem_iter is used by one thread at a time. A tandem_record is
 * immutable. Callbacks are never called while the library holds a lock, and may call
 * any function of this API, including the _free of the object that called them. Each
 * callback's thread is documented with it.
 *
 * Versions. Options structs start with a `version` field; initialise them with their
 * _INIT macro. A shipped signature never changes; new behaviour comes as new functions.
 */
#ifndef TANDEM_H
#define TANDEM_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TANDEM_EXPORT __attribute__((visibility("default")))
#else
#define TANDEM_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status codes, errors, memory ---------------------------------------------- */

enum {
  TANDEM_OK = 0,
  TANDEM_NOT_FOUND = 1,    /* the record, replica or thing asked for does not exist */
  TANDEM_INVALID = 2,      /* a bad argument: fix the input */
  TANDEM_CORRUPT = 3,      /* stored or received bytes are damaged or not Tandem's */
  TANDEM_UNAUTHORIZED = 4, /* a peer or key is not trusted; an invite expired or was used */
  TANDEM_IO = 5,           /* the operating system failed (disk, network); may be retried */
  TANDEM_BUSY = 6,         /* transient; retry (also: a wait timed out, or another node
                              syncs the replica until it stops: tandem_node_new) */
  TANDEM_UNSUPPORTED = 7,  /* a newer format or protocol than this library */
  TANDEM_WRONG_TYPE = 8,   /* a typed read of a field of another type */
  TANDEM_TOO_SMALL = 9,    /* the caller's buffer is too small; the size needed is given */
  TANDEM_INTERNAL = 10     /* a bug in Tandem; the message says more */
};

typedef struct tandem_error {
  int status;
  char message[512]; /* one line, NUL-terminated, truncated to fit */
} tandem_error;

/* Static text for a status code ("not found", ...). */
TANDEM_EXPORT const char* tandem_status_str(int status);
/* The library version, "MAJOR.MINOR.PATCH". */
TANDEM_EXPORT const char* tandem_version(void);
/* Frees memory the library returned. NULL is a no-op. */
TANDEM_EXPORT void tandem_free(void* p);

/* ---- Values --------------------------------------------------------------------- */

enum {
  TANDEM_NULL = 0,
  TANDEM_BOOL = 1,
  TANDEM_INT = 2,
  TANDEM_DOUBLE = 3,
  TANDEM_STRING = 4, /* valid UTF-8 */
  TANDEM_BYTES = 5,
  TANDEM_BLOB = 6 /* a reference to a blob (see Blobs below): read only, as JSON */
};

typedef struct tandem_value {
  int type;         /* TANDEM_NULL ... TANDEM_BYTES */
  int64_t i;        /* TANDEM_INT; TANDEM_BOOL: 0 or 1 */
  double d;         /* TANDEM_DOUBLE: finite (NaN and infinities are refused) */
  const char* data; /* TANDEM_STRING, TANDEM_BYTES: data[0..len), copied */
  size_t len;
} tandem_value;

/* ---- Replicas ------------------------------------------------------------------- */

typedef struct tandem_db tandem_db;

enum { TANDEM_DURABLE = 0, TANDEM_RELAXED = 1 };

#define TANDEM_OPEN_OPTIONS_VERSION 1
typedef struct tandem_open_options {
  uint32_t version;
  /* TANDEM_DURABLE (default): each commit is on disk when it returns. TANDEM_RELAXED:
   * no fsync, for bulk loads; a power cut may lose the last commits (never corrupts).
   * Do not sync a relaxed replica with others. */
  int durability;
} tandem_open_options;
#define TANDEM_OPEN_OPTIONS_INIT \
  { TANDEM_OPEN_OPTIONS_VERSION, TANDEM_DURABLE }

/* Creates a replica in `dir` (created; must be empty or missing): a new device with its
 * own identity, in a sync group of one. `options` may be NULL. */
TANDEM_EXPORT int tandem_db_create(tandem_db** out, const char* dir,
                                   const tandem_open_options* options, tandem_error* err);
/* Opens an existing replica. Opening a directory this process has open already gives a
 * second handle to the same replica (TANDEM_INVALID if with another durability). A handle
 * does not survive fork(): in the child every call with an inherited handle fails with
 * TANDEM_INVALID (closing it is allowed and releases nothing the parent holds), and
 * opening the directory there opens it afresh. Open replicas after forking workers (or
 * start them with exec, as Python's "spawn" does). */
TANDEM_EXPORT int tandem_db_open(tandem_db** out, const char* dir,
                                 const tandem_open_options* options, tandem_error* err);
/* Closes the handle. A node or subscription started from it keeps the replica open
 * until it is freed. NULL is a no-op. */
TANDEM_EXPORT void tandem_db_close(tandem_db* db);
/* {"device_id": ..., "replica_id": ..., "version_vector": {...}} */
TANDEM_EXPORT int tandem_db_info(char** json, size_t* len, tandem_db* db, tandem_error* err);
/* This device's id (as `tandem init` prints it). */
TANDEM_EXPORT int tandem_db_device_id(char** id, tandem_db* db, tandem_error* err);

/* ---- Writing -------------------------------------------------------------------- */

/* One operation, one durable transaction each. */
TANDEM_EXPORT int tandem_put(tandem_db* db, const char* collection, const char* id,
                             const char* field, const tandem_value* value, tandem_error* err);
/* Sets several register fields of a record from a JSON object of scalars, for example
 * {"name": "Espresso cup", "price": 4.5} ({"$bytes": "<base64>"} for bytes). */
TANDEM_EXPORT int tandem_put_json(tandem_db* db, const char* collection, const char* id,
                                  const char* json, size_t len, tandem_error* err);
/* Adds `by` (may be negative) to a counter field. */
TANDEM_EXPORT int tandem_incr(tandem_db* db, const char* collection, const char* id,
                              const char* field, int64_t by, tandem_error* err);
/* Adds or removes an element of an add-wins set field. A removal from a field that holds
 * nothing (never written, or its record deleted) succeeds and writes nothing. */
TANDEM_EXPORT int tandem_add(tandem_db* db, const char* collection, const char* id,
                             const char* field, const tandem_value* element, tandem_error* err);
TANDEM_EXPORT int tandem_remove(tandem_db* db, const char* collection, const char* id,
                                const char* field, const tandem_value* element, tandem_error* err);
/* Deletes a live record; TANDEM_NOT_FOUND if it is absent or deleted. */
TANDEM_EXPORT int tandem_delete(tandem_db* db, const char* collection, const char* id,
                                tandem_error* err);

/* A write batch: operations recorded (and checked) one by one, then committed together
 * by tandem_db_write in one transaction: all or nothing. Like LevelDB's WriteBatch. */
typedef struct tandem_batch tandem_batch;
TANDEM_EXPORT int tandem_batch_new(tandem_batch** out, tandem_error* err);
TANDEM_EXPORT void tandem_batch_free(tandem_batch* batch);
/* Forgets the recorded operations, to reuse the batch. */
TANDEM_EXPORT int tandem_batch_clear(tandem_batch* batch, tandem_error* err);
/* The number of operations recorded. */
TANDEM_EXPORT size_t tandem_batch_count(const tandem_batch* batch);
TANDEM_EXPORT int tandem_batch_put(tandem_batch* batch, const char* collection, const char* id,
                                   const char* field, const tandem_value* value, tandem_error* err);
TANDEM_EXPORT int tandem_batch_put_json(tandem_batch* batch, const char* collection, const char* id,
                                        const char* json, size_t len, tandem_error* err);
TANDEM_EXPORT int tandem_batch_incr(tandem_batch* batch, const char* collection, const char* id,
                                    const char* field, int64_t by, tandem_error* err);
TANDEM_EXPORT int tandem_batch_add(tandem_batch* batch, const char* collection, const char* id,
                                   const char* field, const tandem_value* element,
                                   tandem_error* err);
TANDEM_EXPORT int tandem_batch_remove(tandem_batch* batch, const char* collection, const char* id,
                                      const char* field, const tandem_value* element,
                                      tandem_error* err);
/* In a batch, deleting a record that is absent is not an error. */
TANDEM_EXPORT int tandem_batch_delete(tandem_batch* batch, const char* collection, const char* id,
                                      tandem_error* err);
/* Commits the batch in one transaction. The batch keeps its operations (clear it to
 * reuse it). */
TANDEM_EXPORT int tandem_db_write(tandem_db* db, const tandem_batch* batch, tandem_error* err);

/* ---- Reading -------------------------------------------------------------------- */

/* A record as one JSON object: {"id": ..., "field": value, ...}; counters are numbers,
 * sets sorted arrays. TANDEM_NOT_FOUND if absent or deleted. */
TANDEM_EXPORT int tandem_get_json(char** json, size_t* len, tandem_db* db, const char* collection,
                                  const char* id, tandem_error* err);

/* A record for typed reads: a snapshot, immutable, usable from any thread. */
typedef struct tandem_record tandem_record;
enum { TANDEM_REGISTER = 1, TANDEM_COUNTER = 2, TANDEM_SET = 3 };
TANDEM_EXPORT int tandem_get(tandem_record** out, tandem_db* db, const char* collection,
                             const char* id, tandem_error* err);
TANDEM_EXPORT void tandem_record_free(tandem_record* record);
/* Fields, in name order; the name is owned by the record. */
TANDEM_EXPORT size_t tandem_record_field_count(const tandem_record* record);
TANDEM_EXPORT const char* tandem_record_field_name(const tandem_record* record, size_t index);
/* The field's kind (TANDEM_REGISTER, _COUNTER, _SET) and, for a register, its value type
 * (TANDEM_NULL ... TANDEM_BLOB; TANDEM_INT for a counter, -1 for a set). */
TANDEM_EXPORT int tandem_record_kind(int* kind, int* type, const tandem_record* record,
                                     const char* field, tandem_error* err);
/* Typed reads. TANDEM_NOT_FOUND if the record has no such field, TANDEM_WRONG_TYPE if it
 * holds another type. get_int reads int registers and counters. */
TANDEM_EXPORT int tandem_record_get_int(int64_t* value, const tandem_record* record,
                                        const char* field, tandem_error* err);
TANDEM_EXPORT int tandem_record_get_double(double* value, const tandem_record* record,
                                           const char* field, tandem_error* err);
TANDEM_EXPORT int tandem_record_get_bool(int* value, const tandem_record* record, const char* field,
                                         tandem_error* err);
/* Copies a string or bytes value into buf[0..cap) and sets *len to its length; a string
 * is NUL-terminated when there is room. TANDEM_TOO_SMALL (with *len set) if cap < *len;
 * so buf NULL and cap 0 learns the length (TANDEM_TOO_SMALL unless the value is empty). */
TANDEM_EXPORT int tandem_record_get_string(char* buf, size_t cap, size_t* len,
                                           const tandem_record* record, const char* field,
                                           tandem_error* err);
TANDEM_EXPORT int tandem_record_get_bytes(char* buf, size_t cap, size_t* len,
                                          const tandem_record* record, const char* field,
                                          tandem_error* err);
/* Any field as JSON (a set as a sorted array). */
TANDEM_EXPORT int tandem_record_field_json(char** json, size_t* len, const tandem_record* record,
                                           const char* field, tandem_error* err);

/* The collections that hold records: a JSON array of names, sorted. */
TANDEM_EXPORT int tandem_collections(char** json, size_t* len, tandem_db* db, tandem_error* err);

/* Iterating a collection in record id order, from the record after `after` (NULL or ""
 * for the start). Each step reads a fresh snapshot; records written meanwhile after the
 * current position are seen. */
typedef struct tandem_iter tandem_iter;
TANDEM_EXPORT int tandem_iter_new(tandem_iter** out, tandem_db* db, const char* collection,
                                  const char* after, tandem_error* err);
TANDEM_EXPORT void tandem_iter_free(tandem_iter* it);
/* The next record as JSON (as tandem_get_json), or *json = NULL at the end. */
TANDEM_EXPORT int tandem_iter_next(char** json, size_t* len, tandem_iter* it, tandem_error* err);

/* Fields of a record in conflict, with their concurrent writes (siblings), winner
 * first: {"field": [{"value", "kind", "writer", "hlc", "time", "winner"}, ...]}. */
TANDEM_EXPORT int tandem_conflicts_json(char** json, size_t* len, tandem_db* db,
                                        const char* collection, const char* id, tandem_error* err);

/* ---- Schemas ---------------------------------------------------------------------- */

/* Sets a collection's schema (JSON: field types, required, ranges, patterns, enums,
 * normalizers, conflict rules; see docs/schema.md). It is stored as a replicated record,
 * so it reaches every device by sync; from then on every local write through a handle
 * follows it (a write that breaks it fails with TANDEM_INVALID naming the field and the
 * rule, and changes nothing), and changes from peers that break it are held in
 * quarantine. *version (may be NULL) gets the new version number (1, 2, ...). */
TANDEM_EXPORT int tandem_schema_set(tandem_db* db, const char* collection, const char* json,
                                    int64_t* version, tandem_error* err);
/* The collection's current schema as JSON and its version, or *json = NULL (and
 * *version = 0) when it has none. `version` may be NULL. */
TANDEM_EXPORT int tandem_schema_get(char** json, size_t* len, int64_t* version, tandem_db* db,
                                    const char* collection, tandem_error* err);

/* ---- The change feed -------------------------------------------------------------- */

/* Records changed after `since` (0: from the start), each once, at its latest change, as
 * a JSON array of {"collection", "id", "cursor", "deleted", "record"?}; at most `limit`
 * change-log entries are read (0: 1000). *next is the cursor to pass next time. Tandem's
 * own collections (names starting with "_tandem", the trust set) are left out, here and
 * in subscriptions; their entries still count towards `limit`, so a page may be empty
 * with more after it: the feed is read to its end when *next == since. */
TANDEM_EXPORT int tandem_changes(char** json, size_t* len, uint64_t* next, tandem_db* db,
                                 uint64_t since, size_t limit, tandem_error* err);

/* A subscription to the change feed from a cursor, seeing commits by this process and
 * by others. Two ways to receive changes:
 *  - callback: `fn` is called once per changed record, in cursor order, on a thread the
 *    subscription owns (one per subscription). `json` is the change as in
 *    tandem_changes; it is valid during the call only.
 *  - polling (fn NULL): tandem_watch_fd gives a descriptor that becomes readable when
 *    there may be changes; tandem_watch_drain returns them. For apps with their own
 *    event loop (libuv, GLib, a run loop). */
typedef struct tandem_watch tandem_watch;
typedef void (*tandem_change_fn)(const char* json, size_t len, uint64_t cursor, void* context);
TANDEM_EXPORT int tandem_watch_new(tandem_watch** out, tandem_db* db, uint64_t since,
                                   tandem_change_fn fn, void* context, tandem_error* err);
/* Stops the subscription; after it returns (when called from another thread) the
 * callback is not running and will not run again. From inside the callback it is
 * allowed too: the subscription ends once the callback returns. NULL is a no-op. */
TANDEM_EXPORT void tandem_watch_free(tandem_watch* w);
TANDEM_EXPORT int tandem_watch_fd(int* fd, tandem_watch* w, tandem_error* err);
/* Polling mode: the changes since the last drain (a JSON array, possibly empty) and the
 * cursor reached; clears the descriptor's readiness. */
TANDEM_EXPORT int tandem_watch_drain(char** json, size_t* len, uint64_t* cursor, tandem_watch* w,
                                     tandem_error* err);

/* ---- Pairing -------------------------------------------------------------------- */

/* A one-time invite code for a new device: this device's key, a secret, an expiry
 * (minutes, 1 to 43200; 0 means 1440) and up to 8 "HOST:PORT" hints where this device
 * can be reached. Pass it over a channel you trust: the first to use it joins. */
TANDEM_EXPORT int tandem_invite(char** code, size_t* len, tandem_db* db,
                                const char* const* addresses, size_t address_count,
                                int expires_minutes, tandem_error* err);
/* The same, for a device that joins with `role`: "reader", "member" (what tandem_invite
 * grants) or "admin"; below this device's own role (TANDEM_UNAUTHORIZED otherwise, or
 * if this device may not invite at all: only admins and owners do). */
TANDEM_EXPORT int tandem_invite_role(char** code, size_t* len, tandem_db* db,
                                     const char* const* addresses, size_t address_count,
                                     int expires_minutes, const char* role, tandem_error* err);
/* Stores an invite code; the next sync with the inviter (a node) joins its group.
 * Joining merges both ways, so a replica that already holds records or trusts other
 * devices is refused (TANDEM_INVALID, saying what it holds); tandem_join_merge
 * joins with them. */
TANDEM_EXPORT int tandem_join(tandem_db* db, const char* code, size_t len, tandem_error* err);
TANDEM_EXPORT int tandem_join_merge(tandem_db* db, const char* code, size_t len, tandem_error* err);
TANDEM_EXPORT int tandem_join_cancel(tandem_db* db, tandem_error* err);
/* The group's devices: a JSON array of {"device", "device_id" (the same), "status"
 * ("member" or "revoked"), "role" ("reader", "member", "admin" or "owner"), "founder",
 * "granted_by", "revoked_by", "added_by" (= granted_by), "added_ms", "this_device"}. */
TANDEM_EXPORT int tandem_devices(char** json, size_t* len, tandem_db* db, tandem_error* err);
/* Every member refuses the device once the revocation has synced to it. Signed by this
 * device: TANDEM_UNAUTHORIZED, saying why, unless it is an admin or above and outranks
 * the device. */
TANDEM_EXPORT int tandem_revoke(tandem_db* db, const char* device_id, tandem_error* err);
/* Gives a device another role ("reader", "member", "admin", "owner"): below this
 * device's own, for a device ranking below it (TANDEM_UNAUTHORIZED otherwise). */
TANDEM_EXPORT int tandem_set_role(tandem_db* db, const char* device_id, const char* role,
                                  tandem_error* err);

/* ---- Blobs (attachments) ------------------------------------------------------ */

/* Content too large for a field (photos, PDFs) is stored as a blob: in chunks beside
 * the fields, addressed by a hash of its content, synced in chunks that resume after a
 * cut, and referenced from a field as {"$blob": "<64 hex digits>", "size": N, "type":
 * "image/png"} (a register of type TANDEM_BLOB; tandem_record_field_json reads it).
 * Memory stays small whatever the size (at most 8 GiB): both calls stream. A
 * reference's "size" is what its writer stated (checked only where the blob was
 * present): once the blob is here, tandem_blob_info gives its true size. */

/* A source: fills buf[0..cap) and sets *len to how many bytes it put there (0: the end).
 * Any status but TANDEM_OK stops the write with that status. */
typedef int (*tandem_read_fn)(char* buf, size_t cap, size_t* len, void* context);
/* A sink: takes bytes[0..len), in order. Any status but TANDEM_OK stops the read. */
typedef int (*tandem_write_fn)(const char* bytes, size_t len, void* context);

/* Stores what `read` yields as a blob and puts its reference in the field, in the
 * transaction that completes the blob (nothing is referenced if it fails). `type` (a
 * media type, printable ASCII, may be NULL) goes in the reference. *ref (may be NULL)
 * gets the reference as JSON. Called on the calling thread. */
TANDEM_EXPORT int tandem_attach(char** ref, size_t* len, tandem_db* db, const char* collection,
                                const char* id, const char* field, tandem_read_fn read,
                                void* context, const char* type, tandem_error* err);
/* Streams the blob `hash` (64 hex digits) from byte `offset` to `write`, every chunk
 * checked against its hash first (TANDEM_CORRUPT if one does not match). When the
 * replica does not have it whole yet: TANDEM_NOT_FOUND, and the blob is requested, so
 * a running node fetches it from a peer that has it even where blobs are fetched
 * lazily; tandem_blob_info says when it is here. */
TANDEM_EXPORT int tandem_blob_read(tandem_db* db, const char* hash, uint64_t offset,
                                   tandem_write_fn write, void* context, tandem_error* err);
/* What the replica knows of a blob: {"hash", "size", "state" ("complete", "wanted" or
 * "requested"), "chunks", "chunks_held"}. TANDEM_NOT_FOUND if no field references it. */
TANDEM_EXPORT int tandem_blob_info(char** json, size_t* len, tandem_db* db, const char* hash,
                                   tandem_error* err);

/* ---- Backup and checks ---------------------------------------------------------- */

/* A consistent copy of the replica with its keys, while others keep writing. */
TANDEM_EXPORT int tandem_backup(tandem_db* db, const char* dest, tandem_error* err);
/* A new replica at `dir` from a backup: a new replica id, the same device and group. */
TANDEM_EXPORT int tandem_restore(const char* backup, const char* dir, tandem_error* err);
/* Integrity check: {"ok": true, "records": n, "fields": n, "log_entries": n, "blobs": n,
 * "blob_bytes": n} (every chunk of every blob read and checked against its hash), then
 * the key files present in the directory, each of which must read back.
 * TANDEM_NOT_FOUND if the device belongs to a group but its identity.key is missing:
 * it cannot pair or sync until the key is restored from a backup. TANDEM_UNAUTHORIZED
 * if its group is signed but group.root is missing: it cannot tell who may do what until
 * the file is copied back from another member or a backup. */
TANDEM_EXPORT int tandem_check(char** json, size_t* len, tandem_db* db, tandem_error* err);

/* ---- The sync node ---------------------------------------------------------------- */

typedef struct tandem_node tandem_node;

enum { TANDEM_NODE_LIVE = 0, TANDEM_NODE_INTERVAL = 1, TANDEM_NODE_ONCE = 2 };

#define TANDEM_NODE_OPTIONS_VERSION 1
typedef struct tandem_node_options {
  uint32_t version;
  const char* listen;       /* "HOST:PORT" to accept peers on (port 0: any); NULL: none */
  const char* const* peers; /* "HOST:PORT" of peers to dial */
  size_t peer_count;
  int mode;            /* TANDEM_NODE_LIVE, _INTERVAL (every interval_s), _ONCE */
  int interval_s;      /* TANDEM_NODE_INTERVAL */
  int discover;        /* find group members on the LAN (needs listen) */
  const char* send;    /* "coll1,coll2": only send these; "": none (one-way); NULL: all */
  const char* receive; /* likewise for what is accepted */
  int idle_timeout_s;  /* a connection without progress this long ends (default 45) */
  int stop_timeout_ms; /* how long stopping waits for goodbyes (default 5000) */
} tandem_node_options;
#define TANDEM_NODE_OPTIONS_INIT \
  { TANDEM_NODE_OPTIONS_VERSION, NULL, NULL, 0, TANDEM_NODE_LIVE, 0, 0, NULL, NULL, 45, 5000 }

enum {
  TANDEM_EVENT_LISTENING = 0,       /* address: where it listens */
  TANDEM_EVENT_CONNECTED = 1,       /* a session with a peer began */
  TANDEM_EVENT_CAUGHT_UP = 2,       /* a session caught up both ways */
  TANDEM_EVENT_DISCONNECTED = 3,    /* a session ended; message: why, if it failed */
  TANDEM_EVENT_REFUSED = 4,         /* a connection was refused; message: why */
  TANDEM_EVENT_ERROR = 5,           /* something failed; message */
  TANDEM_EVENT_JOINED = 6,          /* this device joined a group (device: the inviter) */
  TANDEM_EVENT_INVITE_REDEEMED = 7, /* a device redeemed one of our invites */
  TANDEM_EVENT_DONE = 8,            /* TANDEM_NODE_ONCE: every peer done; ok: all caught up */
  TANDEM_EVENT_STOPPED = 9          /* the node stopped; its last event */
};

typedef struct tandem_node_event {
  int kind;            /* TANDEM_EVENT_... */
  const char* device;  /* the peer's device id, or "" */
  const char* address; /* "HOST:PORT", or "" */
  const char* message; /* or "" */
  int ok;              /* TANDEM_EVENT_DONE: every peer caught up; 0 for ERROR, REFUSED */
  uint64_t fields_received, fields_sent;
} tandem_node_event;
/* Called on the node's own thread; the event is valid during the call only. */
typedef void (*tandem_node_event_fn)(const tandem_node_event* event, void* context);

/* A node syncing `db` with its peers. `fn` may be NULL (events are also queued, see
 * tandem_node_drain_events). The node keeps the replica open until it is freed. A live
 * or interval node is refused (TANDEM_BUSY) while another one, in this process or any
 * other (a `tandem serve`), exists and has not stopped; a once node is not. (A child
 * forked meanwhile shares that hold until it exits or execs.) */
TANDEM_EXPORT int tandem_node_new(tandem_node** out, tandem_db* db,
                                  const tandem_node_options* options, tandem_node_event_fn fn,
                                  void* context, tandem_error* err);
/* Returns once the node listens (or with the error); it then runs on its own thread. */
TANDEM_EXPORT int tandem_node_start(tandem_node* node, tandem_error* err);
/* Stops: from another thread, returns after goodbyes (at most stop_timeout_ms); from the
 * node's callback, begins stopping and returns at once. */
TANDEM_EXPORT int tandem_node_stop(tandem_node* node, tandem_error* err);
/* Waits until the node has stopped (TANDEM_NODE_ONCE: by itself when done), at most
 * timeout_ms (-1: no limit); TANDEM_BUSY on timeout. */
TANDEM_EXPORT int tandem_node_wait(tandem_node* node, int timeout_ms, tandem_error* err);
/* Stops the node and frees it; its callback is not called after this returns. Allowed
 * from its own callback. NULL is a no-op. */
TANDEM_EXPORT void tandem_node_free(tandem_node* node);
/* What `tandem status` shows, as JSON: {"running", "device", "listen", "mode",
 * "refused_connections", "failures", "peers": [{"address", "device", "replica_id",
 * "direction", "connected", "last_sync_ms", "bytes_in", "bytes_out", "sessions",
 * "errors", "fields_sent", "fields_received", "fields_refused", "pending_changes",
 * "last_error"}]}. */
TANDEM_EXPORT int tandem_node_status(char** json, size_t* len, tandem_node* node,
                                     tandem_error* err);
/* The address the node listens on ("" if none), once started. */
TANDEM_EXPORT int tandem_node_listen_address(char** address, tandem_node* node, tandem_error* err);
/* Queue mode: a descriptor readable while events are queued, and the events as a JSON
 * array of {"kind": "connected", "device", "address", "message", "ok",
 * "fields_received", "fields_sent"}. At most 10,000 are kept. */
TANDEM_EXPORT int tandem_node_event_fd(int* fd, tandem_node* node, tandem_error* err);
TANDEM_EXPORT int tandem_node_drain_events(char** json, size_t* len, tandem_node* node,
                                           tandem_error* err);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TANDEM_H */
