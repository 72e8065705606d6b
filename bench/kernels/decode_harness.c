// bench/kernels/run.sh builds this against a baseline commit's kernels (symbols renamed ref_*).
// Decode-shaped matmul harness: ref (original kernels.c/pool.c, symbols ref_*) vs new.
#define _GNU_SOURCE
#include "sn_kernels.h"
typedef struct { int type; const uint8_t *w; const float *scales; size_t row_bytes; int rows; int blocks; float *out; size_t out_stride; } ref_job;
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>

void ref_sn_matmul_rows(const ref_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens);
void ref_sn_extract_scales(int type, const uint8_t *w, size_t row_bytes, int rows, int blocks, float *out);
void ref_sn_quantize_q8_1(const float *x, int blocks, uint8_t *out);
void ref_sn_quantize_q8_0(const float *x, int blocks, uint8_t *out);
sn_pool *ref_sn_pool_create(int threads);
void ref_sn_pool_matmul(sn_pool *pool, const ref_job *jobs, int count, const uint8_t *a, size_t a_stride, int tokens);

#ifndef NEW_PREPARE
// The new implementation must provide: prepare a job from original-layout weights (may repack w in place).
#endif


static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)rng; }
static float frand(void) { return (rnd() / 4294967296.0f) * 2 - 1; }

typedef struct { int type, rows, cols; uint8_t *w; uint8_t *wnew; float *scales; int packed; } Mat;

static void fill(Mat *m) {
    int nb = m->cols / 32; size_t bb = m->type == SN_Q4_1 ? 20 : 34; size_t rb = nb * bb;
    m->w = aligned_alloc(64, (rb * m->rows + 63) / 64 * 64);
    for (size_t i = 0; i < rb * m->rows; i++) m->w[i] = rnd();
    for (int r = 0; r < m->rows; r++) for (int b = 0; b < nb; b++) {
        uint8_t *p = m->w + r * rb + b * bb;
        uint16_t d = _cvtss_sh(frand() * 0.01f, 0), mm = _cvtss_sh(frand() * 0.05f, 0);
        memcpy(p, &d, 2); if (m->type == SN_Q4_1) memcpy(p + 2, &mm, 2);
    }
    m->scales = malloc(sizeof(float) * m->rows * nb * 2);
    ref_sn_extract_scales(m->type, m->w, rb, m->rows, nb, m->scales);
    m->wnew = aligned_alloc(64, (rb * m->rows + 63) / 64 * 64);
    memcpy(m->wnew, m->w, rb * m->rows);
}
static ref_job refjob(Mat *m, float *out, size_t os) {
    int nb = m->cols / 32; size_t bb = m->type == SN_Q4_1 ? 20 : 34;
    ref_job j = {m->type, m->w, m->scales, nb * bb, m->rows, nb, out, os};
    return j;
}
static sn_matmul_job newjob(Mat *m, float *out, size_t os) {
    int nb = m->cols / 32; size_t bb = m->type == SN_Q4_1 ? 20 : 34;
    static uint8_t scratch[4 * 49152];
    sn_matmul_job j = {m->type, m->wnew, nb * bb, m->rows, nb, out, os};
    if (!m->packed) { sn_pack_rows(m->type, m->wnew, nb * bb, m->rows, nb, scratch); m->packed = 1; }
    // check unpack
    uint8_t row[4096];
    for (int r = 0; r < m->rows; r += 97) { sn_unpack_row(m->type, m->wnew, nb*bb, m->rows, nb, r, row); if (memcmp(row, m->w + r * nb * bb, nb * bb)) { printf("unpack mismatch row %d\n", r); exit(1);} }
    return j;
}

