/* errors.c — tsdb_strerror(), the per-thread error detail and the stderr
 * replay-progress printer. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "tsdb/tsdb.h"
#include "tsdb/tsdb_int.h"

const char *tsdb_strerror(int err)
{
    switch (err) {
#define TSDB_ERR_STR_(name, code, msg)                                                         \
    case code:                                                                                 \
        return msg;
        TSDB_ERRNO_MAP(TSDB_ERR_STR_)
#undef TSDB_ERR_STR_
    }
    return "unknown error";
}

static _Thread_local char err_detail[512];

const char *tsdb_last_error_detail(void)
{
    return err_detail;
}

void tsdb_set_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_detail, sizeof err_detail, fmt, ap);
    va_end(ap);
}

void tsdb_clear_detail(void)
{
    err_detail[0] = 0;
}

void tsdb_replay_progress_stderr(void *ctx, const tsdb_replay_progress_t *p)
{
    const char *who = ctx ? (const char *)ctx : "augur";
    if (!p->done)
        fprintf(stderr, "%s: replaying the WAL: %" PRIu64 "/%" PRIu64 " segments, %" PRIu64
                        " samples, %.1f s\n",
                who, p->segments_done, p->segments, p->samples, p->elapsed_s);
    else
        fprintf(stderr, "%s: WAL replayed: %" PRIu64 " segments, %" PRIu64 " samples%s in %.1f s\n",
                who, p->segments, p->samples, p->damaged ? " (damaged segments!)" : "", p->elapsed_s);
}
