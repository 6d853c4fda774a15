// A directory bind-mounted read-only, as a filesystem snapshot or a write-protected
// stick shows a replica: only root can make one.
#pragma once

#include <sys/mount.h>

#include <filesystem>
#include <string>

namespace tandem::testing {

// Mounts `dir` read-only at `at` (made if missing) for the life of the object; Mounted()
// says whether it could (root, and a system that lets it mount).
class ReadOnlyMount {
 public:
  ReadOnlyMount(const std::string& dir, const std::string& at) : at_(at) {
    std::filesystem::create_directories(at);
    mounted_ = ::mount(dir.c_str(), at.c_str(), nullptr, MS_BIND, nullptr) == 0;
    if (mounted_ &&
        ::mount(nullptr, at.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      ::umount2(at.c_str(), MNT_DETACH);
      mounted_ = false;
    }
  }
  ~ReadOnlyMount() {
    if (mounted_) ::umount2(at_.c_str(), MNT_DETACH);
  }
  ReadOnlyMount(const ReadOnlyMount&) = delete;
  ReadOnlyMount& operator=(const ReadOnlyMount&) = delete;
  bool Mounted() const { return mounted_; }

 private:
  std::string at_;
  bool mounted_ = false;
};

}  // namespace tandem::testing
