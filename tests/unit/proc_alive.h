/* proc_alive.h -- for unit tests that check processes are gone. */
#ifndef PC_TEST_PROC_ALIVE_H
#define PC_TEST_PROC_ALIVE_H

#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* A process is gone when it no longer exists or is a zombie nobody reaped yet
 * (in a container without an init that reaps orphans). */
static inline int proc_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

#endif
