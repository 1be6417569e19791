/* commands.c — the table of subcommands. */
#include <stddef.h>

#include "cli/cli.h"

const cli_command_t cli_commands[] = {
    {"serve", cli_serve, "run the server: remote write in, PromQL out, detection, alerts, drains"},
    {"detect", cli_detect, "score a timestamp,value CSV with the anomaly detector (NAB format)"},
    {"simulate", cli_simulate, "simulate a fleet: telemetry and failures into a store, remote write or CSV"},
    {"tsdb", cli_tsdb, "inspect and maintain a store directory (stats, check, backup, dump, ...)"},
    {"train", cli_train, "train the failure-prediction model (NTAM) from CSV, a store or the simulator"},
    {"eval", cli_eval, "evaluate a model next to baselines (PR-AUC, recall at low FPR, lead time)"},
    {"import", cli_import, "import Backblaze CSV, smartctl JSON or nvidia-smi CSV into a store or server"},
    {"label", cli_label, "record device failure events (ground truth) in a store"},
    {"check", cli_check, "validate rule files, the server config or a drain policy (like promtool)"},
    {"drain", cli_drain, "list and act on node drains of a running server"},
    {NULL, NULL, NULL},
};
