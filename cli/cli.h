/* cli.h — subcommand table of the augur executable. */
#ifndef AUGUR_CLI_H
#define AUGUR_CLI_H

#define AUGUR_VERSION "0.1.0"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command_t;

extern const cli_command_t cli_commands[];

int cli_tsdb(int argc, char **argv);

#endif
