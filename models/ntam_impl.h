/*
 * ntam_impl.h — the NTAM forward and backward passes, written once and compiled twice by
 * ntam.c: with REAL = float (NT(x) = x##_f, cblas_s*) and REAL = double (NT(x) = x##_d,
 * cblas_d*). Not a public header: include only from ntam.c with the macros below defined.
 *
 *   REAL        float or double
 *   NT(name)    suffixes a function name
 *   BLAS_GEMM   cblas_sgemm / cblas_dgemm
 *   BLAS_GEMV   cblas_sgemv / cblas_dgemv
 *   BATCH       ntam_batch_t / ntam_batch_d_t
 *   R_EXP, R_LOG, R_SQRT, R_LOG1P, R_POW, R_FABS   the math functions of that type
 *
 * Shapes (row-major): M = n_dev·W rows for the per-step layers, B = n_dev for the per-device
 * layers. Attention is single-head; the projections for Q, K and V are one d×3d matrix so
 * they are one GEMM. Comments name the GEMM each step is.
 */

/* ---- BLAS wrappers: row-major, optional shape trace ---- */

static void NT(gemm)(int ta, int tb, int M, int N, int K, REAL alpha, const REAL *A, int lda,
                     const REAL *B, int ldb, REAL beta, REAL *C, int ldc)
{
    if (ntam_trace_fn_) ntam_trace_fn_(ntam_trace_ctx_, 'g', ta, tb, M, N, K);
    BLAS_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
              N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* y = alpha·op(A)·x + beta·y, A is M×N (row-major). */
static void NT(gemv)(int ta, int M, int N, REAL alpha, const REAL *A, int lda, const REAL *x,
                     REAL beta, REAL *y)
{
    if (ntam_trace_fn_) ntam_trace_fn_(ntam_trace_ctx_, 'v', ta, 0, M, 1, N);
    BLAS_GEMV(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, M, N, alpha, A, lda, x, 1, beta, y,
              1);
}

/* ---- workspace layout ---- */

typedef struct {
    REAL *qkv, *A, *ctx, *xh1, *rstd1, *n1, *h1, *xh2, *rstd2, *n2;
} NT(blk_t);

typedef struct {
    REAL *pe, *E;
    NT(blk_t) blk[NTAM_MAX_BLOCKS];
    REAL *beta, *zc, *ns, *nqkv, *nalpha, *alpha0, *G, *logit;
    /* backward only */
    REAL *dlogit, *dG, *dzc, *dnqkv, *dalpha, *ds0, *dZ, *dtmp, *dN1, *dh1, *dctx, *dqkv, *dA,
        *dpool, *dbeta;
} NT(ws_t);

static size_t NT(carve)(char *base, size_t *off, REAL **out, size_t n)
{
    size_t o = (*off + 63) & ~(size_t)63;
    if (out) *out = base ? (REAL *)(void *)(base + o) : NULL;
    *off = o + n * sizeof(REAL);
    return *off;
}

/* Lay out (or, with base NULL, size) the workspace for B devices, largest node maxn. Returns
 * bytes; with train = 0 only the forward buffers. */
static size_t NT(layout)(const ntam_hparams_t *hp, size_t B, size_t maxn, int train, char *base,
                         NT(ws_t) * w)
{
    size_t W = (size_t)hp->window, d = (size_t)hp->d_model, dff = (size_t)hp->d_ff;
    size_t dh = (size_t)hp->d_head, M = B * W, off = 0;
    size_t S = hp->nb_summary ? 2 * (size_t)hp->n_features : 0;
    size_t HW = 2 * d + ((hp->nb_summary & NTAM_NB_SUMMARY_HEAD) ? 2 * S : 0);
    NT(ws_t) dummy;
    if (!w) w = &dummy;
    NT(carve)(base, &off, &w->pe, W * d);
    NT(carve)(base, &off, &w->E, M * d);
    for (int l = 0; l < hp->n_blocks; l++) {
        NT(blk_t) *k = &w->blk[l];
        NT(carve)(base, &off, &k->qkv, 3 * M * d);
        NT(carve)(base, &off, &k->A, B * W * W);
        NT(carve)(base, &off, &k->ctx, M * d);
        NT(carve)(base, &off, &k->xh1, M * d);
        NT(carve)(base, &off, &k->rstd1, M);
        NT(carve)(base, &off, &k->n1, M * d);
        NT(carve)(base, &off, &k->h1, M * dff);
        NT(carve)(base, &off, &k->xh2, M * d);
        NT(carve)(base, &off, &k->rstd2, M);
        NT(carve)(base, &off, &k->n2, M * d);
    }
    NT(carve)(base, &off, &w->beta, M);
    NT(carve)(base, &off, &w->zc, B * HW);
    NT(carve)(base, &off, &w->ns, B * S);
    NT(carve)(base, &off, &w->nqkv, 3 * B * d);
    NT(carve)(base, &off, &w->nalpha, B * maxn);
    NT(carve)(base, &off, &w->alpha0, B);
    NT(carve)(base, &off, &w->G, B * dh);
    NT(carve)(base, &off, &w->logit, B);
    if (!train) return off;
    NT(carve)(base, &off, &w->dlogit, B);
    NT(carve)(base, &off, &w->dG, B * dh);
    NT(carve)(base, &off, &w->dzc, B * HW);
    NT(carve)(base, &off, &w->dnqkv, 3 * B * d);
    NT(carve)(base, &off, &w->dalpha, B * maxn);
    NT(carve)(base, &off, &w->ds0, B);
    NT(carve)(base, &off, &w->dZ, M * d);
    NT(carve)(base, &off, &w->dtmp, M * d);
    NT(carve)(base, &off, &w->dN1, M * d);
    NT(carve)(base, &off, &w->dh1, M * dff);
    NT(carve)(base, &off, &w->dctx, M * d);
    NT(carve)(base, &off, &w->dqkv, 3 * M * d);
    NT(carve)(base, &off, &w->dA, B * W * W);
    NT(carve)(base, &off, &w->dpool, M);
    NT(carve)(base, &off, &w->dbeta, W);
    return off;
}

/* ---- parameters as typed pointers ---- */

typedef struct {
    const REAL *wqkv, *wo, *ln1g, *ln1b, *w1, *b1, *w2, *b2, *ln2g, *ln2b;
} NT(pblk_t);
typedef struct {
    const REAL *we, *be;
    NT(pblk_t) blk[NTAM_MAX_BLOCKS];
    const REAL *u, *nw, *k0, *v0, *hw1, *hb1, *hw2, *hb2, *nws;
} NT(par_t);

/* Same order as ntam_tensor_info. Works for the parameter and the gradient arrays. */
static void NT(params_bind)(const ntam_hparams_t *hp, const REAL *p, NT(par_t) * q)
{
    const REAL **slots[2 + 10 * NTAM_MAX_BLOCKS + 9];
    int n = 0;
    slots[n++] = &q->we;
    slots[n++] = &q->be;
    for (int l = 0; l < hp->n_blocks; l++) {
        NT(pblk_t) *b = &q->blk[l];
        slots[n++] = &b->wqkv;
        slots[n++] = &b->wo;
        slots[n++] = &b->ln1g;
        slots[n++] = &b->ln1b;
        slots[n++] = &b->w1;
        slots[n++] = &b->b1;
        slots[n++] = &b->w2;
        slots[n++] = &b->b2;
        slots[n++] = &b->ln2g;
        slots[n++] = &b->ln2b;
    }
    slots[n++] = &q->u;
    slots[n++] = &q->nw;
    slots[n++] = &q->k0;
    slots[n++] = &q->v0;
    slots[n++] = &q->hw1;
    slots[n++] = &q->hb1;
    slots[n++] = &q->hw2;
    slots[n++] = &q->hb2;
    q->nws = NULL;
    if (hp->nb_summary & NTAM_NB_SUMMARY_KV) slots[n++] = &q->nws;
    for (int k = 0; k < n; k++) {
        ntam_tensor_t t = {0};
        ntam_tensor_info(hp, k, &t);
        *slots[k] = p + t.offset;
    }
}

/* ---- small kernels ---- */

/* Softmax of v[0..n) in place over entries with keep[i] (others 0). If none is kept, all are. */
static void NT(softmax_masked)(REAL *v, int n, const uint8_t *keep)
{
    int any = 0;
    if (keep)
        for (int i = 0; i < n; i++) any |= keep[i];
    if (!any) keep = NULL;
    REAL mx = -(REAL)1e30;
    for (int i = 0; i < n; i++)
        if ((!keep || keep[i]) && v[i] > mx) mx = v[i];
    REAL s = 0;
    for (int i = 0; i < n; i++) {
        if (keep && !keep[i]) {
            v[i] = 0;
            continue;
        }
        v[i] = R_EXP(v[i] - mx);
        s += v[i];
    }
    for (int i = 0; i < n; i++) v[i] /= s;
}

/* Layer norm of rows of x (rows × d, in place → gain·xhat + bias), keeping xhat and 1/σ. */
static void NT(layernorm_fwd)(REAL *restrict x, size_t rows, int d, const REAL *restrict g,
                              const REAL *restrict b, REAL *restrict xh, REAL *restrict rstd)
{
    for (size_t r = 0; r < rows; r++) {
        REAL *row = x + r * (size_t)d, *h = xh + r * (size_t)d;
        REAL mu = 0, var = 0;
        for (int c = 0; c < d; c++) mu += row[c];
        mu /= (REAL)d;
        for (int c = 0; c < d; c++) {
            REAL t = row[c] - mu;
            var += t * t;
        }
        var /= (REAL)d;
        REAL rs = 1 / R_SQRT(var + (REAL)1e-5);
        rstd[r] = rs;
        for (int c = 0; c < d; c++) {
            h[c] = (row[c] - mu) * rs;
            row[c] = g[c] * h[c] + b[c];
        }
    }
}

/* Layer-norm backward: dx from dy; accumulates dgain, dbias. */
static void NT(layernorm_bwd)(const REAL *restrict dy, size_t rows, int d, const REAL *restrict g,
                              const REAL *restrict xh, const REAL *restrict rstd, REAL *restrict dx,
                              REAL *restrict dg, REAL *restrict db)
{
    for (size_t r = 0; r < rows; r++) {
        const REAL *y = dy + r * (size_t)d, *h = xh + r * (size_t)d;
        REAL *o = dx + r * (size_t)d;
        REAL m1 = 0, m2 = 0;
        for (int c = 0; c < d; c++) {
            REAL gy = y[c] * g[c];
            m1 += gy;
            m2 += gy * h[c];
            dg[c] += y[c] * h[c];
            db[c] += y[c];
        }
        m1 /= (REAL)d;
        m2 /= (REAL)d;
        for (int c = 0; c < d; c++) o[c] = rstd[r] * (y[c] * g[c] - m1 - h[c] * m2);
    }
}

static void NT(colsum_add)(const REAL *x, size_t rows, int cols, int ld, REAL *acc)
{
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) acc[c] += x[r * (size_t)ld + c];
}

