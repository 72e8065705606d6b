// bench/kernels/attention.sh builds this against a baseline commit's `sn_attention_head` (renamed
// base_sn_attention_head): every output checked bit-identical, then both timed.
#include "sn_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>
void base_sn_attention_head(const float *query, const uint16_t *keys, const uint16_t *values, size_t stride, int positions, int first, int head_dim, float scale, float softcap, int tiny, int width, float *scratch, float *out);
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static uint64_t rng = 88172645463325252ull;
static float frand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return ((uint32_t)rng / 4294967296.0f) * 2 - 1; }
int main(void) {
    int P = 2048, kvh = 3, hdmax = 256; size_t stride = kvh * hdmax;
    uint16_t *K = malloc(2 * stride * P), *V = malloc(2 * stride * P);
    for (size_t i = 0; i < stride * P; i++) { K[i] = _cvtss_sh(frand() * 2, 0); V[i] = _cvtss_sh(frand(), 0); }
    float q[256]; for (int i = 0; i < 256; i++) q[i] = frand() * 3;
    float *sc = malloc(sizeof(float) * sn_attention_scratch(P, hdmax)), o1[256], o2[256];
    long bad = 0, runs = 0;
    int hds[] = {64, 128, 80, 72, 256, 36};
    for (int hi = 0; hi < 6; hi++) for (int tiny = 0; tiny < 2; tiny++) for (int w = 8; w <= 16; w += 8)
    for (int pos = 1; pos < 400; pos += (pos < 70 ? 1 : 37)) for (int first = 0; first < pos; first += (pos / 3 + 1)) {
        int hd = hds[hi];
        sn_attention_head(q, K, V, stride, pos, first, hd, 0.125f, hi == 2 ? 30.0f : 0, tiny, w, sc, o1);
        base_sn_attention_head(q, K, V, stride, pos, first, hd, 0.125f, hi == 2 ? 30.0f : 0, tiny, w, sc, o2);
        bad += memcmp(o1, o2, 4 * hd) != 0; runs++;
    }
    printf("configs %ld mismatches %ld\n", runs, bad);
    int tp[] = {96, 128, 512, 2048};
    for (int k = 0; k < 4; k++) for (int tiny = 0; tiny < 2; tiny++) {
        double b1 = 1e9, b2 = 1e9; int reps = 200000 / tp[k];
        for (int it = 0; it < 7; it++) {
            double t0 = now(); for (int r = 0; r < reps; r++) sn_attention_head(q, K, V, stride, tp[k], 0, 64, 0.125f, 0, tiny, 16, sc, o1);
            double t1 = now(); for (int r = 0; r < reps; r++) base_sn_attention_head(q, K, V, stride, tp[k], 0, 64, 0.125f, 0, tiny, 16, sc, o2);
            double t2 = now(); if (t1 - t0 < b1) b1 = t1 - t0; if (t2 - t1 < b2) b2 = t2 - t1;
        }
        printf("positions %4d %s: this checkout %.2f us base %.2f us (%.2fx)\n", tp[k], tiny ? "tiny  " : "vecdot", b1 / reps * 1e6, b2 / reps * 1e6, b2 / b1);
    }
    return bad != 0;
}
