# find_package(Tandem) gives Tandem::tandem, the shared C library with tandem.h.
include("${CMAKE_CURRENT_LIST_DIR}/TandemTargets.cmake")
set(Tandem_VERSION 0.1.0)
