/* Two devices in one program: open, write, subscribe, pair and sync over loopback.
 * Build: cc two_devices.c $(pkg-config --cflags --libs tandem); run in an empty dir. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <tandem.h>
#include <unistd.h>

static tandem_error err;
#define TRY(call)                                    \
  if ((call) != TANDEM_OK) {                         \
    fprintf(stderr, "%s: %s\n", #call, err.message); \
    return 1;                                        \
  }

/* Runs on the subscription's thread for every record that changes on b. */
static void on_change(const char* json, size_t len, uint64_t cursor, void* seen) {
  printf("b changed (cursor %llu): %.*s\n", (unsigned long long)cursor, (int)len, json);
  if (strstr(json, "\"hello from a\"")) atomic_store((atomic_int*)seen, 1);
}

int main(void) {
  tandem_db *a, *b;
  TRY(tandem_db_create(&a, "a", NULL, &err)); /* two devices, each a group of one */
  TRY(tandem_db_create(&b, "b", NULL, &err));
  tandem_value text = {TANDEM_STRING, 0, 0, "hello from a", 12};
  TRY(tandem_put(a, "notes", "n1", "text", &text, &err));

  /* a listens; b redeems a's invite on its first connection and joins a's group. */
  tandem_node_options oa = TANDEM_NODE_OPTIONS_INIT;
  oa.listen = "127.0.0.1:0";
  tandem_node *na, *nb;
  TRY(tandem_node_new(&na, a, &oa, NULL, NULL, &err));
  TRY(tandem_node_start(na, &err));
  char *addr, *code;
  TRY(tandem_node_listen_address(&addr, na, &err));
  const char* hints[] = {addr};
  TRY(tandem_invite(&code, NULL, a, hints, 1, 60, &err));
  TRY(tandem_join(b, code, strlen(code), &err));

  atomic_int seen = 0;
  tandem_watch* w;
  TRY(tandem_watch_new(&w, b, 0, on_change, &seen, &err));
  tandem_node_options ob = TANDEM_NODE_OPTIONS_INIT;
  const char* peers[] = {addr};
  ob.peers = peers;
  ob.peer_count = 1;
  TRY(tandem_node_new(&nb, b, &ob, NULL, NULL, &err));
  TRY(tandem_node_start(nb, &err)); /* live: every later commit flows both ways */

  for (int i = 0; i < 2000 && !atomic_load(&seen); ++i) usleep(10000);
  printf(atomic_load(&seen) ? "synced\n" : "not synced\n");
  tandem_watch_free(w);
  tandem_node_free(nb);
  tandem_node_free(na);
  tandem_free(code);
  tandem_free(addr);
  tandem_db_close(b);
  tandem_db_close(a);
  return atomic_load(&seen) ? 0 : 1;
}
