/* cmd_drain.c — `augur drain ...`: the drain controller's admin API of a
 * running `augur serve`, from the command line (libcurl). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tsdb/tsdb_util.h"

static const char drain_usage[] =
    "usage: augur drain [--url=URL] [--token=TOKEN | --basic=USER:PASS] COMMAND\n"
    "\n"
    "Talk to the drain controller of a running `augur serve` (admin role).\n"
    "\n"
    "Commands:\n"
    "  list                 state, limits, flagged/cordoned nodes, past drains and\n"
    "                       their outcomes, precision (JSON)\n"
    "  approve NODE         manual-approval mode: let NODE be cordoned and drained\n"
    "                       (every safety rule still applies)\n"
    "  cancel NODE          drop NODE as a candidate until its risk falls\n"
    "  uncordon NODE        uncordon a drained NODE at the next control step\n"
    "  reset-breaker        re-arm the circuit breaker after a trip\n"
    "  pause | resume       stop / restart all automatic action\n"
    "\n"
    "Flags:\n"
    "  --url=URL            server base URL (default $AUGUR_URL or\n"
    "                       http://localhost:9201)\n"
    "  --token=TOKEN        bearer credential (default $AUGUR_TOKEN)\n"
    "  --basic=USER:PASS    basic-auth credential\n"
    "\n"
    "Exit status: 0 done, 1 refused or failed (the server's message is printed),\n"
    "2 usage error.\n";

static size_t collect(char *p, size_t sz, size_t nm, void *ud)
{
    tbuf_t *b = ud;
    return tbuf_put(b, p, sz * nm) ? 0 : sz * nm;
}

int cli_drain(int argc, char **argv)
{
    const char *url = getenv("AUGUR_URL"), *token = getenv("AUGUR_TOKEN"), *basic = NULL;
    if (!url || !*url) url = "http://localhost:9201";
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(drain_usage, stdout);
            return 0;
        }
        const char *eq = strchr(a, '=');
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (!v) {
            fprintf(stderr, "augur drain: %s needs a value\n", a);
            return 2;
        }
        if (nl == 5 && !strncmp(a, "--url", 5))
            url = v;
        else if (nl == 7 && !strncmp(a, "--token", 7))
            token = v;
        else if (nl == 7 && !strncmp(a, "--basic", 7))
            basic = v;
        else {
            fprintf(stderr, "augur drain: unknown flag %.*s\n\n%s", (int)nl, a, drain_usage);
            return 2;
        }
    }
    if (i >= argc) {
        fputs(drain_usage, stderr);
        return 2;
    }
    const char *cmd = argv[i];
    const char *node = i + 1 < argc ? argv[i + 1] : NULL;
    char path[1024];
    int post = 1;
    int needs_node = !strcmp(cmd, "approve") || !strcmp(cmd, "cancel") || !strcmp(cmd, "uncordon");
    if (needs_node != (node != NULL) || i + 1 + needs_node != argc) {
        fprintf(stderr, "augur drain: %s %s\n\n%s", cmd,
                needs_node ? "needs one NODE" : "takes no argument", drain_usage);
        return 2;
    }
    if (!strcmp(cmd, "list") || !strcmp(cmd, "status")) {
        snprintf(path, sizeof path, "/api/v1/drains");
        post = 0;
    } else if (needs_node) {
        CURL *e = curl_easy_init();
        char *enc = e ? curl_easy_escape(e, node, 0) : NULL;
        snprintf(path, sizeof path, "/api/v1/drains/%s/%s", enc ? enc : node, cmd);
        curl_free(enc);
        curl_easy_cleanup(e);
    } else if (!strcmp(cmd, "reset-breaker"))
        snprintf(path, sizeof path, "/api/v1/drains/breaker/reset");
    else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume"))
        snprintf(path, sizeof path, "/api/v1/drains/%s", cmd);
    else {
        fprintf(stderr, "augur drain: unknown command '%s'\n\n%s", cmd, drain_usage);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    if (!c) return 1;
    char full[2048];
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    snprintf(full, sizeof full, "%.*s%s", (int)ul, url, path);
    tbuf_t body = {0};
    struct curl_slist *h = NULL;
    char auth[1024];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, full);
    if (basic) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERPWD, basic);
    }
    if (h) curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (post) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    int ret = 0;
    if (rc != CURLE_OK) {
        fprintf(stderr, "augur drain: %s: %s\n", full, curl_easy_strerror(rc));
        ret = 1;
    } else {
        FILE *out = code / 100 == 2 ? stdout : stderr;
        if (code / 100 != 2) fprintf(stderr, "augur drain: HTTP %ld: ", code);
        fwrite(body.p ? (const char *)body.p : "", 1, body.len, out);
        if (!body.len || ((const char *)body.p)[body.len - 1] != '\n') fputc('\n', out);
        ret = code / 100 == 2 ? 0 : 1;
    }
    tbuf_free(&body);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return ret;
}
