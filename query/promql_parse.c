/*
 * promql_parse.c — hand-written PromQL lexer and recursive-descent parser.
 *
 * Precedence (lowest to highest), as in Prometheus:
 *   or < and unless < == != <= < >= > < + - < * / % atan2 < unary -/+ < ^
 * `^` is right-associative, everything else left-associative. Unary minus
 * has the precedence of `*`, so -a^b is -(a^b) and -a*b is (-a)*b.
 *
 * Every error names the position (line:col, 1-based, in bytes) and what was
 * found and expected. The input is (ptr, len): never read past the end.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "query/promql_int.h"

typedef enum {
    T_EOF,
    T_IDENT,
    T_NUMBER,
    T_DURATION,
    T_STRING,
    T_LBRACE,
    T_RBRACE,
    T_LPAREN,
    T_RPAREN,
    T_LBRACKET,
    T_RBRACKET,
    T_COMMA,
    T_COLON,
    T_AT,
    T_ASSIGN, /* = */
    T_EQLC,   /* == */
    T_NEQ,    /* != */
    T_RE,     /* =~ */
    T_NRE,    /* !~ */
    T_ADD,
    T_SUB,
    T_MUL,
    T_DIV,
    T_MOD,
    T_POW,
    T_GT,
    T_LT,
    T_GTE,
    T_LTE,
} tok_t;

typedef struct {
    tok_t t;
    const char *p; /* start in the input */
    size_t len;
    double num;
    int64_t dur;
    char *str; /* decoded string literal (arena) */
} token_t;

typedef struct {
    const char *src, *end, *cur;
    pq_expr_t *ex;
    token_t tok;  /* current token */
    int has_peek;
    token_t peek;
    char *err;
    size_t errlen;
    jmp_buf jb;
    int code;
} parser_t;

