/* The C API, tested in C11 against tandem.h alone: every function, its error paths, the
 * ownership and threading rules of the header, and two replicas syncing in one process.
 *
 * Waits are loops bounded by a generous deadline; nothing asserts a duration. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tandem.h"

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

/* ---- Status checks ---------------------------------------------------------------- */

/* Checks a call's status and what it put in `err`: on failure the same code and a
 * non-empty one-line message, on success nothing (err is reset to a sentinel first). */
static void check_status(const char* file, int line, const char* call, int rc, int want,
                         const tandem_error* err) {
  if (rc != want) {
    fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s)%s%s\n", file, line, call, rc,
            tandem_status_str(rc), want, tandem_status_str(want), rc ? ": " : "",
            rc && err->status == rc ? err->message : "");
    ++failures;
    return;
  }
  if (rc == TANDEM_OK) {
    if (err->status != -1 || err->message[0] != '\0') {
      fprintf(stderr, "%s:%d: %s: err written on success\n", file, line, call);
      ++failures;
    }
    return;
  }
  if (err->status != rc || err->message[0] == '\0' || strchr(err->message, '\n') ||
      strchr(err->message, '\r') || strlen(err->message) >= sizeof err->message) {
    fprintf(stderr, "%s:%d: %s: bad err (status %d, message \"%s\")\n", file, line, call,
            err->status, err->message);
    ++failures;
  }
}

static void err_reset(tandem_error* err) {
  err->status = -1;
  err->message[0] = '\0';
}

/* EXPECT(code, call): `call` passes &err (a tandem_error named err in scope). */
#define EXPECT(want, call)                                         \
  do {                                                             \
    err_reset(&err);                                               \
    check_status(__FILE__, __LINE__, #call, (call), (want), &err); \
  } while (0)

/* ---- Directories -------------------------------------------------------------------- */

static char root[64];

static void path_of(char* out, size_t cap, const char* name) {
  snprintf(out, cap, "%s/%s", root, name);
}

static int remove_entry(const char* path, const struct stat* sb, int flag, struct FTW* ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void remove_tree(const char* path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void make_dir(const char* name) {
  char p[256];
  path_of(p, sizeof p, name);
  CHECK(mkdir(p, 0700) == 0);
}

static void write_file(const char* dir_name, const char* file, const char* data, size_t len) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s/%s", root, dir_name, file);
  FILE* f = fopen(p, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(data, 1, len, f) == len);
  fclose(f);
}

static tandem_db* must_create(const char* name) {
  char p[256];
  tandem_error err;
  tandem_db* db = NULL;
  path_of(p, sizeof p, name);
  EXPECT(TANDEM_OK, tandem_db_create(&db, p, NULL, &err));
  return db;
}

/* ---- Helpers ------------------------------------------------------------------------ */

/* A JSON literal as the pointer and length arguments. */
#define JSON_ARG(text) (text), strlen(text)

static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static int contains(const char* hay, const char* needle) {
  return hay && strstr(hay, needle) != NULL;
}

static size_t count_of(const char* hay, const char* needle) {
  size_t n = 0;
  size_t step = strlen(needle);
  while (hay && (hay = strstr(hay, needle)) != NULL) {
    ++n;
    hay += step;
  }
  return n;
}

/* The string value of the first "key":"..." in json (no escapes needed in our tests). */
static int json_string(const char* json, const char* key, char* out, size_t cap) {
  char pat[64];
  const char *p, *end;
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  out[0] = '\0';
  p = json ? strstr(json, pat) : NULL;
  if (!p) return 0;
  p += strlen(pat);
  end = strchr(p, '"');
  if (!end || (size_t)(end - p) >= cap) return 0;
  memcpy(out, p, (size_t)(end - p));
  out[end - p] = '\0';
  return 1;
}

static tandem_value v_null(void) {
  tandem_value v = {TANDEM_NULL, 0, 0.0, NULL, 0};
  return v;
}
static tandem_value v_bool(int b) {
  tandem_value v = {TANDEM_BOOL, 0, 0.0, NULL, 0};
  v.i = b;
  return v;
}
static tandem_value v_int(int64_t i) {
  tandem_value v = {TANDEM_INT, 0, 0.0, NULL, 0};
  v.i = i;
  return v;
}
static tandem_value v_double(double d) {
  tandem_value v = {TANDEM_DOUBLE, 0, 0.0, NULL, 0};
  v.d = d;
  return v;
}
static tandem_value v_str(const char* s, size_t len) {
  tandem_value v = {TANDEM_STRING, 0, 0.0, NULL, 0};
  v.data = s;
  v.len = len;
  return v;
}
static tandem_value v_cstr(const char* s) { return v_str(s, strlen(s)); }
static tandem_value v_bytes(const char* s, size_t len) {
  tandem_value v = {TANDEM_BYTES, 0, 0.0, NULL, 0};
  v.data = s;
  v.len = len;
  return v;
}

/* A record as JSON, or NULL if tandem_get_json fails. Free with tandem_free. */
static char* get_json(tandem_db* db, const char* collection, const char* id) {
  char* json = NULL;
  size_t len = 0;
  if (tandem_get_json(&json, &len, db, collection, id, NULL) != TANDEM_OK) return NULL;
  if (json && strlen(json) != len) ++failures;
  return json;
}

/* Whether the record's JSON equals `want`. */
static int record_is(tandem_db* db, const char* collection, const char* id, const char* want) {
  char* json = get_json(db, collection, id);
  int same = json && strcmp(json, want) == 0;
  if (!same) fprintf(stderr, "  %s/%s is %s, want %s\n", collection, id, json ? json : "?", want);
  tandem_free(json);
  return same;
}

static int is_absent(tandem_db* db, const char* collection, const char* id) {
  char* json = (char*)"unset";
  size_t len = 0;
  int rc = tandem_get_json(&json, &len, db, collection, id, NULL);
  if (rc == TANDEM_OK) tandem_free(json);
  return rc == TANDEM_NOT_FOUND;
}

/* Waits (bounded) until the record can be read. */
static int eventually_present(tandem_db* db, const char* collection, const char* id) {
  int i;
  for (i = 0; i < 2000; ++i) {
    char* json = get_json(db, collection, id);
    if (json) {
      tandem_free(json);
      return 1;
    }
    sleep_ms(10);
  }
  return 0;
}

/* The change-feed cursor after everything committed so far. */
static uint64_t latest_cursor(tandem_db* db) {
  uint64_t since = 0, next = 0;
  int i;
  for (i = 0; i < 100000; ++i) {
    char* json = NULL;
    if (tandem_changes(&json, NULL, &next, db, since, 0, NULL) != TANDEM_OK) {
      ++failures;
      return since;
    }
    tandem_free(json);
    if (next == since) break;
    since = next;
  }
  return since;
}

/* The change feed after `since`, as JSON (free with tandem_free). */
static char* changes_since(tandem_db* db, uint64_t since) {
  char* json = NULL;
  uint64_t next = 0;
  if (tandem_changes(&json, NULL, &next, db, since, 0, NULL) != TANDEM_OK) return NULL;
  return json;
}

/* ---- Callback sinks ------------------------------------------------------------------ */

enum { ACT_NONE, ACT_FREE_WATCH, ACT_STOP_NODE, ACT_FREE_NODE };

/* What a callback saw, shared with the thread that waits for it. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char* text; /* every delivery, one line each */
  size_t len;
  int calls;
  int counts[16]; /* node events by kind */
  int done_ok;
  uint64_t last_cursor;
  int bad;       /* deliveries that broke a rule of the header */
  tandem_db* db; /* watch: read through the API from inside the callback */
  int reads_ok;
  void* self; /* the watch or node to act on (ACT_...) */
  int action;
  int acted, act_rc, status_rc, after_act;
} sink;

static void sink_init(sink* s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->text = calloc(1, 1);
  s->act_rc = -1;
  s->status_rc = -1;
  s->done_ok = -1;
}

static void sink_destroy(sink* s) {
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->text);
  s->text = NULL;
}

/* Under s->mu. */
static void sink_append(sink* s, const char* line) {
  size_t n = strlen(line);
  char* t = realloc(s->text, s->len + n + 2);
  if (!t) return;
  s->text = t;
  memcpy(s->text + s->len, line, n);
  s->len += n;
  s->text[s->len++] = '\n';
  s->text[s->len] = '\0';
}

typedef int (*sink_pred)(const sink* s, const void* arg);

/* Waits until pred holds, at most `seconds`; returns whether it holds. */
static int sink_wait(sink* s, sink_pred pred, const void* arg, int seconds) {
  struct timespec deadline;
  int ok;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += seconds;
  pthread_mutex_lock(&s->mu);
  while (!(ok = pred(s, arg)))
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) {
      ok = pred(s, arg);
      break;
    }
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static int has_text(const sink* s, const void* needle) {
  return strstr(s->text, (const char*)needle) != NULL;
}
static int has_event(const sink* s, const void* kind) { return s->counts[*(const int*)kind] > 0; }
static int has_acted(const sink* s, const void* unused) {
  (void)unused;
  return s->acted;
}

static int sink_wait_text(sink* s, const char* needle) {
  return sink_wait(s, has_text, needle, 20);
}
static int sink_wait_event(sink* s, int kind) { return sink_wait(s, has_event, &kind, 20); }

static int sink_count(sink* s, int kind) {
  int n;
  pthread_mutex_lock(&s->mu);
  n = s->counts[kind];
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* A change callback: checks what it is given, reads the record back through the API
 * (callbacks may call into it), and frees its own subscription when asked to. */
static void on_change(const char* json, size_t len, uint64_t cursor, void* context) {
  sink* s = context;
  tandem_db* db;
  tandem_watch* self = NULL;
  int read_rc = -1, deleted = json && strstr(json, "\"deleted\":true") != NULL;
  char collection[80], id[300];
  pthread_mutex_lock(&s->mu);
  db = s->db;
  if (s->action == ACT_FREE_WATCH && s->self && !s->acted) self = s->self;
  pthread_mutex_unlock(&s->mu);

  /* Read the record back first: once the delivery is visible below, the test goes on
   * (and may delete it). */
  if (db && json_string(json, "collection", collection, sizeof collection) &&
      json_string(json, "id", id, sizeof id)) {
    char* rec = NULL;
    size_t n = 0;
    read_rc = tandem_get_json(&rec, &n, db, collection, id, NULL);
    tandem_free(rec);
  }

  pthread_mutex_lock(&s->mu);
  if (s->acted) ++s->after_act;
  ++s->calls;
  if (!json || strlen(json) != len || cursor <= s->last_cursor) ++s->bad;
  if (json) {
    char pat[48];
    snprintf(pat, sizeof pat, "\"cursor\":%" PRIu64 ",", cursor);
    if (!strstr(json, pat)) ++s->bad;
    sink_append(s, json);
  }
  s->last_cursor = cursor;
  if (db) {
    if (read_rc == (deleted ? TANDEM_NOT_FOUND : TANDEM_OK))
      ++s->reads_ok;
    else
      ++s->bad;
  }
  pthread_mutex_unlock(&s->mu);

  if (self) tandem_watch_free(self); /* allowed from inside the callback */

  pthread_mutex_lock(&s->mu);
  if (self) s->acted = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* A node event callback: records the event; on CAUGHT_UP, stops or frees its own node
 * when asked to. */
static void on_node_event(const tandem_node_event* e, void* context) {
  sink* s = context;
  tandem_node* node = NULL;
  int action = ACT_NONE;
  char line[1024];
  pthread_mutex_lock(&s->mu);
  if (s->acted && s->action == ACT_FREE_NODE) ++s->after_act;
  ++s->calls;
  if (!e || !e->device || !e->address || !e->message || e->kind < 0 || e->kind > 9) {
    ++s->bad;
  } else {
    ++s->counts[e->kind];
    if (e->kind == TANDEM_EVENT_DONE) s->done_ok = e->ok;
    snprintf(line, sizeof line, "kind=%d ok=%d device=%s address=%s message=%s", e->kind, e->ok,
             e->device, e->address, e->message);
    sink_append(s, line);
    if (e->kind == TANDEM_EVENT_CAUGHT_UP && s->self && !s->acted) {
      node = s->self;
      action = s->action;
    }
  }
  pthread_mutex_unlock(&s->mu);

  if (node && action == ACT_STOP_NODE) {
    tandem_error err;
    char* json = NULL;
    int status_rc = tandem_node_status(&json, NULL, node, &err); /* calling back in */
    int rc = tandem_node_stop(node, &err);                       /* begins stopping */
    tandem_free(json);
    pthread_mutex_lock(&s->mu);
    s->status_rc = status_rc;
    s->act_rc = rc;
    s->acted = 1;
    pthread_mutex_unlock(&s->mu);
  } else if (node && action == ACT_FREE_NODE) {
    tandem_node_free(node); /* allowed from its own callback */
    pthread_mutex_lock(&s->mu);
    s->acted = 1;
    s->self = NULL;
    pthread_mutex_unlock(&s->mu);
  }
  pthread_mutex_lock(&s->mu);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* ---- Status, version, memory ------------------------------------------------------- */

static void test_status_and_version(void) {
  int a, b, major = -1, minor = -1, patch = -1;
  char extra;
  const char* v = tandem_version();
  CHECK(strcmp(tandem_status_str(TANDEM_OK), "ok") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_NOT_FOUND), "not found") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_INVALID), "invalid argument") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_CORRUPT), "corrupt") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_UNAUTHORIZED), "unauthorized") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_IO), "I/O error") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_BUSY), "busy") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_UNSUPPORTED), "unsupported") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_WRONG_TYPE), "wrong type") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_TOO_SMALL), "buffer too small") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_INTERNAL), "internal error") == 0);
  /* Every code has its own text; unknown codes still get static text. */
  for (a = TANDEM_OK; a <= TANDEM_INTERNAL; ++a)
    for (b = a + 1; b <= TANDEM_INTERNAL; ++b)
      CHECK(strcmp(tandem_status_str(a), tandem_status_str(b)) != 0);
  CHECK(tandem_status_str(TANDEM_INTERNAL + 1) != NULL);
  CHECK(tandem_status_str(-1) != NULL && tandem_status_str(-1)[0] != '\0');
  CHECK(tandem_status_str(12345) == tandem_status_str(-7));

  CHECK(v != NULL);
  CHECK(strcmp(v, "0.1.0") == 0);
  CHECK(sscanf(v, "%d.%d.%d%c", &major, &minor, &patch, &extra) == 3);
  CHECK(major >= 0 && minor >= 0 && patch >= 0);
  CHECK(tandem_version() == v);

  tandem_free(NULL);
}

/* ---- Replicas: create, open, close -------------------------------------------------- */

