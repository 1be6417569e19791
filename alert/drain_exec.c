/* drain_exec.c — command templates to argv, and running them without a
 * shell: a label value can never inject a command or split into words. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alert/alert_int.h"
#include "alert/drain.h"

/* Substitute {{node}}, {{kind}}, {{timeout}} in word w[0..n) onto b. */
static int subst(tbuf_t *b, const char *w, size_t n, const char *node, const char *kind,
                 const char *timeout)
{
    static const char *const names[] = {"node", "kind", "timeout"};
    const char *vals[] = {node, kind, timeout};
    for (size_t i = 0; i < n;) {
        if (i + 1 < n && w[i] == '{' && w[i + 1] == '{') {
            const char *e = NULL;
            for (size_t k = i + 2; k + 1 < n; k++)
                if (w[k] == '}' && w[k + 1] == '}') {
                    e = w + k;
                    break;
                }
            if (!e) return DRAIN_EINVAL;
            const char *s = w + i + 2;
            while (s < e && *s == ' ')
                s++;
            const char *se = e;
            while (se > s && se[-1] == ' ')
                se--;
            int f = -1;
            for (int q = 0; q < 3; q++)
                if ((size_t)(se - s) == strlen(names[q]) && !memcmp(s, names[q], (size_t)(se - s)))
                    f = q;
            if (f < 0) return DRAIN_EINVAL;
            if (tbuf_put(b, vals[f], strlen(vals[f]))) return DRAIN_ENOMEM;
            i = (size_t)(e - w) + 2;
            continue;
        }
        if (tbuf_put(b, w + i, 1)) return DRAIN_ENOMEM;
        i++;
    }
    return 0;
}

int drain_argv_build(const char *tmpl, const char *node, const char *kind, const char *timeout,
                     char ***argv)
{
    *argv = NULL;
    if (!tmpl) return DRAIN_EINVAL;
    /* Pass 1: words (quotes group; they are removed). */
    tbuf_t words = {0}; /* word bytes, NUL-separated, before substitution */
    size_t nw = 0;
    const char *p = tmpl;
    int rc = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p) break;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (p[0] == '{' && p[1] == '{' && strstr(p, "}}")) {
                /* A placeholder is one unit, spaces inside included. */
                const char *e = strstr(p, "}}") + 2;
                if (tbuf_put(&words, p, (size_t)(e - p))) rc = DRAIN_ENOMEM;
                p = e;
            } else if (*p == '\'' || *p == '"') {
                char q = *p++;
                const char *e = strchr(p, q);
                if (!e) {
                    tbuf_free(&words);
                    return DRAIN_EINVAL;
                }
                if (tbuf_put(&words, p, (size_t)(e - p))) rc = DRAIN_ENOMEM;
                p = e + 1;
            } else {
                if (tbuf_put(&words, p, 1)) rc = DRAIN_ENOMEM;
                p++;
            }
        }
        if (tbuf_put(&words, "", 1)) rc = DRAIN_ENOMEM;
        nw++;
    }
    if (rc || !nw) {
        tbuf_free(&words);
        return rc ? rc : DRAIN_EINVAL;
    }
    /* Pass 2: substitute each word. */
    tbuf_t out = {0};
    size_t *off = calloc(nw, sizeof *off);
    if (!off) rc = DRAIN_ENOMEM;
    const char *w = (const char *)words.p;
    for (size_t i = 0; i < nw && !rc; i++) {
        size_t wl = strlen(w);
        off[i] = out.len;
        rc = subst(&out, w, wl, node, kind, timeout);
        if (!rc && tbuf_put(&out, "", 1)) rc = DRAIN_ENOMEM;
        w += wl + 1;
    }
    tbuf_free(&words);
    if (rc) {
        free(off);
        tbuf_free(&out);
        return rc;
    }
    /* One allocation: the pointer array, then the strings. */
    size_t ptrs = (nw + 1) * sizeof(char *);
    char **a = malloc(ptrs + out.len);
    if (!a) {
        free(off);
        tbuf_free(&out);
        return DRAIN_ENOMEM;
    }
    char *strs = (char *)a + ptrs;
    memcpy(strs, out.p, out.len);
    for (size_t i = 0; i < nw; i++)
        a[i] = strs + off[i];
    a[nw] = NULL;
    free(off);
    tbuf_free(&out);
    *argv = a;
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int drain_exec(char *const *argv, int64_t timeout_ms, char *out, size_t outcap)
{
    if (outcap) out[0] = 0;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC)) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        /* Its own process group, so a timeout kills what it started too. */
        setpgid(0, 0);
        execvp(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    size_t o = 0;
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 900000);
    int killed = 0;
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0 && !killed) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            killed = 1;
        }
        struct pollfd pf = {pfd[0], POLLIN, 0};
        int pr = poll(&pf, 1, killed ? 1000 : (int)(left > 1000 ? 1000 : left));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) {
            if (killed) break;
            continue;
        }
        char buf[4096];
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (outcap && o < outcap - 1) {
            size_t k = (size_t)n < outcap - 1 - o ? (size_t)n : outcap - 1 - o;
            memcpy(out + o, buf, k);
            o += k;
            out[o] = 0;
        }
    }
    close(pfd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (killed) return 128 + SIGKILL;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}
