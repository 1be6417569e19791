/* main.c — the augur executable: dispatches subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
    fputs("usage: augur <command> [options]\n\ncommands:\n", f);
    for (const cli_command_t *c = cli_commands; c->name; c++)
        fprintf(f, "  %-9s %s\n", c->name, c->help ? c->help : "");
    fputs("  version   print the version\n"
          "\n"
          "Run 'augur <command> --help' for a command's options.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("augur %s\n", AUGUR_VERSION);
        return 0;
    }
    for (const cli_command_t *c = cli_commands; c->name; c++)
        if (!strcmp(cmd, c->name)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "augur: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
