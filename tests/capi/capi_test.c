/* The C API, tested in C11 against tandem.h alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"

static int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

static void test_version(void) {
  CHECK(strcmp(tandem_version(), "0.1.0") == 0);
  CHECK(strcmp(tandem_status_str(TANDEM_NOT_FOUND), "not found") == 0);
}

int main(void) {
  test_version();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("capi: all checks passed\n");
  return 0;
}
