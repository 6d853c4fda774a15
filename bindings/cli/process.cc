// The `tandem` process itself: how it ends (one line on stderr and an exit status), what
// a crash says, and work done in a child process so that a crash there is an error.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __GLIBC__  // known once a C library header is in
#include <malloc.h>
#endif

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "cli.h"
#include "tandem/files/files.h"

namespace tandem::cli {

namespace {

// What a crash says before the process dies of it: LMDB trusts its pages, so a read of a
// damaged file can crash any command; the user is told what to run. Written from the
// signal handler (async-signal-safe: a prepared message and write), then the signal
// takes its course (the exit status still says which). Not under a sanitizer, whose
// own report is worth more.
char crash_note[1024];
size_t crash_note_len = 0;

extern "C" void OnCrash(int sig) {
  if (crash_note_len) (void)!::write(2, crash_note, crash_note_len);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void NoteCrashesOn(const std::string& dir) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  const std::string note = "tandem: crashed working on " + Printable(dir) +
                           ": its data may be damaged; `tandem check " + Printable(dir) +
                           "` says whether it is (restore it from a backup if so)\n";
  if (note.size() > sizeof crash_note) return;
  std::memcpy(crash_note, note.data(), note.size());
  crash_note_len = note.size();
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) ::signal(sig, OnCrash);
#else
  (void)dir;
#endif
}

void SetUpProcess() {
  files::KeepStandardDescriptors();  // before any file is opened
  std::signal(SIGPIPE, SIG_IGN);     // a closed pipe shows up as a write error instead
#ifdef __GLIBC__
  // Blocks of 1 MiB and more (the values of a large field state, being encoded or
  // decoded) are mapped on their own and unmapped when freed, so a daemon's memory goes
  // back down as a large state is encoded, whatever was allocated before (glibc would
  // otherwise raise the threshold to the size of the first such block freed, and keep
  // the next ones in its heap).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Fixing that threshold also fixes the heap's trim threshold at its 128 KiB default
  // (glibc raises it to twice the mmap threshold with it): every batch then gave its
  // heap back and faulted it in again, and an initial sync between two daemons took
  // half as long again. Twice the mmap threshold, as glibc would.
  mallopt(M_TRIM_THRESHOLD, 2 << 20);
#endif
}

void CheckOutput() {
  errno = 0;
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return;
  const int err = errno;
  std::clearerr(stdout);  // said once
  throw Exit{1, "cannot write the output" +
                    (err ? ": " + std::string(std::strerror(err)) : std::string())};
}

int Reported(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Exit& e) {
    // One line, safe for a terminal, whatever input it echoes.
    std::fprintf(stderr, "tandem: %s\n", Printable(e.message).c_str());
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: internal error: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "tandem: internal error\n");
    return 1;
  }
}

// Runs `body` in a child process and returns its exit status. LMDB trusts its pages: a
// damaged file (a flipped bit) can make a read crash the process. check and restore are
// what a user runs on a suspect replica or backup, so there such a crash becomes an error
// naming the damage (after `on_crash`, which cleans up), not a dead process.
int Isolated(const std::string& file, const std::function<void()>& body,
             const std::function<void()>& on_crash, const char* remedy) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {  // no process to spare: run it here, unprotected
    body();
    return 0;
  }
  if (pid == 0) {
    // Killed with the command (a supervisor, `kill PID`, the OOM killer signal it alone):
    // a restore must not go on to publish a replica nobody waits for. A parent gone
    // before the request took effect is seen by the check after it.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(1);
    crash_note_len = 0;  // the parent says what a crash here means
    const int code = Reported([&] {
      body();
      CheckOutput();
      return 0;
    });
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw Exit{1, "wait for the work on " + file + ": " + std::strerror(errno)};
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (on_crash) on_crash();
  const int sig = WTERMSIG(status);
  // The signals a bad page read gives (an invalid pointer, a page past the end, an
  // assertion in LMDB); any other (the OOM killer, a kill) says nothing about the file.
  if (sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT || sig == SIGFPE || sig == SIGILL)
    throw Exit{1, file + " is damaged: reading it crashed (" + strsignal(sig) + "); " + remedy};
  throw Exit{1, "the work on " + file + " was stopped by a signal (" + strsignal(sig) + ")"};
}

}  // namespace tandem::cli
