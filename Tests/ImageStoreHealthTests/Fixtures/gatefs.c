/*
 * gatefs: a FUSE passthrough filesystem for tests whose calls hang on demand, like a hard NFS mount
 * whose server stopped answering: the call neither succeeds nor fails, it just does not return.
 *
 *   gatefs <backing-dir> <control-dir> <mountpoint> -f [fuse options]
 *
 * Every operation on the mount is done on <backing-dir>. Before each one, gatefs looks in
 * <control-dir> for a gate file: while `hang-<op>` or `hang-all` exists the call blocks (polling every
 * 10 ms); `eio-<op>` makes it fail with EIO. Ops: getattr, mkdir, unlink, rename, open, create, read,
 * write, fsync, readdir, statfs. A write blocks only after `write-ok-bytes` bytes (the number in
 * that file, default 0) have gone through the current gate, so an upload can hang mid-way.
 * Removing the gate releases every blocked call within 10 ms. Caching is off, so every call reaches
 * gatefs. Multithreaded (the fuse default).
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static const char *backing;
static const char *control;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long long written_since_gate = 0;

static void real(const char *path, char *out) { snprintf(out, 4096, "%s%s", backing, path); }

static int exists(const char *name) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", control, name);
    return stat(p, &st) == 0;
}

static long long number_in(const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", control, name);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    long long n = 0;
    if (fscanf(f, "%lld", &n) != 1) n = 0;
    fclose(f);
    return n;
}

/* Records (once per gate) when a call of `op` first blocked, as CLOCK_MONOTONIC nanoseconds in
 * blocked-<op>, so a test can measure how long after the hang the server answered. */
static void mark_blocked(const char *op) {
    char name[64], p[4096];
    snprintf(name, sizeof name, "blocked-%s", op);
    if (exists(name)) return;
    snprintf(p, sizeof p, "%s/%s", control, name);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    FILE *f = fopen(p, "w");
    if (!f) return;
    fprintf(f, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    fclose(f);
}

/* Blocks while the op's hang gate (or hang-all) exists; returns -EIO when its eio gate exists. */
static int gate(const char *op) {
    char hang[64], eio[64];
    snprintf(hang, sizeof hang, "hang-%s", op);
    snprintf(eio, sizeof eio, "eio-%s", op);
    if (exists(hang) || exists("hang-all")) mark_blocked(op);
    while (exists(hang) || exists("hang-all")) usleep(10000);
    if (exists(eio)) return -EIO;
    return 0;
}

static void *gate_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->attr_timeout = 0;
    cfg->entry_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->use_ino = 0;
    cfg->direct_io = 0; /* set per file in open/create (see uses_page_cache) */
    return NULL;
}

static int gate_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    char p[4096];
    real(path, p);
    if (strcmp(path, "/") != 0) {
        int g = gate("getattr");
        if (g) return g;
    }
    return lstat(p, st) == 0 ? 0 : -errno;
}

static int gate_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset, struct fuse_file_info *fi,
                        enum fuse_readdir_flags flags) {
    (void)offset;
    (void)fi;
    (void)flags;
    int g = gate("readdir");
    if (g) return g;
    char p[4096];
    real(path, p);
    DIR *d = opendir(p);
    if (!d) return -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) fill(buf, e->d_name, NULL, 0, 0);
    closedir(d);
    return 0;
}

static int gate_mkdir(const char *path, mode_t mode) {
    int g = gate("mkdir");
    if (g) return g;
    char p[4096];
    real(path, p);
    return mkdir(p, mode) == 0 ? 0 : -errno;
}

static int gate_unlink(const char *path) {
    int g = gate("unlink");
    if (g) return g;
    char p[4096];
    real(path, p);
    return unlink(p) == 0 ? 0 : -errno;
}

static int gate_rename(const char *from, const char *to, unsigned int flags) {
    int g = gate("rename");
    if (g) return g;
    char a[4096], b[4096];
    real(from, a);
    real(to, b);
    return renameat2(AT_FDCWD, a, AT_FDCWD, b, flags) == 0 ? 0 : -errno;
}