static void NT(node_range)(const BATCH *b, int k, int *a, int *e)
{
    if (b->node_off) {
        *a = b->node_off[k];
        *e = b->node_off[k + 1];
    } else {
        *a = k;
        *e = k + 1;
    }
}

static int NT(n_nodes)(const BATCH *b)
{
    return b->node_off ? b->n_nodes : b->n_dev;
}

/* Largest node of the batch, or -1 if node_off is malformed. */
static int NT(max_node)(const BATCH *b)
{
    if (!b->node_off) return 1;
    if (b->n_nodes < 1 || b->node_off[0] != 0 || b->node_off[b->n_nodes] != b->n_dev) return -1;
    int mx = 0;
    for (int k = 0; k < b->n_nodes; k++) {
        int n = b->node_off[k + 1] - b->node_off[k];
        if (n < 1) return -1;
        if (n > mx) mx = n;
    }
    return mx;
}

/* Window summary of one device (x: W×F, tm: its mask or NULL), s: 2F entries: asinh of x at
 * the last observed step minus x at the first, then asinh of x at the last observed step minus
 * the mean over the observed steps (asinh: linear near 0, logarithmic for the large jumps of
 * sparse error counters in training standard deviations). All zero when no step is observed. */
static void NT(summary)(const REAL *x, const uint8_t *tm, int W, int F, REAL *s)
{
    int first = -1, last = -1, cnt = 0;
    for (int t = 0; t < W; t++)
        if (!tm || tm[t]) {
            if (first < 0) first = t;
            last = t;
            cnt++;
        }
    for (int f = 0; f < 2 * F; f++) s[f] = 0;
    if (first < 0) return;
    const REAL *xl = x + (size_t)last * F, *xf = x + (size_t)first * F;
    for (int f = 0; f < F; f++) s[f] = xl[f] - xf[f];
    for (int t = first; t <= last; t++)
        if (!tm || tm[t])
            for (int f = 0; f < F; f++) s[F + f] += x[(size_t)t * F + f];
    for (int f = 0; f < F; f++) s[F + f] = xl[f] - s[F + f] / (REAL)cnt;
    for (int f = 0; f < 2 * F; f++) s[f] = R_ASINH(s[f]);
}

