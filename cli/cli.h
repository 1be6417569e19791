/* cli.h — subcommand table of the augur executable. */
#ifndef AUGUR_CLI_H
#define AUGUR_CLI_H

#include <stdint.h>

#define AUGUR_VERSION "0.1.0"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *help;                  /* one line for `augur --help` */
} cli_command_t;

extern const cli_command_t cli_commands[];

int cli_tsdb(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_train(int argc, char **argv); /* cmd_train.c */
int cli_eval(int argc, char **argv);  /* cmd_eval.c */
int cli_simulate(int argc, char **argv);

/* `augur serve --demo` (cli/cmd_simulate.c): a simulated fleet written into
 * the server's store in accelerated time. */
typedef struct {
    int enabled;           /* --demo */
    uint32_t nodes;        /* --demo.nodes (default 50) */
    uint64_t seed;         /* --demo.seed (default 1) */
    int64_t history_ms;    /* --demo.history: backfilled span (default 1d) */
    int64_t backfill_step_ms; /* backfill step (5m) */
    int64_t interval_ms;   /* --demo.interval: live step (default 15s) */
    double time_scale;     /* --demo.time-scale (default 60) */
    double hazard_scale;   /* --demo.hazard-scale (default 10) */
} cli_demo_opts_t;
typedef struct cli_demo cli_demo_t;
struct tsdb;
void cli_demo_opts_init(cli_demo_opts_t *o);
/* Parse one --demo / --demo.NAME[=VALUE] argument (`next` is the following
 * argv entry or NULL; *used_next = 1 if it was consumed). 0 or -1. */
int cli_demo_flag(cli_demo_opts_t *o, const char *arg, const char *next, int *used_next);
/* Start the feeder thread (nothing when !o->enabled; *out = NULL). 0 or -1. */
int cli_demo_start(struct tsdb *db, const cli_demo_opts_t *o, cli_demo_t **out);
void cli_demo_stop(cli_demo_t *d); /* accepts NULL */
/* --demo defaults for the predictor (cli/cmd_train.c): the built-in disk model trained on the
 * simulator (when no --predict.model.disk), window steps in the demo's accelerated time, 30 s
 * intervals, first evaluation 5 s after the start. */
struct api_predict_config;
void cli_predict_demo_defaults(struct api_predict_config *c, const cli_demo_opts_t *demo);
int cli_import(int argc, char **argv); /* cmd_import.c */
int cli_label(int argc, char **argv);  /* cmd_label.c */
int cli_detect(int argc, char **argv); /* cmd_detect.c */
int cli_check(int argc, char **argv);  /* cmd_check.c */
int cli_drain(int argc, char **argv);  /* cmd_drain.c */

/* Parse a Prometheus-style duration ("15d", "90s", "1.5h") into ms. 0 or -1. */
int cli_parse_duration_ms(const char *s, int64_t *out);

#endif
