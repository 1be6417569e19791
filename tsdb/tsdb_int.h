/* tsdb_int.h — internals shared by the files of tsdb/. Not for other libraries. */
#ifndef AUGUR_TSDB_INT_H
#define AUGUR_TSDB_INT_H

#include "tsdb/tsdb.h"

/* Set the per-thread error detail returned by tsdb_last_error_detail(). */
void tsdb_set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tsdb_clear_detail(void);

#endif
