/* cli.h — subcommand table of the augur executable. */
#ifndef AUGUR_CLI_H
#define AUGUR_CLI_H

#include <stdint.h>

#define AUGUR_VERSION "0.1.0"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command_t;

extern const cli_command_t cli_commands[];

int cli_tsdb(int argc, char **argv);
int cli_serve(int argc, char **argv);

/* Parse a Prometheus-style duration ("15d", "90s", "1.5h") into ms. 0 or -1. */
int cli_parse_duration_ms(const char *s, int64_t *out);

#endif