/* Every read and write of image files reaches us (direct I/O, no page cache), so a hang is immediate.
 * SQLite files (*.db, *.db-wal, *.db-shm) go through the page cache instead: WAL mode needs shared
 * mmap, which direct I/O refuses; their writes and fsyncs still reach the gate. */
static int uses_page_cache(const char *path) {
    return strstr(path, ".db") != NULL;
}

static int gate_open(const char *path, struct fuse_file_info *fi) {
    int g = gate("open");
    if (g) return g;
    char p[4096];
    real(path, p);
    int fd = open(p, fi->flags & ~O_CREAT);
    if (fd < 0) return -errno;
    fi->fh = fd;
    fi->direct_io = !uses_page_cache(path);
    return 0;
}

static int gate_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    int g = gate("create");
    if (g) return g;
    char p[4096];
    real(path, p);
    int fd = open(p, fi->flags, mode);
    if (fd < 0) return -errno;
    fi->fh = fd;
    fi->direct_io = !uses_page_cache(path);
    return 0;
}

static int gate_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    int g = gate("read");
    if (g) return g;
    ssize_t n = pread(fi->fh, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static int gate_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    if (exists("hang-write") || exists("hang-all")) {
        long long allowed = number_in("write-ok-bytes");
        pthread_mutex_lock(&lock);
        int pass = written_since_gate < allowed;
        if (pass) written_since_gate += (long long)size;
        pthread_mutex_unlock(&lock);
        if (!pass) {
            int g = gate("write");
            if (g) return g;
        }
    } else {
        pthread_mutex_lock(&lock);
        written_since_gate = 0;
        pthread_mutex_unlock(&lock);
        if (exists("eio-write")) return -EIO;
    }
    ssize_t n = pwrite(fi->fh, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static int gate_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    (void)path;
    int g = gate("fsync");
    if (g) return g;
    int r = datasync ? fdatasync(fi->fh) : fsync(fi->fh);
    return r == 0 ? 0 : -errno;
}

static int gate_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi) {
    (void)path;
    (void)datasync;
    (void)fi;
    return gate("fsync");
}

static int gate_release(const char *path, struct fuse_file_info *fi) {
    (void)path;
    close(fi->fh);
    return 0;
}

static int gate_statfs(const char *path, struct statvfs *st) {
    (void)path;
    int g = gate("statfs");
    if (g) return g;
    return statvfs(backing, st) == 0 ? 0 : -errno;
}

static int gate_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    (void)fi;
    char p[4096];
    real(path, p);
    return chmod(p, mode) == 0 ? 0 : -errno;
}

static int gate_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    if (fi) return ftruncate(fi->fh, size) == 0 ? 0 : -errno;
    char p[4096];
    real(path, p);
    return truncate(p, size) == 0 ? 0 : -errno;
}

static int gate_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
    (void)fi;
    char p[4096];
    real(path, p);
    return utimensat(AT_FDCWD, p, tv, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static int gate_rmdir(const char *path) {
    char p[4096];
    real(path, p);
    return rmdir(p) == 0 ? 0 : -errno;
}

static const struct fuse_operations operations = {
    .init = gate_init,
    .getattr = gate_getattr,
    .readdir = gate_readdir,
    .mkdir = gate_mkdir,
    .unlink = gate_unlink,
    .rmdir = gate_rmdir,
    .rename = gate_rename,
    .open = gate_open,
    .create = gate_create,
    .read = gate_read,
    .write = gate_write,
    .fsync = gate_fsync,
    .fsyncdir = gate_fsyncdir,
    .release = gate_release,
    .statfs = gate_statfs,
    .chmod = gate_chmod,
    .truncate = gate_truncate,
    .utimens = gate_utimens,
};

int main(int argc, char *argv[]) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s <backing-dir> <control-dir> <mountpoint> [fuse options]\n", argv[0]);
        return 2;
    }
    backing = realpath(argv[1], NULL);
    control = realpath(argv[2], NULL);
    if (!backing || !control) {
        fprintf(stderr, "gatefs: backing or control directory missing\n");
        return 2;
    }
    /* fuse_main gets argv without the two directory arguments. */
    argv[2] = argv[0];
    return fuse_main(argc - 2, argv + 2, &operations, NULL);
}
