/* cmd_check.c — `augur check`: validate rule files, a config file or a drain
 * policy without starting a server, as promtool does (exit 0 all valid, 1
 * any problem, 2 usage; every problem printed as FILE:LINE:COL: why). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert/alert.h"
#include "cli/cli.h"

static const char check_usage[] =
    "usage: augur check rules FILE...\n"
    "       augur check config FILE\n"
    "       augur check drain-policy FILE\n"
    "       augur check defaults\n"
    "\n"
    "Validate without starting a server.\n"
    "  rules         Prometheus rule files: YAML structure and fields, PromQL\n"
    "                expressions, durations, label names, the template subset of\n"
    "                annotations and labels (docs/alerting.md)\n"
    "  config        a --config.file: its own syntax and every rule file it names\n"
    "  drain-policy  a --drain.config policy (docs/draining.md)\n"
    "  defaults      the built-in rules (rules/augur-defaults.yml)\n"
    "\n"
    "Exit status: 0 everything valid, 1 a problem was found (each printed as\n"
    "FILE:LINE:COL: why), 2 usage error.\n";

static int report(const char *name, int rc, const alert_ruleset_t *rs, const tbuf_t *errs,
                  size_t nerrs)
{
    printf("Checking %s\n", name);
    if (!rc) {
        printf("  SUCCESS: %zu rules found\n\n", alert_ruleset_rule_count(rs));
        return 0;
    }
    printf("  FAILED: %zu problem(s):\n", nerrs ? nerrs : 1);
    if (errs->len) fwrite(errs->p, 1, errs->len, stdout);
    if (!errs->len) printf("%s: %s\n", name, alert_strerror(rc));
    printf("\n");
    return 1;
}

int cli_check(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(check_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    int failed = 0;
    if (!strcmp(what, "rules")) {
        if (argc < 3) {
            fputs(check_usage, stderr);
            return 2;
        }
        for (int i = 2; i < argc; i++) {
            alert_ruleset_t rs = {0};
            tbuf_t errs = {0};
            size_t nerrs = 0;
            int rc = alert_rules_load_file(&rs, argv[i], &errs, &nerrs);
            failed |= report(argv[i], rc, &rs, &errs, nerrs);
            tbuf_free(&errs);
            alert_ruleset_free(&rs);
        }
    } else if (!strcmp(what, "defaults")) {
        alert_ruleset_t rs = {0};
        tbuf_t errs = {0};
        size_t nerrs = 0;
        int rc = alert_rules_load_buffer(&rs, "augur-defaults.yml", alert_default_rules,
                                         alert_default_rules_len, &errs, &nerrs);
        failed |= report("augur-defaults.yml (built in)", rc, &rs, &errs, nerrs);
        tbuf_free(&errs);
        alert_ruleset_free(&rs);
    } else if (!strcmp(what, "config")) {
        if (argc != 3) {
            fputs(check_usage, stderr);
            return 2;
        }
        alert_runner_config_t c;
        memset(&c, 0, sizeof c);
        c.config_file = argv[2];
        alert_ruleset_t rs = {0};
        tbuf_t errs = {0};
        size_t nerrs = 0;
        int rc = alert_config_rules(&c, &rs, &errs, &nerrs);
        failed |= report(argv[2], rc, &rs, &errs, nerrs);
        tbuf_free(&errs);
        alert_ruleset_free(&rs);
    } else if (!strcmp(what, "drain-policy")) {
        if (argc != 3) {
            fputs(check_usage, stderr);
            return 2;
        }
        drain_policy_t p;
        if (drain_policy_init(&p)) return 1;
        char err[600] = "";
        int rc = drain_policy_load_file(&p, argv[2], err, sizeof err);
        printf("Checking %s\n", argv[2]);
        if (rc) {
            printf("  FAILED:\n%s\n\n", err);
            failed = 1;
        } else {
            printf("  SUCCESS: dry_run=%s manual_approval=%s max_cordoned=%u "
                   "max_per_domain=%u\n\n",
                   p.dry_run ? "true" : "false", p.manual_approval ? "true" : "false",
                   (unsigned)p.max_cordoned, (unsigned)p.max_per_domain);
            if (!p.dry_run) printf("  note: dry_run is false: this policy runs commands\n\n");
        }
        drain_policy_free(&p);
    } else {
        fprintf(stderr, "augur check: unknown target '%s'\n\n%s", what, check_usage);
        return 2;
    }
    return failed ? 1 : 0;
}
