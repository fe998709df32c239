/* main.c -- pipecast: dispatch to a subcommand. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipecast/log.h"

#include "cli.h"

struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct cli_cmd cli_cmds[] = {
    {"pipe", pc_cli_pipe, "publish stdin, one entry per line, to a channel"},
    {"tail", pc_cli_tail, "print a channel's entries (-f: keep following)"},
    {"run", pc_cli_run, "run a command, publish its output and exit status, keep its exit code"},
    {"jobs", pc_cli_jobs, "submit, list, show, kill and feed jobs through the gateway"},
};

static void usage(FILE *f)
{
    size_t i;

    fputs("usage: pipecast <command> [options] <channel>\n"
          "\n"
          "Carries lines of text into Redis Streams and out to browsers over Server-Sent Events.\n"
          "\n"
          "commands:\n",
          f);
    for (i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
        fprintf(f, "  %-6s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
    fputs("\n"
          "'pipecast <command> --help' shows the options of a command.\n"
          "Common options: --redis URL, --prefix P, --log-level L, --help, --version.\n",
          f);
}

/*
 * A closed stdin/stdout/stderr would let the next open() or socket() take
 * fd 0, 1 or 2, and the Redis socket would then be read as stdin. Park
 * /dev/null there instead: a closed stdin reads as empty input.
 */
static void cli_sanitize_std_fds(void)
{
    int fd;

    for (fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1) {
            int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (n >= 0 && n != fd) {
                dup2(n, fd);
                close(n);
            }
        }
    }
}

int main(int argc, char **argv)
{
    const char *name;
    size_t i;

    cli_sanitize_std_fds();

    /* A closed Redis socket or stdout must be an error code, never a kill. */
    signal(SIGPIPE, SIG_IGN);
    pc_log_init("pipecast", PC_LOG_INFO);

    if (argc < 2) {
        usage(stderr);
        return PC_EXIT_USAGE;
    }
    name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        usage(stdout);
        return PC_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0)
        return pc_cli_print_version();
    if (strcmp(name, "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return PC_EXIT_OK;
        }
        for (i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++) {
            if (strcmp(argv[2], cli_cmds[i].name) == 0) {
                char *hargv[] = {argv[2], "--help", NULL};
                return cli_cmds[i].run(2, hargv);
            }
        }
        name = argv[2];
    } else {
        for (i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
            if (strcmp(name, cli_cmds[i].name) == 0)
                return cli_cmds[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "pipecast: unknown command \"%s\" (see 'pipecast --help')\n", name);
    return PC_EXIT_USAGE;
}
