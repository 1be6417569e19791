/*
 * test_demo.c — `augur serve --demo` end to end: start $AUGUR_BIN on a free
 * loopback port with a small demo fleet in a temp dir, and find simulated
 * node, disk and GPU series (and the backfilled failure events) through
 * /api/v1/query within a few seconds; then SIGTERM stops it cleanly.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "testhttp.h"
#include "testutil.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* GET path; the body (NUL-terminated) into buf. Returns the status or -1. */
static int http_get(unsigned port, const char *path, char *buf, size_t cap)
{
    return th_request_buf(port, "GET", path, NULL, 10, buf, cap);
}

static void test_serve_demo(void **state)
{
    (void)state;
    const char *bin = getenv("AUGUR_BIN");
    if (!bin) skip();
    char dir[256], log[300], sp[320];
    assert_non_null(tu_mkdtemp(dir, sizeof dir));
    snprintf(log, sizeof log, "%s/serve.log", dir);
    snprintf(sp, sizeof sp, "--storage.path=%s/demo-data", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1); /* never ctest's pipe: a leaked server must not hold it open */
        dup2(fd, 2);
        execl(bin, bin, "serve", "--demo", "--demo.nodes=4", "--demo.history=6h",
              "--web.listen-address=127.0.0.1:0", sp, (char *)NULL);
        _exit(127);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned port = 0;
    for (int i = 0; i < 200 && !port; i++) {
        sleep_ms(50);
        FILE *f = fopen(log, "r");
        if (!f) continue;
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            char *q = strstr(line, " port=");
            if (q && strstr(line, "msg=listening")) port = (unsigned)atoi(q + 6);
        }
        fclose(f);
    }
    assert_true(port > 0);
    static char body[1 << 16];
    const char *queries[] = {
        "/api/v1/query?query=count(node_load1)",
        "/api/v1/query?query=count(smartctl_device_attribute%7Battribute_id%3D%225%22,"
        "attribute_value_type%3D%22raw%22%7D)",
        "/api/v1/query?query=count(DCGM_FI_DEV_GPU_TEMP)",
    };
    const char *want[] = {"\"4\"", "\"28\"", "\"32\""}; /* 4 nodes; 7 ATA disks, 8 GPUs each */
    for (size_t q = 0; q < 3; q++) {
        int ok = 0;
        for (int i = 0; i < 200 && !ok; i++) {
            int st = http_get(port, queries[q], body, sizeof body);
            if (st == 200 && strstr(body, want[q])) ok = 1;
            if (!ok) sleep_ms(50);
        }
        if (!ok) fprintf(stderr, "query %s: last answer %s\n", queries[q], body);
        assert_true(ok);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "[demo] node, disk and GPU series visible after %.2f s\n", secs);
    assert_true(secs < 10);
    /* Labels are the exporters' (rack too); history is there. */
    assert_int_equal(http_get(port,
                              "/api/v1/query?query=DCGM_FI_DEV_GPU_TEMP%7Bgpu%3D%220%22,"
                              "instance%3D%22node-0000%22%7D",
                              body, sizeof body),
                     200);
    assert_non_null(strstr(body, "\"UUID\":\"GPU-"));
    assert_non_null(strstr(body, "\"modelName\":"));
    assert_non_null(strstr(body, "\"rack\":\"rack-000\""));
    assert_int_equal(http_get(port,
                              "/api/v1/query?query=count(count_over_time(node_load1%5B5h%5D)%3E30)",
                              body, sizeof body),
                     200);
    assert_non_null(strstr(body, "\"4\""));
    kill(pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[1024];
    int backfilled = 0;
    while (fgets(line, sizeof line, f))
        backfilled |= strstr(line, "demo fleet backfilled") != NULL;
    fclose(f);
    assert_true(backfilled);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_demo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
