// Running real processes from tests: the tandem binary and test helper programs.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

extern char** environ;

namespace tandem::testing {

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A child process with its stdout and stderr on pipes.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) abort();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) abort();
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }
  ~Child() {
    if (pid_ > 0) {
      Kill(SIGKILL);
      Wait();
    }
    if (out_fd_ >= 0) close(out_fd_);
    if (err_fd_ >= 0) close(err_fd_);
  }
  void Kill(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  pid_t pid() const { return pid_; }
  // Reads what is available (waiting up to timeout_ms for something); false at EOF.
  bool ReadSome(std::string* out, int timeout_ms) {
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return true;
    char buf[65536];
    ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) return false;
    out->append(buf, static_cast<size_t>(n));
    return true;
  }
  // Waits for exit, draining both pipes; returns the exit code (128+signal if killed).
  RunResult Finish() {
    RunResult r;
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
      pollfd p[2] = {{out_open ? out_fd_ : -1, POLLIN, 0}, {err_open ? err_fd_ : -1, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) break;
      char buf[65536];
      if (out_open && (p[0].revents & (POLLIN | POLLHUP))) {
        ssize_t n = read(out_fd_, buf, sizeof buf);
        if (n <= 0)
          out_open = false;
        else
          r.out.append(buf, static_cast<size_t>(n));
      }
      if (err_open && (p[1].revents & (POLLIN | POLLHUP))) {
        ssize_t n = read(err_fd_, buf, sizeof buf);
        if (n <= 0)
          err_open = false;
        else
          r.err.append(buf, static_cast<size_t>(n));
      }
    }
    r.exit_code = Wait();
    return r;
  }
  int Wait() {
    if (pid_ <= 0) return status_;
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  int status_ = -1;
};

inline RunResult Run(const std::vector<std::string>& args) { return Child(args).Finish(); }

// A TCP socket bound to a free port of 127.0.0.1, listening if `listening`, and its
// "127.0.0.1:PORT"; -1 if that failed.
inline int BindLoopback(std::string* address, bool listening = true) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof at;
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 ||
      (listening && listen(s, 8) != 0) ||
      getsockname(s, reinterpret_cast<sockaddr*>(&at), &len) != 0) {
    if (s >= 0) close(s);
    return -1;
  }
  *address = "127.0.0.1:" + std::to_string(ntohs(at.sin_port));
  return s;
}

// A fresh directory under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tandem-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tandem::testing
