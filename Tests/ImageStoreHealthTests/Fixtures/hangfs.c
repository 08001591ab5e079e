/*
 * hangfs: a tiny FUSE filesystem for tests, with one file, /.glance, whose getattr (stat) blocks
 * while a gate file exists outside the mount. That is what a hard-mounted NFS share looks like to
 * a client whose server went away: stat() neither succeeds nor fails, it just does not return.
 *
 *   hangfs <gate-file> <mountpoint> -f [fuse options]
 *
 * Attribute and entry caching are off, so every stat reaches getattr. Multithreaded (the fuse
 * default): the root directory answers while /.glance is stuck. Removing the gate file releases
 * every blocked call within 10 ms, so the mount can be unmounted cleanly.
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fuse.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *gate_path;

static void *hang_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->attr_timeout = 0;
    cfg->entry_timeout = 0;
    cfg->negative_timeout = 0;
    return NULL;
}

static int hang_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    if (strcmp(path, "/.glance") == 0) {
        struct stat gate;
        while (stat(gate_path, &gate) == 0) usleep(10000);
        st->st_mode = S_IFREG | 0644;
        st->st_nlink = 1;
        return 0;
    }
    return -ENOENT;
}

static int hang_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset, struct fuse_file_info *fi,
                        enum fuse_readdir_flags flags) {
    (void)offset;
    (void)fi;
    (void)flags;
    if (strcmp(path, "/") != 0) return -ENOENT;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    fill(buf, ".glance", NULL, 0, 0);
    return 0;
}

static const struct fuse_operations operations = {
    .init = hang_init,
    .getattr = hang_getattr,
    .readdir = hang_readdir,
};

int main(int argc, char *argv[]) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s <gate-file> <mountpoint> [fuse options]\n", argv[0]);
        return 2;
    }
    gate_path = argv[1];
    /* fuse_main gets argv without the gate argument. */
    argv[1] = argv[0];
    return fuse_main(argc - 1, argv + 1, &operations, NULL);
}