/* ---- forward ---- */

static void NT(forward)(const ntam_hparams_t *hp, const NT(par_t) * P, const BATCH *b,
                        NT(ws_t) * w)
{
    const int W = hp->window, F = hp->n_features, d = hp->d_model, dff = hp->d_ff;
    const int dh = hp->d_head, B = b->n_dev, M = B * W, d3 = 3 * d;
    const int SUMW = hp->nb_summary ? 2 * F : 0;
    const int KV = hp->nb_summary & NTAM_NB_SUMMARY_KV, HS = hp->nb_summary & NTAM_NB_SUMMARY_HEAD;
    const int HW = 2 * d + (HS ? 2 * SUMW : 0); /* head input width */
    const REAL scale = 1 / R_SQRT((REAL)d);

    /* positional encoding table, W × d */
    for (int t = 0; t < W; t++)
        for (int c = 0; c < d; c++) {
            double ang = (double)t / pow(10000.0, (double)(c & ~1) / (double)d);
            w->pe[t * d + c] = (REAL)((c & 1) ? cos(ang) : sin(ang));
        }
    /* E = X·We (GEMM M×d×F) + be + PE */
    NT(gemm)(0, 0, M, d, F, 1, b->x, F, P->we, d, 0, w->E, d);
    for (int r = 0; r < M; r++) {
        REAL *restrict row = w->E + (size_t)r * d;
        const REAL *restrict pe = w->pe + (size_t)(r % W) * d, *restrict be = P->be;
        for (int c = 0; c < d; c++) row[c] += be[c] + pe[c];
    }
    const REAL *zin = w->E;
    for (int l = 0; l < hp->n_blocks; l++) {
        NT(blk_t) *k = &w->blk[l];
        const NT(pblk_t) *q = &P->blk[l];
        /* [Q K V] = Zin·Wqkv (GEMM M×3d×d) */
        NT(gemm)(0, 0, M, d3, d, 1, zin, d, q->wqkv, d3, 0, k->qkv, d3);
        for (int i = 0; i < B; i++) {
            const REAL *Q = k->qkv + (size_t)i * W * d3;
            REAL *A = k->A + (size_t)i * W * W;
            const uint8_t *tm = b->tmask ? b->tmask + (size_t)i * W : NULL;
            /* S = Q·Kᵀ/√d (W×W), masked row softmax, ctx = A·V */
            NT(gemm)(0, 1, W, W, d, scale, Q, d3, Q + d, d3, 0, A, W);
            for (int t = 0; t < W; t++) NT(softmax_masked)(A + t * W, W, tm);
            NT(gemm)(0, 0, W, d, W, 1, A, W, Q + 2 * d, d3, 0, k->ctx + (size_t)i * W * d, d);
        }
        /* R1 = Zin + ctx·Wo (GEMM M×d×d), N1 = LN(R1) */
        NT(gemm)(0, 0, M, d, d, 1, k->ctx, d, q->wo, d, 0, k->n1, d);
        {
            REAL *restrict n1 = k->n1;
            const REAL *restrict zi = zin;
            for (size_t r = 0; r < (size_t)M * d; r++) n1[r] += zi[r];
        }
        NT(layernorm_fwd)(k->n1, (size_t)M, d, q->ln1g, q->ln1b, k->xh1, k->rstd1);
        /* H1 = relu(N1·W1 + b1) (GEMM M×dff×d) */
        NT(gemm)(0, 0, M, dff, d, 1, k->n1, d, q->w1, dff, 0, k->h1, dff);
        for (int r = 0; r < M; r++) {
            REAL *restrict row = k->h1 + (size_t)r * dff;
            const REAL *restrict b1 = q->b1;
            for (int c = 0; c < dff; c++) {
                REAL v = row[c] + b1[c];
                row[c] = v > 0 ? v : 0;
            }
        }
        /* R2 = N1 + H1·W2 + b2 (GEMM M×d×dff), N2 = LN(R2) */
        NT(gemm)(0, 0, M, d, dff, 1, k->h1, dff, q->w2, d, 0, k->n2, d);
        for (int r = 0; r < M; r++) {
            REAL *restrict row = k->n2 + (size_t)r * d;
            const REAL *restrict n1 = k->n1 + (size_t)r * d, *restrict b2 = q->b2;
            for (int c = 0; c < d; c++) row[c] += n1[c] + b2[c];
        }
        NT(layernorm_fwd)(k->n2, (size_t)M, d, q->ln2g, q->ln2b, k->xh2, k->rstd2);
        zin = k->n2;
    }
    /* attention pooling: score = Z·u (GEMV M×d), masked softmax per device, h = Zᵀ·β */
    NT(gemv)(0, M, d, 1, zin, d, P->u, 0, w->beta);
    for (int i = 0; i < B; i++) {
        REAL *beta = w->beta + (size_t)i * W;
        NT(softmax_masked)(beta, W, b->tmask ? b->tmask + (size_t)i * W : NULL);
        NT(gemv)(1, W, d, 1, zin + (size_t)i * W * d, d, beta, 0, w->zc + (size_t)i * HW);
    }
    /* neighbourhood attention: [Q' K' V'] = H·Wn (GEMM B×3d×d) [+ Sum·Ws (GEMM B×3d×S)] */
    NT(gemm)(0, 0, B, d3, d, 1, w->zc, HW, P->nw, d3, 0, w->nqkv, d3);
    if (SUMW && !hp->ablate_neighbours) {
        for (int i = 0; i < B; i++)
            NT(summary)(b->x + (size_t)i * W * F, b->tmask ? b->tmask + (size_t)i * W : NULL, W, F,
                        w->ns + (size_t)i * SUMW);
        if (KV) NT(gemm)(0, 0, B, d3, SUMW, 1, w->ns, SUMW, P->nws, d3, 1, w->nqkv, d3);
    }
    size_t aoff = 0;
    for (int nk = 0; nk < NT(n_nodes)(b); nk++) {
        int a, e;
        NT(node_range)(b, nk, &a, &e);
        int n = e - a;
        REAL *S = w->nalpha + aoff, *a0 = w->alpha0 + a;
        const REAL *Qn = w->nqkv + (size_t)a * d3;
        aoff += (size_t)n * n;
        if (hp->ablate_neighbours || n == 1) {
            for (int i = 0; i < n; i++) {
                REAL *zr = w->zc + (size_t)(a + i) * HW;
                a0[i] = 1;
                for (int j = 0; j < n; j++) S[i * n + j] = 0;
                memcpy(zr + d, P->v0, sizeof(REAL) * (size_t)d);
                for (int c = 2 * d; c < HW; c++) zr[c] = 0; /* no node summary */
            }
            continue;
        }
        /* scores among the node's devices (n×n×d) and against the slot key (GEMV n×d) */
        NT(gemm)(0, 1, n, n, d, scale, Qn, d3, Qn + d, d3, 0, S, n);
        NT(gemv)(0, n, d, scale, Qn, d3, P->k0, 0, a0);
        for (int i = 0; i < n; i++) {
            REAL *row = S + (size_t)i * n, mx = a0[i], s;
            for (int j = 0; j < n; j++)
                if (j != i && row[j] > mx) mx = row[j];
            a0[i] = R_EXP(a0[i] - mx);
            s = a0[i];
            for (int j = 0; j < n; j++) {
                row[j] = j == i ? 0 : R_EXP(row[j] - mx);
                s += row[j];
            }
            a0[i] /= s;
            for (int j = 0; j < n; j++) row[j] /= s;
        }
        /* c = α·V' (GEMM n×d×n) + α0·v0 */
        REAL *C = w->zc + (size_t)a * HW + d;
        NT(gemm)(0, 0, n, d, n, 1, S, n, Qn + 2 * d, d3, 0, C, HW);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < d; c++) C[(size_t)i * HW + c] += a0[i] * P->v0[c];
        /* node summary of the other devices: mean and max of their window summaries */
        for (int i = 0; HS && i < n; i++) {
            REAL *mean = w->zc + (size_t)(a + i) * HW + 2 * d, *mx = mean + SUMW;
            for (int c = 0; c < SUMW; c++) {
                REAL acc = 0, m = -(REAL)1e30;
                for (int j = 0; j < n; j++) {
                    if (j == i) continue;
                    REAL v = w->ns[(size_t)(a + j) * SUMW + c];
                    acc += v;
                    if (v > m) m = v;
                }
                mean[c] = acc / (REAL)(n - 1);
                mx[c] = m;
            }
        }
    }
    /* head: G = relu([h;c(;mean;max)]·Wh1 + bh1) (GEMM B×dh×HW), logit = G·w2 + b2 (GEMV) */
    NT(gemm)(0, 0, B, dh, HW, 1, w->zc, HW, P->hw1, dh, 0, w->G, dh);
    for (int i = 0; i < B; i++) {
        REAL *restrict g = w->G + (size_t)i * dh;
        const REAL *restrict hb1 = P->hb1;
        for (int c = 0; c < dh; c++) {
            REAL v = g[c] + hb1[c];
            g[c] = v > 0 ? v : 0;
        }
    }
    NT(gemv)(0, B, dh, 1, w->G, dh, P->hw2, 0, w->logit);
    for (int i = 0; i < B; i++) w->logit[i] += P->hb2[0];
}

