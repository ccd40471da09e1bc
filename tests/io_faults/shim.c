/* An LD_PRELOAD library that makes one kind of file-system call fail, as a failing disk would,
 * for the I/O fault tests (tests/io_faults.rs). It counts the calls of one kind made on files
 * under one directory and fails the Nth (and, if asked, every one after it) with a chosen errno.
 *
 *   CHRONICLE_FAULT_DIR     only calls on paths under this directory count
 *   CHRONICLE_FAULT_OP      fsync (fsync and fdatasync), write (write, pwrite, writev) or rename
 *   CHRONICLE_FAULT_AT      N: the Nth counted call fails (1 = the first)
 *   CHRONICLE_FAULT_ERRNO   EIO or ENOSPC
 *   CHRONICLE_FAULT_STICKY  1: every counted call after the Nth fails too (a disk that stays full)
 *   CHRONICLE_FAULT_REPORT  a file to which "op n path" is appended when a call is failed
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum op { OP_NONE, OP_FSYNC, OP_WRITE, OP_RENAME };

static atomic_long calls;
static atomic_int configured;
static enum op target;
static long fail_at;
static int fail_errno;
static int sticky;
static char dir[PATH_MAX];
static size_t dir_len;
static char report[PATH_MAX];

static void configure(void) {
    if (atomic_load(&configured)) return;
    const char *op = getenv("CHRONICLE_FAULT_OP");
    const char *at = getenv("CHRONICLE_FAULT_AT");
    const char *d = getenv("CHRONICLE_FAULT_DIR");
    const char *e = getenv("CHRONICLE_FAULT_ERRNO");
    const char *s = getenv("CHRONICLE_FAULT_STICKY");
    const char *r = getenv("CHRONICLE_FAULT_REPORT");
    target = OP_NONE;
    if (op && at && d) {
        if (!strcmp(op, "fsync")) target = OP_FSYNC;
        else if (!strcmp(op, "write")) target = OP_WRITE;
        else if (!strcmp(op, "rename")) target = OP_RENAME;
        fail_at = atol(at);
        snprintf(dir, sizeof dir, "%s", d);
        dir_len = strlen(dir);
    }
    fail_errno = (e && !strcmp(e, "ENOSPC")) ? ENOSPC : EIO;
    sticky = s && !strcmp(s, "1");
    snprintf(report, sizeof report, "%s", r ? r : "");
    atomic_store(&configured, 1);
}

static int under_dir(const char *path) {
    return path && dir_len > 0 && !strncmp(path, dir, dir_len);
}

static int fd_under_dir(int fd) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return under_dir(path);
}

static void note(const char *what, long n, const char *path) {
    if (!report[0]) return;
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    ssize_t (*real_write)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
    int fd = real_open(report, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    char line[PATH_MAX + 64];
    int len = snprintf(line, sizeof line, "%s %ld %s\n", what, n, path ? path : "-");
    if (len > 0) real_write(fd, line, (size_t)len);
    close(fd);
}

/* Whether this call (of kind `op`, on `path` or on `fd`) is to fail. */
static int should_fail(enum op op, int fd, const char *path) {
    configure();
    if (op != target) return 0;
    if (path ? !under_dir(path) : !fd_under_dir(fd)) return 0;
    long n = atomic_fetch_add(&calls, 1) + 1;
    if (n == fail_at || (sticky && n > fail_at)) {
        const char *what = op == OP_FSYNC ? "fsync" : op == OP_WRITE ? "write" : "rename";
        char p[PATH_MAX] = "-";
        if (!path) {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t k = readlink(link, p, sizeof p - 1);
            p[k > 0 ? k : 0] = 0;
            path = p;
        }
        note(what, n, path);
        errno = fail_errno;
        return 1;
    }
    return 0;
}

typedef int (*sync_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef int (*rename_fn)(const char *, const char *);
typedef int (*renameat_fn)(int, const char *, int, const char *);

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name, type) \
    static type real_##name; \
    if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
    REAL(fsync, sync_fn);
    if (should_fail(OP_FSYNC, fd, NULL)) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync, sync_fn);
    if (should_fail(OP_FSYNC, fd, NULL)) return -1;
    return real_fdatasync(fd);
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write, write_fn);
    if (should_fail(OP_WRITE, fd, NULL)) return -1;
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite, pwrite_fn);
    if (should_fail(OP_WRITE, fd, NULL)) return -1;
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64, pwrite_fn);
    if (should_fail(OP_WRITE, fd, NULL)) return -1;
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev, writev_fn);
    if (should_fail(OP_WRITE, fd, NULL)) return -1;
    return real_writev(fd, iov, iovcnt);
}

int rename(const char *from, const char *to) {
    REAL(rename, rename_fn);
    if (should_fail(OP_RENAME, -1, to)) return -1;
    return real_rename(from, to);
}

int renameat(int olddirfd, const char *from, int newdirfd, const char *to) {
    REAL(renameat, renameat_fn);
    if (should_fail(OP_RENAME, -1, to)) return -1;
    return real_renameat(olddirfd, from, newdirfd, to);
}
