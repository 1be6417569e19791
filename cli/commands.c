/* commands.c — the table of subcommands. */
#include <stddef.h>

#include "cli/cli.h"

const cli_command_t cli_commands[] = {
    {"serve", cli_serve},
    {"detect", cli_detect},
    {"simulate", cli_simulate},
    {"tsdb", cli_tsdb},
    {"train", cli_train},
    {"eval", cli_eval},
    {"import", cli_import},
    {"label", cli_label},
    {"check", cli_check},
    {"drain", cli_drain},
    {NULL, NULL},
};
