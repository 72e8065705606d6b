// Q4_1 prompt products, one thread (bench/kernels/q4_1_groups.sh): the sixteen-row groups of the
// tolerance path (q4_1_groups.c: repack + integer GEMM, the repacking timed with it) against the
// exact VNNI kernels the engine uses (`sn_matmul_rows_vnni_tables` on packed rows), on SmolLM2-135M's
// and Llama-3.2-1B's shapes, median of N alternating runs; prints the groups' largest difference
// from the exact products relative to the largest output, and the direct form's
// (`sn_q4_1_rows_direct`, no repacking; for one or two activations) speed and whether its bits are
// the groups'.
#include "kquant_bench.h"
#include <math.h>
#include <stdio.h>

int main(int argc, char **argv) {
    const int runs = argc > 1 && atoi(argv[1]) > 0 ? (atoi(argv[1]) < 32 ? atoi(argv[1]) : 32) : 5;
    const struct { const char *name; int rows, columns; } shapes[] = {
        {"SmolLM2 attn_q 576x576", 576, 576}, {"SmolLM2 ffn_up 1536x576", 1536, 576},
        {"SmolLM2 ffn_down 576x1536", 576, 1536}, {"1B attn_q 2048x2048", 2048, 2048},
        {"larger than the cache 16384x4096", 16384, 4096}};
    const int token_counts[] = {1, 2, 4, 8, 16, 32, 64, 128};
    printf("| product | tokens | exact GMAC/s | groups GMAC/s | groups / exact | direct GMAC/s | direct / exact | direct bits = groups' | max difference / max output |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int rows = shapes[s].rows, cols = shapes[s].columns, nb = cols / 32;
        const size_t row_bytes = (size_t)nb * 20;
        uint8_t *w = malloc((size_t)rows * row_bytes), *scratch = malloc(8 * row_bytes);
        for (size_t i = 0; i < (size_t)rows * row_bytes; i++) w[i] = (uint8_t)next();
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < nb; b++) {
                const uint16_t d = _cvtss_sh((next() % 1000 + 1) * 1e-5f, 0), m = _cvtss_sh(-(float)(next() % 1000) * 1e-5f, 0);
                memcpy(w + r * row_bytes + b * 20, &d, 2);
                memcpy(w + r * row_bytes + b * 20 + 2, &m, 2);
            }
        sn_pack_rows(SN_Q4_1, w, row_bytes, rows, nb, scratch);
        uint8_t *group = malloc(sn_q4_1_group_bytes(nb));
        for (size_t tc = 0; tc < sizeof token_counts / sizeof token_counts[0]; tc++) {
            const int tokens = token_counts[tc];
            float *x = malloc(sizeof(float) * (size_t)cols * tokens);
            for (size_t i = 0; i < (size_t)cols * tokens; i++) x[i] = ((int)(next() % 2001) - 1000) * 1e-3f;
            const size_t as = (size_t)nb * 36;
            uint8_t *a = malloc(as * tokens);
            float *ds = malloc(sizeof(float) * 2 * nb * tokens);
            for (int t = 0; t < tokens; t++) sn_quantize_q8_1(x + (size_t)t * cols, nb, a + t * as);
            float *o1 = malloc(sizeof(float) * (size_t)rows * tokens), *o2 = malloc(sizeof(float) * (size_t)rows * tokens);
            float *o3 = malloc(sizeof(float) * (size_t)rows * tokens);
            sn_matmul_job job = {SN_Q4_1, w, row_bytes, rows, nb, o1, rows};
            double te[32], tg[32], td[32];
            for (int i = 0; i < runs; i++) {
                const double t0 = now();
                if (tokens == 1) sn_matmul_rows(&job, 0, rows, a, as, 1);
                else sn_matmul_rows_vnni_tables(&job, 0, rows, a, as, tokens, NULL);
                const double t1 = now();
                for (int t = 0; t < tokens; t++) sn_q4_1_activation_scales(a + t * as, nb, ds + (size_t)2 * nb * t);
                for (int g = 0; g < rows; g += 16) {
                    const int n = rows - g < 16 ? rows - g : 16;
                    sn_q4_1_repack_group(w, row_bytes, rows, 1, g, n, nb, group);
                    sn_q4_1_group_gemm(group, nb, n, a, as, ds, (size_t)2 * nb, tokens, o2 + g, rows);
                }
                const double t2 = now();
                for (int t = 0; t < tokens; t++) sn_q4_1_activation_scales(a + t * as, nb, ds + (size_t)2 * nb * t);
                for (int g = 0; g < rows; g += 64) {
                    const int n = rows - g < 64 ? rows - g : 64;
                    sn_q4_1_rows_direct(w, row_bytes, rows, 1, g, n, nb, a, as, ds, (size_t)2 * nb, tokens, o3 + g, rows);
                }
                const double t3 = now();
                te[i] = t1 - t0; tg[i] = t2 - t1; td[i] = t3 - t2;
            }
            double diff = 0, top = 0;
            for (size_t i = 0; i < (size_t)rows * tokens; i++) {
                if (fabs(o1[i] - o2[i]) > diff) diff = fabs(o1[i] - o2[i]);
                if (fabs(o1[i]) > top) top = fabs(o1[i]);
            }
            const int same = memcmp(o2, o3, sizeof(float) * (size_t)rows * tokens) == 0;
            qsort(te, runs, sizeof(double), cmp); qsort(tg, runs, sizeof(double), cmp); qsort(td, runs, sizeof(double), cmp);
            const double macs = (double)rows * cols * tokens * 1e-9;
            const double e = macs / te[runs / 2], g = macs / tg[runs / 2], d = macs / td[runs / 2];
            printf("| %s | %d | %.1f | %.1f | %.2fx | %.1f | %.2fx | %s | %.1e |\n", shapes[s].name, tokens, e, g, g / e, d, d / e,
                   same ? "yes" : "**no**", diff / top);
            fflush(stdout);
            free(x); free(a); free(ds); free(o1); free(o2); free(o3);
        }
        free(w); free(scratch); free(group);
    }
    return 0;
}
