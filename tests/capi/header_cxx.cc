// tandem.h compiles as C++ too (with -Wall -Wextra -Werror -pedantic).
#include "tandem.h"

int tandem_header_compiles_as_cxx() {
  tandem_open_options o = TANDEM_OPEN_OPTIONS_INIT;
  tandem_node_options n = TANDEM_NODE_OPTIONS_INIT;
  return static_cast<int>(o.version + n.version);
}