/* ---- loss ---- */

static REAL NT(softplus)(REAL z)
{
    return z > 0 ? z + R_LOG1P(R_EXP(-z)) : R_LOG1P(R_EXP(z));
}

/* Weighted mean loss over the batch; dlogit (if not NULL) gets its gradient. */
static REAL NT(loss)(const ntam_opt_t *o, const BATCH *b, const REAL *logit, REAL *dlogit)
{
    REAL sw = 0, L = 0;
    const REAL pw = (REAL)o->pos_weight, gam = (REAL)o->focal_gamma;
    for (int i = 0; i < b->n_dev; i++) sw += b->w ? b->w[i] : 1;
    if (sw <= 0) sw = 1;
    for (int i = 0; i < b->n_dev; i++) {
        REAL wi = (b->w ? b->w[i] : 1) / sw, y = b->y[i], z = logit[i];
        REAL p = z >= 0 ? 1 / (1 + R_EXP(-z)) : R_EXP(z) / (1 + R_EXP(z));
        REAL lp = -NT(softplus)(-z), lq = -NT(softplus)(z); /* log p, log(1-p) */
        REAL l, g;
        if (o->loss == NTAM_LOSS_FOCAL) {
            REAL q = 1 - p, qg = R_POW(q, gam), pg = R_POW(p, gam);
            l = -pw * y * qg * lp - (1 - y) * pg * lq;
            g = pw * y * (gam * p * qg * lp - qg * q) + (1 - y) * (-gam * pg * q * lq + pg * p);
        } else {
            l = pw * y * (-lp) + (1 - y) * (-lq);
            g = pw * y * (p - 1) + (1 - y) * p;
        }
        L += wi * l;
        if (dlogit) dlogit[i] = wi * g;
    }
    return L;
}

