/*
 * auth.h — credentials per role for the HTTP API.
 *
 * The auth file (--web.auth-file) is plain text, one credential a line:
 *
 *   # role   scheme  credential
 *   write    bearer  3f1c9e0b8a7d4c2e9f6b1a0d
 *   read     bearer  grafana-7c41d0a9e2b3
 *   admin    basic   ops:correct-horse-battery
 *
 * role is read, write or admin (admin grants read and write too); scheme is
 * bearer (Authorization: Bearer <token>) or basic (Authorization: Basic
 * base64(user:password), as Prometheus' remote_write.basic_auth sends it).
 * A role that no line names stays open (the server refuses admin endpoints
 * then unless it listens on loopback only).
 * Blank lines and lines starting with '#' are ignored. Credentials may not
 * contain whitespace. Every comparison runs in time independent of where
 * the credentials differ, over every configured entry.
 */
#ifndef AUGUR_API_AUTH_H
#define AUGUR_API_AUTH_H

#include <stddef.h>

enum {
    API_ROLE_READ = 1u << 0,
    API_ROLE_WRITE = 1u << 1,
    API_ROLE_ADMIN = 1u << 2,
};

typedef struct api_auth api_auth_t;

/* Parse auth file text (ptr, len). Returns 0, -1 on a syntax error (err
 * gets "line N: why"), -2 on allocation failure. An empty file is valid
 * and holds no credentials. */
int api_auth_parse(const char *text, size_t len, api_auth_t **out, char *err, size_t errcap);

/* Read and parse the file at path (at most 1 MiB). Errors as
 * api_auth_parse(), plus -3 when the file cannot be read (err says why). */
int api_auth_load(const char *path, api_auth_t **out, char *err, size_t errcap);

void api_auth_destroy(api_auth_t *a); /* accepts NULL */

/* Number of credentials configured. */
size_t api_auth_count(const api_auth_t *a);

/* Roles (API_ROLE_* bits) named by at least one credential line (an admin
 * line names only admin, though it grants read and write too). */
unsigned api_auth_roles_configured(const api_auth_t *a);

/* Roles granted by an Authorization header value (ptr, len; NULL/0 when
 * absent): 0 when it matches no credential or is malformed. */
unsigned api_auth_check(const api_auth_t *a, const char *authorization, size_t len);

#endif