#define L 30
int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 20;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int only = argc > 3 ? atoi(argv[3]) : 0; // 1 = ref only, 2 = new only
    Mat q[L], k[L], v[L], o[L], g[L], u[L], d[L], out = {SN_Q8_0, 49152, 576};
    for (int l = 0; l < L; l++) {
        q[l] = (Mat){SN_Q4_1, 576, 576}; k[l] = (Mat){SN_Q4_1, 192, 576}; v[l] = (Mat){SN_Q4_1, 192, 576};
        o[l] = (Mat){SN_Q4_1, 576, 576}; g[l] = (Mat){SN_Q4_1, 1536, 576}; u[l] = (Mat){SN_Q4_1, 1536, 576};
        d[l] = (Mat){SN_Q4_1, 576, 1536};
        fill(&q[l]); fill(&k[l]); fill(&v[l]); fill(&o[l]); fill(&g[l]); fill(&u[l]); fill(&d[l]);
    }
    fill(&out);
    enum { TMAX = 64 };
    float *x = malloc(sizeof(float) * 1536 * TMAX);
    for (int i = 0; i < 1536 * TMAX; i++) x[i] = frand() * 3;
    uint8_t *a576 = malloc(36 * 18 * TMAX), *a1536 = malloc(36 * 48 * TMAX), *a576_0 = malloc(34 * 18 * TMAX);
    for (int t = 0; t < TMAX; t++) {
        ref_sn_quantize_q8_1(x + t * 576, 18, a576 + t * 36 * 18);
        ref_sn_quantize_q8_1(x + t * 1536, 48, a1536 + t * 36 * 48);
        ref_sn_quantize_q8_0(x + t * 576, 18, a576_0 + t * 34 * 18);
    }
    float *ro = malloc(sizeof(float) * 49152 * TMAX), *no = malloc(sizeof(float) * 49152 * TMAX);
    float *r1 = malloc(sizeof(float) * 3072 * TMAX), *n1 = malloc(sizeof(float) * 3072 * TMAX);
    ref_job rq[L][3], ro1[L], rgu[L][2], rd[L], rout; sn_matmul_job nq[L][3], no1[L], ngu[L][2], nd[L], nout;
    for (int l = 0; l < L; l++) {
        rq[l][0] = refjob(&q[l], r1, 960); rq[l][1] = refjob(&k[l], r1 + 576, 960); rq[l][2] = refjob(&v[l], r1 + 768, 960);
        ro1[l] = refjob(&o[l], r1, 576); rgu[l][0] = refjob(&g[l], r1, 3072); rgu[l][1] = refjob(&u[l], r1 + 1536, 3072);
        rd[l] = refjob(&d[l], r1, 576);
        nq[l][0] = newjob(&q[l], n1, 960); nq[l][1] = newjob(&k[l], n1 + 576, 960); nq[l][2] = newjob(&v[l], n1 + 768, 960);
        no1[l] = newjob(&o[l], n1, 576); ngu[l][0] = newjob(&g[l], n1, 3072); ngu[l][1] = newjob(&u[l], n1 + 1536, 3072);
        nd[l] = newjob(&d[l], n1, 576);
    }
    rout = refjob(&out, ro, 49152); nout = newjob(&out, no, 49152);
    sn_pool *rp = ref_sn_pool_create(threads), *np = sn_pool_create(threads);
    // Correctness: every matrix, several token counts.
    int tcs[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 21, 64};
    long bad = 0;
    for (int ti = 0; ti < (int)(sizeof tcs / sizeof *tcs); ti++) {
        int T = tcs[ti];
        for (int l = 0; l < 2; l++) {
            memset(r1, 0, sizeof(float) * 3072 * TMAX); memset(n1, 0xff, sizeof(float) * 3072 * TMAX);
            ref_sn_pool_matmul(rp, rq[l], 3, a576, 36 * 18, T); sn_pool_matmul(np, nq[l], 3, a576, 36 * 18, T);
            for (int i = 0; i < 960 * T; i++) bad += memcmp(&r1[i], &n1[i], 4) != 0;
            ref_sn_pool_matmul(rp, rgu[l], 2, a576, 36 * 18, T); sn_pool_matmul(np, ngu[l], 2, a576, 36 * 18, T);
            for (int i = 0; i < 3072 * T; i++) bad += memcmp(&r1[i], &n1[i], 4) != 0;
            ref_sn_pool_matmul(rp, &rd[l], 1, a1536, 36 * 48, T); sn_pool_matmul(np, &nd[l], 1, a1536, 36 * 48, T);
            for (int i = 0; i < 576 * T; i++) bad += memcmp(&r1[i], &n1[i], 4) != 0;
        }
        if (T <= 16) {
            ref_sn_pool_matmul(rp, &rout, 1, a576_0, 34 * 18, T); sn_pool_matmul(np, &nout, 1, a576_0, 34 * 18, T);
            for (int i = 0; i < 49152 * T; i++) bad += memcmp(&ro[i], &no[i], 4) != 0;
        }
    }
    printf("mismatches: %ld\n", bad);
    // Timing: decode token = all layers + output, T=1.
    for (int which = 0; which < 2; which++) {
        if (only && only != which + 1) continue;
        double best = 1e9, sum = 0, bl = 1e9, bo = 1e9;
        sn_pool *p = which ? np : rp;
        void (*mm)(sn_pool *, const void *, int, const uint8_t *, size_t, int) = which ? (void*)sn_pool_matmul : (void*)ref_sn_pool_matmul;
        for (int it = 0; it < iters; it++) {
            double t0 = now();
            for (int l = 0; l < L; l++) {
                mm(p, which ? (void*)nq[l] : (void*)rq[l], 3, a576, 36 * 18, 1);
                mm(p, which ? (void*)&no1[l] : (void*)&ro1[l], 1, a576, 36 * 18, 1);
                mm(p, which ? (void*)ngu[l] : (void*)rgu[l], 2, a576, 36 * 18, 1);
                mm(p, which ? (void*)&nd[l] : (void*)&rd[l], 1, a1536, 36 * 48, 1);
            }
            double t1 = now();
            mm(p, which ? (void*)&nout : (void*)&rout, 1, a576_0, 34 * 18, 1);
            double t2 = now();
            if (t2 - t0 < best) best = t2 - t0;
            if (t1 - t0 < bl) bl = t1 - t0;
            if (t2 - t1 < bo) bo = t2 - t1;
            sum += t2 - t0;
        }
        printf("%s: token min %.3f ms mean %.3f ms (layers min %.3f, output min %.3f)\n", which ? "new" : "ref",
               best * 1e3, sum / iters * 1e3, bl * 1e3, bo * 1e3);
    }
    // Prompt timing: T=64 one pass, ref, new and new with its AVX2 kernels forced, interleaved.
    {
        int PT = argc > 4 ? atoi(argv[4]) : 64;
        double best[3] = {1e9, 1e9, 1e9};
        for (int it = 0; it < (argc > 5 ? atoi(argv[5]) : 6); it++)
        for (int which = 0; which < 3; which++) {
            if (only && only != which + 1) continue;
            sn_set_isa_for_testing(which == 2 ? SN_ISA_AVX2 : SN_ISA_AVX512_VNNI);
            sn_pool *p = which ? np : rp;
            void (*mm)(sn_pool *, const void *, int, const uint8_t *, size_t, int) = which ? (void*)sn_pool_matmul : (void*)ref_sn_pool_matmul;
            double t0 = now();
            for (int l = 0; l < L; l++) {
                mm(p, which ? (void*)nq[l] : (void*)rq[l], 3, a576, 36 * 18, PT);
                mm(p, which ? (void*)&no1[l] : (void*)&ro1[l], 1, a576, 36 * 18, PT);
                mm(p, which ? (void*)ngu[l] : (void*)rgu[l], 2, a576, 36 * 18, PT);
                mm(p, which ? (void*)&nd[l] : (void*)&rd[l], 1, a1536, 36 * 48, PT);
            }
            double t = now() - t0;
            if (t < best[which]) best[which] = t;
        }
        sn_set_isa_for_testing(SN_ISA_AVX512_VNNI);
        printf("prompt T=%d layers min: ref %.3f ms new %.3f ms (new kernels: %s), new with AVX2 forced %.3f ms\n", PT,
               best[0] * 1e3, best[1] * 1e3, sn_kernels_isa() == SN_ISA_AVX512_VNNI ? "AVX512-VNNI" : "AVX2", best[2] * 1e3);
        // The output matrix (Q8_0, 49152 x 576) for the same activations.
        double bq[2] = {1e9, 1e9};
        for (int it = 0; it < (argc > 5 ? atoi(argv[5]) : 6); it++)
            for (int which = 0; which < 2; which++) {
                sn_set_isa_for_testing(which ? SN_ISA_AVX2 : SN_ISA_AVX512_VNNI);
                double t0 = now();
                sn_pool_matmul(np, &nout, 1, a576_0, 34 * 18, PT < 16 ? PT : 16);
                double t = now() - t0;
                if (t < bq[which]) bq[which] = t;
            }
        sn_set_isa_for_testing(SN_ISA_AVX512_VNNI);
        printf("output Q8_0 T=%d min: new %.3f ms, new with AVX2 forced %.3f ms\n", PT < 16 ? PT : 16, bq[0] * 1e3, bq[1] * 1e3);
    }
    return bad != 0;
}