static _Noreturn void perr_at(parser_t *ps, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static _Noreturn void perr_at(parser_t *ps, const char *at, const char *fmt, ...)
{
    int line = 1, col = 1;
    for (const char *p = ps->src; p < at && p < ps->end; p++) {
        if (*p == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (ps->err && ps->errlen) {
        int n = snprintf(ps->err, ps->errlen, "%d:%d: parse error: ", line, col);
        if (n >= 0 && (size_t)n < ps->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    ps->code = PQ_EPARSE;
    longjmp(ps->jb, 1);
}

static _Noreturn void poom(parser_t *ps)
{
    if (ps->err && ps->errlen) snprintf(ps->err, ps->errlen, "out of memory");
    ps->code = PQ_ENOMEM;
    longjmp(ps->jb, 1);
}

static void *palloc(parser_t *ps, size_t n)
{
    void *p = pq_arena_alloc(&ps->ex->arena, n);
    if (!p) poom(ps);
    memset(p, 0, n);
    return p;
}

static char *pstrndup(parser_t *ps, const char *s, size_t n)
{
    char *p = pq_arena_strndup(&ps->ex->arena, s, n);
    if (!p) poom(ps);
    return p;
}

/* ---- lexer ------------------------------------------------------------- */

static const char *tok_desc(const token_t *t, char *buf, size_t n)
{
    switch (t->t) {
    case T_EOF: return "end of input";
    case T_IDENT: snprintf(buf, n, "identifier \"%.*s\"", (int)(t->len > 40 ? 40 : t->len), t->p); return buf;
    case T_NUMBER: snprintf(buf, n, "number \"%.*s\"", (int)(t->len > 40 ? 40 : t->len), t->p); return buf;
    case T_DURATION: snprintf(buf, n, "duration \"%.*s\"", (int)(t->len > 40 ? 40 : t->len), t->p); return buf;
    case T_STRING: return "string";
    default: snprintf(buf, n, "\"%.*s\"", (int)t->len, t->p); return buf;
    }
}

static int is_ident_start(int c)
{
    return isalpha(c) || c == '_' || c == ':';
}

static int is_ident_char(int c)
{
    return isalnum(c) || c == '_' || c == ':';
}

static void put_utf8(char *o, size_t *n, uint32_t cp)
{
    if (cp < 0x80) {
        o[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        o[(*n)++] = (char)(0xc0 | (cp >> 6));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        o[(*n)++] = (char)(0xe0 | (cp >> 12));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*n)++] = (char)(0xf0 | (cp >> 18));
        o[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void lex_string(parser_t *ps, token_t *t)
{
    const char *p = ps->cur;
    char q = *p++;
    /* decoded length <= raw length */
    const char *s = p;
    while (p < ps->end && *p != q) {
        if (*p == '\\' && q != '`') p++;
        if (q != '`' && p < ps->end && *p == '\n') perr_at(ps, p, "unterminated quoted string");
        if (p < ps->end) p++;
    }
    if (p >= ps->end) perr_at(ps, ps->cur, "unterminated quoted string");
    size_t raw = (size_t)(p - s);
    char *o = palloc(ps, raw + 1);
    size_t n = 0;
    if (q == '`') {
        memcpy(o, s, raw);
        n = raw;
    } else {
        for (const char *r = s; r < p; r++) {
            if (*r != '\\') {
                o[n++] = *r;
                continue;
            }
            const char *esc = r++;
            switch (*r) {
            case 'a': o[n++] = '\a'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'v': o[n++] = '\v'; break;
            case '\\': o[n++] = '\\'; break;
            case '"':
            case '\'':
                if (*r != q) perr_at(ps, esc, "unknown escape sequence \\%c", *r);
                o[n++] = *r;
                break;
            case 'x':
            case 'u':
            case 'U': {
                int nd = *r == 'x' ? 2 : *r == 'u' ? 4 : 8;
                uint32_t cp = 0;
                for (int i = 0; i < nd; i++) {
                    if (r + 1 >= p || hexval((unsigned char)r[1]) < 0)
                        perr_at(ps, esc, "invalid escape sequence in string");
                    cp = cp * 16 + (uint32_t)hexval((unsigned char)*++r);
                }
                if (nd == 2) {
                    o[n++] = (char)cp;
                } else {
                    if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
                        perr_at(ps, esc, "invalid Unicode code point in escape sequence");
                    put_utf8(o, &n, cp); /* \uXXXX is 6 raw bytes, encodes to <= 3 */
                }
                break;
            }
            default:
                if (*r >= '0' && *r <= '7') {
                    uint32_t v = 0;
                    for (int i = 0; i < 3; i++) {
                        if (r >= p || *r < '0' || *r > '7')
                            perr_at(ps, esc, "invalid octal escape sequence in string");
                        v = v * 8 + (uint32_t)(*r++ - '0');
                    }
                    r--;
                    if (v > 255) perr_at(ps, esc, "octal escape value > 255");
                    o[n++] = (char)v;
                } else {
                    perr_at(ps, esc, "unknown escape sequence \\%c", *r);
                }
            }
        }
    }
    o[n] = 0;
    if (memchr(o, 0, n)) perr_at(ps, ps->cur, "string contains a NUL byte");
    t->t = T_STRING;
    t->str = o;
    t->len = (size_t)(p + 1 - ps->cur);
}

static void lex_number(parser_t *ps, token_t *t)
{
    const char *p = ps->cur, *e = ps->end;
    /* a duration? digits followed by a unit */
    int64_t d;
    size_t dn = pq_parse_duration(p, e, &d);
    if (dn) {
        t->t = T_DURATION;
        t->dur = d;
        t->len = dn;
        return;
    }
    const char *s = p;
    int hex = 0;
    if (p + 1 < e && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        hex = 1;
        p += 2;
        while (p < e && isxdigit((unsigned char)*p)) p++;
    } else {
        while (p < e && isdigit((unsigned char)*p)) p++;
        if (p < e && *p == '.') {
            p++;
            while (p < e && isdigit((unsigned char)*p)) p++;
        }
        if (p < e && (*p == 'e' || *p == 'E')) {
            const char *q = p + 1;
            if (q < e && (*q == '+' || *q == '-')) q++;
            if (q < e && isdigit((unsigned char)*q)) {
                p = q;
                while (p < e && isdigit((unsigned char)*p)) p++;
            }
        }
    }
    if (p < e && (is_ident_char((unsigned char)*p) || *p == '.'))
        perr_at(ps, s, "bad number or duration syntax: \"%.*s\"", (int)(p - s + 1), s);
    size_t n = (size_t)(p - s);
    if (n == 0 || (n == 1 && *s == '.')) perr_at(ps, s, "bad number syntax");
    char buf[128];
    if (n >= sizeof buf) perr_at(ps, s, "number too long");
    memcpy(buf, s, n);
    buf[n] = 0;
    int isint = hex || strspn(buf, "0123456789") == n;
    if (isint) {
        /* Go's ParseInt(s, 0, 64): 0x hex, leading 0 octal */
        char *end;
        errno = 0;
        int base = hex ? 16 : (n > 1 && buf[0] == '0') ? 8 : 10;
        long long v = strtoll(hex ? buf + 2 : buf, &end, base);
        if (*end == 0 && errno == 0 && (!hex || n > 2)) {
            t->num = (double)v;
        } else if (base == 8 && *end != 0) {
            t->num = strtod(buf, NULL); /* "09" is a float in Go */
        } else if (errno == ERANGE && !hex) {
            t->num = strtod(buf, NULL);
        } else {
            perr_at(ps, s, "bad number syntax: \"%s\"", buf);
        }
    } else {
        t->num = strtod(buf, NULL);
    }
    t->t = T_NUMBER;
    t->len = n;
}

static void lex_next(parser_t *ps, token_t *t)
{
    const char *p = ps->cur, *e = ps->end;
    for (;;) {
        while (p < e && isspace((unsigned char)*p)) p++;
        if (p < e && *p == '#') {
            while (p < e && *p != '\n') p++;
            continue;
        }
        break;
    }
    ps->cur = p;
    memset(t, 0, sizeof *t);
    t->p = p;
    if (p >= e) {
        t->t = T_EOF;
        return;
    }
    unsigned char c = (unsigned char)*p;
    int two = p + 1 < e;
    char c2 = two ? p[1] : 0;
    t->len = 1;
    switch (c) {
    case '{': t->t = T_LBRACE; break;
    case '}': t->t = T_RBRACE; break;
    case '(': t->t = T_LPAREN; break;
    case ')': t->t = T_RPAREN; break;
    case '[': t->t = T_LBRACKET; break;
    case ']': t->t = T_RBRACKET; break;
    case ',': t->t = T_COMMA; break;
    case '@': t->t = T_AT; break;
    case '+': t->t = T_ADD; break;
    case '-': t->t = T_SUB; break;
    case '*': t->t = T_MUL; break;
    case '/': t->t = T_DIV; break;
    case '%': t->t = T_MOD; break;
    case '^': t->t = T_POW; break;
    case '=':
        if (c2 == '=') t->t = T_EQLC, t->len = 2;
        else if (c2 == '~') t->t = T_RE, t->len = 2;
        else t->t = T_ASSIGN;
        break;
    case '!':
        if (c2 == '=') t->t = T_NEQ, t->len = 2;
        else if (c2 == '~') t->t = T_NRE, t->len = 2;
        else perr_at(ps, p, "unexpected character after '!': expected '=' or '~'");
        break;
    case '>':
        if (c2 == '=') t->t = T_GTE, t->len = 2;
        else t->t = T_GT;
        break;
    case '<':
        if (c2 == '=') t->t = T_LTE, t->len = 2;
        else t->t = T_LT;
        break;
    case '"':
    case '\'':
    case '`': lex_string(ps, t); break;
    case ':':
        /* ':' alone separates a subquery's range and step; a metric name may start with it */
        if (two && is_ident_start((unsigned char)c2) && c2 != ':') goto ident;
        t->t = T_COLON;
        break;
    default:
        if (isdigit(c) || (c == '.' && two && isdigit((unsigned char)c2))) {
            lex_number(ps, t);
        } else if (is_ident_start(c)) {
        ident:;
            const char *q = p;
            while (q < e && is_ident_char((unsigned char)*q)) q++;
            t->t = T_IDENT;
            t->len = (size_t)(q - p);
            if ((t->len == 3 && !strncasecmp(p, "inf", 3)) || (t->len == 3 && !strncasecmp(p, "nan", 3))) {
                t->t = T_NUMBER;
                t->num = (tolower(c) == 'i') ? INFINITY : NAN;
            }
        } else {
            perr_at(ps, p, "unexpected character: '%c'", isprint(c) ? c : '?');
        }
    }
    ps->cur = p + t->len;
}

static void advance(parser_t *ps)
{
    if (ps->has_peek) {
        ps->tok = ps->peek;
        ps->has_peek = 0;
    } else {
        lex_next(ps, &ps->tok);
    }
}

static const token_t *peek2(parser_t *ps)
{
    if (!ps->has_peek) {
        lex_next(ps, &ps->peek);
        ps->has_peek = 1;
    }
    return &ps->peek;
}

static int tok_is_word(const token_t *t, const char *w)
{
    return t->t == T_IDENT && t->len == strlen(w) && !strncasecmp(t->p, w, t->len);
}

static _Noreturn void unexpected(parser_t *ps, const char *ctx, const char *expected)
{
    char b[96];
    perr_at(ps, ps->tok.p, "unexpected %s%s%s%s%s", tok_desc(&ps->tok, b, sizeof b),
            ctx ? " in " : "", ctx ? ctx : "", expected ? ", expected " : "",
            expected ? expected : "");
}

static void expect(parser_t *ps, tok_t t, const char *ctx, const char *what)
{
    if (ps->tok.t != t) unexpected(ps, ctx, what);
    advance(ps);
}

/* ---- AST helpers --------------------------------------------------------- */

static pq_node_t *node_new(parser_t *ps, pq_nkind_t k, const char *at)
{
    pq_node_t *n = palloc(ps, sizeof *n);
    n->kind = k;
    n->pos = (uint32_t)(at - ps->src);
    return n;
}

static const char *type_desc(pq_type_t t)
{
    switch (t) {
    case PQ_T_SCALAR: return "scalar";
    case PQ_T_VECTOR: return "instant vector";
    case PQ_T_MATRIX: return "range vector";
    case PQ_T_STRING: return "string";
    default: return "none";
    }
}

static const char *node_at(parser_t *ps, const pq_node_t *n)
{
    return ps->src + n->pos;
}

static pq_node_t *unparen(pq_node_t *n)
{
    while (n->kind == PQ_N_PAREN) n = n->u.un.expr;
    return n;
}

/* ---- grammar ------------------------------------------------------------- */

static pq_node_t *parse_expr(parser_t *ps, int minprec);

static const struct {
    const char *name;
    pq_aggop_t op;
    int param;
} aggs[] = {
    {"sum", PQ_AGG_SUM, 0},       {"avg", PQ_AGG_AVG, 0},
    {"min", PQ_AGG_MIN, 0},       {"max", PQ_AGG_MAX, 0},
    {"count", PQ_AGG_COUNT, 0},   {"stddev", PQ_AGG_STDDEV, 0},
    {"stdvar", PQ_AGG_STDVAR, 0}, {"topk", PQ_AGG_TOPK, 1},
    {"bottomk", PQ_AGG_BOTTOMK, 1}, {"quantile", PQ_AGG_QUANTILE, 1},
    {"count_values", PQ_AGG_COUNT_VALUES, 1}, {"group", PQ_AGG_GROUP, 0},
};

static int agg_lookup(const token_t *t)
{
    if (t->t != T_IDENT) return -1;
    for (size_t i = 0; i < sizeof aggs / sizeof aggs[0]; i++)
        if (tok_is_word(t, aggs[i].name)) return (int)i;
    return -1;
}

static int is_keyword(const token_t *t)
{
    static const char *kw[] = {"and", "or", "unless", "by", "without", "on", "ignoring",
                               "group_left", "group_right", "bool", "offset", "atan2"};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (tok_is_word(t, kw[i])) return 1;
    return 0;
}

static int is_label_name(const token_t *t)
{
    if (t->t != T_IDENT) return 0;
    return memchr(t->p, ':', t->len) == NULL;
}

/* ( label, label, ... ) */
static char **parse_label_list(parser_t *ps, size_t *n, const char *ctx)
{
    expect(ps, T_LPAREN, ctx, "\"(\"");
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    while (ps->tok.t != T_RPAREN) {
        if (!is_label_name(&ps->tok)) unexpected(ps, ctx, "label");
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 4;
            char **nv = palloc(ps, nc * sizeof *nv);
            if (cnt) memcpy(nv, v, cnt * sizeof *nv);
            v = nv;
            cap = nc;
        }
        v[cnt++] = pstrndup(ps, ps->tok.p, ps->tok.len);
        advance(ps);
        if (ps->tok.t == T_COMMA) {
            advance(ps);
        } else if (ps->tok.t != T_RPAREN) {
            unexpected(ps, ctx, "\",\" or \")\"");
        }
    }
    advance(ps);
    *n = cnt;
    return v;
}

static void check_regex(parser_t *ps, const char *at, const char *re)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, strlen(re),
                                  PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &err, &off,
                                  NULL);
    if (!c) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(err, msg, sizeof msg);
        perr_at(ps, at, "error parsing regexp \"%s\": %s (at offset %zu)", re, (const char *)msg,
                (size_t)off);
    }
    pcre2_code_free(c);
}

static int matcher_matches_empty(const pq_matcher_t *m)
{
    switch (m->type) {
    case TSDB_MATCH_EQ: return m->value[0] == 0;
    case TSDB_MATCH_NE: return m->value[0] != 0;
    default: {
        int err;
        PCRE2_SIZE off;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)m->value, strlen(m->value),
                                      PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &err, &off,
                                      NULL);
        if (!c) return 1;
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int rc = md ? pcre2_match(c, (PCRE2_SPTR) "", 0, 0, 0, md, NULL) : -1;
        pcre2_match_data_free(md);
        pcre2_code_free(c);
        int b = rc >= 0;
        return m->type == TSDB_MATCH_RE ? b : !b;
    }
    }
}

/* metric_name? { matchers } — the current token is the name or '{'. */
static pq_node_t *parse_selector(parser_t *ps)
{
    const char *at = ps->tok.p;
    pq_node_t *n = node_new(ps, PQ_N_VSEL, at);
    n->type = PQ_T_VECTOR;
    pq_matcher_t *m = NULL;
    size_t nm = 0, cap = 0;
    if (ps->tok.t == T_IDENT) {
        n->u.sel.name = pstrndup(ps, ps->tok.p, ps->tok.len);
        advance(ps);
    }
    if (ps->tok.t == T_LBRACE) {
        advance(ps);
        while (ps->tok.t != T_RBRACE) {
            if (!is_label_name(&ps->tok)) unexpected(ps, "label matching", "label name");
            const char *lat = ps->tok.p;
            char *lname = pstrndup(ps, ps->tok.p, ps->tok.len);
            advance(ps);
            tsdb_match_type_t ty;
            switch (ps->tok.t) {
            case T_ASSIGN: ty = TSDB_MATCH_EQ; break;
            case T_NEQ: ty = TSDB_MATCH_NE; break;
            case T_RE: ty = TSDB_MATCH_RE; break;
            case T_NRE: ty = TSDB_MATCH_NRE; break;
            default: unexpected(ps, "label matching", "label matching operator \"=\", \"!=\", \"=~\" or \"!~\"");
            }
            advance(ps);
            if (ps->tok.t != T_STRING) unexpected(ps, "label matching", "string");
            if (ty == TSDB_MATCH_RE || ty == TSDB_MATCH_NRE) check_regex(ps, ps->tok.p, ps->tok.str);
            if (nm == cap) {
                size_t nc = cap ? cap * 2 : 4;
                pq_matcher_t *nv = palloc(ps, (nc + 1) * sizeof *nv);
                if (nm) memcpy(nv, m, nm * sizeof *nv);
                m = nv;
                cap = nc;
            }
            m[nm].type = ty;
            m[nm].name = lname;
            m[nm].value = ps->tok.str;
            nm++;
            (void)lat;
            advance(ps);
            if (ps->tok.t == T_COMMA) {
                advance(ps);
            } else if (ps->tok.t != T_RBRACE) {
                unexpected(ps, "label matching", "\",\" or \"}\"");
            }
        }
        advance(ps);
    }
    if (n->u.sel.name) {
        for (size_t i = 0; i < nm; i++)
            if (!strcmp(m[i].name, "__name__"))
                perr_at(ps, at, "metric name must not be set twice: \"%s\" or \"%s\"", n->u.sel.name,
                        m[i].value);
        pq_matcher_t *nv = palloc(ps, (nm + 1) * sizeof *nv);
        nv[0].type = TSDB_MATCH_EQ;
        nv[0].name = pstrndup(ps, "__name__", 8);
        nv[0].value = n->u.sel.name;
        if (nm) memcpy(nv + 1, m, nm * sizeof *nv);
        m = nv;
        nm++;
    }
    int nonempty = 0;
    for (size_t i = 0; i < nm; i++)
        if (!matcher_matches_empty(&m[i])) nonempty = 1;
    if (!nonempty) perr_at(ps, at, "vector selector must contain at least one non-empty matcher");
    n->u.sel.m = m;
    n->u.sel.nm = nm;
    return n;
}

static pq_node_t *parse_agg(parser_t *ps, int ai)
{
    const char *at = ps->tok.p;
    pq_node_t *n = node_new(ps, PQ_N_AGG, at);
    n->type = PQ_T_VECTOR;
    n->u.agg.op = aggs[ai].op;
    advance(ps);
    int have_mod = 0;
    if (tok_is_word(&ps->tok, "by") || tok_is_word(&ps->tok, "without")) {
        n->u.agg.without = tok_is_word(&ps->tok, "without");
        advance(ps);
        n->u.agg.grouping = parse_label_list(ps, &n->u.agg.ngrouping, "grouping opts");
        have_mod = 1;
    }
    if (ps->tok.t != T_LPAREN) unexpected(ps, "aggregation", "\"(\"");
    advance(ps);
    if (aggs[ai].param) {
        n->u.agg.param = parse_expr(ps, 0);
        expect(ps, T_COMMA, "aggregation", "\",\"");
    }
    n->u.agg.expr = parse_expr(ps, 0);
    if (ps->tok.t == T_COMMA) {
        if (!aggs[ai].param) perr_at(ps, ps->tok.p, "wrong number of arguments for aggregate expression provided, expected 1, got 2");
    }
    expect(ps, T_RPAREN, "aggregation", "\")\"");
    if (tok_is_word(&ps->tok, "by") || tok_is_word(&ps->tok, "without")) {
        if (have_mod) unexpected(ps, "aggregation", NULL);
        n->u.agg.without = tok_is_word(&ps->tok, "without");
        advance(ps);
        n->u.agg.grouping = parse_label_list(ps, &n->u.agg.ngrouping, "grouping opts");
    }
    if (n->u.agg.expr->type != PQ_T_VECTOR)
        perr_at(ps, node_at(ps, n->u.agg.expr), "expected type instant vector in aggregation expression, got %s",
                type_desc(n->u.agg.expr->type));
    if (n->u.agg.param) {
        pq_type_t want = n->u.agg.op == PQ_AGG_COUNT_VALUES ? PQ_T_STRING : PQ_T_SCALAR;
        if (n->u.agg.param->type != want)
            perr_at(ps, node_at(ps, n->u.agg.param), "expected type %s in aggregation parameter, got %s",
                    type_desc(want), type_desc(n->u.agg.param->type));
    }
    if (n->u.agg.op == PQ_AGG_COUNT_VALUES) {
        pq_node_t *p = unparen(n->u.agg.param);
        if (p->kind == PQ_N_STR) {
            const char *s = p->u.str;
            int ok = *s && (isalpha((unsigned char)*s) || *s == '_');
            for (const char *q = s; *q && ok; q++)
                if (!isalnum((unsigned char)*q) && *q != '_') ok = 0;
            if (!ok) perr_at(ps, node_at(ps, p), "invalid label name \"%s\"", s);
        }
    }
    return n;
}

static pq_node_t *parse_call(parser_t *ps, const pq_func_t *fn)
{
    const char *at = ps->tok.p;
    pq_node_t *n = node_new(ps, PQ_N_CALL, at);
    n->u.call.fn = fn;
    n->type = fn->ret;
    advance(ps); /* name */
    advance(ps); /* ( */
    pq_node_t *args[64];
    size_t na = 0;
    while (ps->tok.t != T_RPAREN) {
        if (na == 64) perr_at(ps, ps->tok.p, "too many arguments");
        args[na++] = parse_expr(ps, 0);
        if (ps->tok.t == T_COMMA) {
            advance(ps);
            if (ps->tok.t == T_RPAREN) unexpected(ps, "function call", "expression");
        } else if (ps->tok.t != T_RPAREN) {
            unexpected(ps, "function call", "\",\" or \")\"");
        }
    }
    advance(ps);
    if ((int)na < fn->nargs_min || (fn->nargs_max >= 0 && (int)na > fn->nargs_max)) {
        if (fn->nargs_min == fn->nargs_max)
            perr_at(ps, at, "expected %d argument(s) in call to \"%s\", got %zu", fn->nargs_min, fn->name, na);
        if (fn->nargs_max < 0)
            perr_at(ps, at, "expected at least %d argument(s) in call to \"%s\", got %zu", fn->nargs_min, fn->name, na);
        perr_at(ps, at, "expected at most %d argument(s) in call to \"%s\", got %zu", fn->nargs_max, fn->name, na);
    }
    for (size_t i = 0; i < na; i++) {
        int k = (int)i;
        int last = (fn->nargs_max < 0 ? fn->nargs_min : fn->nargs_max) - 1;
        if (k > last) k = last;
        pq_type_t want = fn->arg_types[k];
        if (args[i]->type != want)
            perr_at(ps, node_at(ps, args[i]), "expected type %s in call to function \"%s\", got %s",
                    type_desc(want), fn->name, type_desc(args[i]->type));
    }
    n->u.call.args = palloc(ps, (na ? na : 1) * sizeof *args);
    if (na) memcpy(n->u.call.args, args, na * sizeof *args);
    n->u.call.nargs = na;
    if (fn->id == PQ_F_LABEL_REPLACE || fn->id == PQ_F_LABEL_JOIN) {
        /* the destination label must be a valid name (checked at eval time too) */
    }
    return n;
}

static pq_node_t *parse_primary(parser_t *ps)
{
    token_t *t = &ps->tok;
    switch (t->t) {
    case T_NUMBER: {
        pq_node_t *n = node_new(ps, PQ_N_NUM, t->p);
        n->type = PQ_T_SCALAR;
        n->u.num = t->num;
        advance(ps);
        return n;
    }
    case T_STRING: {
        pq_node_t *n = node_new(ps, PQ_N_STR, t->p);
        n->type = PQ_T_STRING;
        n->u.str = t->str;
        advance(ps);
        return n;
    }
    case T_LPAREN: {
        pq_node_t *n = node_new(ps, PQ_N_PAREN, t->p);
        advance(ps);
        n->u.un.expr = parse_expr(ps, 0);
        n->type = n->u.un.expr->type;
        expect(ps, T_RPAREN, "paren expression", "\")\"");
        return n;
    }
    case T_LBRACE: return parse_selector(ps);
    case T_IDENT: {
        int ai = agg_lookup(t);
        const token_t *nx = peek2(ps);
        if (ai >= 0 && (nx->t == T_LPAREN || tok_is_word(nx, "by") || tok_is_word(nx, "without")))
            return parse_agg(ps, ai);
        if (nx->t == T_LPAREN) {
            const pq_func_t *fn = pq_func_lookup(t->p, t->len);
            if (!fn) perr_at(ps, t->p, "unknown function with name \"%.*s\"", (int)t->len, t->p);
            return parse_call(ps, fn);
        }
        if (is_keyword(t) || ai >= 0) unexpected(ps, NULL, "expression");
        return parse_selector(ps);
    }
    case T_EOF: unexpected(ps, NULL, "expression");
    default: unexpected(ps, NULL, "expression");
    }
}

static void parse_at(parser_t *ps, pq_at_kind_t *kind, int64_t *ms)
{
    const char *at = ps->tok.p;
    advance(ps); /* @ */
    if (*kind != PQ_AT_NONE) perr_at(ps, at, "@ <timestamp> may not be set multiple times");
    if (tok_is_word(&ps->tok, "start") || tok_is_word(&ps->tok, "end")) {
        *kind = tok_is_word(&ps->tok, "start") ? PQ_AT_START : PQ_AT_END;
        advance(ps);
        expect(ps, T_LPAREN, "@ modifier", "\"(\"");
        expect(ps, T_RPAREN, "@ modifier", "\")\"");
        return;
    }
    int neg = 0;
    if (ps->tok.t == T_SUB || ps->tok.t == T_ADD) {
        neg = ps->tok.t == T_SUB;
        advance(ps);
    }
    if (ps->tok.t != T_NUMBER) unexpected(ps, "@", "timestamp");
    double v = ps->tok.num;
    if (neg) v = -v;
    if (!isfinite(v)) perr_at(ps, at, "timestamp out of bounds for @ modifier: %g", v);
    double msd = v * 1000.0;
    if (msd > 9.2e18 || msd < -9.2e18) perr_at(ps, at, "timestamp out of bounds for @ modifier: %g", v);
    *kind = PQ_AT_TIME;
    *ms = (int64_t)llround(msd);
    advance(ps);
}

static void parse_offset(parser_t *ps, int64_t *off, int *seen)
{
    const char *at = ps->tok.p;
    advance(ps); /* offset */
    if (*seen) perr_at(ps, at, "offset may not be set multiple times");
    int neg = 0;
    if (ps->tok.t == T_SUB || ps->tok.t == T_ADD) {
        neg = ps->tok.t == T_SUB;
        advance(ps);
    }
    if (ps->tok.t != T_DURATION) unexpected(ps, "offset", "duration");
    *off = neg ? -ps->tok.dur : ps->tok.dur;
    *seen = 1;
    advance(ps);
}

static pq_node_t *parse_postfix(parser_t *ps)
{
    pq_node_t *n = parse_primary(ps);
    int off_seen = 0;
    for (;;) {
        token_t *t = &ps->tok;
        if (t->t == T_LBRACKET) {
            const char *at = t->p;
            advance(ps);
            if (ps->tok.t != T_DURATION) unexpected(ps, "range", "duration");
            int64_t range = ps->tok.dur;
            advance(ps);
            if (ps->tok.t == T_COLON || (ps->tok.t == T_IDENT && ps->tok.p[0] == ':')) {
                /* subquery: [range:step] (the lexer may have glued ':' onto an ident) */
                if (ps->tok.t == T_IDENT) unexpected(ps, "subquery", "duration");
                advance(ps);
                int64_t step = 0;
                if (ps->tok.t == T_DURATION) {
                    step = ps->tok.dur;
                    if (step == 0) perr_at(ps, ps->tok.p, "step cannot be zero");
                    advance(ps);
                }
                expect(ps, T_RBRACKET, "subquery selector", "\"]\"");
                if (n->type != PQ_T_VECTOR)
                    perr_at(ps, at, "subquery is only allowed on instant vector, got %s", type_desc(n->type));
                if (range == 0) perr_at(ps, at, "range cannot be zero");
                pq_node_t *s = node_new(ps, PQ_N_SUBQ, node_at(ps, n));
                s->type = PQ_T_MATRIX;
                s->u.subq.expr = n;
                s->u.subq.range_ms = range;
                s->u.subq.step_ms = step;
                n = s;
                off_seen = 0;
                continue;
            }
            expect(ps, T_RBRACKET, "range selector", "\"]\"");
            if (n->kind != PQ_N_VSEL)
                perr_at(ps, at, "ranges only allowed for vector selectors");
            if (off_seen || n->u.sel.offset_ms) perr_at(ps, at, "no offset modifiers allowed before range");
            if (n->u.sel.at != PQ_AT_NONE) perr_at(ps, at, "no @ modifiers allowed before range");
            if (range == 0) perr_at(ps, at, "range cannot be zero");
            n->kind = PQ_N_MSEL;
            n->type = PQ_T_MATRIX;
            n->u.sel.range_ms = range;
            continue;
        }
        if (tok_is_word(t, "offset") || t->t == T_AT) {
            pq_node_t *tgt = n;
            if (tgt->kind != PQ_N_VSEL && tgt->kind != PQ_N_MSEL && tgt->kind != PQ_N_SUBQ) {
                if (t->t == T_AT)
                    perr_at(ps, t->p, "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery");
                perr_at(ps, t->p, "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery");
            }
            if (t->t == T_AT) {
                if (tgt->kind == PQ_N_SUBQ) parse_at(ps, &tgt->u.subq.at, &tgt->u.subq.at_ms);
                else parse_at(ps, &tgt->u.sel.at, &tgt->u.sel.at_ms);
            } else {
                if (tgt->kind == PQ_N_SUBQ) parse_offset(ps, &tgt->u.subq.offset_ms, &off_seen);
                else parse_offset(ps, &tgt->u.sel.offset_ms, &off_seen);
            }
            continue;
        }
        break;
    }
    return n;
}

typedef struct {
    pq_binop_t op;
    int prec;
} binop_info_t;

static int binop_of(const token_t *t, binop_info_t *bi)
{
    switch (t->t) {
    case T_ADD: *bi = (binop_info_t){PQ_OP_ADD, 4}; return 1;
    case T_SUB: *bi = (binop_info_t){PQ_OP_SUB, 4}; return 1;
    case T_MUL: *bi = (binop_info_t){PQ_OP_MUL, 5}; return 1;
    case T_DIV: *bi = (binop_info_t){PQ_OP_DIV, 5}; return 1;
    case T_MOD: *bi = (binop_info_t){PQ_OP_MOD, 5}; return 1;
    case T_POW: *bi = (binop_info_t){PQ_OP_POW, 6}; return 1;
    case T_EQLC: *bi = (binop_info_t){PQ_OP_EQ, 3}; return 1;
    case T_NEQ: *bi = (binop_info_t){PQ_OP_NE, 3}; return 1;
    case T_GT: *bi = (binop_info_t){PQ_OP_GT, 3}; return 1;
    case T_LT: *bi = (binop_info_t){PQ_OP_LT, 3}; return 1;
    case T_GTE: *bi = (binop_info_t){PQ_OP_GE, 3}; return 1;
    case T_LTE: *bi = (binop_info_t){PQ_OP_LE, 3}; return 1;
    case T_IDENT:
        if (tok_is_word(t, "atan2")) { *bi = (binop_info_t){PQ_OP_ATAN2, 5}; return 1; }
        if (tok_is_word(t, "and")) { *bi = (binop_info_t){PQ_OP_AND, 2}; return 1; }
        if (tok_is_word(t, "unless")) { *bi = (binop_info_t){PQ_OP_UNLESS, 2}; return 1; }
        if (tok_is_word(t, "or")) { *bi = (binop_info_t){PQ_OP_OR, 1}; return 1; }
        return 0;
    default: return 0;
    }
}

static int is_cmp(pq_binop_t op)
{
    return op >= PQ_OP_EQ && op <= PQ_OP_LE;
}

static int is_set(pq_binop_t op)
{
    return op >= PQ_OP_AND;
}

static pq_node_t *parse_unary(parser_t *ps)
{
    if (ps->tok.t == T_SUB || ps->tok.t == T_ADD) {
        const char *at = ps->tok.p;
        int neg = ps->tok.t == T_SUB;
        advance(ps);
        pq_node_t *e = parse_expr(ps, 6); /* binds like '*', so only '^' binds tighter */
        if (e->type != PQ_T_SCALAR && e->type != PQ_T_VECTOR)
            perr_at(ps, at, "unary expression only allowed on expressions of type scalar or instant vector, got %s",
                    type_desc(e->type));
        if (!neg) return e;
        if (e->kind == PQ_N_NUM) {
            e->u.num = -e->u.num;
            e->pos = (uint32_t)(at - ps->src);
            return e;
        }
        pq_node_t *n = node_new(ps, PQ_N_NEG, at);
        n->type = e->type;
        n->u.un.expr = e;
        return n;
    }
    return parse_postfix(ps);
}

static pq_node_t *parse_expr(parser_t *ps, int minprec)
{
    pq_node_t *lhs = parse_unary(ps);
    for (;;) {
        binop_info_t bi;
        if (!binop_of(&ps->tok, &bi) || bi.prec < minprec) break;
        const char *at = ps->tok.p;
        advance(ps);
        pq_node_t *n = node_new(ps, PQ_N_BIN, node_at(ps, lhs));
        n->u.bin.op = bi.op;
        if (tok_is_word(&ps->tok, "bool")) {
            if (!is_cmp(bi.op)) perr_at(ps, ps->tok.p, "bool modifier can only be used on comparison operators");
            n->u.bin.ret_bool = 1;
            advance(ps);
        }
        if (tok_is_word(&ps->tok, "on") || tok_is_word(&ps->tok, "ignoring")) {
            n->u.bin.matching = 1;
            n->u.bin.on = tok_is_word(&ps->tok, "on");
            advance(ps);
            n->u.bin.mlabels = parse_label_list(ps, &n->u.bin.nmlabels, "grouping opts");
            if (tok_is_word(&ps->tok, "group_left") || tok_is_word(&ps->tok, "group_right")) {
                const char *gat = ps->tok.p;
                n->u.bin.card = tok_is_word(&ps->tok, "group_left") ? PQ_CARD_MANY_ONE : PQ_CARD_ONE_MANY;
                advance(ps);
                if (is_set(bi.op))
                    perr_at(ps, gat, "no grouping allowed for \"%.*s\" operation", (int)(at ? 0 : 0), "");
                if (ps->tok.t == T_LPAREN)
                    n->u.bin.include = parse_label_list(ps, &n->u.bin.ninclude, "grouping opts");
            }
        }
        int nextprec = bi.op == PQ_OP_POW ? bi.prec : bi.prec + 1;
        pq_node_t *rhs = parse_expr(ps, nextprec);
        n->u.bin.lhs = lhs;
        n->u.bin.rhs = rhs;
        pq_type_t lt = lhs->type, rt = rhs->type;
        if ((lt != PQ_T_SCALAR && lt != PQ_T_VECTOR) || (rt != PQ_T_SCALAR && rt != PQ_T_VECTOR))
            perr_at(ps, node_at(ps, lhs), "binary expression must contain only scalar and instant vector types");
        if (is_set(bi.op)) {
            if (lt != PQ_T_VECTOR || rt != PQ_T_VECTOR) {
                const char *nm = bi.op == PQ_OP_AND ? "and" : bi.op == PQ_OP_OR ? "or" : "unless";
                perr_at(ps, node_at(ps, lhs), "set operator \"%s\" not allowed in binary scalar expression", nm);
            }
            n->u.bin.card = PQ_CARD_MANY_MANY;
        }
        if (is_cmp(bi.op) && !n->u.bin.ret_bool && lt == PQ_T_SCALAR && rt == PQ_T_SCALAR)
            perr_at(ps, node_at(ps, lhs), "comparisons between scalars must use BOOL modifier");
        if (n->u.bin.matching && (lt != PQ_T_VECTOR || rt != PQ_T_VECTOR))
            perr_at(ps, node_at(ps, lhs), "vector matching only allowed between instant vectors");
        if (n->u.bin.on) {
            for (size_t i = 0; i < n->u.bin.ninclude; i++)
                for (size_t j = 0; j < n->u.bin.nmlabels; j++)
                    if (!strcmp(n->u.bin.include[i], n->u.bin.mlabels[j]))
                        perr_at(ps, node_at(ps, lhs), "label \"%s\" must not occur in ON and GROUP clause at once",
                                n->u.bin.include[i]);
        }
        n->type = (lt == PQ_T_VECTOR || rt == PQ_T_VECTOR) ? PQ_T_VECTOR : PQ_T_SCALAR;
        lhs = n;
    }
    return lhs;
}

int promql_parse(const char *q, size_t len, pq_expr_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = 0;
    pq_expr_t *ex = calloc(1, sizeof *ex);
    if (!ex) return PQ_ENOMEM;
    parser_t *ps = calloc(1, sizeof *ps);
    if (!ps) {
        free(ex);
        return PQ_ENOMEM;
    }
    ps->src = q ? q : "";
    ps->end = ps->src + (q ? len : 0);
    ps->cur = ps->src;
    ps->ex = ex;
    ps->err = err;
    ps->errlen = errlen;
    if (setjmp(ps->jb)) {
        int code = ps->code;
        free(ps);
        promql_expr_free(ex);
        return code;
    }
    advance(ps);
    if (ps->tok.t == T_EOF) perr_at(ps, ps->tok.p, "no expression found in input");
    ex->root = parse_expr(ps, 0);
    if (ps->tok.t != T_EOF) {
        binop_info_t bi;
        (void)bi;
        unexpected(ps, NULL, "end of input or an operator");
    }
    free(ps);
    *out = ex;
    return 0;
}

void promql_expr_free(pq_expr_t *e)
{
    if (!e) return;
    pq_arena_free(&e->arena);
    free(e);
}

pq_type_t promql_expr_type(const pq_expr_t *e)
{
    return e && e->root ? e->root->type : PQ_T_NONE;
}
