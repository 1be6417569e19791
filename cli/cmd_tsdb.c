/* cmd_tsdb.c — `augur tsdb`: store maintenance. */
#include <stdio.h>

#include "cli/cli.h"
#include "tsdb/tsdb.h"

int cli_tsdb(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "augur tsdb: not yet available\n");
    return 2;
}