/* Every function that takes a tandem_db, given `bad` (NULL or closed): TANDEM_INVALID. */
static void check_bad_db(tandem_db* bad) {
  tandem_error err;
  char* json = (char*)"unset";
  size_t len = 7;
  uint64_t next = 0;
  tandem_value v = v_int(1);
  tandem_record* rec = (tandem_record*)&err;
  tandem_iter* it = (tandem_iter*)&err;
  tandem_watch* w = (tandem_watch*)&err;
  tandem_node* node = (tandem_node*)&err;
  tandem_batch* batch = NULL;
  tandem_node_options no = TANDEM_NODE_OPTIONS_INIT;
  const char* addr = "127.0.0.1:1";
  char dest[256];
  path_of(dest, sizeof dest, "never-backed-up");
  no.listen = "127.0.0.1:0";

  EXPECT(TANDEM_INVALID, tandem_db_info(&json, &len, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_db_device_id(&json, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_put(bad, "c", "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(bad, "c", "r", JSON_ARG("{\"f\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_incr(bad, "c", "r", "f", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_add(bad, "c", "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_remove(bad, "c", "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_delete(bad, "c", "r", &err));
  EXPECT(TANDEM_OK, tandem_batch_new(&batch, &err));
  EXPECT(TANDEM_OK, tandem_batch_put(batch, "c", "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_db_write(bad, batch, &err));
  tandem_batch_free(batch);
  EXPECT(TANDEM_INVALID, tandem_get_json(&json, &len, bad, "c", "r", &err));
  EXPECT(TANDEM_INVALID, tandem_get(&rec, bad, "c", "r", &err));
  CHECK(rec == NULL);
  EXPECT(TANDEM_INVALID, tandem_collections(&json, &len, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_iter_new(&it, bad, "c", NULL, &err));
  CHECK(it == NULL);
  EXPECT(TANDEM_INVALID, tandem_conflicts_json(&json, &len, bad, "c", "r", &err));
  EXPECT(TANDEM_INVALID, tandem_changes(&json, &len, &next, bad, 0, 0, &err));
  EXPECT(TANDEM_INVALID, tandem_watch_new(&w, bad, 0, NULL, NULL, &err));
  CHECK(w == NULL);
  EXPECT(TANDEM_INVALID, tandem_invite(&json, &len, bad, &addr, 1, 0, &err));
  EXPECT(TANDEM_INVALID, tandem_join(bad, "code", 4, &err));
  EXPECT(TANDEM_INVALID, tandem_join_merge(bad, "code", 4, &err));
  EXPECT(TANDEM_INVALID, tandem_join_cancel(bad, &err));
  EXPECT(TANDEM_INVALID, tandem_devices(&json, &len, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_revoke(bad, "AAAA-BBBB", &err));
  EXPECT(TANDEM_INVALID, tandem_set_role(bad, "AAAA-BBBB", "member", &err));
  EXPECT(TANDEM_INVALID, tandem_invite_role(&json, &len, bad, &addr, 1, 0, "member", &err));
  EXPECT(TANDEM_INVALID, tandem_backup(bad, dest, &err));
  EXPECT(TANDEM_INVALID, tandem_check(&json, &len, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_node_new(&node, bad, &no, NULL, NULL, &err));
  CHECK(node == NULL);
  /* Nothing was returned, so nothing to free. */
  CHECK(strcmp(json, "unset") == 0);
  /* err may be NULL. */
  CHECK(tandem_put(bad, "c", "r", "f", &v, NULL) == TANDEM_INVALID);
  CHECK(tandem_db_info(&json, NULL, bad, NULL) == TANDEM_INVALID);
}

static void test_db_lifecycle(void) {
  tandem_error err;
  tandem_db *db = NULL, *db2 = NULL, *db3 = NULL;
  char p[256], missing[256], empty[256], garbage[256], shortf[256], file[256], notempty[256];
  char relaxed[256];
  char garbage_bytes[4096];
  unsigned seed = 12345u;
  size_t i;
  tandem_open_options opts = TANDEM_OPEN_OPTIONS_INIT;
  tandem_value v = v_int(7);
  char *info1 = NULL, *info2 = NULL;
  char rid1[80], rid2[80];

  CHECK(opts.version == TANDEM_OPEN_OPTIONS_VERSION && opts.durability == TANDEM_DURABLE);
  path_of(p, sizeof p, "life");
  path_of(missing, sizeof missing, "missing/nested");
  path_of(empty, sizeof empty, "empty");
  path_of(garbage, sizeof garbage, "garbage");
  path_of(shortf, sizeof shortf, "short");
  path_of(file, sizeof file, "plainfile");
  path_of(notempty, sizeof notempty, "notempty");
  path_of(relaxed, sizeof relaxed, "relaxed");

  /* Bad arguments. */
  EXPECT(TANDEM_INVALID, tandem_db_create(NULL, p, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_db_create(&db, NULL, NULL, &err));
  CHECK(db == NULL);
  EXPECT(TANDEM_INVALID, tandem_db_create(&db, "", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_db_open(NULL, p, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_db_open(&db, NULL, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_db_open(&db, "", NULL, &err));
  opts.version = 0;
  EXPECT(TANDEM_INVALID, tandem_db_create(&db, p, &opts, &err));
  CHECK(db == NULL);
  EXPECT(TANDEM_INVALID, tandem_db_open(&db, p, &opts, &err));
  opts.version = TANDEM_OPEN_OPTIONS_VERSION;
  opts.durability = 42;
  EXPECT(TANDEM_INVALID, tandem_db_create(&db, p, &opts, &err));
  opts.durability = -1;
  EXPECT(TANDEM_INVALID, tandem_db_create(&db, p, &opts, &err));
  CHECK(db == NULL);
  opts.durability = TANDEM_DURABLE;

  /* Create in an empty directory (and in a missing one). */
  make_dir("life");
  EXPECT(TANDEM_OK, tandem_db_create(&db, p, &opts, &err));
  CHECK(db != NULL);
  EXPECT(TANDEM_OK, tandem_put(db, "c", "r", "f", &v, &err));
  CHECK(record_is(db, "c", "r", "{\"f\":7,\"id\":\"r\"}"));

  /* Create where a replica, or anything else, already is. */
  db2 = (tandem_db*)&err;
  EXPECT(TANDEM_INVALID, tandem_db_create(&db2, p, NULL, &err));
  CHECK(db2 == NULL);
  make_dir("notempty");
  write_file("notempty", "note.txt", "hello", 5);
  EXPECT(TANDEM_INVALID, tandem_db_create(&db2, notempty, NULL, &err));
  {
    FILE* f = fopen(file, "wb");
    CHECK(f != NULL);
    if (f) fclose(f);
  }
  EXPECT(TANDEM_INVALID, tandem_db_create(&db2, file, NULL, &err));
  CHECK(db2 == NULL);

  /* Open what is not a replica. */
  db2 = (tandem_db*)&err;
  EXPECT(TANDEM_NOT_FOUND, tandem_db_open(&db2, missing, NULL, &err));
  CHECK(db2 == NULL);
  CHECK(tandem_db_open(&db2, missing, NULL, NULL) == TANDEM_NOT_FOUND); /* err NULL */
  make_dir("empty");
  EXPECT(TANDEM_NOT_FOUND, tandem_db_open(&db2, empty, NULL, &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_db_open(&db2, notempty, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_db_open(&db2, file, NULL, &err));
  make_dir("garbage");
  for (i = 0; i < sizeof garbage_bytes; ++i) {
    seed = seed * 1103515245u + 12345u;
    garbage_bytes[i] = (char)(seed >> 16);
  }
  write_file("garbage", "data.mdb", garbage_bytes, sizeof garbage_bytes);
  EXPECT(TANDEM_CORRUPT, tandem_db_open(&db2, garbage, NULL, &err));
  CHECK(db2 == NULL);
  make_dir("short");
  write_file("short", "data.mdb", "tandem", 6);
  EXPECT(TANDEM_CORRUPT, tandem_db_open(&db2, shortf, NULL, &err));
  CHECK(db2 == NULL);

  /* The same directory twice: a second, working handle to the same replica. */
  EXPECT(TANDEM_OK, tandem_db_open(&db2, p, NULL, &err));
  CHECK(db2 != NULL && db2 != db);
  CHECK(record_is(db2, "c", "r", "{\"f\":7,\"id\":\"r\"}"));
  v = v_int(8);
  EXPECT(TANDEM_OK, tandem_put(db2, "c", "r", "f", &v, &err));
  CHECK(record_is(db, "c", "r", "{\"f\":8,\"id\":\"r\"}"));
  EXPECT(TANDEM_OK, tandem_db_info(&info1, NULL, db, &err));
  EXPECT(TANDEM_OK, tandem_db_info(&info2, NULL, db2, &err));
  CHECK(json_string(info1, "replica_id", rid1, sizeof rid1));
  CHECK(json_string(info2, "replica_id", rid2, sizeof rid2));
  CHECK(strcmp(rid1, rid2) == 0);
  tandem_free(info1);
  tandem_free(info2);
  /* ... but not with another durability. */
  opts.durability = TANDEM_RELAXED;
  db3 = (tandem_db*)&err;
  EXPECT(TANDEM_INVALID, tandem_db_open(&db3, p, &opts, &err));
  CHECK(db3 == NULL);
  opts.durability = TANDEM_DURABLE;
  /* Closing one handle keeps the other working. */
  tandem_db_close(db);
  v = v_int(9);
  EXPECT(TANDEM_OK, tandem_put(db2, "c", "r", "f", &v, &err));
  CHECK(record_is(db2, "c", "r", "{\"f\":9,\"id\":\"r\"}"));
  tandem_db_close(NULL);

  /* A closed handle, and NULL, are refused by every function. */
  tandem_db_close(db2);
  check_bad_db(db2);
  check_bad_db(NULL);
  tandem_db_close(db2); /* closed twice: a no-op, the library knows it is closed */

  /* Reopening after the last handle closed; the data is there. */
  EXPECT(TANDEM_OK, tandem_db_open(&db, p, NULL, &err));
  CHECK(record_is(db, "c", "r", "{\"f\":9,\"id\":\"r\"}"));
  tandem_db_close(db);

  /* TANDEM_RELAXED works, and its data survives a reopen. */
  opts.durability = TANDEM_RELAXED;
  EXPECT(TANDEM_OK, tandem_db_create(&db, relaxed, &opts, &err));
  v = v_cstr("bulk");
  EXPECT(TANDEM_OK, tandem_put(db, "c", "r", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_db_open(&db2, relaxed, &opts, &err));
  CHECK(record_is(db2, "c", "r", "{\"f\":\"bulk\",\"id\":\"r\"}"));
  tandem_db_close(db2);
  tandem_db_close(db);
  EXPECT(TANDEM_OK, tandem_db_open(&db, relaxed, NULL, &err));
  CHECK(record_is(db, "c", "r", "{\"f\":\"bulk\",\"id\":\"r\"}"));
  tandem_db_close(db);
}

/* A handle does not survive fork(): the child's calls with it fail, it may close it, and
 * it opens the replica afresh; the parent's handle goes on working, and sees the child's
 * write. */
static void test_fork(void) {
  tandem_error err;
  tandem_db* db = NULL;
  char p[256];
  pid_t child;
  int status = 0;
  tandem_value v = v_int(1);
  path_of(p, sizeof p, "forked");
  EXPECT(TANDEM_OK, tandem_db_create(&db, p, NULL, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "c", "before", "v", &v, &err));
  fflush(NULL);
  child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    int bad = 0;
    tandem_db* fresh = NULL;
    err_reset(&err);
    bad |= tandem_put(db, "c", "child", "v", &v, &err) != TANDEM_INVALID;
    bad |= strstr(err.message, "fork") == NULL;
    tandem_db_close(db);
    bad |= tandem_db_open(&fresh, p, NULL, &err) != TANDEM_OK;
    if (fresh) {
      bad |= tandem_put(fresh, "c", "child", "v", &v, &err) != TANDEM_OK;
      tandem_db_close(fresh);
    }
    _exit(bad ? 3 : 0);
  }
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(record_is(db, "c", "child", "{\"id\":\"child\",\"v\":1}"));
  EXPECT(TANDEM_OK, tandem_put(db, "c", "after", "v", &v, &err));
  tandem_db_close(db);
}

static void test_info(void) {
  tandem_error err;
  tandem_db* db = must_create("info");
  char *json = NULL, *id = NULL;
  size_t len = 0;
  char device[80], replica[80];

  EXPECT(TANDEM_OK, tandem_db_info(&json, &len, db, &err));
  CHECK(json && strlen(json) == len);
  CHECK(contains(json, "\"device_id\":\""));
  CHECK(contains(json, "\"replica_id\":\""));
  CHECK(contains(json, "\"version_vector\":{"));
  CHECK(json_string(json, "device_id", device, sizeof device) && device[0] != '\0');
  CHECK(json_string(json, "replica_id", replica, sizeof replica) && replica[0] != '\0');
  EXPECT(TANDEM_OK, tandem_db_device_id(&id, db, &err));
  CHECK(id && strcmp(id, device) == 0);
  tandem_free(id);
  tandem_free(json);
  EXPECT(TANDEM_INVALID, tandem_db_info(NULL, &len, db, &err));
  EXPECT(TANDEM_INVALID, tandem_db_device_id(NULL, db, &err));

  /* Another replica: another device, another replica id. */
  {
    tandem_db* other = must_create("info2");
    char* id2 = NULL;
    EXPECT(TANDEM_OK, tandem_db_device_id(&id2, other, &err));
    CHECK(id2 && strcmp(id2, device) != 0);
    tandem_free(id2);
    tandem_db_close(other);
  }
  tandem_db_close(db);
}

/* ---- Writing ------------------------------------------------------------------------ */

static void test_writes(void) {
  tandem_error err;
  tandem_db* db = must_create("writes");
  tandem_value v;
  /* "héllo" NUL "w€": UTF-8 with an embedded NUL. */
  static const char str[] = "h\xc3\xa9llo\0w\xe2\x82\xac";
  static const char bytes[] = {0x00, 0x01, (char)0xff, 0x00, 0x78};
  char c64[65], c65[66], i256[257], i257[258], f128[129], f129[130];
  static const char cup[] =
      "{\"name\": \"Espresso cup\", \"price\": 4.5, \"qty\": 3, \"ok\": false, \"n\": null, "
      "\"blob\": {\"$bytes\": \"AAE=\"}}";
  char *big, *json;
  uint64_t before;
  size_t max = (size_t)16 << 20;

  memset(c64, 'c', 64);
  c64[64] = '\0';
  memset(c65, 'c', 65);
  c65[65] = '\0';
  memset(i256, 'i', 256);
  i256[256] = '\0';
  memset(i257, 'i', 257);
  i257[257] = '\0';
  memset(f128, 'f', 128);
  f128[128] = '\0';
  memset(f129, 'f', 129);
  f129[129] = '\0';
  big = malloc(max + 1);
  CHECK(big != NULL);
  if (!big) return;
  memset(big, 'a', max + 1);

  /* Every value type. */
  v = v_null();
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "null", &v, &err));
  v = v_bool(1);
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "bool", &v, &err));
  v = v_int(INT64_MIN);
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "int", &v, &err));
  v = v_double(4.5);
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "double", &v, &err));
  v = v_str(str, sizeof str - 1);
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "string", &v, &err));
  v = v_bytes(bytes, sizeof bytes);
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "bytes", &v, &err));
  v = v_str(NULL, 0); /* an empty string: data may be NULL when len is 0 */
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "empty", &v, &err));
  CHECK(record_is(db, "t", "r",
                  "{\"bool\":true,\"bytes\":{\"$bytes\":\"AAH/AHg=\"},\"double\":4.5,"
                  "\"empty\":\"\",\"id\":\"r\",\"int\":-9223372036854775808,\"null\":null,"
                  "\"string\":\"h\xc3\xa9llo\\u0000w\xe2\x82\xac\"}"));
  /* A put overwrites, whatever the type was. */
  v = v_cstr("now a string");
  EXPECT(TANDEM_OK, tandem_put(db, "t", "r", "int", &v, &err));
  json = get_json(db, "t", "r");
  CHECK(contains(json, "\"int\":\"now a string\""));
  tandem_free(json);

  /* The limits themselves are accepted. */
  v = v_int(1);
  EXPECT(TANDEM_OK, tandem_put(db, c64, i256, f128, &v, &err));
  v = v_bytes(big, max);
  EXPECT(TANDEM_OK, tandem_put(db, "t", "big", "b", &v, &err));
  v = v_str(big, max);
  EXPECT(TANDEM_OK, tandem_put(db, "t", "big", "s", &v, &err));

  /* put_json: scalars and bytes; the length bounds the text. */
  EXPECT(TANDEM_OK, tandem_put_json(db, "shop", "cup", JSON_ARG(cup), &err));
  CHECK(record_is(db, "shop", "cup",
                  "{\"blob\":{\"$bytes\":\"AAE=\"},\"id\":\"cup\",\"n\":null,\"name\":\"Espresso "
                  "cup\",\"ok\":false,\"price\":4.5,\"qty\":3}"));
  /* Numbers at the edges of int64, and doubles written as such, are accepted. */
  EXPECT(TANDEM_OK,
         tandem_put_json(db, "shop", "edge",
                         JSON_ARG("{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                                  "\"big\":1e20,\"whole\":5.0}"),
                         &err));
  CHECK(record_is(db, "shop", "edge",
                  "{\"big\":1e+20,\"id\":\"edge\",\"max\":9223372036854775807,"
                  "\"min\":-9223372036854775808,\"whole\":5.0}"));
  EXPECT(TANDEM_OK, tandem_put_json(db, "shop", "mug", "{\"a\":1}trailing garbage", 7, &err));
  CHECK(record_is(db, "shop", "mug", "{\"a\":1,\"id\":\"mug\"}"));

  /* Counters, negative increments too. */
  EXPECT(TANDEM_OK, tandem_incr(db, "t", "c", "n", 5, &err));
  EXPECT(TANDEM_OK, tandem_incr(db, "t", "c", "n", -8, &err));
  EXPECT(TANDEM_OK, tandem_incr(db, "t", "c", "n", 0, &err));
  CHECK(record_is(db, "t", "c", "{\"id\":\"c\",\"n\":-3}"));

  /* Sets: add-wins, sorted by type then value. */
  v = v_cstr("x");
  EXPECT(TANDEM_OK, tandem_add(db, "t", "s", "tags", &v, &err));
  v = v_int(3);
  EXPECT(TANDEM_OK, tandem_add(db, "t", "s", "tags", &v, &err));
  v = v_cstr("a");
  EXPECT(TANDEM_OK, tandem_add(db, "t", "s", "tags", &v, &err));
  EXPECT(TANDEM_OK, tandem_add(db, "t", "s", "tags", &v, &err)); /* again: still once */
  v = v_cstr("x");
  EXPECT(TANDEM_OK, tandem_remove(db, "t", "s", "tags", &v, &err));
  CHECK(record_is(db, "t", "s", "{\"id\":\"s\",\"tags\":[3,\"a\"]}"));

  /* Delete: a live record; then it is absent. */
  EXPECT(TANDEM_OK, tandem_delete(db, "shop", "mug", &err));
  CHECK(is_absent(db, "shop", "mug"));
  EXPECT(TANDEM_NOT_FOUND, tandem_delete(db, "shop", "mug", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_delete(db, "shop", "never", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_delete(db, "nowhere", "never", &err));
  CHECK(tandem_delete(db, "shop", "never", NULL) == TANDEM_NOT_FOUND);

  /* Bad input: TANDEM_INVALID, and nothing is written. */
  before = latest_cursor(db);
  v = v_int(1);
  EXPECT(TANDEM_INVALID, tandem_put(db, NULL, "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", NULL, "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", NULL, &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "", "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, c65, "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", i257, "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", f129, &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "id", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "\xff", "r", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r\xc3", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "\xc0\x80", &v, &err)); /* overlong */
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", NULL, &err));
  v = v_str("\xff\xfe", 2);
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  v = v_str("ok\xed\xa0\x80", 5); /* a surrogate */
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  v = v_str(big, max + 1);
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  v = v_bytes(big, max + 1);
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  v = v_int(1);
  v.type = 99;
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  v.type = -1;
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  v = v_str(NULL, 3);
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  v = v_bytes(NULL, 3);
  EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "f", &v, &err));
  CHECK(tandem_put(db, "bad", "r", "f", NULL, NULL) == TANDEM_INVALID); /* err NULL */

  EXPECT(TANDEM_INVALID, tandem_incr(db, NULL, "r", "n", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_incr(db, "bad", NULL, "n", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_incr(db, "bad", "r", NULL, 1, &err));
  EXPECT(TANDEM_INVALID, tandem_incr(db, "bad", "r", "id", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_incr(db, c65, "r", "n", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_incr(db, "bad", "r", f129, 1, &err));

  v = v_cstr("e");
  EXPECT(TANDEM_INVALID, tandem_add(db, "bad", "r", "tags", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_add(db, NULL, "r", "tags", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_add(db, "bad", "r", "id", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_add(db, "bad", i257, "tags", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_remove(db, "bad", "r", "tags", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_remove(db, "bad", NULL, "tags", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_remove(db, "bad", "r", "", &v, &err));
  v = v_str("\xff", 1);
  EXPECT(TANDEM_INVALID, tandem_add(db, "bad", "r", "tags", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_remove(db, "t", "s", "tags", &v, &err));
  v = v_bytes(big, max + 1);
  EXPECT(TANDEM_INVALID, tandem_add(db, "bad", "r", "tags", &v, &err));
  v = v_int(0);
  v.type = 6;
  EXPECT(TANDEM_INVALID, tandem_add(db, "bad", "r", "tags", &v, &err));

  EXPECT(TANDEM_INVALID, tandem_delete(db, NULL, "r", &err));
  EXPECT(TANDEM_INVALID, tandem_delete(db, "t", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_delete(db, "", "r", &err));
  EXPECT(TANDEM_INVALID, tandem_delete(db, "t", "", &err));
  EXPECT(TANDEM_INVALID, tandem_delete(db, "t\xff", "r", &err));
  EXPECT(TANDEM_INVALID, tandem_delete(db, "t", i257, &err));

#define BAD_JSON(text) \
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", text, strlen(text), &err))
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", NULL, 0, &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", NULL, 5, &err));
  BAD_JSON("");
  BAD_JSON("{");
  BAD_JSON("{\"a\":");
  BAD_JSON("{\"a\":1,}");
  BAD_JSON("[1,2]");
  BAD_JSON("42");
  BAD_JSON("\"text\"");
  BAD_JSON("null");
  BAD_JSON("{}");
  BAD_JSON("{\"a\":{\"b\":1}}");
  BAD_JSON("{\"a\":[1,2]}");
  BAD_JSON("{\"ok\":1,\"bad\":[1]}"); /* one bad field: none is written */
  BAD_JSON("{\"id\":\"x\"}");
  BAD_JSON("{\"\":1}");
  BAD_JSON("{\"\xff\":1}");
  BAD_JSON("{\"a\":\"\xff\"}");
  BAD_JSON("{\"a\":18446744073709551616}"); /* would become a double */
  BAD_JSON("{\"a\":-9223372036854775809}");
  BAD_JSON("{\"a\":9223372036854775808}");
  BAD_JSON("{\"a\":{\"$bytes\":\"!!not base64!!\"}}");
  BAD_JSON("{\"a\":{\"$bytes\":\"AAE=\",\"more\":1}}");
#undef BAD_JSON
  /* What is wrong is said, not "expected an object". */
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", JSON_ARG("{\"x\":1e999}"), &err));
  CHECK(strstr(err.message, "a number is out of range") != NULL);
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", JSON_ARG("{\"x\":\"\\ud800\"}"), &err));
  CHECK(strstr(err.message, "not valid JSON (column") != NULL);
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", JSON_ARG("[1,2]"), &err));
  CHECK(strstr(err.message, "expected a JSON object of fields") != NULL);
  /* A NUL inside the text is not where the text ends: what follows it is not ignored. */
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", "{\"a\":1}\0junk", 12, &err));
  CHECK(strstr(err.message, "a NUL byte at offset 7") != NULL);
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", "{\"b\":1}\0\"zz\":1", 14, &err));
  /* Neither NaN nor an infinity has a JSON form, and a bool is 0 or 1. */
  {
    const tandem_value odd[] = {v_double(NAN), v_double(INFINITY), v_double(-INFINITY), v_bool(2),
                                v_bool(-1)};
    for (size_t k = 0; k < sizeof odd / sizeof odd[0]; ++k) {
      EXPECT(TANDEM_INVALID, tandem_put(db, "bad", "r", "x", &odd[k], &err));
      EXPECT(TANDEM_INVALID, tandem_add(db, "bad", "r", "s", &odd[k], &err));
    }
  }
  CHECK(get_json(db, "bad", "r") == NULL); /* nothing of it was written */
  /* A key given twice, at any depth: which one is meant? */
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", JSON_ARG("{\"a\":1,\"a\":2}"), &err));
  EXPECT(TANDEM_INVALID,
         tandem_put_json(db, "bad", "r",
                         JSON_ARG("{\"b\":{\"$bytes\":\"AQ==\",\"$bytes\":\"Ag==\"}}"), &err));
  CHECK(strstr(err.message, "appears twice") != NULL);
  {
    char j[300];
    snprintf(j, sizeof j, "{\"%s\":1}", f129);
    EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", j, strlen(j), &err));
  }
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "r", "{\"a\":1}", 5, &err)); /* cut short */
  EXPECT(TANDEM_INVALID, tandem_put_json(db, NULL, "r", JSON_ARG("{\"a\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", NULL, JSON_ARG("{\"a\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "", "r", JSON_ARG("{\"a\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", "", JSON_ARG("{\"a\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(db, c65, "r", JSON_ARG("{\"a\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "bad", i257, JSON_ARG("{\"a\":1}"), &err));

  /* Nothing was written: the change feed has nothing new, the records are unchanged. */
  json = changes_since(db, before);
  CHECK(json && strcmp(json, "[]") == 0);
  tandem_free(json);
  CHECK(latest_cursor(db) == before);
  CHECK(is_absent(db, "bad", "r"));
  CHECK(record_is(db, "t", "s", "{\"id\":\"s\",\"tags\":[3,\"a\"]}"));
  json = NULL;
  EXPECT(TANDEM_OK, tandem_collections(&json, NULL, db, &err));
  CHECK(json && !contains(json, "\"bad\""));
  tandem_free(json);

  free(big);
  tandem_db_close(db);
}

/* ---- Batches ------------------------------------------------------------------------ */

static void test_batches(void) {
  tandem_error err;
  tandem_db* db = must_create("batches");
  tandem_batch* b = NULL;
  tandem_batch* freed = NULL;
  tandem_value v;
  uint64_t cursor;
  char* json;

  EXPECT(TANDEM_INVALID, tandem_batch_new(NULL, &err));
  EXPECT(TANDEM_OK, tandem_batch_new(&b, &err));
  CHECK(b != NULL);
  CHECK(tandem_batch_count(b) == 0);
  CHECK(tandem_batch_count(NULL) == 0);
  tandem_batch_free(NULL);

  /* Every operation. */
  v = v_cstr("one");
  EXPECT(TANDEM_OK, tandem_batch_put(b, "bt", "r1", "name", &v, &err));
  EXPECT(TANDEM_OK,
         tandem_batch_put_json(b, "bt", "r2", JSON_ARG("{\"name\":\"two\",\"n\":2}"), &err));
  CHECK(tandem_batch_count(b) == 3); /* put_json records one put per field */
  EXPECT(TANDEM_OK, tandem_batch_incr(b, "bt", "r1", "hits", 5, &err));
  v = v_cstr("x");
  EXPECT(TANDEM_OK, tandem_batch_add(b, "bt", "r1", "tags", &v, &err));
  v = v_cstr("y");
  EXPECT(TANDEM_OK, tandem_batch_add(b, "bt", "r1", "tags", &v, &err));
  v = v_cstr("x");
  EXPECT(TANDEM_OK, tandem_batch_remove(b, "bt", "r1", "tags", &v, &err));
  EXPECT(TANDEM_OK, tandem_batch_delete(b, "bt", "absent", &err)); /* not an error in a batch */
  CHECK(tandem_batch_count(b) == 8);

  /* A bad operation is refused when it is recorded; the batch keeps what it had. */
  v = v_int(1);
  EXPECT(TANDEM_INVALID, tandem_batch_put(b, "bt", "r1", "id", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put(b, NULL, "r1", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put(b, "bt", "r1", "f", NULL, &err));
  v = v_str("\xff", 1);
  EXPECT(TANDEM_INVALID, tandem_batch_put(b, "bt", "r1", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put_json(b, "bt", "r1", JSON_ARG("{\"a\":{\"b\":1}}"), &err));
  EXPECT(TANDEM_INVALID,
         tandem_batch_put_json(b, "bt", "r1", JSON_ARG("{\"ok\":1,\"bad\":[1]}"), &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put_json(b, "", "r1", JSON_ARG("{\"ok\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put_json(b, "bt", NULL, JSON_ARG("{\"ok\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put_json(b, "bt", "r1", NULL, 0, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_incr(b, NULL, "r1", "hits", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_incr(b, "bt", "r1", "id", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_add(b, "bt", "r1", "tags", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_add(b, "bt", "", "tags", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_remove(b, "bt", "r1", "tags", &v, &err)); /* bad UTF-8 */
  EXPECT(TANDEM_INVALID, tandem_batch_remove(b, "bt", "r1", NULL, &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_delete(b, "", "r1", &err));
  EXPECT(TANDEM_INVALID, tandem_batch_delete(b, "bt", NULL, &err));
  v = v_int(1);
  EXPECT(TANDEM_INVALID, tandem_batch_put(NULL, "bt", "r1", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put_json(NULL, "bt", "r1", JSON_ARG("{\"a\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_batch_incr(NULL, "bt", "r1", "f", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_add(NULL, "bt", "r1", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_remove(NULL, "bt", "r1", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_delete(NULL, "bt", "r1", &err));
  EXPECT(TANDEM_INVALID, tandem_batch_clear(NULL, &err));
  CHECK(tandem_batch_count(b) == 8);

  /* Nothing is applied until the batch is written; then all of it is. */
  CHECK(is_absent(db, "bt", "r1"));
  CHECK(is_absent(db, "bt", "r2"));
  EXPECT(TANDEM_INVALID, tandem_db_write(db, NULL, &err));
  EXPECT(TANDEM_OK, tandem_db_write(db, b, &err));
  CHECK(record_is(db, "bt", "r1", "{\"hits\":5,\"id\":\"r1\",\"name\":\"one\",\"tags\":[\"y\"]}"));
  CHECK(record_is(db, "bt", "r2", "{\"id\":\"r2\",\"n\":2,\"name\":\"two\"}"));
  CHECK(is_absent(db, "bt", "absent"));
  /* The batch keeps its operations: writing it again applies them again. */
  CHECK(tandem_batch_count(b) == 8);
  EXPECT(TANDEM_OK, tandem_db_write(db, b, &err));
  CHECK(record_is(db, "bt", "r1", "{\"hits\":10,\"id\":\"r1\",\"name\":\"one\",\"tags\":[\"y\"]}"));

  /* Cleared: empty, and writing an empty batch is OK and writes nothing. */
  EXPECT(TANDEM_OK, tandem_batch_clear(b, &err));
  CHECK(tandem_batch_count(b) == 0);
  cursor = latest_cursor(db);
  EXPECT(TANDEM_OK, tandem_db_write(db, b, &err));
  CHECK(latest_cursor(db) == cursor);

  /* Reused after clear; a delete in a batch removes a live record. */
  v = v_cstr("three");
  EXPECT(TANDEM_OK, tandem_batch_put(b, "bt", "r3", "name", &v, &err));
  EXPECT(TANDEM_OK, tandem_batch_delete(b, "bt", "r2", &err));
  CHECK(tandem_batch_count(b) == 2);
  EXPECT(TANDEM_OK, tandem_db_write(db, b, &err));
  CHECK(record_is(db, "bt", "r3", "{\"id\":\"r3\",\"name\":\"three\"}"));
  CHECK(is_absent(db, "bt", "r2"));
  /* One transaction: the feed shows both records after the cursor, and nothing else. */
  json = changes_since(db, cursor);
  CHECK(count_of(json, "\"collection\":\"bt\"") == 2);
  CHECK(contains(json, "\"deleted\":true,\"id\":\"r2\""));
  CHECK(contains(json, "\"deleted\":false,\"id\":\"r3\""));
  tandem_free(json);
  /* A batch deleting r2 again (absent now) is still fine. */
  EXPECT(TANDEM_OK, tandem_db_write(db, b, &err));
  CHECK(is_absent(db, "bt", "r2"));

  /* A freed batch handle is refused. */
  EXPECT(TANDEM_OK, tandem_batch_new(&freed, &err));
  v = v_int(1);
  EXPECT(TANDEM_OK, tandem_batch_put(freed, "bt", "r9", "f", &v, &err));
  tandem_batch_free(freed);
  EXPECT(TANDEM_INVALID, tandem_batch_put(freed, "bt", "r9", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_put_json(freed, "bt", "r9", JSON_ARG("{\"a\":1}"), &err));
  EXPECT(TANDEM_INVALID, tandem_batch_incr(freed, "bt", "r9", "f", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_add(freed, "bt", "r9", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_remove(freed, "bt", "r9", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_batch_delete(freed, "bt", "r9", &err));
  EXPECT(TANDEM_INVALID, tandem_batch_clear(freed, &err));
  EXPECT(TANDEM_INVALID, tandem_db_write(db, freed, &err));
  CHECK(tandem_batch_count(freed) == 0);
  tandem_batch_free(freed); /* twice: a no-op */
  CHECK(is_absent(db, "bt", "r9"));

  tandem_batch_free(b);
  tandem_db_close(db);
}

/* ---- Reading ------------------------------------------------------------------------ */

typedef struct {
  const tandem_record* rec;
  int64_t value;
  int rc;
} thread_read;

static void* read_on_thread(void* arg) {
  thread_read* t = arg;
  t->rc = tandem_record_get_int(&t->value, t->rec, "i", NULL);
  return NULL;
}

static void test_reads(void) {
  tandem_error err;
  tandem_db* db = must_create("reads");
  tandem_record* rec = NULL;
  tandem_value v;
  static const char bytes[] = {0x00, 0x01, 0x02};
  /* Fields in name order, each with its kind and register type. */
  static const char* const names[] = {"b", "c", "d", "e", "i", "n", "s", "set", "y"};
  static const int kinds[] = {TANDEM_REGISTER, TANDEM_COUNTER,  TANDEM_REGISTER,
                              TANDEM_REGISTER, TANDEM_REGISTER, TANDEM_REGISTER,
                              TANDEM_REGISTER, TANDEM_SET,      TANDEM_REGISTER};
  static const int types[] = {TANDEM_BOOL,   TANDEM_INT, TANDEM_DOUBLE,
                              TANDEM_STRING, TANDEM_INT, TANDEM_NULL,
                              TANDEM_STRING, -1,         TANDEM_BYTES};
  size_t k, len;
  int64_t i64;
  double d;
  int b, kind, type;
  char buf[32];
  char* json;

  v = v_bool(1);
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "b", &v, &err));
  EXPECT(TANDEM_OK, tandem_incr(db, "r", "x", "c", 7, &err));
  v = v_double(2.5);
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "d", &v, &err));
  v = v_cstr("");
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "e", &v, &err));
  v = v_int(42);
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "i", &v, &err));
  v = v_null();
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "n", &v, &err));
  v = v_cstr("h\xc3\xa9llo");
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "s", &v, &err));
  v = v_cstr("b");
  EXPECT(TANDEM_OK, tandem_add(db, "r", "x", "set", &v, &err));
  v = v_int(1);
  EXPECT(TANDEM_OK, tandem_add(db, "r", "x", "set", &v, &err));
  v = v_cstr("a");
  EXPECT(TANDEM_OK, tandem_add(db, "r", "x", "set", &v, &err));
  v = v_bytes(bytes, sizeof bytes);
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "y", &v, &err));

  /* Bad arguments, and records that are not there. */
  rec = (tandem_record*)&err;
  EXPECT(TANDEM_NOT_FOUND, tandem_get(&rec, db, "r", "missing", &err));
  CHECK(rec == NULL);
  EXPECT(TANDEM_NOT_FOUND, tandem_get(&rec, db, "nowhere", "x", &err));
  EXPECT(TANDEM_INVALID, tandem_get(NULL, db, "r", "x", &err));
  EXPECT(TANDEM_INVALID, tandem_get(&rec, db, NULL, "x", &err));
  EXPECT(TANDEM_INVALID, tandem_get(&rec, db, "r", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_get(&rec, db, "", "x", &err));
  EXPECT(TANDEM_INVALID, tandem_get(&rec, db, "r", "", &err));
  json = (char*)"unset";
  EXPECT(TANDEM_NOT_FOUND, tandem_get_json(&json, &len, db, "r", "missing", &err));
  EXPECT(TANDEM_INVALID, tandem_get_json(NULL, &len, db, "r", "x", &err));
  EXPECT(TANDEM_INVALID, tandem_get_json(&json, &len, db, NULL, "x", &err));
  EXPECT(TANDEM_INVALID, tandem_get_json(&json, &len, db, "r", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_get_json(&json, &len, db, "\xff", "x", &err));
  CHECK(strcmp(json, "unset") == 0);
  /* A deleted record is not found either. */
  v = v_int(1);
  EXPECT(TANDEM_OK, tandem_put(db, "r", "gone", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_delete(db, "r", "gone", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_get_json(&json, &len, db, "r", "gone", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_get(&rec, db, "r", "gone", &err));

  /* get_json: the whole record; len is optional. */
  json = NULL;
  EXPECT(TANDEM_OK, tandem_get_json(&json, NULL, db, "r", "x", &err));
  CHECK(json &&
        strcmp(json,
               "{\"b\":true,\"c\":7,\"d\":2.5,\"e\":\"\",\"i\":42,\"id\":\"x\",\"n\":null,"
               "\"s\":\"h\xc3\xa9llo\",\"set\":[1,\"a\",\"b\"],\"y\":{\"$bytes\":\"AAEC\"}}") == 0);
  tandem_free(json);

  EXPECT(TANDEM_OK, tandem_get(&rec, db, "r", "x", &err));
  CHECK(rec != NULL);

  /* Fields in name order; NULL past the end. */
  CHECK(tandem_record_field_count(rec) == sizeof names / sizeof names[0]);
  for (k = 0; k < sizeof names / sizeof names[0]; ++k) {
    const char* name = tandem_record_field_name(rec, k);
    CHECK(name && strcmp(name, names[k]) == 0);
    kind = type = -99;
    EXPECT(TANDEM_OK, tandem_record_kind(&kind, &type, rec, names[k], &err));
    CHECK(kind == kinds[k]);
    CHECK(type == types[k]);
    kind = -99;
    EXPECT(TANDEM_OK, tandem_record_kind(&kind, NULL, rec, names[k], &err)); /* type optional */
    CHECK(kind == kinds[k]);
  }
  CHECK(tandem_record_field_name(rec, sizeof names / sizeof names[0]) == NULL);
  CHECK(tandem_record_field_name(rec, (size_t)-1) == NULL);
  CHECK(tandem_record_field_name(NULL, 0) == NULL);
  CHECK(tandem_record_field_count(NULL) == 0);
  EXPECT(TANDEM_NOT_FOUND, tandem_record_kind(&kind, &type, rec, "missing", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_record_kind(&kind, &type, rec, "id", &err));
  EXPECT(TANDEM_INVALID, tandem_record_kind(NULL, &type, rec, "i", &err));
  EXPECT(TANDEM_INVALID, tandem_record_kind(&kind, &type, rec, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_record_kind(&kind, &type, NULL, "i", &err));

  /* Typed reads of the right type. */
  EXPECT(TANDEM_OK, tandem_record_get_int(&i64, rec, "i", &err));
  CHECK(i64 == 42);
  EXPECT(TANDEM_OK, tandem_record_get_int(&i64, rec, "c", &err));
  CHECK(i64 == 7);
  EXPECT(TANDEM_OK, tandem_record_get_double(&d, rec, "d", &err));
  CHECK(d == 2.5);
  EXPECT(TANDEM_OK, tandem_record_get_bool(&b, rec, "b", &err));
  CHECK(b == 1);

  /* Strings: the size query, too small, exactly enough (no room for the NUL), room. */
  len = 0;
  EXPECT(TANDEM_TOO_SMALL, tandem_record_get_string(NULL, 0, &len, rec, "s", &err));
  CHECK(len == 6);
  len = 0;
  memset(buf, 'Z', sizeof buf);
  EXPECT(TANDEM_TOO_SMALL, tandem_record_get_string(buf, 3, &len, rec, "s", &err));
  CHECK(len == 6);
  CHECK(strstr(err.message, "6") != NULL);
  memset(buf, 'Z', sizeof buf);
  len = 0;
  EXPECT(TANDEM_OK, tandem_record_get_string(buf, 6, &len, rec, "s", &err));
  CHECK(len == 6 && memcmp(buf, "h\xc3\xa9llo", 6) == 0 && buf[6] == 'Z');
  memset(buf, 'Z', sizeof buf);
  EXPECT(TANDEM_OK, tandem_record_get_string(buf, sizeof buf, &len, rec, "s", &err));
  CHECK(len == 6 && strcmp(buf, "h\xc3\xa9llo") == 0);
  /* The empty string: the size query succeeds with 0; with room it is "". */
  len = 99;
  EXPECT(TANDEM_OK, tandem_record_get_string(NULL, 0, &len, rec, "e", &err));
  CHECK(len == 0);
  buf[0] = 'Z';
  EXPECT(TANDEM_OK, tandem_record_get_string(buf, sizeof buf, &len, rec, "e", &err));
  CHECK(len == 0 && buf[0] == '\0');
  EXPECT(TANDEM_INVALID, tandem_record_get_string(NULL, 5, &len, rec, "s", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_string(buf, sizeof buf, NULL, rec, "s", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_string(buf, sizeof buf, &len, rec, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_string(buf, sizeof buf, &len, NULL, "s", &err));

  /* Bytes likewise, NULs included. */
  len = 0;
  EXPECT(TANDEM_TOO_SMALL, tandem_record_get_bytes(NULL, 0, &len, rec, "y", &err));
  CHECK(len == 3);
  len = 0;
  EXPECT(TANDEM_TOO_SMALL, tandem_record_get_bytes(buf, 2, &len, rec, "y", &err));
  CHECK(len == 3);
  memset(buf, 'Z', sizeof buf);
  EXPECT(TANDEM_OK, tandem_record_get_bytes(buf, 3, &len, rec, "y", &err));
  CHECK(len == 3 && memcmp(buf, bytes, 3) == 0 && buf[3] == 'Z');
  EXPECT(TANDEM_OK, tandem_record_get_bytes(buf, sizeof buf, &len, rec, "y", &err));
  CHECK(len == 3 && memcmp(buf, bytes, 3) == 0);
  EXPECT(TANDEM_INVALID, tandem_record_get_bytes(NULL, 1, &len, rec, "y", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_bytes(buf, sizeof buf, NULL, rec, "y", &err));

  /* Every mismatched typed read: TANDEM_WRONG_TYPE; a missing field: TANDEM_NOT_FOUND. */
  for (k = 0; k < sizeof names / sizeof names[0]; ++k) {
    const char* f = names[k];
    int is_int = types[k] == TANDEM_INT; /* int registers and counters */
    int is_reg = kinds[k] == TANDEM_REGISTER;
    int want;
    want = is_int ? TANDEM_OK : TANDEM_WRONG_TYPE;
    EXPECT(want, tandem_record_get_int(&i64, rec, f, &err));
    want = is_reg && types[k] == TANDEM_DOUBLE ? TANDEM_OK : TANDEM_WRONG_TYPE;
    EXPECT(want, tandem_record_get_double(&d, rec, f, &err));
    want = is_reg && types[k] == TANDEM_BOOL ? TANDEM_OK : TANDEM_WRONG_TYPE;
    EXPECT(want, tandem_record_get_bool(&b, rec, f, &err));
    want = is_reg && types[k] == TANDEM_STRING ? TANDEM_OK : TANDEM_WRONG_TYPE;
    EXPECT(want, tandem_record_get_string(buf, sizeof buf, &len, rec, f, &err));
    want = is_reg && types[k] == TANDEM_BYTES ? TANDEM_OK : TANDEM_WRONG_TYPE;
    EXPECT(want, tandem_record_get_bytes(buf, sizeof buf, &len, rec, f, &err));
  }
  EXPECT(TANDEM_NOT_FOUND, tandem_record_get_int(&i64, rec, "missing", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_record_get_double(&d, rec, "missing", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_record_get_bool(&b, rec, "missing", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_record_get_string(buf, sizeof buf, &len, rec, "missing", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_record_get_bytes(buf, sizeof buf, &len, rec, "missing", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_int(NULL, rec, "i", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_int(&i64, rec, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_int(&i64, NULL, "i", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_double(NULL, rec, "d", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_double(&d, NULL, "d", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_bool(NULL, rec, "b", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_bool(&b, NULL, "b", &err));

  /* Any field as JSON; a set as a sorted array. */
  json = NULL;
  len = 0;
  EXPECT(TANDEM_OK, tandem_record_field_json(&json, &len, rec, "set", &err));
  CHECK(json && strcmp(json, "[1,\"a\",\"b\"]") == 0 && len == strlen(json));
  tandem_free(json);
  EXPECT(TANDEM_OK, tandem_record_field_json(&json, NULL, rec, "c", &err));
  CHECK(json && strcmp(json, "7") == 0);
  tandem_free(json);
  EXPECT(TANDEM_OK, tandem_record_field_json(&json, NULL, rec, "y", &err));
  CHECK(json && strcmp(json, "{\"$bytes\":\"AAEC\"}") == 0);
  tandem_free(json);
  EXPECT(TANDEM_OK, tandem_record_field_json(&json, NULL, rec, "n", &err));
  CHECK(json && strcmp(json, "null") == 0);
  tandem_free(json);
  EXPECT(TANDEM_NOT_FOUND, tandem_record_field_json(&json, NULL, rec, "missing", &err));
  EXPECT(TANDEM_INVALID, tandem_record_field_json(NULL, NULL, rec, "c", &err));
  EXPECT(TANDEM_INVALID, tandem_record_field_json(&json, NULL, rec, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_record_field_json(&json, NULL, NULL, "c", &err));

  /* A record is an immutable snapshot, readable from another thread. */
  v = v_int(43);
  EXPECT(TANDEM_OK, tandem_put(db, "r", "x", "i", &v, &err));
  EXPECT(TANDEM_OK, tandem_record_get_int(&i64, rec, "i", &err));
  CHECK(i64 == 42);
  {
    pthread_t t;
    thread_read tr;
    tr.rec = rec;
    tr.value = 0;
    tr.rc = -1;
    CHECK(pthread_create(&t, NULL, read_on_thread, &tr) == 0);
    pthread_join(t, NULL);
    CHECK(tr.rc == TANDEM_OK && tr.value == 42);
  }
  tandem_record_free(rec);
  tandem_record_free(NULL);
  /* A freed record handle is refused. */
  CHECK(tandem_record_field_count(rec) == 0);
  CHECK(tandem_record_field_name(rec, 0) == NULL);
  EXPECT(TANDEM_INVALID, tandem_record_get_int(&i64, rec, "i", &err));
  EXPECT(TANDEM_INVALID, tandem_record_kind(&kind, &type, rec, "i", &err));
  EXPECT(TANDEM_INVALID, tandem_record_get_string(buf, sizeof buf, &len, rec, "s", &err));
  EXPECT(TANDEM_INVALID, tandem_record_field_json(&json, NULL, rec, "i", &err));
  tandem_record_free(rec); /* twice: a no-op */

  EXPECT(TANDEM_OK, tandem_get(&rec, db, "r", "x", &err));
  EXPECT(TANDEM_OK, tandem_record_get_int(&i64, rec, "i", &err));
  CHECK(i64 == 43);
  tandem_record_free(rec);
  tandem_db_close(db);
}

/* ---- Collections, iterators, conflicts --------------------------------------------- */

/* The id of the next record an iterator gives, "" at the end, "?" on error. */
static void iter_next_id(tandem_iter* it, char* id, size_t cap) {
  char* json = (char*)"unset";
  size_t len = 99;
  int rc = tandem_iter_next(&json, &len, it, NULL);
  if (rc != TANDEM_OK) {
    snprintf(id, cap, "?");
    return;
  }
  if (!json) {
    snprintf(id, cap, "%s", len == 0 ? "" : "?len");
    return;
  }
  if (strlen(json) != len || !json_string(json, "id", id, cap)) snprintf(id, cap, "?");
  tandem_free(json);
}

static void test_collections_and_iterators(void) {
  tandem_error err;
  tandem_db* db = must_create("iter");
  tandem_iter* it = NULL;
  char *json = NULL, id[64];
  char c65[66];
  tandem_value v = v_int(1);
  int i;

  memset(c65, 'c', 65);
  c65[65] = '\0';

  /* A new replica holds only system records, which are not listed. */
  EXPECT(TANDEM_OK, tandem_collections(&json, NULL, db, &err));
  CHECK(json && strcmp(json, "[]") == 0);
  tandem_free(json);
  EXPECT(TANDEM_INVALID, tandem_collections(NULL, NULL, db, &err));

  EXPECT(TANDEM_OK, tandem_put(db, "beta", "z", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "alpha", "c", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "alpha", "a", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "alpha", "b", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "alpha", "bb", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_delete(db, "alpha", "bb", &err));
  {
    size_t len = 0;
    json = NULL;
    EXPECT(TANDEM_OK, tandem_collections(&json, &len, db, &err));
    CHECK(json && strcmp(json, "[\"alpha\",\"beta\"]") == 0 && len == strlen(json));
    CHECK(!contains(json, "_tandem"));
    tandem_free(json);
  }

  /* In id order, deleted records left out; the end is *json == NULL, and stays so. */
  EXPECT(TANDEM_OK, tandem_iter_new(&it, db, "alpha", NULL, &err));
  CHECK(it != NULL);
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "a") == 0);
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "b") == 0);
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "c") == 0);
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "") == 0);
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "") == 0);
  tandem_iter_free(it);

  /* The whole record, as tandem_get_json gives it. */
  EXPECT(TANDEM_OK, tandem_iter_new(&it, db, "alpha", "", &err));
  json = NULL;
  EXPECT(TANDEM_OK, tandem_iter_next(&json, NULL, it, &err));
  CHECK(json && strcmp(json, "{\"f\":1,\"id\":\"a\"}") == 0);
  tandem_free(json);
  /* Each step reads a fresh snapshot: a record written after the position is seen. */
  EXPECT(TANDEM_OK, tandem_put(db, "alpha", "ab", "f", &v, &err));
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "ab") == 0);
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "b") == 0);
  EXPECT(TANDEM_INVALID, tandem_iter_next(NULL, NULL, it, &err));
  tandem_iter_free(it);

  /* From after a given id (which need not exist). */
  EXPECT(TANDEM_OK, tandem_iter_new(&it, db, "alpha", "ab", &err));
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "b") == 0);
  tandem_iter_free(it);
  EXPECT(TANDEM_OK, tandem_iter_new(&it, db, "alpha", "bz", &err));
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "c") == 0);
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "") == 0);
  tandem_iter_free(it);
  EXPECT(TANDEM_OK, tandem_iter_new(&it, db, "alpha", "zzz", &err));
  iter_next_id(it, id, sizeof id);
  CHECK(strcmp(id, "") == 0);
  tandem_iter_free(it);

  /* An unknown collection is empty. */
  EXPECT(TANDEM_OK, tandem_iter_new(&it, db, "unknown", NULL, &err));
  for (i = 0; i < 2; ++i) {
    json = (char*)"unset";
    EXPECT(TANDEM_OK, tandem_iter_next(&json, NULL, it, &err));
    CHECK(json == NULL);
  }
  tandem_iter_free(it);

  /* Bad arguments; a freed iterator. */
  it = (tandem_iter*)&err;
  EXPECT(TANDEM_INVALID, tandem_iter_new(&it, db, "", NULL, &err));
  CHECK(it == NULL);
  EXPECT(TANDEM_INVALID, tandem_iter_new(&it, db, NULL, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_iter_new(&it, db, c65, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_iter_new(&it, db, "bad\xff", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_iter_new(NULL, db, "alpha", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_iter_next(&json, NULL, NULL, &err));
  tandem_iter_free(NULL);
  EXPECT(TANDEM_OK, tandem_iter_new(&it, db, "alpha", NULL, &err));
  tandem_iter_free(it);
  EXPECT(TANDEM_INVALID, tandem_iter_next(&json, NULL, it, &err));
  tandem_iter_free(it); /* twice: a no-op */

  /* Conflicts of one replica's own writes: none. (Concurrent ones: see test_node.) */
  json = NULL;
  EXPECT(TANDEM_OK, tandem_conflicts_json(&json, NULL, db, "alpha", "a", &err));
  CHECK(json && strcmp(json, "{}") == 0);
  tandem_free(json);
  EXPECT(TANDEM_NOT_FOUND, tandem_conflicts_json(&json, NULL, db, "alpha", "missing", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_conflicts_json(&json, NULL, db, "alpha", "bb", &err));
  EXPECT(TANDEM_INVALID, tandem_conflicts_json(NULL, NULL, db, "alpha", "a", &err));
  EXPECT(TANDEM_INVALID, tandem_conflicts_json(&json, NULL, db, NULL, "a", &err));
  EXPECT(TANDEM_INVALID, tandem_conflicts_json(&json, NULL, db, "alpha", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_conflicts_json(&json, NULL, db, "", "a", &err));

  tandem_db_close(db);
}

/* ---- The change feed ----------------------------------------------------------------- */

/* Whether the "cursor" values in a changes array ascend strictly, all above `above`. */
static int cursors_ascend(const char* json, uint64_t above, uint64_t* last) {
  const char* p = json;
  uint64_t prev = above;
  while ((p = strstr(p, "\"cursor\":")) != NULL) {
    uint64_t c;
    p += strlen("\"cursor\":");
    c = strtoull(p, NULL, 10);
    if (c <= prev) return 0;
    prev = c;
  }
  if (last) *last = prev;
  return 1;
}

static void test_change_feed(void) {
  tandem_error err;
  tandem_db* db = must_create("feed");
  tandem_value v;
  uint64_t base, next = 0, next2 = 0, since, last = 0;
  char *json = NULL, *all;
  size_t len = 0, total = 0;
  const char *p1, *p2, *p3;
  int pages;

  base = latest_cursor(db);
  v = v_int(1);
  EXPECT(TANDEM_OK, tandem_put(db, "c", "r1", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "c", "r2", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "c", "r3", "f", &v, &err));
  v = v_int(2);
  EXPECT(TANDEM_OK, tandem_put(db, "c", "r1", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_delete(db, "c", "r2", &err));

  /* Each record once, at its latest change, in cursor order: r3, r1, r2. */
  EXPECT(TANDEM_OK, tandem_changes(&json, &len, &next, db, base, 0, &err));
  CHECK(json && len == strlen(json) && json[0] == '[');
  CHECK(count_of(json, "\"collection\":\"c\"") == 3);
  CHECK(count_of(json, "\"deleted\":false,\"id\":\"r1\"") == 1);
  CHECK(count_of(json, "\"deleted\":true,\"id\":\"r2\"") == 1);
  CHECK(count_of(json, "\"deleted\":false,\"id\":\"r3\"") == 1);
  CHECK(contains(json, "\"id\":\"r1\",\"record\":{\"f\":2,\"id\":\"r1\"}"));
  CHECK(contains(json, "\"id\":\"r3\",\"record\":{\"f\":1,\"id\":\"r3\"}"));
  CHECK(!contains(json, "\"id\":\"r2\",\"record\"")); /* a deleted record has no "record" */
  p3 = strstr(json, "\"id\":\"r3\"");
  p1 = strstr(json, "\"id\":\"r1\"");
  p2 = strstr(json, "\"id\":\"r2\"");
  CHECK(p3 && p1 && p2 && p3 < p1 && p1 < p2);
  CHECK(cursors_ascend(json, base, &last));
  CHECK(next > base && next == last);
  tandem_free(json);

  /* Nothing after the end; the cursor stays. */
  json = NULL;
  EXPECT(TANDEM_OK, tandem_changes(&json, NULL, &next2, db, next, 0, &err));
  CHECK(json && strcmp(json, "[]") == 0 && next2 == next);
  tandem_free(json);

  /* From the start: ours; Tandem's own collections (the trust set) are left out. */
  EXPECT(TANDEM_OK, tandem_changes(&json, NULL, &next2, db, 0, 0, &err));
  CHECK(count_of(json, "\"collection\":\"c\"") == 3 && next2 == next);
  CHECK(count_of(json, "\"collection\":") == 3 && !contains(json, "_tandem"));
  CHECK(cursors_ascend(json, 0, NULL));
  tandem_free(json);

  /* Paging with a limit: each page reads at most `limit` entries and moves the cursor;
   * together the pages hold every record, the last state of each last. */
  all = calloc(1, 1);
  since = base;
  for (pages = 0; pages < 100; ++pages) {
    char* t;
    json = NULL;
    EXPECT(TANDEM_OK, tandem_changes(&json, &len, &next2, db, since, 1, &err));
    if (!json) break;
    CHECK(count_of(json, "\"collection\":") <= 1);
    CHECK(cursors_ascend(json, since, NULL));
    t = realloc(all, total + len + 1);
    if (t) {
      all = t;
      memcpy(all + total, json, len + 1);
      total += len;
    }
    tandem_free(json);
    if (next2 == since) break;
    CHECK(next2 > since);
    since = next2;
  }
  CHECK(pages >= 3 && pages < 100);
  CHECK(since == next);
  CHECK(contains(all, "\"id\":\"r1\",\"record\":{\"f\":2,\"id\":\"r1\"}"));
  CHECK(contains(all, "\"deleted\":true,\"id\":\"r2\""));
  CHECK(contains(all, "\"id\":\"r3\""));
  free(all);

  EXPECT(TANDEM_INVALID, tandem_changes(NULL, NULL, &next, db, 0, 0, &err));
  EXPECT(TANDEM_INVALID, tandem_changes(&json, NULL, NULL, db, 0, 0, &err));
  tandem_db_close(db);
}

/* ---- Subscriptions ------------------------------------------------------------------- */

static void test_subscriptions(void) {
  tandem_error err;
  tandem_db* db = must_create("watch");
  tandem_db* second = NULL;
  tandem_watch *w = NULL, *replay = NULL, *self_freed = NULL, *held = NULL, *polled = NULL;
  sink s1, s2, s3, s4;
  tandem_value v = v_int(1);
  tandem_batch* batch = NULL;
  uint64_t cursor, drained = 0, drained2 = 0;
  int fd = -1;
  char p[256], *json = NULL;
  size_t len = 0;

  path_of(p, sizeof p, "watch");
  sink_init(&s1);
  sink_init(&s2);
  sink_init(&s3);
  sink_init(&s4);

  EXPECT(TANDEM_INVALID, tandem_watch_new(NULL, db, 0, on_change, &s1, &err));
  tandem_watch_free(NULL);

  /* Callback mode: changes from this thread arrive on the subscription's thread, and
   * the callback may read the replica through the API. */
  cursor = latest_cursor(db);
  s1.db = db;
  s1.last_cursor = cursor;
  EXPECT(TANDEM_OK, tandem_watch_new(&w, db, cursor, on_change, &s1, &err));
  CHECK(w != NULL);
  EXPECT(TANDEM_INVALID, tandem_watch_fd(&fd, w, &err)); /* no descriptor in callback mode */
  EXPECT(TANDEM_INVALID, tandem_watch_drain(&json, &len, &drained, w, &err));
  EXPECT(TANDEM_OK, tandem_put(db, "w", "r1", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_put_json(db, "w", "r2", JSON_ARG("{\"g\":\"two\"}"), &err));
  EXPECT(TANDEM_OK, tandem_incr(db, "w", "r1", "n", 3, &err));
  CHECK(sink_wait_text(&s1, "\"id\":\"r1\",\"record\":{\"f\":1,\"id\":\"r1\",\"n\":3}"));
  CHECK(sink_wait_text(&s1, "\"id\":\"r2\",\"record\":{\"g\":\"two\",\"id\":\"r2\"}"));
  EXPECT(TANDEM_OK, tandem_delete(db, "w", "r2", &err));
  CHECK(sink_wait_text(&s1, "\"deleted\":true,\"id\":\"r2\""));
  tandem_watch_free(w); /* from another thread: the callback is done when it returns */
  pthread_mutex_lock(&s1.mu);
  CHECK(s1.bad == 0);
  CHECK(s1.reads_ok >= 2);
  CHECK(!strstr(s1.text, "_tandem")); /* nothing before the cursor was delivered */
  pthread_mutex_unlock(&s1.mu);

  /* From cursor 0: the whole feed, each record once at its latest change. */
  EXPECT(TANDEM_OK, tandem_watch_new(&replay, db, 0, on_change, &s2, &err));
  CHECK(sink_wait_text(&s2, "\"deleted\":true,\"id\":\"r2\""));
  tandem_watch_free(replay);
  pthread_mutex_lock(&s2.mu);
  CHECK(s2.bad == 0);
  CHECK(count_of(s2.text, "\"collection\":\"w\"") == 2);
  CHECK(count_of(s2.text, "\"id\":\"r1\",\"record\":{\"f\":1,\"id\":\"r1\",\"n\":3}") == 1);
  pthread_mutex_unlock(&s2.mu);

  /* The callback frees its own subscription: no further calls, even for changes of the
   * same commit. */
  cursor = latest_cursor(db);
  s3.last_cursor = cursor;
  s3.action = ACT_FREE_WATCH;
  EXPECT(TANDEM_OK, tandem_watch_new(&self_freed, db, cursor, on_change, &s3, &err));
  pthread_mutex_lock(&s3.mu);
  s3.self = self_freed;
  pthread_mutex_unlock(&s3.mu);
  EXPECT(TANDEM_OK, tandem_batch_new(&batch, &err));
  EXPECT(TANDEM_OK, tandem_batch_put(batch, "w", "b1", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_batch_put(batch, "w", "b2", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_batch_put(batch, "w", "b3", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_db_write(db, batch, &err));
  tandem_batch_free(batch);
  CHECK(sink_wait(&s3, has_acted, NULL, 20));
  EXPECT(TANDEM_INVALID, tandem_watch_fd(&fd, self_freed, &err)); /* a freed handle */
  EXPECT(TANDEM_OK, tandem_put(db, "w", "after", "f", &v, &err));

  /* A subscription keeps the replica open after its handle closes. */
  EXPECT(TANDEM_OK, tandem_db_open(&second, p, NULL, &err));
  cursor = latest_cursor(db);
  s4.last_cursor = cursor;
  EXPECT(TANDEM_OK, tandem_watch_new(&held, second, cursor, on_change, &s4, &err));
  tandem_db_close(second);
  EXPECT(TANDEM_OK, tandem_put(db, "w", "held", "f", &v, &err));
  CHECK(sink_wait_text(&s4, "\"id\":\"held\""));
  tandem_watch_free(held);

  /* Polling mode: the descriptor is readable after a write; drain returns the changes
   * and the cursor, and nothing more the second time. */
  cursor = latest_cursor(db);
  EXPECT(TANDEM_OK, tandem_watch_new(&polled, db, cursor, NULL, NULL, &err));
  EXPECT(TANDEM_OK, tandem_watch_fd(&fd, polled, &err));
  CHECK(fd >= 0);
  EXPECT(TANDEM_INVALID, tandem_watch_fd(NULL, polled, &err));
  json = NULL;
  EXPECT(TANDEM_OK, tandem_watch_drain(&json, &len, &drained, polled, &err));
  CHECK(json && strcmp(json, "[]") == 0 && len == 2 && drained == cursor);
  tandem_free(json);
  EXPECT(TANDEM_OK, tandem_put(db, "w", "p1", "f", &v, &err));
  {
    struct pollfd pfd;
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, 20000) == 1 && (pfd.revents & POLLIN));
  }
  json = NULL;
  EXPECT(TANDEM_OK, tandem_watch_drain(&json, &len, &drained, polled, &err));
  CHECK(contains(json, "\"id\":\"p1\",\"record\":{\"f\":1,\"id\":\"p1\"}"));
  CHECK(count_of(json, "\"collection\":") == 1);
  CHECK(drained > cursor && drained == latest_cursor(db));
  tandem_free(json);
  json = NULL;
  EXPECT(TANDEM_OK, tandem_watch_drain(&json, NULL, &drained2, polled, &err));
  CHECK(json && strcmp(json, "[]") == 0 && drained2 == drained);
  tandem_free(json);
  /* Quiet once drained: the commit it saw woke it once, not again and again after. */
  {
    struct pollfd pfd;
    int wakes = 0, spins = 0;
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    while (poll(&pfd, 1, 1500) == 1 && ++spins < 50) {
      ++wakes;
      json = NULL;
      EXPECT(TANDEM_OK, tandem_watch_drain(&json, NULL, &drained2, polled, &err));
      CHECK(json && strcmp(json, "[]") == 0 && drained2 == drained);
      tandem_free(json);
    }
    CHECK(wakes <= 1);
  }
  EXPECT(TANDEM_INVALID, tandem_watch_drain(NULL, NULL, &drained2, polled, &err));
  tandem_watch_free(polled);
  EXPECT(TANDEM_INVALID, tandem_watch_drain(&json, NULL, &drained2, polled, &err));
  EXPECT(TANDEM_INVALID, tandem_watch_fd(&fd, polled, &err));
  EXPECT(TANDEM_INVALID, tandem_watch_fd(&fd, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_watch_drain(&json, NULL, &drained2, NULL, &err));
  tandem_watch_free(polled); /* twice: a no-op */

  /* Long after the self-freeing callback returned: it ran once only. */
  pthread_mutex_lock(&s3.mu);
  CHECK(s3.calls == 1);
  CHECK(s3.after_act == 0);
  CHECK(s3.bad == 0);
  pthread_mutex_unlock(&s3.mu);

  sink_destroy(&s1);
  sink_destroy(&s2);
  sink_destroy(&s3);
  sink_destroy(&s4);
  tandem_db_close(db);
}

/* ---- Pairing ----------------------------------------------------------------------- */

static void test_pairing(void) {
  tandem_error err;
  tandem_db* a = must_create("pair-a");
  tandem_db* b = must_create("pair-b");
  tandem_db* c = must_create("pair-c");
  char *code = NULL, *code2 = NULL, *json = NULL, *id_a = NULL, *id_c = NULL;
  size_t len = 0, len2 = 0;
  const char* hints[] = {"127.0.0.1:4000", "[::1]:4000", "example.com:1", "10.0.0.1:65535"};
  const char* nine[] = {"h:1", "h:2", "h:3", "h:4", "h:5", "h:6", "h:7", "h:8", "h:9"};
  const char* bad1[] = {"nowhere"};
  const char* bad2[] = {"host:99999"};
  const char* bad3[] = {"::1:80"};
  const char* null_hint[] = {NULL};
  char with_newline[1024];

  EXPECT(TANDEM_OK, tandem_db_device_id(&id_a, a, &err));
  EXPECT(TANDEM_OK, tandem_db_device_id(&id_c, c, &err));

  /* Invites: hints, expiry. */
  EXPECT(TANDEM_OK, tandem_invite(&code, &len, a, NULL, 0, 0, &err));
  CHECK(code && len > 0 && strlen(code) == len);
  tandem_free(code);
  code = NULL;
  EXPECT(TANDEM_OK, tandem_invite(&code, NULL, a, hints, 4, 1, &err));
  CHECK(code && code[0] != '\0');
  tandem_free(code);
  code = NULL;
  EXPECT(TANDEM_OK, tandem_invite(&code, NULL, a, nine, 8, 43200, &err));
  tandem_free(code);
  code = (char*)"unset";
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, nine, 9, 60, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, bad1, 1, 60, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, bad2, 1, 60, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, bad3, 1, 60, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, null_hint, 1, 60, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, NULL, 1, 60, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, NULL, 0, -1, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(&code, &len, a, NULL, 0, 43201, &err));
  EXPECT(TANDEM_INVALID, tandem_invite(NULL, &len, a, NULL, 0, 60, &err));
  CHECK(strcmp(code, "unset") == 0);

  /* Joining: malformed codes and our own are refused; a good one is stored until
   * cancelled. */
  EXPECT(TANDEM_OK, tandem_invite(&code, &len, a, hints, 1, 60, &err));
  EXPECT(TANDEM_OK, tandem_invite(&code2, &len2, b, NULL, 0, 60, &err));
  EXPECT(TANDEM_INVALID, tandem_join(b, "garbage", 7, &err));
  EXPECT(TANDEM_INVALID, tandem_join(b, "", 0, &err));
  EXPECT(TANDEM_INVALID, tandem_join(b, NULL, 0, &err));
  EXPECT(TANDEM_INVALID, tandem_join(b, code, len - 1, &err)); /* cut short */
  EXPECT(TANDEM_INVALID, tandem_join(a, code, len, &err));     /* its own invite */
  EXPECT(TANDEM_INVALID, tandem_join(b, code2, len2, &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_join_cancel(b, &err)); /* nothing pending */
  EXPECT(TANDEM_OK, tandem_join(b, code, len, &err));
  EXPECT(TANDEM_OK, tandem_join_cancel(b, &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_join_cancel(b, &err));
  snprintf(with_newline, sizeof with_newline, "%s\n", code); /* as read from a terminal */
  EXPECT(TANDEM_OK, tandem_join(b, with_newline, strlen(with_newline), &err));
  EXPECT(TANDEM_OK, tandem_join_cancel(b, &err));
  /* A replica that holds records joins only when told to merge them into the group. */
  {
    tandem_value kept = v_cstr("mine");
    EXPECT(TANDEM_OK, tandem_put(c, "notes", "n1", "text", &kept, &err));
    EXPECT(TANDEM_INVALID, tandem_join(c, code, len, &err));
    CHECK(strstr(err.message, "already holds records") && strstr(err.message, "--merge"));
    EXPECT(TANDEM_NOT_FOUND, tandem_join_cancel(c, &err));
    EXPECT(TANDEM_INVALID, tandem_join_merge(c, NULL, 0, &err));
    EXPECT(TANDEM_OK, tandem_join_merge(c, code, len, &err));
    EXPECT(TANDEM_OK, tandem_join_cancel(c, &err));
  }
  tandem_free(code);
  tandem_free(code2);

  /* The devices of a new group: this device alone. */
  EXPECT(TANDEM_OK, tandem_devices(&json, &len, a, &err));
  CHECK(json && strlen(json) == len);
  CHECK(count_of(json, "\"device\":") == 1);
  CHECK(contains(json, id_a));
  CHECK(contains(json, "\"status\":\"member\""));
  CHECK(contains(json, "\"this_device\":true"));
  CHECK(contains(json, "\"added_by\":") && contains(json, "\"added_ms\":"));
  CHECK(contains(json, "\"role\":\"owner\"") && contains(json, "\"founder\":true"));
  tandem_free(json);
  EXPECT(TANDEM_INVALID, tandem_devices(NULL, NULL, a, &err));

  /* Invites with a role; roles of devices. */
  EXPECT(TANDEM_OK, tandem_invite_role(&code, &len, a, NULL, 0, 60, "admin", &err));
  tandem_free(code);
  EXPECT(TANDEM_INVALID, tandem_invite_role(&code, &len, a, NULL, 0, 60, "owner", &err));
  EXPECT(TANDEM_INVALID, tandem_invite_role(&code, &len, a, NULL, 0, 60, "boss", &err));
  EXPECT(TANDEM_INVALID, tandem_invite_role(&code, &len, a, NULL, 0, 60, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_set_role(a, id_a, "member", &err));
  EXPECT(TANDEM_INVALID, tandem_set_role(a, id_c, "boss", &err));
  EXPECT(TANDEM_INVALID, tandem_set_role(a, "nope", "member", &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_set_role(a, id_c, "member", &err));

  /* Revoking: a malformed id, our own, and a device that was never a member. */
  EXPECT(TANDEM_INVALID, tandem_revoke(a, "not-a-device-id", &err));
  EXPECT(TANDEM_INVALID, tandem_revoke(a, "", &err));
  EXPECT(TANDEM_INVALID, tandem_revoke(a, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_revoke(a, id_a, &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_revoke(a, id_c, &err));

  tandem_free(id_a);
  tandem_free(id_c);
  tandem_db_close(a);
  tandem_db_close(b);
  tandem_db_close(c);
}

/* ---- Backup, restore, check -------------------------------------------------------- */

/* Blobs: a reader's bytes in, a writer's bytes out, in chunks; errors from either. */
struct mem_source {
  const char* data;
  size_t len, at;
  int fail_at; /* a status to return once `at` passes half the data, or 0 */
};
static int mem_read(char* buf, size_t cap, size_t* len, void* context) {
  struct mem_source* s = (struct mem_source*)context;
  if (s->fail_at && s->at > s->len / 2) return s->fail_at;
  size_t n = s->len - s->at;
  if (n > cap) n = cap;
  if (n > 70000) n = 70000; /* odd pieces */
  memcpy(buf, s->data + s->at, n);
  s->at += n;
  *len = n;
  return TANDEM_OK;
}
struct mem_sink {
  char* data;
  size_t len, cap;
};
static int mem_write(const char* bytes, size_t len, void* context) {
  struct mem_sink* s = (struct mem_sink*)context;
  if (s->len + len > s->cap) return TANDEM_IO;
  memcpy(s->data + s->len, bytes, len);
  s->len += len;
  return TANDEM_OK;
}

static int small_write(const char* bytes, size_t len, void* context) {
  (void)bytes;
  (void)len;
  (void)context;
  return TANDEM_TOO_SMALL;
}

static void test_blobs(void) {
  tandem_db* db = must_create("blobs");
  tandem_error err;
  const size_t size = 1300000; /* three chunks */
  char* data = malloc(size);
  char* back = malloc(size);
  CHECK(data && back);
  for (size_t i = 0; i < size; ++i) data[i] = (char)(i * 7 + i / 1000);
  struct mem_source src = {data, size, 0, 0};
  char* ref = NULL;
  size_t len = 0;
  EXPECT(TANDEM_OK,
         tandem_attach(&ref, &len, db, "photos", "p1", "img", mem_read, &src, "image/png", &err));
  CHECK(ref && strlen(ref) == len);
  CHECK(contains(ref, "\"size\":1300000") && contains(ref, "\"type\":\"image/png\""));
  char hash[80];
  CHECK(json_string(ref, "$blob", hash, sizeof hash) && strlen(hash) == 64);
  char* rec = get_json(db, "photos", "p1");
  CHECK(rec && contains(rec, hash));
  tandem_free(rec);

  tandem_record* r = NULL;
  int kind = 0, type = 0;
  EXPECT(TANDEM_OK, tandem_get(&r, db, "photos", "p1", &err));
  EXPECT(TANDEM_OK, tandem_record_kind(&kind, &type, r, "img", &err));
  CHECK(kind == TANDEM_REGISTER && type == TANDEM_BLOB);
  tandem_record_free(r);

  struct mem_sink out = {back, 0, size};
  EXPECT(TANDEM_OK, tandem_blob_read(db, hash, 0, mem_write, &out, &err));
  CHECK(out.len == size && memcmp(back, data, size) == 0);
  out.len = 0;
  EXPECT(TANDEM_OK, tandem_blob_read(db, hash, 600000, mem_write, &out, &err));
  CHECK(out.len == size - 600000 && memcmp(back, data + 600000, out.len) == 0);
  /* A writer that gives up ends the read with its status, whatever it is. */
  out.len = 0;
  out.cap = 1000;
  EXPECT(TANDEM_IO, tandem_blob_read(db, hash, 0, mem_write, &out, &err));
  EXPECT(TANDEM_TOO_SMALL, tandem_blob_read(db, hash, 0, small_write, NULL, &err));
  CHECK(contains(err.message, "write callback returned"));
  char* info = NULL;
  EXPECT(TANDEM_OK, tandem_blob_info(&info, &len, db, hash, &err));
  CHECK(contains(info, "\"state\":\"complete\"") && contains(info, "\"chunks\":3"));
  tandem_free(info);

  /* A reader that fails: nothing referenced. */
  struct mem_source bad = {data, size, 0, TANDEM_BUSY};
  EXPECT(TANDEM_BUSY,
         tandem_attach(NULL, NULL, db, "photos", "p2", "img", mem_read, &bad, NULL, &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_get_json(&info, &len, db, "photos", "p2", &err));
  /* Whatever status it is, the call returns it as it is (the engine has no codes of its
     own for some of them). */
  const int statuses[] = {TANDEM_WRONG_TYPE, TANDEM_TOO_SMALL, TANDEM_INTERNAL, 42};
  for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; ++k) {
    struct mem_source stops = {data, size, 0, statuses[k]};
    EXPECT(statuses[k],
           tandem_attach(NULL, NULL, db, "photos", "p2", "img", mem_read, &stops, NULL, &err));
    CHECK(contains(err.message, "read callback returned"));
  }
  EXPECT(TANDEM_NOT_FOUND, tandem_get_json(&info, &len, db, "photos", "p2", &err));
  /* Bad arguments. */
  EXPECT(TANDEM_INVALID,
         tandem_attach(NULL, NULL, db, "photos", "p3", "img", NULL, &src, NULL, &err));
  EXPECT(TANDEM_INVALID,
         tandem_attach(NULL, NULL, db, "_tandem_trust", "p3", "img", mem_read, &src, NULL, &err));
  EXPECT(TANDEM_INVALID,
         tandem_attach(NULL, NULL, db, "photos", "p3", "img", mem_read, &src, "a b", &err));
  EXPECT(TANDEM_INVALID, tandem_blob_read(db, "not-a-hash", 0, mem_write, &out, &err));
  EXPECT(TANDEM_INVALID, tandem_blob_read(db, hash, 0, NULL, &out, &err));
  EXPECT(TANDEM_NOT_FOUND,
         tandem_blob_read(db, "0000000000000000000000000000000000000000000000000000000000000000", 0,
                          mem_write, &out, &err));
  EXPECT(
      TANDEM_NOT_FOUND,
      tandem_blob_info(&info, &len, db,
                       "0000000000000000000000000000000000000000000000000000000000000000", &err));
  tandem_value v = {TANDEM_BLOB, 0, 0, hash, 64};
  EXPECT(TANDEM_INVALID, tandem_put(db, "photos", "p4", "img", &v, &err));
  /* A reference written as JSON to a blob this replica lacks: wanted, not readable. */
  char body[256];
  snprintf(body, sizeof body, "{\"img\": {\"$blob\": \"%064d\", \"size\": 5}}", 1);
  EXPECT(TANDEM_OK, tandem_put_json(db, "photos", "p5", JSON_ARG(body), &err));
  char other[80];
  snprintf(other, sizeof other, "%064d", 1);
  EXPECT(TANDEM_NOT_FOUND, tandem_blob_read(db, other, 0, mem_write, &out, &err));
  CHECK(contains(err.message, "not here yet"));
  EXPECT(TANDEM_OK, tandem_blob_info(&info, &len, db, other, &err));
  CHECK(contains(info, "\"state\":\"requested\""));
  tandem_free(info);
  tandem_free(ref);
  free(data);
  free(back);
  tandem_db_close(db);
}

static void test_backup(void) {
  tandem_error err;
  tandem_db* db = must_create("bk-src");
  tandem_db* restored = NULL;
  tandem_db* none = NULL;
  char bk[256], rs[256], rs2[256], rs3[256], empty[256], garbage[256], missing[256];
  char *info = NULL, *info2 = NULL, *json = NULL, rid[80], rid2[80], dev[80], dev2[80];
  size_t len = 0;
  tandem_value v = v_cstr("kept");

  path_of(bk, sizeof bk, "bk");
  path_of(rs, sizeof rs, "rs");
  path_of(rs2, sizeof rs2, "rs2");
  path_of(rs3, sizeof rs3, "rs3");
  path_of(empty, sizeof empty, "bk-empty");
  path_of(garbage, sizeof garbage, "bk-garbage");
  path_of(missing, sizeof missing, "bk-missing");

  EXPECT(TANDEM_OK, tandem_put(db, "c", "r", "f", &v, &err));
  EXPECT(TANDEM_OK, tandem_incr(db, "c", "r", "n", 2, &err));

  EXPECT(TANDEM_OK, tandem_check(&json, &len, db, &err));
  CHECK(json && strlen(json) == len);
  CHECK(contains(json, "\"ok\":true"));
  CHECK(contains(json, "\"records\":") && contains(json, "\"fields\":"));
  CHECK(contains(json, "\"log_entries\":"));
  tandem_free(json);
  EXPECT(TANDEM_INVALID, tandem_check(NULL, NULL, db, &err));

  /* Backup to a new directory; not over a non-empty one. */
  EXPECT(TANDEM_OK, tandem_backup(db, bk, &err));
  EXPECT(TANDEM_INVALID, tandem_backup(db, bk, &err));
  EXPECT(TANDEM_INVALID, tandem_backup(db, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_backup(db, "", &err));
  v = v_cstr("after the backup");
  EXPECT(TANDEM_OK, tandem_put(db, "c", "later", "f", &v, &err));

  /* Restore: the data as it was, the same device, a new replica id. */
  EXPECT(TANDEM_OK, tandem_restore(bk, rs, &err));
  EXPECT(TANDEM_OK, tandem_db_open(&restored, rs, NULL, &err));
  CHECK(record_is(restored, "c", "r", "{\"f\":\"kept\",\"id\":\"r\",\"n\":2}"));
  CHECK(is_absent(restored, "c", "later"));
  EXPECT(TANDEM_OK, tandem_db_info(&info, NULL, db, &err));
  EXPECT(TANDEM_OK, tandem_db_info(&info2, NULL, restored, &err));
  CHECK(json_string(info, "replica_id", rid, sizeof rid));
  CHECK(json_string(info2, "replica_id", rid2, sizeof rid2));
  CHECK(rid[0] != '\0' && strcmp(rid, rid2) != 0);
  CHECK(json_string(info, "device_id", dev, sizeof dev));
  CHECK(json_string(info2, "device_id", dev2, sizeof dev2));
  CHECK(dev[0] != '\0' && strcmp(dev, dev2) == 0);
  tandem_free(info);
  tandem_free(info2);
  json = NULL;
  EXPECT(TANDEM_OK, tandem_check(&json, NULL, restored, &err));
  CHECK(contains(json, "\"ok\":true"));
  tandem_free(json);
  /* A restored replica is writable. */
  EXPECT(TANDEM_OK, tandem_put(restored, "c", "r", "f", &v, &err));
  tandem_db_close(restored);
  /* Without its identity.key the data is whole, but the device cannot sync: said so. */
  {
    char key[300], aside[320];
    snprintf(key, sizeof key, "%s/identity.key", rs);
    snprintf(aside, sizeof aside, "%s.aside", key);
    CHECK(rename(key, aside) == 0);
    EXPECT(TANDEM_OK, tandem_db_open(&restored, rs, NULL, &err));
    EXPECT(TANDEM_NOT_FOUND, tandem_check(&json, NULL, restored, &err));
    CHECK(contains(err.message, "identity.key is missing"));
    tandem_db_close(restored);
    CHECK(rename(aside, key) == 0);
    EXPECT(TANDEM_OK, tandem_db_open(&restored, rs, NULL, &err));
    json = NULL;
    EXPECT(TANDEM_OK, tandem_check(&json, NULL, restored, &err));
    tandem_free(json);
    tandem_db_close(restored);
  }

  /* Restore errors: into a non-empty directory, from what is not a backup. */
  EXPECT(TANDEM_INVALID, tandem_restore(bk, rs, &err));
  make_dir("bk-empty");
  EXPECT(TANDEM_NOT_FOUND, tandem_restore(empty, rs2, &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_restore(missing, rs2, &err));
  make_dir("bk-garbage");
  write_file("bk-garbage", "data.mdb", "this is not an LMDB file at all, not even close", 47);
  EXPECT(TANDEM_CORRUPT, tandem_restore(garbage, rs3, &err));
  EXPECT(TANDEM_NOT_FOUND, tandem_db_open(&none, rs2, NULL, &err)); /* nothing was made */
  EXPECT(TANDEM_NOT_FOUND, tandem_db_open(&none, rs3, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_restore(NULL, rs2, &err));
  EXPECT(TANDEM_INVALID, tandem_restore(bk, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_restore("", rs2, &err));
  EXPECT(TANDEM_INVALID, tandem_restore(bk, "", &err));
  CHECK(tandem_restore(empty, rs2, NULL) == TANDEM_NOT_FOUND);

  tandem_db_close(db);
}

/* ---- The sync node ------------------------------------------------------------------- */

/* A node freed from its own callback: its sink must outlive the node's thread. */
static sink freed_from_callback;

/* Node options that are refused, at tandem_node_new or at tandem_node_start. */
static void check_bad_node_options(tandem_db* db) {
  tandem_error err;
  tandem_node* node = NULL;
  tandem_node_options o = TANDEM_NODE_OPTIONS_INIT;
  const char* nowhere[] = {"nowhere"};
  const char* null_peer[] = {NULL};
  int rc;

#define NEW_OR_START(opts)                                               \
  do {                                                                   \
    node = NULL;                                                         \
    err_reset(&err);                                                     \
    rc = tandem_node_new(&node, db, &(opts), NULL, NULL, &err);          \
    if (rc == TANDEM_OK) {                                               \
      CHECK(node != NULL);                                               \
      EXPECT(TANDEM_INVALID, tandem_node_start(node, &err));             \
      tandem_node_free(node);                                            \
    } else {                                                             \
      check_status(__FILE__, __LINE__, #opts, rc, TANDEM_INVALID, &err); \
      CHECK(node == NULL);                                               \
    }                                                                    \
  } while (0)

  CHECK(o.version == TANDEM_NODE_OPTIONS_VERSION && o.mode == TANDEM_NODE_LIVE);
  CHECK(o.idle_timeout_s == 45 && o.stop_timeout_ms == 5000);
  node = (tandem_node*)&err;
  EXPECT(TANDEM_INVALID, tandem_node_new(&node, db, NULL, NULL, NULL, &err));
  CHECK(node == NULL);
  o.listen = "127.0.0.1:0";
  EXPECT(TANDEM_INVALID, tandem_node_new(NULL, db, &o, NULL, NULL, &err));
  o.version = 0;
  EXPECT(TANDEM_INVALID, tandem_node_new(&node, db, &o, NULL, NULL, &err));
  o.version = TANDEM_NODE_OPTIONS_VERSION;
  o.mode = 7;
  EXPECT(TANDEM_INVALID, tandem_node_new(&node, db, &o, NULL, NULL, &err));
  o.mode = -1;
  EXPECT(TANDEM_INVALID, tandem_node_new(&node, db, &o, NULL, NULL, &err));
  o.mode = TANDEM_NODE_LIVE;
  o.idle_timeout_s = 0;
  NEW_OR_START(o);
  o.idle_timeout_s = -5;
  NEW_OR_START(o);
  o.idle_timeout_s = 45;
  o.stop_timeout_ms = -1;
  NEW_OR_START(o);
  o.stop_timeout_ms = 5000;
  o.send = "a,,b";
  NEW_OR_START(o);
  o.send = NULL;
  o.receive = "notes,bad\xff";
  NEW_OR_START(o);
  o.receive = NULL;
  o.listen = "127.0.0.1:99999";
  NEW_OR_START(o);
  o.listen = "nowhere";
  NEW_OR_START(o);
  o.listen = NULL;
  NEW_OR_START(o); /* live, with neither a listen address nor a peer */
  o.peers = nowhere;
  o.peer_count = 1;
  NEW_OR_START(o);
  o.peers = null_peer;
  NEW_OR_START(o);
  o.peers = NULL;
  NEW_OR_START(o);
  o.peer_count = 0;
  o.mode = TANDEM_NODE_INTERVAL; /* without an interval or a peer */
  o.listen = "127.0.0.1:0";
  NEW_OR_START(o);
  o.mode = TANDEM_NODE_LIVE;
  o.discover = 1; /* discovery needs a listen address */
  o.listen = NULL;
  NEW_OR_START(o);
#undef NEW_OR_START
}

/* Every function that takes a tandem_node, given `bad` (NULL or freed). */
static void check_bad_node(tandem_node* bad) {
  tandem_error err;
  char* json = (char*)"unset";
  size_t len = 0;
  int fd = -1;
  EXPECT(TANDEM_INVALID, tandem_node_start(bad, &err));
  EXPECT(TANDEM_INVALID, tandem_node_stop(bad, &err));
  EXPECT(TANDEM_INVALID, tandem_node_wait(bad, 0, &err));
  EXPECT(TANDEM_INVALID, tandem_node_status(&json, &len, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_node_listen_address(&json, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_node_event_fd(&fd, bad, &err));
  EXPECT(TANDEM_INVALID, tandem_node_drain_events(&json, &len, bad, &err));
  CHECK(strcmp(json, "unset") == 0);
}

/* Polls a queue-mode node's events (bounded) until their text holds `needle`; appends
 * every drained array to *all. */
static int drain_until(tandem_node* node, int fd, char** all, const char* needle) {
  time_t deadline = time(NULL) + 20;
  while (!contains(*all, needle) && time(NULL) < deadline) {
    struct pollfd pfd;
    char* json = NULL;
    size_t len = 0, have = strlen(*all);
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, 100) != 1) continue;
    if (tandem_node_drain_events(&json, &len, node, NULL) != TANDEM_OK || !json) {
      ++failures;
      return 0;
    }
    if (json[0] != '[' || strlen(json) != len) ++failures;
    {
      char* t = realloc(*all, have + len + 1);
      if (t) {
        *all = t;
        memcpy(*all + have, json, len + 1);
      }
    }
    tandem_free(json);
  }
  return contains(*all, needle);
}

/* Polls a node's status (bounded) until it holds `needle`. */
static int status_eventually(tandem_node* node, const char* needle) {
  int i;
  for (i = 0; i < 2000; ++i) {
    char* json = NULL;
    int found;
    if (tandem_node_status(&json, NULL, node, NULL) != TANDEM_OK) return 0;
    found = contains(json, needle);
    tandem_free(json);
    if (found) return 1;
    sleep_ms(10);
  }
  return 0;
}

static void test_node(void) {
  tandem_error err;
  tandem_db* a = must_create("node-a");
  tandem_db* b = must_create("node-b");
  tandem_node *na = NULL, *nb = NULL, *busy = NULL, *once = NULL, *stopper = NULL;
  tandem_node* self_freeing = NULL;
  tandem_watch* w = NULL;
  tandem_node_options oa = TANDEM_NODE_OPTIONS_INIT, ob = TANDEM_NODE_OPTIONS_INIT;
  sink ea, ew, eo, es;
  char *addr = NULL, *code = NULL, *json = NULL, *events = NULL, *id_a = NULL, *id_b = NULL;
  const char* peers[1];
  size_t len = 0;
  int fd = -1;
  tandem_value v;
  char needle[160];

  sink_init(&ea);
  sink_init(&ew);
  sink_init(&eo);
  sink_init(&es);
  sink_init(&freed_from_callback);
  events = calloc(1, 1);
  EXPECT(TANDEM_OK, tandem_db_device_id(&id_a, a, &err));
  EXPECT(TANDEM_OK, tandem_db_device_id(&id_b, b, &err));

  check_bad_node_options(a);
  check_bad_node(NULL);
  tandem_node_free(NULL);

  v = v_cstr("from a");
  EXPECT(TANDEM_OK, tandem_put(a, "notes", "n1", "text", &v, &err));

  /* The first node listens on any free port; events through a callback. */
  oa.listen = "127.0.0.1:0";
  EXPECT(TANDEM_OK, tandem_node_new(&na, a, &oa, on_node_event, &ea, &err));
  CHECK(na != NULL);
  addr = NULL;
  EXPECT(TANDEM_OK, tandem_node_listen_address(&addr, na, &err));
  CHECK(addr && strcmp(addr, "") == 0); /* not started yet */
  tandem_free(addr);
  addr = NULL;
  EXPECT(TANDEM_OK, tandem_node_wait(na, 0, &err)); /* not started: nothing to wait for */
  EXPECT(TANDEM_OK, tandem_node_start(na, &err));
  EXPECT(TANDEM_INVALID, tandem_node_start(na, &err)); /* a node starts once */
  EXPECT(TANDEM_OK, tandem_node_listen_address(&addr, na, &err));
  CHECK(addr && strncmp(addr, "127.0.0.1:", 10) == 0 && strcmp(addr, "127.0.0.1:0") != 0);
  EXPECT(TANDEM_INVALID, tandem_node_listen_address(NULL, na, &err));
  CHECK(sink_wait_event(&ea, TANDEM_EVENT_LISTENING));
  snprintf(needle, sizeof needle, "kind=0 ok=1 device= address=%s", addr ? addr : "?");
  CHECK(sink_wait_text(&ea, needle));
  json = NULL;
  EXPECT(TANDEM_OK, tandem_node_status(&json, &len, na, &err));
  CHECK(json && strlen(json) == len);
  CHECK(contains(json, "\"running\":true") && contains(json, "\"mode\":\"live\""));
  CHECK(contains(json, id_a) && contains(json, "\"peers\":["));
  snprintf(needle, sizeof needle, "\"listen\":\"%s\"", addr ? addr : "?");
  CHECK(contains(json, needle));
  tandem_free(json);
  EXPECT(TANDEM_INVALID, tandem_node_status(NULL, NULL, na, &err));
  EXPECT(TANDEM_BUSY, tandem_node_wait(na, 0, &err));

  /* One node that keeps syncing per replica (an app's or a tandem serve): a second
   * live node on a is refused, even through another handle; a one-shot node is not. */
  {
    char pa[256];
    tandem_db* a2 = NULL;
    tandem_node_options o2 = TANDEM_NODE_OPTIONS_INIT;
    path_of(pa, sizeof pa, "node-a");
    EXPECT(TANDEM_OK, tandem_db_open(&a2, pa, NULL, &err));
    EXPECT(TANDEM_BUSY, tandem_node_new(&busy, a, &o2, NULL, NULL, &err));
    CHECK(strstr(err.message, "already syncs") != NULL);
    o2.mode = TANDEM_NODE_INTERVAL;
    o2.interval_s = 60;
    EXPECT(TANDEM_BUSY, tandem_node_new(&busy, a2, &o2, NULL, NULL, &err));
    o2.mode = TANDEM_NODE_ONCE;
    EXPECT(TANDEM_OK, tandem_node_new(&busy, a2, &o2, NULL, NULL, &err));
    tandem_node_free(busy);
    busy = NULL;
    tandem_db_close(a2);
  }

  /* A listen address already in use: an I/O error at start. The node that failed holds
   * the replica no longer: another may start on it before that one is freed. */
  ob.listen = addr;
  EXPECT(TANDEM_OK, tandem_node_new(&busy, b, &ob, NULL, NULL, &err));
  EXPECT(TANDEM_IO, tandem_node_start(busy, &err));
  EXPECT(TANDEM_INVALID, tandem_node_start(busy, &err)); /* it let go: never again */
  {
    tandem_node* retry = NULL;
    ob.listen = "127.0.0.1:0";
    EXPECT(TANDEM_OK, tandem_node_new(&retry, b, &ob, NULL, NULL, &err));
    tandem_node_free(retry);
  }
  tandem_node_free(busy);
  ob.listen = NULL;

  /* Pairing: an invite from a, with its address; b stores it. */
  peers[0] = addr;
  EXPECT(TANDEM_OK, tandem_invite(&code, &len, a, peers, 1, 60, &err));
  EXPECT(TANDEM_OK, tandem_join(b, code, len, &err));
  tandem_free(code);

  /* A subscription on b, to see a's writes arrive. */
  ew.last_cursor = latest_cursor(b);
  EXPECT(TANDEM_OK, tandem_watch_new(&w, b, ew.last_cursor, on_change, &ew, &err));

  /* The second node dials the first; events through the queue (no callback). */
  ob.peers = peers;
  ob.peer_count = 1;
  EXPECT(TANDEM_OK, tandem_node_new(&nb, b, &ob, NULL, NULL, &err));
  EXPECT(TANDEM_OK, tandem_node_event_fd(&fd, nb, &err));
  CHECK(fd >= 0);
  EXPECT(TANDEM_INVALID, tandem_node_event_fd(NULL, nb, &err));
  EXPECT(TANDEM_INVALID, tandem_node_drain_events(NULL, NULL, nb, &err));
  EXPECT(TANDEM_OK, tandem_node_start(nb, &err));
  CHECK(drain_until(nb, fd, &events, "\"kind\":\"caught_up\""));
  CHECK(contains(events, "\"kind\":\"joined\""));
  snprintf(needle, sizeof needle, "\"device\":\"%s\"", id_a ? id_a : "?");
  CHECK(contains(events, needle));
  CHECK(contains(events, "\"kind\":\"connected\"") && contains(events, "\"ok\":"));
  CHECK(contains(events, "\"fields_received\":") && contains(events, "\"fields_sent\":"));
  CHECK(sink_wait_event(&ea, TANDEM_EVENT_INVITE_REDEEMED));
  CHECK(sink_wait_event(&ea, TANDEM_EVENT_CAUGHT_UP));
  CHECK(sink_count(&ea, TANDEM_EVENT_CAUGHT_UP) >= 1);
  snprintf(needle, sizeof needle, "kind=7 ok=1 device=%s", id_b ? id_b : "?");
  CHECK(sink_wait_text(&ea, needle));

  /* a's record reached b, and b's subscription saw it arrive. */
  CHECK(eventually_present(b, "notes", "n1"));
  CHECK(record_is(b, "notes", "n1", "{\"id\":\"n1\",\"text\":\"from a\"}"));
  CHECK(sink_wait_text(&ew, "\"id\":\"n1\",\"record\":{\"id\":\"n1\",\"text\":\"from a\"}"));

  /* Live, both ways. */
  v = v_cstr("live from a");
  EXPECT(TANDEM_OK, tandem_put(a, "notes", "n2", "text", &v, &err));
  CHECK(eventually_present(b, "notes", "n2"));
  CHECK(sink_wait_text(&ew, "\"id\":\"n2\""));
  v = v_cstr("back from b");
  EXPECT(TANDEM_OK, tandem_put(b, "notes", "n3", "text", &v, &err));
  CHECK(eventually_present(a, "notes", "n3"));
  CHECK(record_is(a, "notes", "n3", "{\"id\":\"n3\",\"text\":\"back from b\"}"));
  EXPECT(TANDEM_OK, tandem_incr(b, "notes", "n3", "likes", 2, &err));
  EXPECT(TANDEM_OK, tandem_incr(a, "notes", "n3", "likes", 3, &err));
  {
    int i, ok = 0;
    for (i = 0; i < 2000 && !ok; ++i) {
      char* ja = get_json(a, "notes", "n3");
      char* jb = get_json(b, "notes", "n3");
      ok = contains(ja, "\"likes\":5") && contains(jb, "\"likes\":5");
      tandem_free(ja);
      tandem_free(jb);
      if (!ok) sleep_ms(10);
    }
    CHECK(ok); /* counters converge on the sum */
  }

  /* What `tandem status` shows: a connected peer. */
  CHECK(status_eventually(nb, "\"connected\":true"));
  json = NULL;
  EXPECT(TANDEM_OK, tandem_node_status(&json, NULL, nb, &err));
  CHECK(contains(json, "\"running\":true"));
  CHECK(contains(json, id_a) && contains(json, id_b));
  CHECK(contains(json, "\"bytes_in\":") && contains(json, "\"pending_changes\":"));
  tandem_free(json);
  EXPECT(TANDEM_BUSY, tandem_node_wait(nb, 0, &err));

  /* Both devices are members of a's group now. */
  json = NULL;
  EXPECT(TANDEM_OK, tandem_devices(&json, NULL, a, &err));
  CHECK(count_of(json, "\"device\":") == 2);
  CHECK(contains(json, id_b));
  tandem_free(json);

  /* Stopping: then it has stopped; stopped is its last event; it cannot start again. */
  EXPECT(TANDEM_OK, tandem_node_stop(nb, &err));
  EXPECT(TANDEM_OK, tandem_node_wait(nb, -1, &err));
  EXPECT(TANDEM_OK, tandem_node_wait(nb, 0, &err));
  EXPECT(TANDEM_OK, tandem_node_stop(nb, &err)); /* again: fine */
  EXPECT(TANDEM_INVALID, tandem_node_start(nb, &err));
  CHECK(status_eventually(nb, "\"running\":false"));
  CHECK(drain_until(nb, fd, &events, "\"kind\":\"stopped\""));
  {
    const char* last = strrchr(events, '{');
    CHECK(last && strstr(last, "\"kind\":\"stopped\""));
  }
  json = NULL;
  EXPECT(TANDEM_OK, tandem_node_drain_events(&json, NULL, nb, &err));
  CHECK(json && strcmp(json, "[]") == 0);
  tandem_free(json);
  tandem_node_free(nb);
  check_bad_node(nb);
  tandem_node_free(nb); /* twice: a no-op */

  /* Concurrent writes while apart; a TANDEM_NODE_ONCE node syncs and stops by itself. */
  v = v_cstr("from a");
  EXPECT(TANDEM_OK, tandem_put(a, "c", "x", "v", &v, &err));
  v = v_cstr("from b");
  EXPECT(TANDEM_OK, tandem_put(b, "c", "x", "v", &v, &err));
  v = v_cstr("while b was away");
  EXPECT(TANDEM_OK, tandem_put(a, "notes", "n4", "text", &v, &err));
  ob.mode = TANDEM_NODE_ONCE;
  EXPECT(TANDEM_OK, tandem_node_new(&once, b, &ob, on_node_event, &eo, &err));
  EXPECT(TANDEM_OK, tandem_node_start(once, &err));
  EXPECT(TANDEM_OK, tandem_node_wait(once, 120000, &err));
  CHECK(sink_count(&eo, TANDEM_EVENT_DONE) == 1);
  CHECK(sink_count(&eo, TANDEM_EVENT_STOPPED) == 1);
  CHECK(sink_count(&eo, TANDEM_EVENT_CAUGHT_UP) >= 1);
  pthread_mutex_lock(&eo.mu);
  CHECK(eo.done_ok == 1);
  CHECK(eo.bad == 0);
  pthread_mutex_unlock(&eo.mu);
  json = NULL;
  EXPECT(TANDEM_OK, tandem_node_status(&json, NULL, once, &err));
  CHECK(contains(json, "\"mode\":\"once\"") && contains(json, "\"running\":false"));
  tandem_free(json);
  tandem_node_free(once);
  CHECK(record_is(b, "notes", "n4", "{\"id\":\"n4\",\"text\":\"while b was away\"}"));
  /* The concurrent writes are a conflict with two siblings, on both replicas. */
  json = NULL;
  EXPECT(TANDEM_OK, tandem_conflicts_json(&json, &len, b, "c", "x", &err));
  CHECK(json && strlen(json) == len);
  CHECK(contains(json, "{\"v\":["));
  CHECK(count_of(json, "\"winner\":true") == 1 && count_of(json, "\"winner\":false") == 1);
  CHECK(contains(json, "\"value\":\"from a\"") && contains(json, "\"value\":\"from b\""));
  CHECK(contains(json, "\"kind\":") && contains(json, "\"writer\":"));
  CHECK(contains(json, "\"hlc\":") && contains(json, "\"time\":"));
  {
    /* The winner is listed first, and it is the value both replicas show. */
    char winner[64], shown[64];
    char* rec = get_json(b, "c", "x");
    const char* first = strstr(json ? json : "", "\"value\":\"");
    const char* wt = strstr(json ? json : "", "\"winner\":true");
    const char* wf = strstr(json ? json : "", "\"winner\":false");
    CHECK(wt && wf && wt < wf);
    CHECK(first && json_string(first, "value", winner, sizeof winner));
    CHECK(json_string(rec, "v", shown, sizeof shown) && strcmp(winner, shown) == 0);
    CHECK(eventually_present(a, "c", "x"));
    {
      int i, same = 0;
      for (i = 0; i < 2000 && !same; ++i) {
        char* ra = get_json(a, "c", "x");
        same = ra && rec && strcmp(ra, rec) == 0;
        tandem_free(ra);
        if (!same) sleep_ms(10);
      }
      CHECK(same);
    }
    tandem_free(rec);
  }
  tandem_free(json);
  {
    int i, both = 0;
    for (i = 0; i < 2000 && !both; ++i) {
      json = NULL;
      EXPECT(TANDEM_OK, tandem_conflicts_json(&json, NULL, a, "c", "x", &err));
      both = contains(json, "{\"v\":[") && count_of(json, "\"winner\":") == 2;
      tandem_free(json);
      if (!both) sleep_ms(10);
    }
    CHECK(both);
  }
  json = NULL;
  EXPECT(TANDEM_OK, tandem_conflicts_json(&json, NULL, b, "notes", "n1", &err));
  CHECK(json && strcmp(json, "{}") == 0);
  tandem_free(json);

  /* Stopped from inside its own callback (which may call back in first). */
  ob.mode = TANDEM_NODE_LIVE;
  ob.stop_timeout_ms = 1000;
  EXPECT(TANDEM_OK, tandem_node_new(&stopper, b, &ob, on_node_event, &es, &err));
  pthread_mutex_lock(&es.mu);
  es.self = stopper;
  es.action = ACT_STOP_NODE;
  pthread_mutex_unlock(&es.mu);
  EXPECT(TANDEM_OK, tandem_node_start(stopper, &err));
  EXPECT(TANDEM_OK, tandem_node_wait(stopper, 60000, &err));
  pthread_mutex_lock(&es.mu);
  CHECK(es.acted && es.act_rc == TANDEM_OK && es.status_rc == TANDEM_OK);
  CHECK(es.counts[TANDEM_EVENT_STOPPED] == 1);
  CHECK(es.bad == 0);
  pthread_mutex_unlock(&es.mu);
  /* Stopped, not yet freed: it no longer holds b against another live node. */
  EXPECT(TANDEM_OK, tandem_node_new(&busy, b, &ob, NULL, NULL, &err));
  tandem_node_free(busy);
  busy = NULL;
  tandem_node_free(stopper);

  /* Freed from inside its own callback. */
  EXPECT(TANDEM_OK,
         tandem_node_new(&self_freeing, b, &ob, on_node_event, &freed_from_callback, &err));
  pthread_mutex_lock(&freed_from_callback.mu);
  freed_from_callback.self = self_freeing;
  freed_from_callback.action = ACT_FREE_NODE;
  pthread_mutex_unlock(&freed_from_callback.mu);
  EXPECT(TANDEM_OK, tandem_node_start(self_freeing, &err));
  CHECK(sink_wait(&freed_from_callback, has_acted, NULL, 30));

  /* The first node still serves: one more write from a reaches b through a once node. */
  v = v_cstr("last");
  EXPECT(TANDEM_OK, tandem_put(a, "notes", "n5", "text", &v, &err));
  /* ... from a node made with a handle closed since: the node keeps the replica open. */
  ob.mode = TANDEM_NODE_ONCE;
  {
    char pb[256];
    tandem_db* b2 = NULL;
    path_of(pb, sizeof pb, "node-b");
    EXPECT(TANDEM_OK, tandem_db_open(&b2, pb, NULL, &err));
    EXPECT(TANDEM_OK, tandem_node_new(&once, b2, &ob, NULL, NULL, &err));
    tandem_db_close(b2);
  }
  EXPECT(TANDEM_OK, tandem_node_start(once, &err));
  EXPECT(TANDEM_OK, tandem_node_wait(once, 120000, &err));
  tandem_node_free(once);
  CHECK(eventually_present(b, "notes", "n5"));

  /* b, a member, may neither revoke, nor change roles, nor invite. */
  EXPECT(TANDEM_UNAUTHORIZED, tandem_revoke(b, id_a, &err));
  CHECK(strstr(err.message, "only admins and owners"));
  EXPECT(TANDEM_UNAUTHORIZED, tandem_set_role(b, id_a, "reader", &err));
  EXPECT(TANDEM_UNAUTHORIZED, tandem_invite_role(&code, NULL, b, NULL, 0, 60, "reader", &err));
  /* Without group.root, b cannot tell who may do what (its group is signed): check says
   * so, and passes again once the file is back. */
  {
    char file[300], aside[320];
    path_of(file, sizeof file, "node-b/group.root");
    snprintf(aside, sizeof aside, "%s.aside", file);
    CHECK(rename(file, aside) == 0);
    json = NULL;
    EXPECT(TANDEM_UNAUTHORIZED, tandem_check(&json, NULL, b, &err));
    CHECK(contains(err.message, "group.root is missing"));
    CHECK(rename(aside, file) == 0);
    EXPECT(TANDEM_OK, tandem_check(&json, NULL, b, &err));
    tandem_free(json);
  }
  /* a, the founder, makes b an admin, then revokes it. */
  EXPECT(TANDEM_OK, tandem_set_role(a, id_b, "admin", &err));
  json = NULL;
  EXPECT(TANDEM_OK, tandem_devices(&json, NULL, a, &err));
  CHECK(contains(json, "\"role\":\"admin\""));
  tandem_free(json);
  /* Revoking b, now a member. */
  EXPECT(TANDEM_OK, tandem_revoke(a, id_b, &err));
  json = NULL;
  EXPECT(TANDEM_OK, tandem_devices(&json, NULL, a, &err));
  CHECK(contains(json, "\"status\":\"revoked\""));
  tandem_free(json);

  tandem_watch_free(w);
  pthread_mutex_lock(&ew.mu);
  CHECK(ew.bad == 0);
  pthread_mutex_unlock(&ew.mu);

  /* a's node stops when freed; the callback saw it stop, last. */
  tandem_node_free(na);
  pthread_mutex_lock(&ea.mu);
  CHECK(ea.counts[TANDEM_EVENT_STOPPED] == 1);
  CHECK(ea.bad == 0);
  CHECK(ea.len > 0);
  {
    const char* last_line = ea.text + ea.len - 1;
    while (last_line > ea.text && last_line[-1] != '\n') --last_line;
    CHECK(strncmp(last_line, "kind=9", 6) == 0);
  }
  pthread_mutex_unlock(&ea.mu);
  /* Its hold on the replica went with it: another live node may sync a now. */
  {
    tandem_node_options o2 = TANDEM_NODE_OPTIONS_INIT;
    EXPECT(TANDEM_OK, tandem_node_new(&busy, a, &o2, NULL, NULL, &err));
    tandem_node_free(busy);
  }

  /* Long after the node freed itself: its callback ran no more. */
  pthread_mutex_lock(&freed_from_callback.mu);
  CHECK(freed_from_callback.after_act == 0);
  CHECK(freed_from_callback.bad == 0);
  pthread_mutex_unlock(&freed_from_callback.mu);

  tandem_free(addr);
  tandem_free(id_a);
  tandem_free(id_b);
  free(events);
  sink_destroy(&ea);
  sink_destroy(&ew);
  sink_destroy(&eo);
  sink_destroy(&es);
  /* freed_from_callback stays: the freed node's thread may still be finishing. */
  tandem_db_close(a);
  tandem_db_close(b);
}

static void test_schemas(void) {
  tandem_error err;
  tandem_db* db = must_create("schemas");
  tandem_value v;
  char* json = NULL;
  size_t len = 0;
  int64_t version = -1;
  static const char schema[] =
      "{\"fields\": {\"phone\": {\"type\": \"string\", \"normalize\": [\"phone\"], "
      "\"region\": \"US\"}, \"qty\": {\"type\": \"counter\", \"min\": 0}}}";

  /* None yet. */
  EXPECT(TANDEM_OK, tandem_schema_get(&json, &len, &version, db, "customers", &err));
  CHECK(json == NULL && len == 0 && version == 0);
  EXPECT(TANDEM_OK, tandem_schema_set(db, "customers", schema, &version, &err));
  CHECK(version == 1);
  EXPECT(TANDEM_OK, tandem_schema_get(&json, &len, &version, db, "customers", &err));
  CHECK(json != NULL && version == 1 && len == strlen(schema) && strcmp(json, schema) == 0);
  tandem_free(json);
  EXPECT(TANDEM_OK, tandem_schema_set(db, "customers", schema, NULL, &err));
  EXPECT(TANDEM_OK, tandem_schema_get(&json, &len, &version, db, "customers", &err));
  CHECK(version == 2);
  tandem_free(json);

  /* Writes follow it: stored normalised, refused with the field named, nothing changed. */
  v = v_str("(415) 555-2671", 14);
  EXPECT(TANDEM_OK, tandem_put(db, "customers", "c1", "phone", &v, &err));
  CHECK(record_is(db, "customers", "c1", "{\"id\":\"c1\",\"phone\":\"+14155552671\"}"));
  v = v_str("12", 2);
  EXPECT(TANDEM_INVALID, tandem_put(db, "customers", "c1", "phone", &v, &err));
  CHECK(strstr(err.message, "phone") != NULL);
  EXPECT(TANDEM_INVALID, tandem_incr(db, "customers", "c1", "qty", -1, &err));
  CHECK(strstr(err.message, "minimum") != NULL);
  CHECK(record_is(db, "customers", "c1", "{\"id\":\"c1\",\"phone\":\"+14155552671\"}"));

  /* Bad schemas and arguments. */
  EXPECT(TANDEM_INVALID, tandem_schema_set(db, "customers", "{\"fields\": 5}", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_schema_set(db, "customers", "not json", NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_schema_set(db, "customers", NULL, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_schema_set(db, "_tandem_devices", schema, NULL, &err));
  EXPECT(TANDEM_INVALID, tandem_schema_get(NULL, &len, &version, db, "customers", &err));
  EXPECT(TANDEM_OK, tandem_schema_get(&json, &len, &version, db, "customers", &err));
  CHECK(version == 2);
  tandem_free(json);

  /* Tandem's own collections are tandem's to write: every device would take them. */
  v = v_str("x", 1);
  EXPECT(TANDEM_INVALID, tandem_put(db, "_tandem_devices", "d", "key", &v, &err));
  CHECK(strstr(err.message, "reserved") != NULL);
  EXPECT(TANDEM_INVALID, tandem_put(db, "_tandem_fill", "d", "f", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_incr(db, "_tandem_reports", "d", "n", 1, &err));
  EXPECT(TANDEM_INVALID, tandem_add(db, "_tandemx", "d", "s", &v, &err));
  EXPECT(TANDEM_INVALID, tandem_put_json(db, "_tandem_y", "d", "{\"a\":1}", 7, &err));
  EXPECT(TANDEM_INVALID, tandem_delete(db, "_tandem_devices", "d", &err));
  tandem_db_close(db);
}

int main(void) {
  char tmpl[] = "/tmp/tandem_capi_XXXXXX";
  if (!mkdtemp(tmpl)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(root, sizeof root, "%s", tmpl);

  test_status_and_version();
  test_db_lifecycle();
  test_fork();
  test_info();
  test_writes();
  test_batches();
  test_reads();
  test_collections_and_iterators();
  test_change_feed();
  test_subscriptions();
  test_pairing();
  test_backup();
  test_blobs();
  test_node();
  test_schemas();

  remove_tree(root);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("capi: all checks passed\n");
  return 0;
}