/* ---- backward: accumulates into the gradient array G (zeroed by the caller) ---- */

static void NT(backward)(const ntam_hparams_t *hp, const NT(par_t) * P, NT(par_t) * Gp,
                         const BATCH *b, NT(ws_t) * w)
{
    const int W = hp->window, F = hp->n_features, d = hp->d_model, dff = hp->d_ff;
    const int dh = hp->d_head, B = b->n_dev, M = B * W, d3 = 3 * d;
    const int SUMW = hp->nb_summary ? 2 * F : 0;
    const int HW = 2 * d + ((hp->nb_summary & NTAM_NB_SUMMARY_HEAD) ? 2 * SUMW : 0);
    const REAL scale = 1 / R_SQRT((REAL)d);
/* gradients are written through the const pointers of the bound gradient array */
#define GW(x) ((REAL *)(Gp->x))
    /* head */
    NT(gemv)(1, B, dh, 1, w->G, dh, w->dlogit, 1, GW(hw2));
    for (int i = 0; i < B; i++) GW(hb2)[0] += w->dlogit[i];
    for (int i = 0; i < B; i++)
        for (int c = 0; c < dh; c++) {
            size_t o = (size_t)i * dh + c;
            w->dG[o] = w->G[o] > 0 ? w->dlogit[i] * P->hw2[c] : 0;
        }
    NT(gemm)(1, 0, HW, dh, B, 1, w->zc, HW, w->dG, dh, 1, GW(hw1), dh);
    NT(colsum_add)(w->dG, (size_t)B, dh, dh, GW(hb1));
    /* only the [h;c] part of dzc is used: the node summary is an input, not a parameter */
    NT(gemm)(0, 1, B, 2 * d, dh, 1, w->dG, dh, P->hw1, dh, 0, w->dzc, HW);
    /* neighbourhood attention */
    memset(w->dnqkv, 0, sizeof(REAL) * (size_t)B * d3);
    size_t aoff = 0;
    for (int nk = 0; nk < NT(n_nodes)(b); nk++) {
        int a, e;
        NT(node_range)(b, nk, &a, &e);
        int n = e - a;
        const REAL *S = w->nalpha + aoff, *a0 = w->alpha0 + a;
        REAL *dS = w->dalpha + aoff, *ds0 = w->ds0 + a;
        const REAL *dC = w->dzc + (size_t)a * HW + d, *Qn = w->nqkv + (size_t)a * d3;
        REAL *dQn = w->dnqkv + (size_t)a * d3;
        aoff += (size_t)n * n;
        if (hp->ablate_neighbours || n == 1) {
            NT(colsum_add)(dC, (size_t)n, d, HW, GW(v0));
            continue;
        }
        /* dα = dC·V'ᵀ, dα0 = dC·v0, dV' = αᵀ·dC, dv0 += dCᵀ·α0 */
        NT(gemm)(0, 1, n, n, d, 1, dC, HW, Qn + 2 * d, d3, 0, dS, n);
        NT(gemv)(0, n, d, 1, dC, HW, P->v0, 0, ds0);
        NT(gemm)(1, 0, n, d, n, 1, S, n, dC, HW, 0, dQn + 2 * d, d3);
        NT(gemv)(1, n, d, 1, dC, HW, a0, 1, GW(v0));
        for (int i = 0; i < n; i++) {
            REAL *row = dS + (size_t)i * n;
            const REAL *arow = S + (size_t)i * n;
            REAL dot = a0[i] * ds0[i];
            for (int j = 0; j < n; j++) dot += arow[j] * row[j];
            ds0[i] = a0[i] * (ds0[i] - dot) * scale;
            for (int j = 0; j < n; j++) row[j] = arow[j] * (row[j] - dot) * scale;
        }
        /* dQ' = dS·K' + ds0⊗k0, dK' = dSᵀ·Q', dk0 += Q'ᵀ·ds0 */
        NT(gemm)(0, 0, n, d, n, 1, dS, n, Qn + d, d3, 0, dQn, d3);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < d; c++) dQn[(size_t)i * d3 + c] += ds0[i] * P->k0[c];
        NT(gemm)(1, 0, n, d, n, 1, dS, n, Qn, d3, 0, dQn + d, d3);
        NT(gemv)(1, n, d, 1, Qn, d3, ds0, 1, GW(k0));
    }
    /* dWn += Hᵀ·d[Q'K'V'] (GEMM d×3d×B); dH += d[Q'K'V']·Wnᵀ (GEMM B×d×3d) */
    NT(gemm)(1, 0, d, d3, B, 1, w->zc, HW, w->dnqkv, d3, 1, GW(nw), d3);
    NT(gemm)(0, 1, B, d, d3, 1, w->dnqkv, d3, P->nw, d3, 1, w->dzc, HW);
    /* dWs += Sumᵀ·d[Q'K'V'] (GEMM S×3d×B) */
    if ((hp->nb_summary & NTAM_NB_SUMMARY_KV) && !hp->ablate_neighbours)
        NT(gemm)(1, 0, SUMW, d3, B, 1, w->ns, SUMW, w->dnqkv, d3, 1, GW(nws), d3);
    /* attention pooling */
    const REAL *Z = hp->n_blocks ? w->blk[hp->n_blocks - 1].n2 : w->E;
    for (int i = 0; i < B; i++) {
        const REAL *Zi = Z + (size_t)i * W * d, *beta = w->beta + (size_t)i * W;
        const REAL *dhv = w->dzc + (size_t)i * HW;
        REAL *ds = w->dpool + (size_t)i * W, *dZi = w->dZ + (size_t)i * W * d;
        NT(gemv)(0, W, d, 1, Zi, d, dhv, 0, w->dbeta);
        REAL dot = 0;
        for (int t = 0; t < W; t++) dot += beta[t] * w->dbeta[t];
        for (int t = 0; t < W; t++) {
            ds[t] = beta[t] * (w->dbeta[t] - dot);
            for (int c = 0; c < d; c++) dZi[t * d + c] = beta[t] * dhv[c] + ds[t] * P->u[c];
        }
    }
    NT(gemv)(1, M, d, 1, Z, d, w->dpool, 1, GW(u));
    /* blocks, last to first; w->dZ holds dL/d(block output) */
    for (int l = hp->n_blocks - 1; l >= 0; l--) {
        NT(blk_t) *k = &w->blk[l];
        const NT(pblk_t) *q = &P->blk[l];
        NT(pblk_t) *g = &Gp->blk[l];
        const REAL *zin = l ? w->blk[l - 1].n2 : w->E;
        /* LN2 → dR2 (dtmp); dN1 = dR2 (residual) */
        NT(layernorm_bwd)(w->dZ, (size_t)M, d, q->ln2g, k->xh2, k->rstd2, w->dtmp,
                          (REAL *)g->ln2g, (REAL *)g->ln2b);
        memcpy(w->dN1, w->dtmp, sizeof(REAL) * (size_t)M * d);
        /* feed-forward: dW2 += H1ᵀ·dR2, dH1 = dR2·W2ᵀ ⊙ relu', dW1 += N1ᵀ·dH1, dN1 += dH1·W1ᵀ */
        NT(gemm)(1, 0, dff, d, M, 1, k->h1, dff, w->dtmp, d, 1, (REAL *)g->w2, d);
        NT(colsum_add)(w->dtmp, (size_t)M, d, d, (REAL *)g->b2);
        NT(gemm)(0, 1, M, dff, d, 1, w->dtmp, d, q->w2, d, 0, w->dh1, dff);
        for (size_t r = 0; r < (size_t)M * dff; r++)
            if (k->h1[r] <= 0) w->dh1[r] = 0;
        NT(gemm)(1, 0, d, dff, M, 1, k->n1, d, w->dh1, dff, 1, (REAL *)g->w1, dff);
        NT(colsum_add)(w->dh1, (size_t)M, dff, dff, (REAL *)g->b1);
        NT(gemm)(0, 1, M, d, dff, 1, w->dh1, dff, q->w1, dff, 1, w->dN1, d);
        /* LN1 → dR1 (dtmp) */
        NT(layernorm_bwd)(w->dN1, (size_t)M, d, q->ln1g, k->xh1, k->rstd1, w->dtmp,
                          (REAL *)g->ln1g, (REAL *)g->ln1b);
        /* output projection: dWo += ctxᵀ·dR1, dctx = dR1·Woᵀ */
        NT(gemm)(1, 0, d, d, M, 1, k->ctx, d, w->dtmp, d, 1, (REAL *)g->wo, d);
        NT(gemm)(0, 1, M, d, d, 1, w->dtmp, d, q->wo, d, 0, w->dctx, d);
        /* self-attention per device */
        for (int i = 0; i < B; i++) {
            const REAL *Q = k->qkv + (size_t)i * W * d3, *A = k->A + (size_t)i * W * W;
            const REAL *dctx = w->dctx + (size_t)i * W * d;
            REAL *dA = w->dA + (size_t)i * W * W, *dQ = w->dqkv + (size_t)i * W * d3;
            NT(gemm)(0, 1, W, W, d, 1, dctx, d, Q + 2 * d, d3, 0, dA, W);
            NT(gemm)(1, 0, W, d, W, 1, A, W, dctx, d, 0, dQ + 2 * d, d3);
            for (int t = 0; t < W; t++) {
                REAL *dr = dA + t * W;
                const REAL *ar = A + t * W;
                REAL dot = 0;
                for (int j = 0; j < W; j++) dot += ar[j] * dr[j];
                for (int j = 0; j < W; j++) dr[j] = ar[j] * (dr[j] - dot) * scale;
            }
            NT(gemm)(0, 0, W, d, W, 1, dA, W, Q + d, d3, 0, dQ, d3);
            NT(gemm)(1, 0, W, d, W, 1, dA, W, Q, d3, 0, dQ + d, d3);
        }
        /* dWqkv += Zinᵀ·dQKV (GEMM d×3d×M); dZin = dR1 + dQKV·Wqkvᵀ (GEMM M×d×3d) */
        NT(gemm)(1, 0, d, d3, M, 1, zin, d, w->dqkv, d3, 1, (REAL *)g->wqkv, d3);
        memcpy(w->dZ, w->dtmp, sizeof(REAL) * (size_t)M * d);
        NT(gemm)(0, 1, M, d, d3, 1, w->dqkv, d3, q->wqkv, d3, 1, w->dZ, d);
    }
    /* embedding: dWe += Xᵀ·dE (GEMM F×d×M) */
    NT(gemm)(1, 0, F, d, M, 1, b->x, F, w->dZ, d, 1, GW(we), d);
    NT(colsum_add)(w->dZ, (size_t)M, d, d, GW(be));
