#ifndef CLIBNFS_SHIM_H
#define CLIBNFS_SHIM_H
#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <nfsc/libnfs.h>
#endif
