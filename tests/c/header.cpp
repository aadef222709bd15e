// The header must compile as C++ (strict) and work from C++ code.
#include "vman.h"

#include <cstdio>
#include <cstring>

int main() {
  if (std::strcmp(vman_version(), VMAN_VERSION) != 0) return 1;
  VmanManager *mgr = nullptr;
  VmanStatus status = vman_manager_open(nullptr, nullptr, &mgr);
  if (status != VMAN_STATUS_NULL_PARAMETER || mgr != nullptr) return 2;
  std::printf("header.cpp: %s\n", vman_status_name(status));
  return 0;
}