#undef GW
}

/* ---- entry points ---- */

/* Validate b against hp and ws_size, lay out the workspace. 0 or an error. */
static int NT(prepare)(const ntam_hparams_t *hp, const BATCH *b, void *ws, size_t ws_size,
                       int train, NT(ws_t) * w)
{
    if (!hp || !b || !b->x || b->n_dev < 1 || (train && !b->y)) return NTAM_EINVAL;
    if (b->node_off && b->n_nodes < 1) return NTAM_EINVAL;
    int maxn = NT(max_node)(b);
    if (maxn < 1) return NTAM_EINVAL;
    size_t need = NT(layout)(hp, (size_t)b->n_dev, (size_t)maxn, train, NULL, NULL);
    if (!ws || ws_size < need) return NTAM_ESHAPE;
    NT(layout)(hp, (size_t)b->n_dev, (size_t)maxn, train, (char *)ws, w);
    return 0;
}

static int NT(loss_grad)(const ntam_hparams_t *hp, const REAL *params, const ntam_opt_t *o,
                         const BATCH *b, void *ws, size_t ws_size, REAL *loss, REAL *grad,
                         size_t n_par)
{
    NT(ws_t) w;
    int rc = NT(prepare)(hp, b, ws, ws_size, grad != NULL, &w);
    if (rc) return rc;
    NT(par_t) P, Gp;
    NT(params_bind)(hp, params, &P);
    NT(forward)(hp, &P, b, &w);
    *loss = NT(loss)(o, b, w.logit, grad ? w.dlogit : NULL);
    if (!grad) return 0;
    memset(grad, 0, sizeof(REAL) * n_par);
    NT(params_bind)(hp, grad, &Gp);
    NT(backward)(hp, &P, &Gp, b, &w);
    return 0;
}
